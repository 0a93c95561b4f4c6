#!/usr/bin/env bash
# Runs the whole of SnapFix on its embedded default: one process serving the command API, the query
# API and the projector, with the event log and views in SQLite files under ./data and an in-process
# cache. No servers needed. Open http://127.0.0.1:8000/docs. Extra arguments go to `snapfix serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
ops/bootstrap.sh
exec .venv/bin/snapfix serve "$@"
