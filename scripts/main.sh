#!/usr/bin/env bash
# The main job: installs the project, starts a local RocketMQ cluster, sends and
# receives with each backend (asyncio, threads, gevent) and prints what happened.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python examples/main_job.py "$@"
