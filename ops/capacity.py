"""The capacity model: per-core figures measured by ``bench/run`` scaled out to the original design's targets.

``plan`` is a pure function of the targets and the figures, so its arithmetic is unit-tested;
``figures_from_results`` reads ``bench/results.json``; the ``snapfix capacity`` command prints both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

RESULTS = Path(__file__).resolve().parent.parent / "bench" / "results.json"


@dataclass(frozen=True)
class Targets:
    rps: float = 50_000
    users: int = 100_000
    p99_ms: float = 100.0


@dataclass(frozen=True)
class Shares:
    """Fractions of all requests (they sum to 1): detail and profile reads, browsing, commands, argon2, health."""

    cached_read: float = 0.35
    browse: float = 0.30
    command: float = 0.2425
    argon2: float = 0.0075
    health: float = 0.10


@dataclass(frozen=True)
class Figures:
    """Per-core (one process) rates measured on this machine, each already at the target p99 where known."""

    cached_read_rps: float
    browse_rps: float
    command_rps: float
    signin_per_s: float
    health_rps: float
    projector_eps: float
    kafka_partition_msgs: float
    redis_ops: float
    view_upserts: float
    writes_per_event: float = 1.5
    events_per_command: float = 1.0
    cache_hit_ratio: float = 0.9
    browse_hit_ratio: float = 0.0  # browse pages served from the cache (first pages and feeds)
    shares: Shares = field(default_factory=Shares)
    headroom: float = 0.7  # run each process at this fraction of its measured rate
    session_s: float = 1800.0  # a user signs in once per session


@dataclass(frozen=True)
class Plan:
    query_processes: int
    command_processes: int
    auth_processes: int
    projector_workers: int
    kafka_partitions: int
    redis_shards: int
    view_store_cores: int
    rates: dict[str, float]
    assumptions: list[str]

    @property
    def total_cores(self) -> int:
        return (self.query_processes + self.command_processes + self.auth_processes + self.projector_workers
                + self.redis_shards + self.view_store_cores)  # fmt: skip


def _procs(rate: float, per_core: float, headroom: float) -> int:
    if rate <= 0:
        return 0
    if per_core <= 0:
        raise ValueError("a per-core figure is zero: run bench/run first")
    return math.ceil(rate / (per_core * headroom))


def plan(t: Targets, f: Figures) -> Plan:
    """The fleet that carries ``t`` when every process delivers its measured per-core rate times headroom."""
    s, h = f.shares, f.headroom
    cached = t.rps * s.cached_read
    browse = t.rps * s.browse
    health = t.rps * s.health
    commands = t.rps * s.command
    argon2 = max(t.rps * s.argon2, t.users / f.session_s)
    if min(f.cached_read_rps, f.browse_rps, f.health_rps) <= 0:
        raise ValueError("a query per-core figure is zero: run bench/run first")
    # a browse hit costs what a cached read does; a miss is a view-store query
    browse_hits = browse * f.browse_hit_ratio
    query_seconds = (cached + browse_hits) / f.cached_read_rps + (browse - browse_hits) / f.browse_rps
    query_seconds += health / f.health_rps
    query = math.ceil(query_seconds / h) if query_seconds else 0
    command = _procs(commands, f.command_rps, h)
    auth = _procs(argon2, f.signin_per_s, h)
    events = commands * f.events_per_command
    projectors = _procs(events, f.projector_eps, h)
    partitions = max(2 * projectors, _procs(events, f.kafka_partition_msgs, 0.5), 1)
    view_writes = events * f.writes_per_event
    view_reads = cached * (1 - f.cache_hit_ratio) + browse - browse_hits
    redis_ops = cached + browse + view_writes
    redis = _procs(redis_ops, f.redis_ops, 0.5)
    store = _procs(view_writes, f.view_upserts, 0.5)
    rates = {
        "cached reads/s": cached, "browse reads/s": browse, "health checks/s": health, "commands/s": commands,
        "argon2 sign-ins and registrations/s": argon2, "events/s into the log": events,
        "view writes/s": view_writes, "view-store reads/s (cache misses)": view_reads,
        "redis ops/s": redis_ops, "concurrent users per query process": t.users / max(1, query),
    }  # fmt: skip
    assumptions = [
        f"request shares: cached reads {s.cached_read:.1%}, browse {s.browse:.1%}, commands {s.command:.1%}, "
        f"argon2 {s.argon2:.2%}, health {s.health:.1%} (the original design's mix, bench/workload.py)",
        f"every process runs at {h:.0%} of the rate it sustained at p99 <= {t.p99_ms:g} ms on one core here "
        "(where no step held that p99, the lowest step measured)",
        f"sign-ins at least users / session = {t.users} / {f.session_s:g}s; argon2 runs in its own auth processes",
        f"{f.events_per_command:g} event per command, {f.writes_per_event:.2f} view writes per event (measured)",
        f"cache hit ratios {f.cache_hit_ratio:.0%} on detail and profile reads and {f.browse_hit_ratio:.0%} on "
        "browse pages (the mix's, measured); a browse hit costs a cached read, a miss an uncached browse query",
        "Kafka: 2 partitions per projector worker for growth, each partition at <= 50 % of the raw "
        f"one-partition rate ({f.kafka_partition_msgs:,.0f} msg/s)",
        f"Redis and the view store at <= 50 % of their raw per-core rates ({f.redis_ops:,.0f} ops/s, "
        f"{f.view_upserts:,.0f} upserts/s)",
        "one Python process per core (the GIL); the network, the load balancer and replication are not counted",
    ]
    return Plan(query, command, auth, projectors, partitions, redis, store, rates, assumptions)


def sustainable(curve: list[dict[str, Any]], p99_ms: float, fallback: float) -> float:
    """The highest throughput of a step that held p99 <= ``p99_ms`` with >= 99 % success; else ``fallback``."""
    ok = [c["throughput"] for c in curve if c["p99_ms"] <= p99_ms and c["success"] >= 0.99]
    return max(ok) if ok else fallback


def figures_from_results(results: dict[str, Any], p99_ms: float) -> Figures:
    """Per-core figures out of ``bench/results.json`` (the embedded deployment: one process on one core)."""
    paths, ceil = results["paths"], results["ceilings"]

    def rate(name: str) -> float:
        p = paths.get(name)
        if not p:
            return 0.0
        steps = [*p["curve"], *([p["at_half_peak"]] if p.get("at_half_peak") else [])]
        # no step held the p99 (a busy machine): the lowest measured step is the conservative figure
        return sustainable(steps, p99_ms, min((c["throughput"] for c in steps), default=0.0))

    proj = results.get("projector", {}).get("embedded", {})
    kafka = ceil.get("kafka_produce_pipelined", {}).get("value", 0.0)
    drain = ceil.get("kafka_consume_drain", {}).get("value", 0.0)
    mix = results.get("mix", {})
    ratios = mix.get("cache_hit_ratios") or {}
    hit, browse_hit = ratios.get("views", mix.get("cache_hit_ratio")), ratios.get("browse")
    return Figures(
        cached_read_rps=rate("cached_read"),
        browse_rps=rate("browse") or rate("cached_read"),
        command_rps=rate("create_issue"),
        signin_per_s=results.get("argon2", {}).get("per_core_per_s", 0.0),
        health_rps=rate("healthz") or rate("cached_read"),
        projector_eps=proj.get("events_per_s", 0.0),
        kafka_partition_msgs=min(x for x in (kafka, drain) if x) if (kafka or drain) else 0.0,
        redis_ops=ceil.get("redis_benchmark_get", {}).get("value", 0.0),
        view_upserts=ceil.get("mongo_bulk_upsert", ceil.get("sqlite_bulk_upsert", {})).get("value", 0.0),
        writes_per_event=proj.get("writes_per_event", 1.5),
        cache_hit_ratio=hit if isinstance(hit, float) else 0.9,
        browse_hit_ratio=browse_hit if isinstance(browse_hit, float) else 0.0,
    )


def render(t: Targets, f: Figures, p: Plan, source: Path) -> str:
    lines = [
        f"SnapFix capacity for {t.rps:,.0f} requests/s, {t.users:,} concurrent users, p99 <= {t.p99_ms:g} ms",
        f"(per-core figures from {source})",
        "",
        "fleet:",
        f"  query-API processes     {p.query_processes:>6}",
        f"  command-API processes   {p.command_processes:>6}",
        f"  auth (argon2) processes {p.auth_processes:>6}",
        f"  projector workers       {p.projector_workers:>6}",
        f"  Kafka partitions        {p.kafka_partitions:>6}",
        f"  Redis shards (cores)    {p.redis_shards:>6}",
        f"  view-store cores        {p.view_store_cores:>6}",
        f"  total cores (excl. Kafka brokers) {p.total_cores}",
        "",
        "load per engine:",
        *(f"  {k:<40} {v:>12,.0f}" for k, v in p.rates.items()),
        "",
        "per-core figures used:",
        f"  cached read {f.cached_read_rps:,.0f}/s, browse {f.browse_rps:,.0f}/s, command {f.command_rps:,.0f}/s,"
        f" sign-in {f.signin_per_s:,.1f}/s, health {f.health_rps:,.0f}/s, projector {f.projector_eps:,.0f} events/s",
        "",
        "assumptions:",
        *(f"  - {a}" for a in p.assumptions),
    ]
    return "\n".join(lines)


def run(rps: float, users: int, p99_ms: float, results: Path = RESULTS) -> str:
    """What ``snapfix capacity`` prints."""
    if not results.exists():
        raise FileNotFoundError(f"{results} is missing: run bench/run (or bench/run --quick) first")
    t = Targets(rps, users, p99_ms)
    f = figures_from_results(orjson.loads(results.read_bytes()), p99_ms)
    return render(t, f, plan(t, f), results)
