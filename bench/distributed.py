"""The distributed deployment under the same load as the embedded one (issue 8: "on both deployments").

Three role processes — ``snapfix command-api``, ``snapfix query-api``, ``snapfix projectors`` — over
the shared engines (Kafka, FerretDB on PostgreSQL, Redis), pinned to the server core like the embedded
server, so both deployments get one server core and the figures compare. The engines are shared and
unpinned, as for the engine ceilings. Every run gets its own topic, consumer group, Mongo databases
and an empty Redis database, dropped afterwards; the engines themselves are never started or stopped.

Writes go to the command API and reads to the query API (``World.base_for``), as a load balancer
splitting the shared paths by method would.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench import loadgen
from bench.procs import (
    JWT_SECRET,
    VENV_BIN,
    Server,
    free_port,
    password_pool_env,
    pinned,
    port_open,
    server_core,
    snapfix_server,
)
from bench.workload import Targets, World, prepare

if TYPE_CHECKING:
    from bench.harness import Profile, Run

KAFKA = "127.0.0.1:9092"
MONGO = "mongodb://127.0.0.1:27017"
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
# where the distributed steps start stepping: several times below the embedded starts, since every
# command costs four or five FerretDB round trips and FerretDB sorts and limits browse pages itself
STARTS = {"cached_read": 250.0, "browse": 10.0, "mix": 8.0}


def engines_up() -> list[str]:
    """The engines that do not answer (empty when all three do)."""
    wanted = (("Kafka", 9092), ("FerretDB", 27017), ("Redis", REDIS_PORT))
    return [name for name, port in wanted if not port_open("127.0.0.1", port)]


def empty_redis_db() -> int:
    """An empty Redis database (8..15): the roles' keys have no prefix, so the run must not share a database.

    Database 0 is other engineers' and the tests'; the one picked here is flushed after the run.
    """
    import redis

    for db in range(8, 16):
        client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=db)
        try:
            if client.dbsize() == 0:
                return db
        finally:
            client.close()
    raise RuntimeError("no empty Redis database among 8..15 for the distributed run")


def settings_env(tag: str, redis_db: int, work: Path) -> dict[str, str]:
    """The SNAPFIX_* settings every role of this run shares (fresh names; rate limits off as embedded)."""
    return {
        "SNAPFIX_EVENT_LOG": f"kafka://{KAFKA}",
        "SNAPFIX_KAFKA_TOPIC": f"snapfix.bench.{tag}",
        "SNAPFIX_PROJECTOR_GROUP": f"snapfix-bench-{tag}",
        "SNAPFIX_WRITE_STORE": f"{MONGO}/bench_w_{tag}",
        "SNAPFIX_VIEW_STORE": f"{MONGO}/bench_v_{tag}",
        "SNAPFIX_CACHE": f"redis://{REDIS_HOST}:{REDIS_PORT}/{redis_db}",
        "SNAPFIX_BLOB_STORE": f"file://{work / 'blobs'}",
        "SNAPFIX_ACCESS_TOKEN_TTL_S": "14400",
        "SNAPFIX_RATE_LIMIT_IP_WRITES": "0",
        "SNAPFIX_RATE_LIMIT_USER_WRITES": "0",
        "SNAPFIX_RATE_LIMIT_SIGN_INS": "0",
        "SNAPFIX_JWT_SECRET": JWT_SECRET,
        **password_pool_env(),
    }


def roles(env: dict[str, str], logs: Path, work: Path) -> tuple[Server, Server, Server]:
    """The three role processes, all on the server core (the embedded server's one core)."""
    http_env = {**env, "SNAPFIX_METRICS_PORT": "0"}  # the HTTP roles serve /metrics on their own port
    command = snapfix_server("snapfix-command-api", http_env, logs, role="command-api")
    query = snapfix_server("snapfix-query-api", http_env, logs, role="query-api")
    port = free_port()  # the projector role has no HTTP API: its /metrics port is its readiness
    proj = Server(
        "snapfix-projectors",
        pinned([str(VENV_BIN / "snapfix"), "projectors"], server_core()),
        port,
        {"SNAPFIX_LOG_LEVEL": "warning", "SNAPFIX_ENVIRONMENT": "test", **env, "SNAPFIX_METRICS_PORT": str(port)},
        "/metrics",
        logs / "snapfix-projectors.log",
        cwd=work,  # faust keeps a data directory in its working directory
    )
    return command, query, proj


async def drop(env: dict[str, str], redis_db: int) -> None:
    """Remove what this run created on the shared engines: its topic, its two databases, its Redis database."""
    from pymongo import AsyncMongoClient

    from events.kafka_log import KafkaTopic, delete_topic

    with contextlib.suppress(Exception):
        await delete_topic(KafkaTopic(KAFKA, name=env["SNAPFIX_KAFKA_TOPIC"]))
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(MONGO)
    try:
        for key in ("SNAPFIX_WRITE_STORE", "SNAPFIX_VIEW_STORE"):
            with contextlib.suppress(Exception):
                await client.drop_database(env[key].rsplit("/", 1)[1])
    finally:
        await client.close()
    import redis

    client_r = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=redis_db)
    try:
        client_r.flushdb()
    finally:
        client_r.close()


def paths(run: Run, world: World, tg: Targets, out: dict[str, Any]) -> None:
    """The cached detail read and the browse page against the query API, beside the embedded ceilings."""
    reads = world.read_base
    hot = world.issues[: max(1, len(world.issues) // 5)]
    loadgen.attack(
        loadgen.write_targets(run.work / "d-warm.jsonl", tg.of("issue.view", 2000)), 200, 2, run.work, "warm"
    )
    views = loadgen.write_targets(
        run.work / "d-views.jsonl", [loadgen.Target("GET", f"{reads}/v1/issues/{i}") for i in hot]
    )
    p = out["paths"]
    p["cached_read"] = run.measure("distributed_cached_read", views, STARTS["cached_read"],
                                   wrk_url=f"{reads}/v1/issues/{hot[0]}")  # fmt: skip
    p["browse"] = run.measure("distributed_browse", tg.file_for("browse.list", run.work), STARTS["browse"])
    ceilings = run.results["ceilings"]
    for path, ceiling in (("cached_read", "bare_asgi_get"), ("browse", "fastapi_const_get")):
        entry, c = p[path], ceilings.get(ceiling, {})
        ceil = c.get("peak_rps")
        entry.update(ceiling=ceiling, ceiling_rps=ceil, vegeta_ratio=entry["peak_rps"] / ceil if ceil else None)
        entry["ratio"] = entry["vegeta_ratio"]
        if entry.get("wrk_rps") and c.get("wrk_rps"):
            entry["wrk_ratio"] = entry["wrk_rps"] / c["wrk_rps"]
            entry["ratio"], entry["ratio_by"] = entry["wrk_ratio"], "wrk"


def run(r: Run, prof: Profile) -> None:
    """Everything measured on the distributed deployment, into ``results["distributed"]``.

    A failure here is noted and leaves the embedded results intact.
    """
    missing = engines_up()
    if missing:
        r.note(f"distributed deployment not measured: {', '.join(missing)} not running (ops/engines.sh start)")
        return
    tag = f"{time.strftime('%H%M%S')}_{uuid.uuid4().hex[:6]}"
    redis_db = empty_redis_db()
    env = settings_env(tag, redis_db, r.work)
    command, query, proj = roles(env, r.logs, r.work)
    out: dict[str, Any] = {"paths": {}}
    r.results["distributed"] = out
    started = time.time()
    try:
        with proj, command, query:
            out["meta"] = {"command_api": " ".join(command.argv), "query_api": " ".join(query.argv),
                           "projectors": " ".join(proj.argv), "env": env}  # fmt: skip
            r.say(f"distributed: command API {command.base}, query API {query.base}, projectors /metrics "
                  f":{proj.port}; topic {env['SNAPFIX_KAFKA_TOPIC']}, Redis db {redis_db}; "
                  f"registering {prof.users} users")  # fmt: skip
            t0 = time.time()
            world = asyncio.run(prepare(command.base, prof.users, prof.issues_per_user, reads=query.base, settle_s=60))
            signins = sorted(world.signin_seconds)
            out["setup"] = {"users": len(world.users), "issues": len(world.issues), "seconds": time.time() - t0,
                            "sign_in_ms_p50": signins[len(signins) // 2] * 1000}  # fmt: skip
            r.skew(world)
            tg = Targets(world)
            paths(r, world, tg, out)
            pids = (*command.pids(), *query.pids(), *proj.pids())
            r.mix(query.base, world, tg, start=STARTS["mix"], label="distributed", into=out,
                  lag_bases=(command.base, query.base), pids=pids)  # fmt: skip
    except Exception as e:  # noqa: BLE001 - the embedded results are still worth writing
        r.note(f"distributed deployment: {type(e).__name__}: {e} (logs in {r.logs})")
    finally:
        out["seconds"] = time.time() - started
        for server in (query, command, proj):
            server.stop()
        try:
            asyncio.run(drop(env, redis_db))
        except Exception as e:  # noqa: BLE001
            r.note(f"distributed clean-up incomplete ({type(e).__name__}: {e}): topic/databases tagged {tag}")


def main() -> None:
    """``python -m bench.distributed [--quick]``: the distributed steps alone, printed (results.json untouched)."""
    import argparse
    import sys
    import tempfile

    import orjson

    from bench.harness import Profile, Run
    from bench.procs import pin_self_to_load_core

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    pin_self_to_load_core()
    r = Run(Profile(args.quick), Path(tempfile.mkdtemp(prefix="snapfix-bench-dist-")))
    run(r, r.p)
    sys.stdout.buffer.write(orjson.dumps(r.results, option=orjson.OPT_INDENT_2) + b"\n")


if __name__ == "__main__":
    main()
