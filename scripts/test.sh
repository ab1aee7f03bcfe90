#!/usr/bin/env bash
# Set up a fresh machine and run every test: fast unit tests, then integration tests on a real sandbox fleet.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export GITKUBE_TEST_SANDBOX_ID="${GITKUBE_TEST_SANDBOX_ID:-1}"
cleanup() { .venv/bin/gitkube --state-dir /tmp/gitkube-test-cleanup sandbox --id "$GITKUBE_TEST_SANDBOX_ID" down >/dev/null 2>&1 || true; }
trap cleanup EXIT
.venv/bin/lint-imports --no-cache
.venv/bin/python -m pytest -q -ra --durations=15 "$@"
if [ $# -eq 0 ]; then
  # The control loops once more with their state on a 3-member etcd cluster (loopback) instead of SQLite, serve's
  # three tests included (each starts serve on a fresh store: a standby names the installation, then leads).
  GITKUBE_TEST_STORE=etcd .venv/bin/python -m pytest -q -ra --durations=5 tests/integration/test_control_loops.py
fi
