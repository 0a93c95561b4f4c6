"""``python -m bench.harness [--quick]``: every measurement of issue 8, side by side with its ceiling.

Writes ``bench/results.json`` (read by ``snapfix capacity``), ``bench/RESULTS.md`` and ``bench/plots/``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import structlog

from bench import distributed, loadgen, raw
from bench.loadgen import COMMANDS, Stats, find_peak, summarise, write_targets
from bench.procs import (
    JWT_SECRET,
    ROOT,
    Server,
    load_core,
    password_pool_env,
    pin_self_to_load_core,
    port_open,
    server_core,
    snapfix_server,
)
from bench.procs import uvicorn_server as uvicorn_app
from bench.workload import ARGON2_CLASSES, MIX, Targets, World, classify, minter, prepare, report_body, skew

BENCH = ROOT / "bench"


REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
MONGO_URL = os.environ.get("BENCH_MONGO_URL", "mongodb://127.0.0.1:27017/")
# FerretDB's PostgreSQL (ops/engines.sh): the side-by-side stock FerretDB reads the same database through it
PG_URL = os.environ.get(
    "BENCH_POSTGRES_URL", f"postgres://ferretdb@127.0.0.1:{os.environ.get('SNAPFIX_POSTGRES_PORT', '5433')}/ferretdb"
)
KAFKA = os.environ.get("BENCH_KAFKA", "127.0.0.1:9092")


# Steps a stepping search takes (doubling from its start, then two bisections), as measured on this
# machine: they depend on where each peak lies, not on the profile, so a --quick run's counts hold for
# the full run. Embedded: the three ceilings and six paths; distributed: cached read and browse.
STEPS = {"embedded paths": 64, "embedded mix": 5, "distributed paths": 16, "distributed mix": 5}
STEP_OVERHEAD_S = 1.4  # the 1 s pause between steps, vegeta's start and its result decoding


class Profile:
    def __init__(self, quick: bool) -> None:
        self.quick = quick
        # The full run must fit in about 50 minutes now that the distributed deployment runs the paths and
        # the mix too (``estimate``: 48 min with the earlier 10 s steps, 30 s at half peak and phases 6x the
        # quick ones, too close on a busy 2-core machine): 8 s steps and 20 s at half peak (about 80 steps and
        # 11 half-peak holds; 8 s still holds hundreds of requests per step at the lowest rates) and phases
        # 5x the quick ones (the sustained phase still runs 100 s per deployment) bring it near 40 min.
        self.step_s = 3.0 if quick else 8.0
        self.half_peak_s = 5.0 if quick else 20.0
        self.users = 48 if quick else 256
        self.issues_per_user = 5 if quick else 20
        self.projector_events = 30_000 if quick else 1_000_000
        self.mongo_projector_events = 2_000 if quick else 50_000  # FerretDB on SQLite writes ~100 docs/s here
        self.mongo_docs = 2_000 if quick else 20_000
        self.raw_docs = 20_000 if quick else 200_000
        self.kafka_msgs = 20_000 if quick else 200_000
        self.kafka_sequential = 500 if quick else 5_000
        self.redis_requests = 100_000 if quick else 1_000_000
        self.loop_s = 3.0 if quick else 10.0
        self.freshness_samples = 60 if quick else 400
        # the skew (bench/workload.py ``skew``): the hot issue's upvotes before measuring, the frequent editors' edits
        self.hot_upvotes = 2_000 if quick else 10_000
        self.editor_edits = 100 if quick else 500
        # bench.extras: browse shapes on a seeded city (the issue's 100,000 on SQLite; FerretDB, read side by side
        # with a stock FerretDB that sorts every match itself, at a tenth of that), the command path, and export of
        # a generated log
        self.query_issues = 10_000 if quick else 100_000
        self.query_repeat = 20 if quick else 200
        self.mongo_query_issues = 1_000 if quick else 10_000  # stock FerretDB: ~0.1 s a query per 1,000 issues
        self.mongo_query_repeat = 5 if quick else 10
        self.command_appends = 300 if quick else 3_000
        self.export_events = 50_000 if quick else 1_000_000
        # (phase, fraction of the mix capacity, seconds)
        scale = 1 if quick else 5
        self.phases = [
            ("warm-up", 0.2, 5 * scale), ("ramp-up 40 %", 0.4, 4 * scale), ("ramp-up 60 %", 0.6, 4 * scale),
            ("ramp-up 80 %", 0.8, 4 * scale), ("peak", 1.0, 10 * scale), ("sustained", 0.8, 20 * scale),
            ("stress", 1.5, 8 * scale), ("cool-down", 0.2, 5 * scale),
        ]  # fmt: skip

    def estimate(self) -> list[tuple[str, float]]:
        """Seconds per step of the run, from the profile and rates measured in --quick runs on this machine."""
        step = self.step_s + STEP_OVERHEAD_S
        argon2_s = 0.16  # one registration or sign-in on the server core (two per user)
        phases = sum(secs + 1.5 for _, _, secs in self.phases)
        mix = self.freshness_samples / 2 / 10 + phases
        return [
            ("embedded set-up", 2 + self.users * 2 * argon2_s + self.users * self.issues_per_user / 400),
            ("embedded paths and ceilings (9 peaks)", STEPS["embedded paths"] * step + 9 * (self.half_peak_s + 1.5)
             + 4 * self.step_s + 4),
            ("embedded mix (capacity, phases)", STEPS["embedded mix"] * step + mix),
            ("distributed set-up", 5 + self.users * 2 * argon2_s + self.users * self.issues_per_user / 50),
            ("distributed paths (2 peaks)", STEPS["distributed paths"] * step + 2 * (self.half_peak_s + 1.5)
             + self.step_s + 3),
            ("distributed mix (capacity, phases)", STEPS["distributed mix"] * step + mix),
            ("engine ceilings", 8 + 4 * self.loop_s + self.redis_requests / 60_000 + self.mongo_docs / 2_500
             + self.kafka_msgs / 20_000 + self.kafka_sequential / 170),
            ("projector catch-up", 3 + self.projector_events * (1 / 5_500 + 1 / 40_000)
             + self.mongo_projector_events * (1 / 1_300 + 1 / 40_000)),
            ("full rebuild of each view", self.projector_events / 4_500),
            ("browse shapes on a seeded city", self.query_issues / 500 + self.query_repeat * 22 * 0.004
             + self.mongo_query_issues / 150 + self.mongo_query_repeat * 22 * self.mongo_query_issues / 5_000),
            ("command path", 4 * self.command_appends / 500 + 5),
            ("export (SQLite and Kafka logs)", self.export_events * (4 / 50_000 + 3 / 60_000)),
        ]  # fmt: skip


def machine() -> dict[str, Any]:
    def sh(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, check=False).stdout.strip()
        except OSError:
            return "?"

    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())  # fmt: skip
    mem_kib = int(next(ln.split()[1] for ln in Path("/proc/meminfo").read_text().splitlines()
                       if ln.startswith("MemTotal")))  # fmt: skip
    from importlib.metadata import PackageNotFoundError, version

    def v(pkg: str) -> str:
        try:
            return version(pkg)
        except PackageNotFoundError:
            return "-"

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "os": sh(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
        "python": platform.python_version(),
        "packages": {
            p: v(p)
            for p in (
                "fastapi",
                "uvicorn",
                "uvloop",
                "httptools",
                "starlette",
                "pydantic",
                "orjson",
                "argon2-cffi",
                "aiokafka",
                "pymongo",
                "redis",
                "matplotlib",
            )
        },
        "tools": {
            "vegeta": "v12.12.0 (go install github.com/tsenart/vegeta/v12@v12.12.0)",
            "wrk": sh(["sh", "-c", "dpkg-query -W -f='${Version}' wrk 2>/dev/null"]),
            "redis-benchmark": sh(["redis-benchmark", "--version"]) if shutil.which("redis-benchmark") else "-",
            "redis-server": sh(["redis-server", "--version"]) if shutil.which("redis-server") else "-",
            "go": sh(["go", "version"]) if shutil.which("go") else "-",
        },
        "pinning": f"servers on core {server_core()}, load generators and raw clients on core {load_core()}; "
        "the engines (Kafka, FerretDB, Redis) are shared and unpinned",
        "load_before": os.getloadavg(),
    }


def fetch_detail(base: str, issue: str) -> dict[str, Any]:
    """The bytes and headers of a cached detail read, for the bare ASGI ceiling."""
    for _ in range(2):
        with urllib.request.urlopen(f"{base}/v1/issues/{issue}", timeout=5) as r:  # noqa: S310
            body, headers = r.read(), r.getheaders()
    keep = [(k.lower(), v) for k, v in headers if k.lower() in ("content-type", "etag", "cache-control")]
    return {"body": body.decode(), "headers": keep}


def peak_entry(peak: float, curve: list[Stats], half: Stats | None, wrk: float | None = None) -> dict[str, Any]:
    return {
        "peak_rps": peak,
        "curve": [s.dict() for s in curve],
        "at_half_peak": half.dict() if half else None,
        "wrk_rps": wrk,
    }


class Run:
    def __init__(self, prof: Profile, work: Path) -> None:
        self.p = prof
        self.work = work
        self.logs = work / "logs"
        self.logs.mkdir()
        self.results: dict[str, Any] = {"ceilings": {}, "paths": {}, "projector": {}, "notes": [], "timeline": []}
        self.t0 = time.time()

    def note(self, text: str) -> None:
        print(f"[bench] {text}", file=sys.stderr, flush=True)
        self.results["notes"].append(text)

    def say(self, text: str) -> None:
        """Progress on stderr, and on the run's timeline (seconds since start), from which steps are timed."""
        print(f"[bench] {text}", file=sys.stderr, flush=True)
        self.results.setdefault("timeline", []).append([round(time.time() - self.t0, 1), text])

    # --- HTTP ------------------------------------------------------------------------------------

    def measure(self, name: str, targets: Any, start: float, *, wrk_url: str | None = None,
                p99_limit_ms: float = 1000.0) -> dict[str, Any]:  # fmt: skip
        """Step to the peak, then hold half the peak for a latency figure that is not at saturation."""
        self.say(f"{name}: stepping from {start:g}/s")
        peak, curve = find_peak(targets, self.work, name, start=start, step_s=self.p.step_s,
                                p99_limit_ms=p99_limit_ms, between=lambda: time.sleep(1))  # fmt: skip
        half = None
        if peak > 0:
            rate = peak / 2
            path = targets(rate, self.p.half_peak_s) if callable(targets) else targets
            half = summarise(loadgen.attack(path, rate, self.p.half_peak_s, self.work, name), rate)
        wrk = loadgen.wrk(wrk_url, self.p.step_s) if wrk_url else None
        self.say(f"{name}: peak {peak:,.0f}/s" + (f", wrk {wrk:,.0f}/s" if wrk else ""))
        return peak_entry(peak, curve, half, wrk)

    def http(self, base: str, world: World, tg: Targets) -> None:
        hot = world.issues[: max(1, len(world.issues) // 5)]
        spec = fetch_detail(base, hot[0])
        body_file = self.work / "detail.json"
        body_file.write_bytes(orjson.dumps(spec))
        self.results["detail_bytes"] = len(spec["body"])
        bare = uvicorn_app("bare-asgi", "bench.ceilings:bare_app", {"BENCH_BODY_FILE": str(body_file)}, self.logs,
                           factory=True)  # fmt: skip
        fast = uvicorn_app("fastapi-const", "bench.ceilings:fastapi_app", {}, self.logs, factory=True)
        c, paths = self.results["ceilings"], self.results["paths"]
        with bare:
            t = write_targets(self.work / "bare.jsonl", [loadgen.Target("GET", f"{bare.base}/v1/issues/{hot[0]}")])
            c["bare_asgi_get"] = self.measure("bare_asgi_get", t, 1000, wrk_url=f"{bare.base}/v1/issues/{hot[0]}")
        with fast:
            t = write_targets(self.work / "fget.jsonl", [loadgen.Target("GET", f"{fast.base}/const")])
            c["fastapi_const_get"] = self.measure("fastapi_const_get", t, 1000, wrk_url=f"{fast.base}/const")
            t = write_targets(self.work / "fpost.jsonl", [
                loadgen.Target("POST", f"{fast.base}/const", {"content-type": "application/json",
                               "authorization": f"Bearer {world.users[0].access}"}, report_body(1))])  # fmt: skip
            c["fastapi_const_post"] = self.measure("fastapi_const_post", t, 500)
        # warm the cache: every hot issue read once
        warm = write_targets(self.work / "warm.jsonl", tg.of("issue.view", 2000))
        loadgen.attack(warm, 500, 2, self.work, "warm")
        views = write_targets(self.work / "views.jsonl", [loadgen.Target("GET", f"{base}/v1/issues/{i}") for i in hot])
        paths["cached_read"] = self.measure("cached_read", views, 500, wrk_url=f"{base}/v1/issues/{hot[0]}")
        paths["browse"] = self.measure("browse", tg.file_for("browse.list", self.work), 100)
        paths["healthz"] = self.measure("healthz", write_targets(self.work / "h.jsonl", tg.of("health.healthz", 1)),
                                        500, wrk_url=f"{base}/healthz")  # fmt: skip
        paths["create_issue"] = self.measure("create_issue", tg.file_for("issue.create", self.work), 50)
        paths["upvote"] = self.measure("upvote", tg.file_for("issue.upvote_cold", self.work), 50)
        paths["upvote_hot"] = self.measure("upvote_hot", tg.file_for("issue.upvote_hot", self.work), 50)
        self.results["upvote_skew"] = skew_figures(world.hot_upvotes, paths["upvote"], paths["upvote_hot"])
        paths["sign_in"] = self.measure("sign_in", tg.file_for("user.sign_in", self.work), 2, p99_limit_ms=5000)
        for path, ceiling, target in (
            ("cached_read", "bare_asgi_get", 0.5),
            ("browse", "fastapi_const_get", None),
            ("healthz", "fastapi_const_get", None),
            ("create_issue", "fastapi_const_post", 0.4),
            ("upvote", "fastapi_const_post", 0.4),
            ("upvote_hot", "fastapi_const_post", 0.4),
            ("sign_in", "fastapi_const_post", None),
        ):
            ceil = c[ceiling]["peak_rps"]
            entry = paths[path]
            entry.update(ceiling=ceiling, ceiling_rps=ceil, target_ratio=target,
                         vegeta_ratio=entry["peak_rps"] / ceil if ceil else None)  # fmt: skip
            entry["ratio"] = entry["vegeta_ratio"]
            if entry.get("wrk_rps") and c[ceiling].get("wrk_rps"):
                # one vegeta on one core tops out near 10k req/s: above that wrk is the fairer ceiling
                entry["wrk_ratio"] = entry["wrk_rps"] / c[ceiling]["wrk_rps"]
                entry["ratio"] = entry["wrk_ratio"]
                entry["ratio_by"] = "wrk"

    # --- raw engines ------------------------------------------------------------------------------

    async def engines(self) -> None:
        c, p = self.results["ceilings"], self.p
        self.say("raw SQLite upsert")
        c["sqlite_bulk_upsert"] = raw.sqlite_bulk_upsert(self.work / "raw-upsert.db", p.raw_docs)
        c["memory_cache_get"] = await raw.memory_cache_get_loop(p.loop_s, 32)
        if port_open("127.0.0.1", 6379):
            self.say("redis-benchmark and redis-py loops")
            c["redis_benchmark_get"] = raw.redis_benchmark(6379, p.redis_requests)
            for n in (1, 32):
                c[f"redis_py_get_c{n}"] = await raw.redis_py_get_loop(REDIS_URL, p.loop_s, n)
                try:
                    self.results["paths"][f"redis_cache_get_c{n}"] = {
                        **await raw.cache_adapter_get_loop(REDIS_URL, p.loop_s, n),
                        "ceiling": f"redis_py_get_c{n}",
                    }
                except ImportError as e:
                    self.note(f"RedisCache adapter not importable ({e}): cache path vs redis-py not measured")
        else:
            self.note("Redis is not running on 6379: redis ceilings skipped (ops/engines.sh start)")
        if port_open("127.0.0.1", 27017):
            self.say("raw Mongo (FerretDB) bulk upsert")
            c["mongo_bulk_upsert"] = await raw.mongo_bulk_upsert(MONGO_URL, p.mongo_docs)
        else:
            self.note("FerretDB/Mongo is not running on 27017: Mongo ceilings skipped")
        if port_open("127.0.0.1", 9092):
            self.say("raw aiokafka producer and consumer")
            kafka = await raw.kafka_ceilings(KAFKA, p.kafka_msgs, p.kafka_sequential)
            self.results["event_bytes"] = kafka.pop("event_bytes")
            c.update(kafka)
        else:
            self.note("Kafka is not running on 9092: Kafka ceilings skipped")
        for name, ceil in (("redis_cache_get_c1", "redis_py_get_c1"), ("redis_cache_get_c32", "redis_py_get_c32")):
            path = self.results["paths"].get(name)
            if path and ceil in c:
                path["ratio"] = path["value"] / c[ceil]["value"]

    async def projector(self) -> None:
        from bench import projection
        from projectors.sqlite_views import SqliteViewStore

        p, c = self.p, self.results["ceilings"]
        log_path = self.work / "backlog.db"
        self.say(f"pre-filling a SQLite log with {p.projector_events:,} events")
        total = await projection.prefill(log_path, p.projector_events)
        c["sqlite_log_read"] = raw.sqlite_raw_read(log_path)
        self.say("projector catch-up into SQLite views")
        views = SqliteViewStore(f"sqlite:///{self.work / 'proj-views.db'}")
        emb = await projection.catch_up(log_path, views, total)
        from bench import extras

        self.say(f"a full rebuild of each view beside the live projector ({total:,} events)")
        try:
            rebuilt = await extras.rebuilds(log_path, views, emb["runner"], self.say)
            self.results.setdefault("extras", {})["rebuilds"] = {"log_events": total, "views": rebuilt}
        except Exception as e:  # noqa: BLE001 - one failed measurement must not sink the run's others
            self.note(f"the full rebuilds were not measured: {type(e).__name__}: {e}")
        await views.close()
        ceiling = min(c["sqlite_log_read"]["value"], c["sqlite_bulk_upsert"]["value"])
        emb.update(ceiling_eps=ceiling, ratio=emb["events_per_s"] / ceiling, target_ratio=0.5,
                   ceiling_how="min(raw SQLite log read, raw SQLite bulk upsert)")  # fmt: skip
        self.results["projector"]["embedded"] = emb
        if "mongo_bulk_upsert" in c:
            small = self.work / "backlog-small.db"
            total_small = await projection.prefill(small, p.mongo_projector_events)
            try:
                from projectors.mongo_views import MongoViewStore

                db = f"bench_proj_{os.getpid()}"
                store = MongoViewStore(MONGO_URL.rstrip("/") + "/" + db)
                self.say("projector catch-up into Mongo (FerretDB) views")
                mongo = await projection.catch_up(small, store, total_small)
                await store._client.drop_database(db)  # the bench's own throw-away database
                await store.close()
                ceiling = min(c["sqlite_log_read"]["value"], c["mongo_bulk_upsert"]["value"])
                mongo.update(ceiling_eps=ceiling, ratio=mongo["events_per_s"] / ceiling, target_ratio=0.5,
                             ceiling_how="min(raw SQLite log read, raw Mongo bulk upsert)")  # fmt: skip
                self.results["projector"]["sqlite_log_mongo_views"] = mongo
            except Exception as e:  # noqa: BLE001 - an adapter still landing must not sink the whole run
                self.note(f"projector into Mongo views not measured: {type(e).__name__}: {e}")

    async def extras(self) -> None:
        """Browse shapes at city scale on each store, the command path with consistency on and off, export."""
        from bench import extras

        p, out = self.p, self.results.setdefault("extras", {})
        await self.sqlite_queries()
        mongo_up, kafka_up = port_open("127.0.0.1", 27017), port_open("127.0.0.1", 9092)
        if mongo_up:
            await self.ferretdb_queries()
        if mongo_up and kafka_up:
            self.say("command path: the write store (consistency on) against publishing alone (off)")
            out["command_path"] = await extras.command_paths(p.command_appends)
        else:
            self.note("Kafka or FerretDB is not running: the command path's on/off figures are not measured")
        self.say(f"export of a {p.export_events:,}-event SQLite log")
        out.setdefault("export", {})["SQLite"] = await extras.sqlite_export(self.work, p.export_events)
        if kafka_up:
            self.say(f"export of a {p.export_events:,}-event Kafka topic")
            out["export"]["Kafka"] = await extras.kafka_export(KAFKA, p.export_events, self.work)

    async def sqlite_queries(self) -> None:
        """Browse shapes on the embedded store at the issue's city scale (target p95 < 20 ms)."""
        from bench import extras
        from projectors.sqlite_views import SqliteViewStore

        p, queries = self.p, self.results.setdefault("extras", {}).setdefault("queries", {})
        self.say(f"browse shapes on a city of {p.query_issues:,} issues in SQLite (seeded through the projector)")
        store = SqliteViewStore(f"sqlite:///{self.work / 'city.db'}")
        queries["sqlite"] = await extras.queries(store, p.query_issues, p.query_repeat)
        await store.close()

    async def ferretdb_queries(self) -> None:
        """Browse shapes on FerretDB, with the ordered pushdown and without it, side by side on one database."""
        from bench import extras

        p, queries = self.p, self.results.setdefault("extras", {}).setdefault("queries", {})
        self.say(f"browse shapes on a city of {p.mongo_query_issues:,} issues in Mongo (FerretDB) views")
        queries.update(await extras.ferretdb_queries(MONGO_URL, PG_URL, p.mongo_query_issues, p.mongo_query_repeat,
                                                     self.say))  # fmt: skip

    # --- the mix ----------------------------------------------------------------------------------

    def mix(self, base: str, world: World, tg: Targets, *, start: float = 25, label: str = "embedded",
            into: dict[str, Any] | None = None, lag_bases: tuple[str, ...] = (),
            pids: tuple[int, ...] = ()) -> None:  # fmt: skip
        """The mix's capacity by stepping, then its phases; ``base`` is where /metrics (the query side) is read.

        ``lag_bases``: the roles whose event-loop lag is read per phase (default ``base``); ``pids``: the
        server processes whose CPU time (and their argon2 pool's, apart) is read per phase.
        """
        from bench.probe import (
            Background,
            add,
            cache_counters,
            cpu_seconds,
            follow_location,
            freshness,
            lookups,
            loop_lag,
            loop_lag_buckets,
            ratios,
        )

        lag_bases = lag_bases or (base,)

        out: dict[str, Any] = {"shares": dict(MIX)}
        self.say(f"{label}: freshness probe on an idle server")
        out["freshness_idle"] = asyncio.run(freshness(world, self.p.freshness_samples // 2, 10))
        self.say(f"{label} mix: stepping to its capacity at p99 <= 100 ms (argon2 requests judged apart)")
        cap, curve = find_peak(tg.file_for("mix", self.work), self.work, "mix", start=start, step_s=self.p.step_s,
                               p99_limit_ms=100, between=lambda: time.sleep(1),
                               judged=lambda rs: [r for r in rs if classify(r) not in ARGON2_CLASSES])  # fmt: skip
        cap = cap / (1 - sum(s for k, s in MIX if k in ARGON2_CLASSES) / 100)  # back to all requests
        out["capacity_rps"] = cap
        out["calibration"] = [s.dict() for s in curve]
        if cap <= 0:
            self.note(f"the {label} mix held no step at p99 <= 100 ms; phases run from {start / 2:g} req/s")
            cap = start / 2
        phases = []
        mix_only: dict[str, tuple[float, float]] = {}
        total_before = cache_counters(base)
        for name, frac, secs in self.p.phases:
            rate = max(1.0, cap * frac)
            self.say(f"{label} mix phase {name}: {rate:,.0f} req/s for {secs}s")
            before = cache_counters(base)
            lags_before = [loop_lag_buckets(b) for b in lag_bases]
            cpu_before = [cpu_seconds(p) for p in pids]
            path = tg.file_for("mix", self.work)(rate, secs)
            probe = located = None
            if name == "sustained":
                samples = max(10, int(secs * 2))
                with Background(lambda s=samples: freshness(world, s, 2)) as probe:
                    results = loadgen.attack(path, rate, secs, self.work, "mix")
            elif name == "peak":  # clients that follow the Location of their 201 at once, with no token
                samples = max(20, int(secs * 10))
                with Background(lambda s=samples: follow_location(world, s, 10)) as located:
                    results = loadgen.attack(path, rate, secs, self.work, "mix")
            else:
                results = loadgen.attack(path, rate, secs, self.work, "mix")
            lags = {b: loop_lag(lb, loop_lag_buckets(b)) for b, lb in zip(lag_bases, lags_before, strict=True)}
            cpu = [{k: (cpu_seconds(p)[k] - c[k]) / secs for k in c} for p, c in zip(pids, cpu_before, strict=True)]
            classes = loadgen.by_class(results, classify, rate)
            counts = lookups(before, cache_counters(base))
            if not probe:  # the probe polls issues not yet projected: misses by construction, not the mix's
                mix_only = add(mix_only, counts)
            hits = ratios(counts) or {}
            phases.append({
                "phase": name, "fraction": frac, "seconds": secs, **summarise(results, rate).dict(),
                "cache_hit_ratio": hits.get("overall"), "cache_hit_ratios": hits or None, "cache_lookups": counts,
                "argon2": summarise([r for r in results if classify(r) in ARGON2_CLASSES], rate).dict()
                if any(classify(r) in ARGON2_CLASSES for r in results) else None,
                "classes": {k: v.dict() for k, v in classes.items()},
                "freshness": probe.result if probe else None,
                "follow_location": located.result if located else None,
                "loop_lag": lags, "cores": cpu or None,
            })  # fmt: skip
            time.sleep(1)
        out["phases"] = phases
        # the whole mix's ratio leaves out the sustained phase, whose freshness probe polls unprojected issues
        whole = ratios(mix_only) if mix_only else None
        out["cache_hit_ratio"], out["cache_hit_ratios"] = (whole or {}).get("overall"), whole
        out["cache_hit_ratios_with_probe"] = ratios(lookups(total_before, cache_counters(base)))
        if out["cache_hit_ratio"] is None:
            self.note(f"{label}: /metrics exports no cache hit/miss counter: the mix's cache hit ratio is not measured")
        (self.results if into is None else into)["mix"] = out

    def skew(self, world: World) -> None:
        """The hot issue and the frequent editors of the skewed workload (bench/workload.py)."""
        world.mint = minter(JWT_SECRET)
        started = time.time()
        asyncio.run(skew(world, self.p.hot_upvotes, self.p.editor_edits))
        self.say(f"skew: the hot issue got {world.hot_upvotes} upvotes and {len(world.editors)} editors "
                 f"{world.editor_edits} edits each in {time.time() - started:.0f}s")  # fmt: skip

    def argon2_cost(self) -> None:
        from command_api.security import Argon2Parameters
        from snapfix.settings import Settings

        s = Settings()
        hasher = Argon2Parameters(s.argon2_time_cost, s.argon2_memory_kib, s.argon2_parallelism).hasher()
        digest = hasher.hash("correct horse battery staple")
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < 2:
            hasher.verify(digest, "correct horse battery staple")
            n += 1
        per = (time.perf_counter() - t0) / n
        self.results["argon2"] = {"verify_ms": per * 1000, "per_core_per_s": 1 / per,
                                  "time_cost": s.argon2_time_cost, "memory_kib": s.argon2_memory_kib}  # fmt: skip


def skew_figures(hot_upvotes: int, cold: dict[str, Any], hot: dict[str, Any]) -> dict[str, Any]:
    """An upvote on the hot issue against one on an issue with few upvotes: peak and latency at half the peak."""

    def p50(entry: dict[str, Any]) -> float | None:
        return (entry.get("at_half_peak") or {}).get("p50_ms")

    return {
        "hot_issue_upvotes_before": hot_upvotes,
        "peak_ratio": cold["peak_rps"] / hot["peak_rps"] if hot["peak_rps"] else None,  # > 1: the hot one is slower
        "p50_ratio": p50(hot) / p50(cold) if p50(hot) and p50(cold) else None,
    }


def previous_results(part: str) -> dict[str, Any]:
    """The committed bench/results.json, marked as having ``part`` measured again now."""
    previous: dict[str, Any] = orjson.loads((BENCH / "results.json").read_bytes())
    previous["meta"][f"{part}_rerun"] = datetime.now(UTC).isoformat(timespec="seconds")
    return previous


def save(results: dict[str, Any]) -> None:
    """bench/results.json, with the current ANALYSIS.md, and RESULTS.md and the plots rendered from it."""
    from bench import report

    analysis = BENCH / "ANALYSIS.md"
    if analysis.exists():
        results["analysis"] = analysis.read_text()
    (BENCH / "results.json").write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    report.write(results, BENCH)


def mixes(run: Run, prof: Profile, env: dict[str, str]) -> None:
    """The embedded mix and the distributed steps again, merged into bench/results.json (the rest kept)."""
    previous = previous_results("mix")
    previous["notes"] = [n for n in previous["notes"] if "mix" not in n and "distributed" not in n]
    run.results = {**previous, "mix": {}, "distributed": {}}
    server: Server = snapfix_server("snapfix-embedded", env, run.logs)
    try:
        with server:
            run.say(f"embedded server on {server.base}; registering {prof.users} users (argon2)")
            world = asyncio.run(prepare(server.base, prof.users, prof.issues_per_user))
            run.skew(world)
            run.mix(server.base, world, Targets(world), pids=server.pids())
        distributed.run(run, prof)
    finally:
        server.stop()
        save(run.results)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="a run of a few minutes")
    ap.add_argument("--keep", action="store_true", help="keep the temporary data directory")
    ap.add_argument("--only", choices=("engines", "mix", "sqlite", "ferretdb"), help="re-measure only the engine "
                    "ceilings and the projector (engines), the mix of both deployments and the distributed paths "
                    "(mix), the browse shapes on SQLite at city scale (sqlite) or on FerretDB with and without the "
                    "ordered pushdown (ferretdb), merged into the existing bench/results.json")  # fmt: skip
    args = ap.parse_args()
    # the in-process projector of the seeding steps logs every event at debug: a minute of output per 100,000
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    pin_self_to_load_core()
    prof = Profile(args.quick)
    work = Path(tempfile.mkdtemp(prefix="snapfix-bench-"))
    run = Run(prof, work)
    started = time.time()
    steps = prof.estimate()
    if not args.only:
        run.say(f"estimated duration {sum(s for _, s in steps) / 60:.0f} min: "
                + "; ".join(f"{name} {secs / 60:.1f}" for name, secs in steps))  # fmt: skip
    run.results["meta"] = {"quick": args.quick, "started": datetime.now(UTC).isoformat(timespec="seconds"),
                           "machine": machine(), "work_dir": str(work), "estimate_s": dict(steps)}  # fmt: skip
    env = {
        "SNAPFIX_EVENT_LOG": f"sqlite:///{work / 'events.db'}",
        "SNAPFIX_VIEW_STORE": f"sqlite:///{work / 'views.db'}",
        "SNAPFIX_CACHE": "memory://",
        "SNAPFIX_ACCESS_TOKEN_TTL_S": "14400",
        # every request comes from 127.0.0.1 and a few dozen users: per-IP and per-user limits would measure 429s
        "SNAPFIX_RATE_LIMIT_IP_WRITES": "0",
        "SNAPFIX_RATE_LIMIT_USER_WRITES": "0",
        "SNAPFIX_RATE_LIMIT_SIGN_INS": "0",
        # the bench mints the crowd's tokens (bench/workload.py ``minter``), so it must know the secret
        "SNAPFIX_JWT_SECRET": JWT_SECRET,
        # argon2 in a process of its own on the load core: the server's core is measured without it (``cores``)
        **password_pool_env(),
    }
    if args.only == "mix":
        mixes(run, prof, env)
        shutil.rmtree(work, ignore_errors=True)
        return
    if args.only in ("sqlite", "ferretdb"):
        run.results = previous_results(f"{args.only}_queries")
        asyncio.run(run.sqlite_queries() if args.only == "sqlite" else run.ferretdb_queries())
        save(run.results)
        shutil.rmtree(work, ignore_errors=True)
        return
    if args.only:
        previous = previous_results("engines")
        previous["ceilings"] = {k: v for k, v in previous["ceilings"].items() if "curve" in v}
        previous["paths"] = {k: v for k, v in previous["paths"].items() if "curve" in v}
        previous["projector"], previous["notes"] = {}, [n for n in previous["notes"] if "/metrics" in n]
        run.results = previous
        asyncio.run(run.engines())
        asyncio.run(run.projector())
        save(run.results)
        shutil.rmtree(work, ignore_errors=True)
        return
    server: Server = snapfix_server("snapfix-embedded", env, run.logs)
    run.results["meta"]["server"] = {"argv": " ".join(server.argv), "env": env}
    try:
        run.argon2_cost()
        with server:
            run.say(f"embedded server on {server.base}; registering {prof.users} users (argon2)")
            world = asyncio.run(prepare(server.base, prof.users, prof.issues_per_user))
            run.skew(world)
            run.results["setup"] = {"users": len(world.users), "issues": len(world.issues),
                                    "sign_in_ms_p50": sorted(world.signin_seconds)[len(world.signin_seconds) // 2]
                                    * 1000}  # fmt: skip
            tg = Targets(world)
            run.http(server.base, world, tg)
            run.mix(server.base, world, tg, pids=server.pids())
        distributed.run(run, prof)  # the same steps on the three roles over Kafka, FerretDB and Redis
        asyncio.run(run.engines())
        asyncio.run(run.projector())
        try:
            asyncio.run(run.extras())
        except Exception as e:  # noqa: BLE001 - keep what was measured before it
            run.note(f"the extras stopped early: {type(e).__name__}: {e}")
    finally:
        server.stop()
        run.results["meta"]["commands"] = COMMANDS
        run.results["meta"]["seconds"] = time.time() - started
        run.results["meta"]["load_after"] = os.getloadavg()
        save(run.results)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    run.say(f"done in {time.time() - started:.0f}s: bench/RESULTS.md, bench/results.json, bench/plots/")


if __name__ == "__main__":
    main()
