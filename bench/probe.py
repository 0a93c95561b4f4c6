"""Freshness (a command's 2xx until the query API shows it) and the cache counters on /metrics."""

from __future__ import annotations

import asyncio
import os
import re
import threading
import time
import urllib.request
from pathlib import Path

import httpx

from bench.loadgen import percentile
from bench.workload import World, _auth, report_body

CACHE_HIT = re.compile(r"^(\w*cache\w*hit\w*?)(?:_total)?(\{[^}]*\})?\s+([\d.eE+-]+)$", re.MULTILINE)
LOOKUPS = re.compile(r"^snapfix_cache_lookups_total\{([^}]*)\}\s+([\d.eE+-]+)$", re.MULTILINE)
CACHE_MISS = re.compile(r"^(\w*cache\w*miss\w*?)(?:_total)?(\{[^}]*\})?\s+([\d.eE+-]+)$", re.MULTILINE)


async def freshness(world: World, samples: int, rate: float, poll_s: float = 0.002) -> dict:
    """Report ``samples`` issues at ``rate``/s; for each, poll its detail until it answers 200.

    The report goes to the command side (``world.base``), the polls to the query side (``world.read_base``):
    distributed, the lag is the command API's 2xx until the query API shows the issue.
    """
    lags: list[float] = []
    failures = 0
    reads = world.read_base
    async with httpx.AsyncClient(base_url=world.base, timeout=10) as client:

        async def one(i: int) -> None:
            nonlocal failures
            u = world.users[i % len(world.users)]
            r = await client.post("/v1/issues", content=report_body(900_000 + i), headers=_auth(u))
            if r.status_code != 201:
                failures += 1
                return
            ok_at = time.perf_counter()
            issue = r.json()["id"]
            deadline = ok_at + 10
            while time.perf_counter() < deadline:
                g = await client.get(f"{reads}/v1/issues/{issue}")
                if g.status_code == 200:
                    lags.append((time.perf_counter() - ok_at) * 1000)
                    return
                await asyncio.sleep(poll_s)
            failures += 1

        tasks = []
        for i in range(samples):
            tasks.append(asyncio.create_task(one(i)))
            await asyncio.sleep(1 / rate)
        await asyncio.gather(*tasks)
    lags.sort()
    return {
        "samples": len(lags),
        "failures": failures,
        "p50_ms": percentile(lags, 0.5),
        "p99_ms": percentile(lags, 0.99),
        "max_ms": lags[-1] if lags else float("nan"),
        "how": f"httpx: POST /v1/issues at {rate}/s, then GET /v1/issues/{{id}} every {poll_s * 1000:g} ms until 200",
    }


class Background:
    """Runs a coroutine on its own thread and event loop while the main thread drives vegeta."""

    def __init__(self, coro_factory) -> None:
        self.result: dict | None = None
        self._factory = coro_factory
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self.result = asyncio.run(self._factory())

    def __enter__(self) -> Background:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._thread.join(timeout=120)


Counters = dict[str, tuple[float, float]]
CACHE_LABEL = re.compile(r'cache="([^"]*)"')


def cache_counters(base: str) -> Counters | None:
    """(hits, misses) per cache from /metrics, or None if no cache counter is exported.

    ``snapfix_cache_lookups_total{cache=...}`` gives one entry per cache (``views``: detail and profile
    reads; ``browse``: first pages of browse queries); any other hit/miss counter is summed under ``other``.
    """
    try:
        with urllib.request.urlopen(base + "/metrics", timeout=5) as r:  # noqa: S310
            text = r.read().decode()
    except OSError:
        return None
    out: dict[str, list[float]] = {}

    def add(cache: str, hit: float, miss: float) -> None:
        h, m = out.setdefault(cache, [0.0, 0.0])
        out[cache] = [h + hit, m + miss]

    for m in CACHE_HIT.finditer(text):
        if not m.group(1).endswith("_created"):
            add("other", float(m.group(3)), 0.0)
    for m in CACHE_MISS.finditer(text):
        if not m.group(1).endswith("_created"):
            add("other", 0.0, float(m.group(3)))
    for labels, value in LOOKUPS.findall(text):  # snapfix_cache_lookups_total{cache=...,result="hit"|"miss"}
        label = CACHE_LABEL.search(labels)
        cache = label.group(1) if label else "other"
        if 'result="hit"' in labels:
            add(cache, float(value), 0.0)
        elif 'result="miss"' in labels:
            add(cache, 0.0, float(value))
    return {k: (v[0], v[1]) for k, v in out.items()} or None


def lookups(before: Counters | None, after: Counters | None) -> Counters | None:
    """The (hits, misses) per cache between two readings."""
    if before is None or after is None:
        return None
    return {c: (h - before.get(c, (0.0, 0.0))[0], m - before.get(c, (0.0, 0.0))[1]) for c, (h, m) in after.items()}


def ratios(counts: Counters | None) -> dict[str, float | None] | None:
    """Hit ratios overall and per cache (None where a cache saw no lookup)."""
    if counts is None:
        return None
    out: dict[str, float | None] = {c: h / (h + m) if h + m > 0 else None for c, (h, m) in sorted(counts.items())}
    hits, misses = sum(h for h, _ in counts.values()), sum(m for _, m in counts.values())
    return {"overall": hits / (hits + misses) if hits + misses > 0 else None, **out}


def add(a: Counters, b: Counters | None) -> Counters:
    """Two sets of (hits, misses) per cache, summed."""
    out = dict(a)
    for c, (h, m) in (b or {}).items():
        h0, m0 = out.get(c, (0.0, 0.0))
        out[c] = (h0 + h, m0 + m)
    return out


def hit_ratios(before: Counters | None, after: Counters | None) -> dict[str, float | None] | None:
    """The hit ratio between two readings, overall and per cache."""
    return ratios(lookups(before, after))


def hit_ratio(before: Counters | None, after: Counters | None) -> float | None:
    """The overall hit ratio between two readings."""
    ratios = hit_ratios(before, after)
    return None if ratios is None else ratios["overall"]


async def follow_location(world: World, samples: int, rate: float) -> dict:
    """Report ``samples`` issues at ``rate``/s and GET each 201's ``Location`` once, at once, with no token.

    What a client that follows ``Location`` (as HTTP says it may) meets: every answer should be a 200.
    """
    statuses: dict[int, int] = {}
    latencies: list[float] = []
    async with httpx.AsyncClient(base_url=world.base, timeout=30) as client:

        async def one(i: int) -> None:
            u = world.users[i % len(world.users)]
            r = await client.post("/v1/issues", content=report_body(800_000 + i), headers=_auth(u))
            if r.status_code != 201:
                statuses[-r.status_code] = statuses.get(-r.status_code, 0) + 1
                return
            started = time.perf_counter()
            g = await client.get(world.read_base + r.headers["location"])
            latencies.append((time.perf_counter() - started) * 1000)
            statuses[g.status_code] = statuses.get(g.status_code, 0) + 1

        tasks = []
        for i in range(samples):
            tasks.append(asyncio.create_task(one(i)))
            await asyncio.sleep(1 / rate)
        await asyncio.gather(*tasks)
    latencies.sort()
    return {
        "samples": sum(v for k, v in statuses.items() if k > 0),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "not_found": statuses.get(404, 0),
        "get_p50_ms": percentile(latencies, 0.5),
        "get_p99_ms": percentile(latencies, 0.99),
        "how": f"httpx: POST /v1/issues at {rate}/s, then one GET of its Location, no consistency token",
    }


LAG_BUCKET = re.compile(r'^snapfix_event_loop_lag_seconds_bucket\{le="([^"]+)"\}\s+([\d.eE+-]+)$', re.MULTILINE)
Buckets = dict[float, float]


def loop_lag_buckets(base: str) -> Buckets | None:
    """The cumulative buckets of ``snapfix_event_loop_lag_seconds`` on a role's /metrics."""
    try:
        with urllib.request.urlopen(base + "/metrics", timeout=5) as r:  # noqa: S310
            text = r.read().decode()
    except OSError:
        return None
    found = {float(le): float(v) for le, v in LAG_BUCKET.findall(text)}
    return found or None


def loop_lag(before: Buckets | None, after: Buckets | None) -> dict | None:
    """p50/p99 of the loop's lag between two readings: the upper bound of the bucket holding the quantile (ms)."""
    if not before or not after:
        return None
    delta = sorted((le, after[le] - before.get(le, 0.0)) for le in after)
    total = delta[-1][1]
    if total <= 0:
        return None

    def quantile(q: float) -> float:
        return next((le for le, n in delta if n >= q * total), float("inf")) * 1000

    return {"samples": total, "p50_le_ms": quantile(0.5), "p99_le_ms": quantile(0.99), "p999_le_ms": quantile(0.999)}


def cpu_seconds(pid: int) -> dict[str, float]:
    """CPU seconds used so far by a process and, apart, by its children (the argon2 process pool)."""
    tick = os.sysconf("SC_CLK_TCK")

    def own(p: int) -> float:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / tick  # utime, stime

    children: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        children.update(int(c) for c in task.read_text().split())
    return {"server": own(pid), "pool": sum(own(c) for c in children)}
