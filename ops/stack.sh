#!/usr/bin/env bash
# The whole distributed deployment on this machine, for people who want to try it:
# Kafka, FerretDB and Redis (ops/engines.sh), then one process of each role:
#   command API  http://127.0.0.1:8001  (writes: POST, PUT, PATCH, DELETE)
#   query API    http://127.0.0.1:8002  (reads: GET)
#   projectors   a faust worker in the Kafka consumer group
# In production a load balancer splits the shared paths by method (see ops/nginx.conf).
#
#   ops/stack.sh start | stop | status
set -euo pipefail
cd "$(dirname "$0")/.."

run_dir=".engines/stack"
mkdir -p "$run_dir"
export SNAPFIX_EVENT_LOG="${SNAPFIX_EVENT_LOG:-kafka://127.0.0.1:9092}"
export SNAPFIX_WRITE_STORE="${SNAPFIX_WRITE_STORE:-mongodb://127.0.0.1:27017/snapfix_write}"
export SNAPFIX_VIEW_STORE="${SNAPFIX_VIEW_STORE:-mongodb://127.0.0.1:27017/snapfix}"
export SNAPFIX_CACHE="${SNAPFIX_CACHE:-redis://127.0.0.1:6379/0}"
export SNAPFIX_LOG_FORMAT="${SNAPFIX_LOG_FORMAT:-json}"

roles=("command-api:8001" "query-api:8002" "projectors:")

say() { printf '[stack] %s\n' "$*" >&2; }

alive() { [[ -f "$run_dir/$1.pid" ]] && kill -0 "$(cat "$run_dir/$1.pid")" 2>/dev/null; }

start() {
  ops/bootstrap.sh test
  ops/engines.sh start
  for entry in "${roles[@]}"; do
    local role=${entry%%:*} port=${entry#*:}
    if alive "$role"; then say "$role: already running"; continue; fi
    local args=("$role")
    [[ -n "$port" ]] && args+=(--port "$port")
    setsid nohup .venv/bin/snapfix "${args[@]}" >"$run_dir/$role.log" 2>&1 < /dev/null &
    echo $! >"$run_dir/$role.pid"
    say "$role: started (log $run_dir/$role.log)"
  done
  for port in 8001 8002; do
    for _ in $(seq 1 100); do
      curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
      sleep 0.2
    done
    curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 || { say "port $port is not ready; see $run_dir/*.log"; exit 1; }
  done
  say "ready: writes to http://127.0.0.1:8001, reads from http://127.0.0.1:8002 (Swagger UI at /docs on each)"
}

stop() {
  for entry in "${roles[@]}"; do
    local role=${entry%%:*}
    if alive "$role"; then kill "$(cat "$run_dir/$role.pid")" && say "$role: stopped"; fi
    rm -f "$run_dir/$role.pid"
  done
  ops/engines.sh stop
}

status() {
  local rc=0
  for entry in "${roles[@]}"; do
    local role=${entry%%:*}
    if alive "$role"; then say "$role: running (pid $(cat "$run_dir/$role.pid"))"; else say "$role: down"; rc=1; fi
  done
  ops/engines.sh status || rc=1
  return $rc
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
