#!/usr/bin/env bash
# Runs every test: installs what they need, then pytest (the suite starts the
# local RocketMQ cluster itself when a test needs it). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python -m pytest "$@"
