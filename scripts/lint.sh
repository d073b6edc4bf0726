#!/usr/bin/env bash
# ruff and mypy --strict over the packages.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
.venv/bin/python -m ruff check rocketmq_proto rocketmq_asyncio rocketmq_gevent rocketmq_sync rocketmq_cli rocketmq_testing tests benchmarks scripts examples
.venv/bin/python -m ruff format --check rocketmq_proto rocketmq_asyncio rocketmq_gevent rocketmq_sync rocketmq_cli rocketmq_testing
.venv/bin/python -m mypy --strict rocketmq_proto rocketmq_asyncio rocketmq_gevent rocketmq_sync rocketmq_cli rocketmq_testing
.venv/bin/python scripts/unasync.py --check
