#!/usr/bin/env bash
# Installs everything the tests need (the virtualenv with pinned dependencies; Kafka, FerretDB and
# Redis through ops/engines.sh), starts the engines, and runs every test. Extra arguments go to pytest.
# With CI=true a missing engine fails the run instead of skipping its tests.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS
ops/bootstrap.sh test
ops/engines.sh start
echo "[test] set-up took $((SECONDS - started))s; running the tests" >&2
.venv/bin/python -m pytest "$@"
