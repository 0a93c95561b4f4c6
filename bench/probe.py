"""Freshness (a command's 2xx until the query API shows it) and the cache counters on /metrics."""

from __future__ import annotations

import asyncio
import re
import threading
import time
import urllib.request

import httpx

from bench.loadgen import percentile
from bench.workload import World, _auth, report_body

CACHE_HIT = re.compile(r"^(\w*cache\w*hit\w*?)(?:_total)?(\{[^}]*\})?\s+([\d.eE+-]+)$", re.MULTILINE)
LOOKUPS = re.compile(r"^snapfix_cache_lookups_total\{([^}]*)\}\s+([\d.eE+-]+)$", re.MULTILINE)
CACHE_MISS = re.compile(r"^(\w*cache\w*miss\w*?)(?:_total)?(\{[^}]*\})?\s+([\d.eE+-]+)$", re.MULTILINE)


async def freshness(world: World, samples: int, rate: float, poll_s: float = 0.002) -> dict:
    """Report ``samples`` issues at ``rate``/s; for each, poll its detail until it answers 200."""
    lags: list[float] = []
    failures = 0
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
                g = await client.get(f"/v1/issues/{issue}")
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


def cache_counters(base: str) -> tuple[float, float] | None:
    """(hits, misses) summed over every cache hit/miss counter /metrics exports, or None if none is exported."""
    try:
        with urllib.request.urlopen(base + "/metrics", timeout=5) as r:  # noqa: S310
            text = r.read().decode()
    except OSError:
        return None
    hits = [float(m.group(3)) for m in CACHE_HIT.finditer(text) if not m.group(1).endswith("_created")]
    misses = [float(m.group(3)) for m in CACHE_MISS.finditer(text) if not m.group(1).endswith("_created")]
    for labels, value in LOOKUPS.findall(text):  # snapfix_cache_lookups_total{cache=...,result="hit"|"miss"}
        if 'result="hit"' in labels:
            hits.append(float(value))
        elif 'result="miss"' in labels:
            misses.append(float(value))
    if not hits and not misses:
        return None
    return sum(hits), sum(misses)


def hit_ratio(before: tuple[float, float] | None, after: tuple[float, float] | None) -> float | None:
    if before is None or after is None:
        return None
    hits, misses = after[0] - before[0], after[1] - before[1]
    return hits / (hits + misses) if hits + misses > 0 else None
