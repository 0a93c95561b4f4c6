#!/usr/bin/env bash
# Creates the project's virtualenv in .venv (if missing) and installs SnapFix into it with pinned
# dependencies. Idempotent and quick when nothing changed: it reinstalls only when pyproject.toml or
# constraints.txt is newer than the last install.
#   ops/bootstrap.sh            the runtime only (what `snapfix serve` needs)
#   ops/bootstrap.sh test       plus the distributed adapters and the test tools (and Debian's kcat)
set -euo pipefail
cd "$(dirname "$0")/.."

extras=""
[[ "${1:-}" == "test" ]] && extras="[distributed,test]"
python="${PYTHON:-python3}"
stamp=".venv/.installed${extras:+-test}"

if ! command -v "$python" >/dev/null; then
  echo "[bootstrap] $python is not on PATH: SnapFix needs Python 3.11 or newer" >&2
  exit 1
fi
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "[bootstrap] $("$python" --version) is too old: SnapFix needs Python 3.11 or newer" >&2
  exit 1
fi
if [[ ! -x .venv/bin/python ]]; then
  echo "[bootstrap] creating .venv with $("$python" --version)" >&2
  "$python" -m venv .venv
fi
if [[ ! -f "$stamp" || pyproject.toml -nt "$stamp" || constraints.txt -nt "$stamp" ]]; then
  echo "[bootstrap] installing snapfix${extras} and its pinned dependencies into .venv" >&2
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".${extras}"
  touch "$stamp"
fi
# The test mode also needs kcat (Debian's Kafka CLI): a test reads the event topics with it, as an
# outside tool would, and fails in CI without it. Installed only when missing; the package lists are
# refreshed only if the first attempt fails.
if [[ "${1:-}" == "test" ]] && ! command -v kcat >/dev/null; then
  if command -v apt-get >/dev/null; then
    sudo=""; [[ "$(id -u)" != 0 ]] && sudo="sudo"
    echo "[bootstrap] installing kcat with apt-get" >&2
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get install -y -qq kcat >/dev/null || { $sudo apt-get update -qq && $sudo apt-get install -y -qq kcat >/dev/null; }
  else
    echo "[bootstrap] kcat is missing and there is no apt-get: install kcat for the Kafka tooling test" >&2
  fi
fi
