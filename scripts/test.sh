#!/usr/bin/env bash
# Runs every test: installs what they need, then pytest (the suite starts the
# local RocketMQ cluster itself when a test needs it). Extra arguments go to pytest.
# The tests are spread over TEST_WORKERS pytest-xdist workers (3 by default: most
# broker tests wait on the brokers more than they compute), a module per worker
# at a time (tests/conftest.py says which go together), all sharing one session
# cluster; -n 0 runs them in this process.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python -m pytest -n "${TEST_WORKERS:-3}" "$@"
