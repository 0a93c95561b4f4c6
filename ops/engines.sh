#!/usr/bin/env bash
# ops/engines.sh: the real engines SnapFix runs against, on this machine, without Docker.
#
#   Kafka 4.1 (single-node KRaft broker)  127.0.0.1:9092  (controller 127.0.0.1:9093)
#   PostgreSQL (Debian's postgresql, our own cluster)  127.0.0.1:5433  (FerretDB's backend)
#   FerretDB 1.24 (MongoDB wire protocol, on PostgreSQL; SQLite with SNAPFIX_FERRETDB_BACKEND=sqlite)  127.0.0.1:27017
#   Redis (Debian's redis-server)  127.0.0.1:6379
#
# Idempotent: `start` installs whatever is missing (cached under .engines/, so later runs take
# seconds), starts whatever does not already answer, and waits until each one answers a real
# request. See `ops/engines.sh --help`.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OPS="$ROOT/ops/engines"
E="${SNAPFIX_ENGINES_DIR:-$ROOT/.engines}"   # every download, build, data dir, pid and log lives here
HOST=127.0.0.1                               # loopback only, by design
KAFKA_PORT="${SNAPFIX_KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${SNAPFIX_KAFKA_CONTROLLER_PORT:-9093}"
FERRETDB_PORT="${SNAPFIX_FERRETDB_PORT:-27017}"
FERRETDB_BACKEND="${SNAPFIX_FERRETDB_BACKEND:-postgresql}"  # postgresql (default) or sqlite
POSTGRES_PORT="${SNAPFIX_POSTGRES_PORT:-5433}"
REDIS_PORT="${SNAPFIX_REDIS_PORT:-6379}"
TIMEOUT_S="${SNAPFIX_ENGINES_TIMEOUT:-120}"  # per engine, for becoming ready and for stopping
JAVA="${JAVA_HOME:+$JAVA_HOME/bin/}java"     # Kafka 4.x brokers need Java 17+
PG_USER=ferretdb                             # the cluster's superuser (trust auth, loopback only)
PG_DB=ferretdb                               # FerretDB keeps each MongoDB database as a schema in it
PG_URL="postgres://$PG_USER@$HOST:$POSTGRES_PORT/$PG_DB"
case "$FERRETDB_BACKEND" in
  postgresql) ENGINES=(kafka postgres ferretdb redis) ;;
  sqlite) ENGINES=(kafka ferretdb redis) ;;
  *) printf '[engines] ERROR: SNAPFIX_FERRETDB_BACKEND must be postgresql or sqlite, not %q\n' "$FERRETDB_BACKEND" >&2; exit 2 ;;
esac

usage() {
  cat <<EOF
Usage: ops/engines.sh start|stop|status [ENGINE...]    (ENGINE: kafka, postgres, ferretdb, redis; default all)
       ops/engines.sh --help

  start   Install what is missing, start what is not running, wait until each engine answers.
  stop    Stop the engines this folder started (by pid file): SIGTERM, then SIGKILL after the timeout.
          Naming ferretdb names its PostgreSQL too (started before it, stopped after it).
  status  Print each engine's state; exit 1 if any is down.

Engines (all on $HOST only):
  kafka     Apache Kafka broker, KRaft single node   $HOST:$KAFKA_PORT (controller $KAFKA_CONTROLLER_PORT)
  postgres  PostgreSQL cluster for FerretDB           $HOST:$POSTGRES_PORT (database $PG_DB, user $PG_USER, trust)
  ferretdb  FerretDB, MongoDB wire protocol           $HOST:$FERRETDB_PORT (backend: $FERRETDB_BACKEND)
  redis     redis-server, no persistence              $HOST:$REDIS_PORT

Environment:
  SNAPFIX_KAFKA_PORT, SNAPFIX_KAFKA_CONTROLLER_PORT, SNAPFIX_FERRETDB_PORT, SNAPFIX_POSTGRES_PORT,
  SNAPFIX_REDIS_PORT
  SNAPFIX_FERRETDB_BACKEND  postgresql (default) or sqlite (no PostgreSQL then; _id lookups scan the
                            table there, see docs/adr/0001). Switching: stop ferretdb, then start.
  SNAPFIX_ENGINES_TIMEOUT   seconds to wait for each engine (default 120)
  SNAPFIX_ENGINES_DIR       cache/data/log folder (default <repo>/.engines)

Files: logs in $E/logs/, data in $E/{kafka/data,postgres/data,ferretdb/data,redis}, pids in $E/run/
(as root, PostgreSQL's data goes under /var/lib/snapfix-engines/ if user 'postgres' cannot reach $E).
Needs: java 17+ (\$JAVA_HOME/bin/java if set), mvn, go (1.24+), python3, and root or sudo for apt-get
(Redis, PostgreSQL). As root, PostgreSQL runs as the 'postgres' user the Debian package creates.
EOF
}

log() { printf '[engines] %s\n' "$*"; }
err() { printf '[engines] %s\n' "$*" >&2; }
die() { err "ERROR: $*"; exit 1; }

elapsed_since() { # START (an $EPOCHREALTIME) -> seconds with one decimal
  awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'
}

show_tail() { # FILE...: last lines of each existing log, indented, on stderr
  local f
  for f in "$@"; do
    [[ -s "$f" ]] || continue
    err "--- last lines of $f"
    tail -n 30 "$f" | sed 's/^/    /' >&2
  done
}

need() { command -v "$1" >/dev/null 2>&1 || die "'$1' is not installed; $2"; }

as_root() { if [[ $EUID -eq 0 ]]; then "$@"; else sudo "$@"; fi; }

rotate_log() { # FILE: keep one previous copy once it passes 20 MB (Kafka's own log rolls itself)
  if [[ -f "$1" ]] && (($(stat -c %s "$1") > 20 * 1024 * 1024)); then mv -f "$1" "$1.1"; fi
}

port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

# ------------------------------------------------------------------------------------ health

healthy() { # ENGINE: does it answer a real request in its own protocol?
  case "$1" in
    kafka) python3 "$OPS/probe.py" kafka "$HOST" "$KAFKA_PORT" >/dev/null 2>&1 ;;
    postgres) [[ "$(pg_query postgres 'SELECT 1' 2>/dev/null)" == 1 ]] ;;
    ferretdb) python3 "$OPS/probe.py" mongo "$HOST" "$FERRETDB_PORT" >/dev/null 2>&1 ;;
    redis)
      if command -v redis-cli >/dev/null 2>&1; then
        [[ "$(timeout 3 redis-cli -h "$HOST" -p "$REDIS_PORT" ping 2>/dev/null)" == PONG ]]
      else # inline-protocol PING over bash's /dev/tcp
        local reply
        # shellcheck disable=SC2016 # $0/$1 expand in the inner bash
        reply="$(timeout 3 bash -c 'exec 3<>"/dev/tcp/$0/$1"; printf "PING\r\n" >&3; head -c 7 <&3' \
          "$HOST" "$REDIS_PORT" 2>/dev/null)" || return 1
        [[ "$reply" == +PONG* ]]
      fi
      ;;
  esac
}

probe_detail() { # ENGINE: one line describing what answered (for status)
  case "$1" in
    kafka) python3 "$OPS/probe.py" kafka "$HOST" "$KAFKA_PORT" 2>&1 || true ;;
    postgres) pg_query postgres 'SHOW server_version' 2>&1 | sed 's/^/PostgreSQL /' || true ;;
    ferretdb)
      local backend
      backend="$(engine_pid_field ferretdb 3)"
      echo "$(python3 "$OPS/probe.py" mongo "$HOST" "$FERRETDB_PORT" 2>&1 || true)${backend:+, backend $backend}"
      ;;
    redis) echo "PONG" ;;
  esac
}

engine_port() {
  case "$1" in
    kafka) echo "$KAFKA_PORT" ;; postgres) echo "$POSTGRES_PORT" ;;
    ferretdb) echo "$FERRETDB_PORT" ;; redis) echo "$REDIS_PORT" ;;
  esac
}

# ------------------------------------------------------------------------------------ postgresql

pg_bin() { # -> Debian's newest PostgreSQL server bin directory (/usr/lib/postgresql/N/bin)
  local d best=""
  for d in /usr/lib/postgresql/*/bin; do
    [[ -x "$d/postgres" && -x "$d/initdb" && -x "$d/psql" ]] || continue
    if [[ -z $best ]] || ((${d//[^0-9]/} > ${best//[^0-9]/})); then best="$d"; fi
  done
  [[ -n $best ]] && echo "$best"
}

# PostgreSQL refuses to run as root: as root, the cluster belongs to the 'postgres' system user
# (setpriv execs in place, so the pid we record is the postmaster's own).
as_pg() { if [[ $EUID -eq 0 ]]; then setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"; else "$@"; fi; }

pgdata() { # the cluster's folder: $E/postgres/data, unless (as root) user 'postgres' cannot reach $E
  local d="$E"
  while [[ ! -e $d ]]; do d="$(dirname "$d")"; done
  if [[ $EUID -eq 0 ]] && ! setpriv --reuid=postgres --regid=postgres --init-groups -- test -x "$d" 2>/dev/null; then
    echo "/var/lib/snapfix-engines/$(printf '%s' "$E" | sha256sum | cut -c1-12)/postgres/data"
  else
    echo "$E/postgres/data"
  fi
}

pg_query() { # DB SQL -> one unaligned result, over TCP (no socket directory is used)
  PGCONNECT_TIMEOUT=3 timeout 5 "$(pg_bin)/psql" -X -q -A -t -v ON_ERROR_STOP=1 \
    -h "$HOST" -p "$POSTGRES_PORT" -U "$PG_USER" -d "$1" -c "$2"
}

show_engine_logs() { # ENGINE: tail of its logs, after a failure
  case "$1" in
    kafka) show_tail "$E/logs/kafka.log" "$E/logs/kafka.out" ;;
    postgres) show_tail "$E/logs/postgres.log" "$E/logs/install-postgres.log" ;;
    ferretdb) show_tail "$E/logs/ferretdb.log" ;;
    redis) show_tail "$E/logs/redis.log" ;;
  esac
}

# Pid files hold "PID PORT" (FerretDB's: "PID PORT BACKEND"). A pid is trusted only if it is alive AND is the engine we started:
# after a reboot or a crash the number may belong to an unrelated process, which stop must never signal.
engine_pid() { # ENGINE -> prints pid and succeeds if our process is running
  local f="$E/run/$1.pid" pid _port cmd
  [[ -s "$f" ]] || return 1
  read -r pid _port _ <"$f" || true
  [[ "$pid" =~ ^[0-9]+$ ]] && [[ -r "/proc/$pid/cmdline" ]] || return 1
  cmd="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
  case "$1" in
    kafka) [[ "$cmd" == *"-Dsnapfix.engine=kafka"* ]] ;;
    postgres) [[ "$cmd" == *postgres*" -D $(pgdata) "* ]] ;;
    ferretdb) [[ "$cmd" == *"$E/bin/ferretdb"* ]] ;;
    redis) [[ "$cmd" == *redis-server* ]] ;;
  esac || return 1
  echo "$pid"
}

engine_pid_port() { # ENGINE -> the port its running process was started with
  local port
  port="$(engine_pid_field "$1" 2)"
  echo "${port:-?}"
}

engine_pid_field() { # ENGINE N -> the Nth field of its pid file (empty if none)
  local fields=()
  read -r -a fields 2>/dev/null <"$E/run/$1.pid" || true
  echo "${fields[$2 - 1]:-}"
}

# ------------------------------------------------------------------------------------ install

# Each build is stamped with a hash of its inputs, so editing the pom or the Go program (e.g. a version
# bump) rebuilds on the next start, and an unchanged one is never rebuilt.
inputs_hash() { cat "$@" | sha256sum | cut -c1-16; }

install_kafka() {
  local lib="$E/kafka/lib" stamp want t0
  want="$(inputs_hash "$OPS/kafka-pom.xml")"
  stamp="$lib/.installed"
  [[ -f "$stamp" && "$(<"$stamp")" == "$want" ]] && return 0
  need "$JAVA" "install a JDK 17 or newer"
  need mvn "install Maven (apt-get install -y maven)"
  t0=$EPOCHREALTIME
  log "kafka: fetching broker jars from Maven Central (ops/engines/kafka-pom.xml)…"
  rm -rf "$lib.tmp"
  # The local Maven repository is kept under .engines/ too, so a second run downloads nothing.
  if ! mvn -B -q -Dmaven.repo.local="$E/m2" -f "$OPS/kafka-pom.xml" \
      org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$lib.tmp" >"$E/logs/install-kafka.log" 2>&1; then
    show_tail "$E/logs/install-kafka.log"
    die "kafka: could not fetch the broker jars (see $E/logs/install-kafka.log)"
  fi
  rm -rf "$lib" && mv "$lib.tmp" "$lib" && echo "$want" >"$stamp"
  local jars=("$lib"/*.jar) broker=("$lib"/kafka_2.13-*.jar)
  log "kafka: ${#jars[@]} jars in $(elapsed_since "$t0")s ($(basename "${broker[0]}" .jar))"
}

install_ferretdb() {
  local bin="$E/bin/ferretdb" stamp="$E/bin/ferretdb.installed" want t0
  want="$(inputs_hash "$OPS/ferretdb/go.mod" "$OPS/ferretdb/go.sum" "$OPS/ferretdb/main.go" "$OPS/ferretdb/snapfix.patch")"
  [[ -x "$bin" && -f "$stamp" && "$(<"$stamp")" == "$want" ]] && return 0
  need go "install Go 1.24 or newer"
  need patch "install patch (apt-get install -y patch)"
  t0=$EPOCHREALTIME
  log "ferretdb: building $(grep -o 'FerretDB v[0-9.]*' "$OPS/ferretdb/go.mod") from the Go module proxy (a minute or so, once)…"
  # Our own small main (ops/engines/ferretdb) around the embeddable package: `go install
  # .../cmd/ferretdb@v1.24.2` would build a binary that panics at start (no build/version/version.txt in
  # the module, FerretDB issue #2982). Pure Go (CGO_ENABLED=0): SQLite is modernc.org/sqlite,
  # PostgreSQL is pgx; both backends are built in (SNAPFIX_FERRETDB_BACKEND picks one at start).
  # FerretDB itself is built from a copy of its module with ops/engines/ferretdb/snapfix.patch applied
  # (a `replace` in a generated go.mod; ours stays untouched): on PostgreSQL, lookups by _id and
  # _id $in use the _id index, a bulk update no longer hangs once it matches 50 documents, and a find
  # whose filter translates exactly runs as one SQL query with its sort and limit (ordered pushdown).
  # Module and build caches live under .engines/ (-modcacherw keeps them deletable with rm -rf).
  local src="$E/ferretdb/src" build="$E/ferretdb/build"
  if ! (
    set -euo pipefail
    export GOMODCACHE="$E/go/mod" GOCACHE="$E/go/cache" GOPATH="$E/go" GOFLAGS="-modcacherw -buildvcs=false" \
      GOTOOLCHAIN=local CGO_ENABLED=0
    cd "$OPS/ferretdb"
    mod="$(go mod download -json github.com/FerretDB/FerretDB | python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')"
    rm -rf "$src" "$build" && mkdir -p "$build"
    cp -r "$mod" "$src" && chmod -R u+w "$src"
    patch -d "$src" -p1 --no-backup-if-mismatch <"$OPS/ferretdb/snapfix.patch"
    cp go.mod "$build/go.mod" && cp go.sum "$build/go.sum"
    go mod edit -modfile="$build/go.mod" -replace="github.com/FerretDB/FerretDB=$src"
    go build -modfile="$build/go.mod" -trimpath -ldflags='-s -w' -o "$bin.tmp" .
  ) >"$E/logs/install-ferretdb.log" 2>&1; then
    show_tail "$E/logs/install-ferretdb.log"
    die "ferretdb: build failed (see $E/logs/install-ferretdb.log)"
  fi
  mv "$bin.tmp" "$bin" && echo "$want" >"$stamp"
  log "ferretdb: built $bin in $(elapsed_since "$t0")s"
  if engine_pid ferretdb >/dev/null; then
    log "ferretdb: the running server is the previous build; 'ops/engines.sh stop ferretdb' then start to switch"
  fi
}

install_postgres() {
  local t0 bin data ver
  if ! bin="$(pg_bin)"; then
    t0=$EPOCHREALTIME
    log "postgres: installing Debian's postgresql with apt-get…"
    # No system cluster: ours lives in $E/postgres and is started by this script, not by a service.
    # (postgresql-common reads createcluster.d before its postinst would create "main".)
    if ! { as_root mkdir -p /etc/postgresql-common/createcluster.d &&
        echo 'create_main_cluster = false' | as_root tee /etc/postgresql-common/createcluster.d/snapfix.conf &&
        as_root apt-get update && as_root env DEBIAN_FRONTEND=noninteractive \
          apt-get install -y --no-install-recommends postgresql; } >"$E/logs/install-postgres.log" 2>&1 ||
        ! bin="$(pg_bin)"; then
      show_tail "$E/logs/install-postgres.log"
      die "postgres: apt-get install postgresql failed (see $E/logs/install-postgres.log)"
    fi
    log "postgres: installed $("$bin/postgres" --version) in $(elapsed_since "$t0")s"
  fi
  data="$(pgdata)"
  ver="$("$bin/postgres" --version | grep -o '[0-9][0-9]*' | head -n1)"
  if [[ -f "$data/PG_VERSION" ]]; then
    [[ "$(<"$data/PG_VERSION")" == "$ver" ]] ||
      die "postgres: $data was made by PostgreSQL $(<"$data/PG_VERSION"), the binaries are $ver; remove it (its data goes) and start again"
    return 0
  fi
  # initdb once. As root the cluster belongs to 'postgres', which must be able to reach it: when a
  # parent of $E is closed to others (e.g. under /root), pgdata puts it under /var/lib/snapfix-engines/.
  t0=$EPOCHREALTIME
  rm -rf "$data.tmp" && mkdir -p "$data.tmp"
  if [[ $EUID -eq 0 ]]; then
    id postgres >/dev/null 2>&1 || die "postgres: no 'postgres' user (it comes with Debian's postgresql-common)"
    chown postgres: "$(dirname "$data")" "$data.tmp"
    as_pg test -w "$data.tmp" ||
      die "postgres: user 'postgres' cannot reach $data.tmp (is a parent folder of $E closed to others?)"
  fi
  chmod 700 "$data.tmp"
  # --no-sync: a development cluster. Trust auth is safe enough: it listens on $HOST only.
  if ! (cd / && as_pg "$bin/initdb" -D "$data.tmp" -U "$PG_USER" --auth=trust -E UTF8 --locale=C \
      --no-sync --no-instructions) >"$E/logs/install-postgres.log" 2>&1; then
    show_tail "$E/logs/install-postgres.log"
    die "postgres: initdb failed (see $E/logs/install-postgres.log)"
  fi
  mv "$data.tmp" "$data"
  log "postgres: initialised a cluster in $data in $(elapsed_since "$t0")s"
}

install_redis() {
  command -v redis-server >/dev/null 2>&1 && return 0
  local t0=$EPOCHREALTIME
  log "redis: installing Debian's redis-server with apt-get…"
  # The Debian package does not start a server here (no init system); ours is started below.
  if ! { as_root apt-get update && as_root env DEBIAN_FRONTEND=noninteractive \
      apt-get install -y --no-install-recommends redis-server; } >"$E/logs/install-redis.log" 2>&1; then
    show_tail "$E/logs/install-redis.log"
    die "redis: apt-get install redis-server failed (see $E/logs/install-redis.log)"
  fi
  log "redis: installed $(redis-server --version | grep -o 'v=[0-9.]*') in $(elapsed_since "$t0")s"
}

# ------------------------------------------------------------------------------------ launch

launch_kafka() {
  local props="$E/kafka/server.properties" data="$E/kafka/data" id
  need "$JAVA" "install a JDK 17 or newer"
  # Rewritten on every start so that port overrides take effect; the storage is formatted only once.
  cat >"$props" <<EOF
# Generated by ops/engines.sh on every start: edit the script, not this file.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://$HOST:$KAFKA_PORT,CONTROLLER://$HOST:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$HOST:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$data
# One broker: every internal topic has a single replica. An acknowledged write (acks=all) survives
# a process kill, not a power loss; production runs replication factor 3, min.insync.replicas=2.
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# Fewer partitions for the internal topics than the default 50: their creation on first use is
# what a test's first consumer group waits for.
offsets.topic.num.partitions=5
transaction.state.log.num.partitions=5
num.partitions=1
# Tests join consumer groups constantly: no 3 s wait for more members on each first join.
group.initial.rebalance.delay.ms=0
# The application creates its own topics; a typo must fail, not create a topic.
auto.create.topics.enable=false
EOF
  if [[ ! -f "$data/meta.properties" ]]; then
    [[ -s "$E/kafka/cluster.id" ]] || python3 -c \
      'import base64, uuid; print(base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="))' \
      >"$E/kafka/cluster.id"
    id="$(<"$E/kafka/cluster.id")"
    # Static voters (controller.quorum.voters), hence no --standalone.
    if ! "$JAVA" -cp "$E/kafka/lib/*" -Dlog4j2.configurationFile="file:$OPS/log4j2.properties" \
        -Dkafka.logs.dir="$E/logs" kafka.tools.StorageTool format -t "$id" -c "$props" \
        >"$E/logs/kafka-format.log" 2>&1; then
      show_tail "$E/logs/kafka-format.log"
      die "kafka: formatting the storage in $data failed"
    fi
  fi
  # setsid: its own session, so a Ctrl-C or a test runner ending its process group leaves it running.
  # -Dsnapfix.engine=kafka marks the process so that stop/status recognise it.
  rotate_log "$E/logs/kafka.out"
  setsid nohup "$JAVA" -Xms256m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true -Dsnapfix.engine=kafka \
    -Dlog4j2.configurationFile="file:$OPS/log4j2.properties" -Dkafka.logs.dir="$E/logs" \
    -cp "$E/kafka/lib/*" kafka.Kafka "$props" \
    </dev/null >"$E/logs/kafka.out" 2>&1 9>&- &
  echo "$! $KAFKA_PORT" >"$E/run/kafka.pid"
}

launch_postgres() {
  # Settings on the command line, not in postgresql.conf, so that port overrides take effect.
  # No Unix socket (its default folder belongs to the system's clusters): clients use TCP on $HOST.
  # Durability like the other engines here: a commit survives a process kill (its WAL reaches the OS
  # at commit time), not a power loss (fsync=off: tests create and drop collections all the time).
  local as=()
  [[ $EUID -ne 0 ]] || as=(setpriv --reuid=postgres --regid=postgres --init-groups --)
  rotate_log "$E/logs/postgres.log"
  setsid nohup "${as[@]}" "$(pg_bin)/postgres" -D "$(pgdata)" \
    -c listen_addresses="$HOST" -c port="$POSTGRES_PORT" -c unix_socket_directories= \
    -c fsync=off -c full_page_writes=off -c max_connections=200 -c shared_buffers=128MB \
    -c log_min_messages=warning \
    </dev/null >>"$E/logs/postgres.log" 2>&1 9>&- &
  echo "$! $POSTGRES_PORT" >"$E/run/postgres.pid"
}

wait_postgres_for_ferretdb() { # FerretDB needs its PostgreSQL answering and its database created
  local t0=$EPOCHREALTIME
  until healthy postgres; do
    if ! engine_pid postgres >/dev/null && ! port_open "$POSTGRES_PORT"; then
      err "ferretdb: its PostgreSQL on $HOST:$POSTGRES_PORT is not running"; return 1
    fi
    if awk -v a="$t0" -v b="$EPOCHREALTIME" -v t="$TIMEOUT_S" 'BEGIN { exit !(b - a > t) }'; then
      err "ferretdb: its PostgreSQL on $HOST:$POSTGRES_PORT did not answer within ${TIMEOUT_S}s"; return 1
    fi
    sleep 0.2
  done
  if [[ "$(pg_query postgres "SELECT count(*) FROM pg_database WHERE datname = '$PG_DB'")" != 1 ]]; then
    pg_query postgres "CREATE DATABASE $PG_DB" >/dev/null || { err "ferretdb: CREATE DATABASE $PG_DB failed"; return 1; }
    log "postgres: created database $PG_DB"
  fi
}

launch_ferretdb() {
  # The embedded FerretDB disables telemetry itself; it keeps no state besides its backend's data.
  local backend=(--handler sqlite --sqlite-dir "$E/ferretdb/data")
  if [[ $FERRETDB_BACKEND == postgresql ]]; then
    wait_postgres_for_ferretdb || return 1
    backend=(--handler postgresql --postgresql-url "$PG_URL")
  fi
  rotate_log "$E/logs/ferretdb.log"
  setsid nohup "$E/bin/ferretdb" --listen-addr "$HOST:$FERRETDB_PORT" "${backend[@]}" \
    </dev/null >>"$E/logs/ferretdb.log" 2>&1 9>&- &
  echo "$! $FERRETDB_PORT $FERRETDB_BACKEND" >"$E/run/ferretdb.pid"
}

launch_redis() {
  # A cache and rate-limit store: no RDB snapshots, no AOF. Detached like the others (setsid) rather
  # than --daemonize, so that its pid is known at once and a failed start shows up as an exit.
  rotate_log "$E/logs/redis.log"
  setsid nohup redis-server --bind "$HOST" --port "$REDIS_PORT" --save '' --appendonly no \
    --dir "$E/redis" --daemonize no \
    </dev/null >>"$E/logs/redis.log" 2>&1 9>&- &
  echo "$! $REDIS_PORT" >"$E/run/redis.pid"
}

# ------------------------------------------------------------------------------------ commands

cmd_start() {
  local eng t_start launched=() failed=() port pid
  mkdir -p "$E"/{bin,logs,run,kafka,postgres,ferretdb/data,redis}
  # One start at a time (e.g. two test runs at once), so nothing is installed or launched twice.
  # The engines are launched with fd 9 closed (9>&-): a daemon inheriting it would hold the lock forever.
  exec 9>"$E/.lock"
  flock -w 900 9 || die "another ops/engines.sh is still running (lock $E/.lock)"
  need python3 "it runs the health probes (ops/engines/probe.py)"

  for eng in "${ENGINES[@]}"; do "install_$eng"; done

  declare -gA T0=()
  for eng in "${ENGINES[@]}"; do
    port="$(engine_port "$eng")"
    if healthy "$eng"; then
      log "$eng: already running on $HOST:$port"
      if [[ $eng == ferretdb ]] && engine_pid ferretdb >/dev/null &&
          [[ "$(engine_pid_field ferretdb 3)" != "$FERRETDB_BACKEND" ]]; then
        log "ferretdb: it runs on the $(engine_pid_field ferretdb 3 | grep . || echo sqlite) backend, not $FERRETDB_BACKEND;" \
          "'ops/engines.sh stop ferretdb' then start to switch (the other backend's data is not carried over)"
      fi
      continue
    fi
    if pid="$(engine_pid "$eng")"; then
      if [[ "$(engine_pid_port "$eng")" != "$port" ]]; then
        failed+=("$eng")
        err "$eng: FAILED: it runs already (pid $pid) on port $(engine_pid_port "$eng"), not $port; 'ops/engines.sh stop $eng' first"
        continue
      fi
      # Ours, alive, not answering yet (e.g. an earlier start timed out while it was still booting).
      log "$eng: started earlier (pid $pid), not answering yet; waiting…"
    else
      if port_open "$port"; then
        failed+=("$eng")
        err "$eng: FAILED: port $HOST:$port is taken by something that does not answer as $eng"
        continue
      fi
      if [[ $eng == kafka ]] && port_open "$KAFKA_CONTROLLER_PORT"; then
        failed+=("$eng")
        err "$eng: FAILED: the controller port $HOST:$KAFKA_CONTROLLER_PORT is taken"
        continue
      fi
      log "$eng: starting on $HOST:$port…"
      if ! "launch_$eng"; then
        failed+=("$eng"); err "$eng: FAILED to launch"; show_engine_logs "$eng"; continue
      fi
    fi
    T0[$eng]=$EPOCHREALTIME
    launched+=("$eng")
  done

  # All were launched before waiting for any, and all are polled together: the total is the slowest
  # engine, not the sum, and each one's time is its own.
  local pending=("${launched[@]}") still
  while ((${#pending[@]})); do
    still=()
    for eng in "${pending[@]}"; do
      t_start=${T0[$eng]}
      if healthy "$eng"; then
        log "$eng: ready in $(elapsed_since "$t_start")s"
      elif ! engine_pid "$eng" >/dev/null; then
        failed+=("$eng"); err "$eng: FAILED: the process exited during startup"; show_engine_logs "$eng"
      elif awk -v a="$t_start" -v b="$EPOCHREALTIME" -v t="$TIMEOUT_S" 'BEGIN { exit !(b - a > t) }'; then
        failed+=("$eng"); err "$eng: FAILED: no answer within ${TIMEOUT_S}s (still running; 'ops/engines.sh stop' ends it)"
        show_engine_logs "$eng"
      else
        still+=("$eng")
      fi
    done
    pending=("${still[@]}")
    if ((${#pending[@]})); then sleep 0.2; fi
  done

  if ((${#failed[@]})); then
    die "not started: ${failed[*]}"
  fi
  local up=""
  for eng in "${ENGINES[@]}"; do
    case "$eng" in
      kafka) up+="${up:+, }kafka $HOST:$KAFKA_PORT" ;;
      postgres) up+="${up:+, }postgres $HOST:$POSTGRES_PORT" ;;
      ferretdb) up+="${up:+, }ferretdb mongodb://$HOST:$FERRETDB_PORT ($(engine_pid_field ferretdb 3 | grep . || echo "$FERRETDB_BACKEND"))" ;;
      redis) up+="${up:+, }redis redis://$HOST:$REDIS_PORT" ;;
    esac
  done
  log "up: $up"
}

cmd_stop() {
  local eng pid t0 rc=0 i sig
  for ((i = ${#ENGINES[@]} - 1; i >= 0; i--)); do # reverse order: FerretDB before its PostgreSQL
    eng="${ENGINES[i]}"
    if ! pid="$(engine_pid "$eng")"; then
      rm -f "$E/run/$eng.pid"
      if healthy "$eng"; then
        log "$eng: running on $HOST:$(engine_port "$eng") but not started from $E (no pid file); left alone"
      else
        log "$eng: not running"
      fi
      continue
    fi
    t0=$EPOCHREALTIME
    # SIGTERM: Kafka does a controlled shutdown and flushes its logs, FerretDB closes its SQLite files,
    # Redis (no persistence) just exits.
    # PostgreSQL: SIGINT, a fast shutdown (SIGTERM would wait for every client to disconnect).
    sig=TERM; [[ $eng == postgres ]] && sig=INT
    kill "-$sig" "$pid" 2>/dev/null || true
    # engine_pid, not `kill -0`: an exited engine can linger as a zombie until PID 1 reaps it, and a
    # zombie's empty cmdline no longer matches.
    while engine_pid "$eng" >/dev/null; do
      if awk -v a="$t0" -v b="$EPOCHREALTIME" -v t="$TIMEOUT_S" 'BEGIN { exit !(b - a > t) }'; then
        err "$eng: did not stop within ${TIMEOUT_S}s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        rc=1
        sleep 0.5
        break
      fi
      sleep 0.2
    done
    rm -f "$E/run/$eng.pid"
    log "$eng: stopped (pid $pid) in $(elapsed_since "$t0")s"
  done
  return "$rc"
}

cmd_status() {
  local eng pid port owner down=0
  for eng in "${ENGINES[@]}"; do
    port="$(engine_port "$eng")"
    pid="$(engine_pid "$eng")" || pid=""
    if healthy "$eng"; then
      if [[ -n $pid ]]; then owner="pid $pid"; else owner="not started from $E"; fi
      log "$eng: up on $HOST:$port ($owner): $(probe_detail "$eng")"
    elif [[ -n $pid && "$(engine_pid_port "$eng")" != "$port" ]]; then
      log "$eng: DOWN on $HOST:$port (pid $pid from this folder runs on port $(engine_pid_port "$eng"))"
      down=1
    elif [[ -n $pid ]]; then
      log "$eng: DOWN: pid $pid is running but $HOST:$port does not answer (starting, or hung: see $E/logs/$eng.log)"
      down=1
    else
      log "$eng: DOWN"
      down=1
    fi
  done
  return "$down"
}

cmd="${1:-}"
if (($# > 1)); then
  for eng in "${@:2}"; do
    [[ " kafka postgres ferretdb redis " == *" $eng "* ]] || { usage >&2; exit 2; }
  done
  # In dependency order whatever the order given; ferretdb brings its PostgreSQL along.
  named=" ${*:2} "
  [[ $FERRETDB_BACKEND == postgresql && $named == *" ferretdb "* ]] && named+="postgres "
  picked=()
  for eng in kafka postgres ferretdb redis; do [[ $named == *" $eng "* ]] && picked+=("$eng"); done
  ENGINES=("${picked[@]}")
fi
case "$cmd" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  -h | --help | help) usage ;;
  *) usage >&2; exit 2 ;;
esac
