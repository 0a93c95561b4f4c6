"""``python -m bench.query_bench [--issues N]``: uncached browse latency per documented query shape.

Seeds a temporary embedded view store with a city of N issues (default 100,000) folded
by the real projector (the generator's envelopes go through ``ProjectionRunner.apply``,
as a consumer would hand them over), then times each browse shape the way the query
API runs it (``Browse.fetch``: store query, exact geo filter, nearest rings), with no
cache, and prints p50/p95/p99 per shape. The target is p95 < 20 ms on SQLite.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import platform
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import structlog

from events.envelope import Envelope, Position
from ops.seed import CITY, Generator, Plan, catalogue_envelopes
from projectors import geo
from projectors.catalog import ALL
from projectors.ports import Query
from projectors.runner import ProjectionRunner
from projectors.sqlite_views import SqliteViewStore
from query_api.browse import Browse, Near

CATEGORIES = ("pothole", "garbage", "streetlight", "graffiti", "water-leak", "noise")
WORDS = ("pothole", "broken", "station", "deep", "garbage", "cafe", "park", "leak", "dark", "school")


def _box_around(doc: dict, km: float) -> geo.Box:
    dlat, dlon = km / 111.0 / 2, km / 69.0 / 2
    return geo.Box(doc["lat"] - dlat, doc["lon"] - dlon, doc["lat"] + dlat, doc["lon"] + dlon)


class Pick:
    """Random parameters drawn from the seeded city."""

    def __init__(self, rng: random.Random, docs: list[dict]) -> None:
        self.rng, self.docs = rng, docs

    def doc(self) -> dict:
        return self.rng.choice(self.docs)


def _near(p: Pick, radius: float) -> Near:
    doc = p.doc()
    return Near(doc["lat"], doc["lon"], radius)


Shape = Callable[[Pick], Browse]
SHAPES: dict[str, Shape] = {
    "newest": lambda _p: Browse(),
    "oldest": lambda _p: Browse(sort="oldest"),
    "upvotes": lambda _p: Browse(sort="upvotes"),
    "updated": lambda _p: Browse(sort="updated"),
    "status": lambda p: Browse(status=p.rng.choice(["reported", "in_progress", "resolved", "closed"])),
    "status, upvotes": lambda _p: Browse(status="reported", sort="upvotes"),
    "status list (open)": lambda _p: Browse(status="reported,acknowledged,in_progress,reopened"),
    "category": lambda p: Browse(category=p.rng.choice(CATEGORIES)),
    "category, upvotes": lambda p: Browse(category=p.rng.choice(CATEGORIES), sort="upvotes"),
    "department, updated": lambda p: Browse(department=p.rng.choice(["roads", "water"]), sort="updated"),
    "reporter": lambda p: Browse(reporter=p.doc()["reporter_id"]),
    "created range": lambda p: Browse(created_after=p.doc()["created_at"][:10] + "T00:00:00.000000Z", sort="oldest"),
    "bbox 1 km": lambda p: Browse(bbox=_box_around(p.doc(), 1)),
    "bbox 5 km": lambda p: Browse(bbox=_box_around(p.doc(), 5)),
    "bbox city, upvotes": lambda _p: Browse(bbox=CITY, sort="upvotes"),
    "near 1 km, newest": lambda p: Browse(near=_near(p, 1000)),
    "nearest 500 m": lambda p: Browse(near=_near(p, 500), sort="nearest"),
    "nearest 5 km": lambda p: Browse(near=_near(p, 5000), sort="nearest"),
    "q one word": lambda p: Browse(q=p.rng.choice(WORDS)),
    "q two words + prefix": lambda p: Browse(q=f"{p.rng.choice(WORDS)} {p.rng.choice(WORDS)[:3]}"),
    "q + status": lambda p: Browse(q=p.rng.choice(WORDS), status="reported"),
    "q + bbox 5 km": lambda p: Browse(q=p.rng.choice(WORDS), bbox=_box_around(p.doc(), 5)),
}


async def seed(store: SqliteViewStore, issues: int, users: int) -> float:
    """Fold a generated city into the store through the projector; returns the seconds it took."""
    runner = ProjectionRunner("main", ALL, None, store, batch_size=2000)
    await runner.setup()
    generator = Generator(Plan(issues, users, seed=1), "not-a-real-hash")
    started = time.perf_counter()
    offset = 0
    batch: list[Envelope] = []
    done = 0

    async def flush() -> None:
        nonlocal batch
        if batch:
            await runner.apply(batch)
            batch = []

    streams = ([catalogue_envelopes(generator.plan.now)], generator.users(), generator.issues())
    for stream in streams:
        for envelopes in stream:
            for env in envelopes:
                offset += 1
                batch.append(env.at(Position(0, offset)))
            done += 1
            if len(batch) >= 2000:
                await flush()
                print(f"\rseeding: {done:,}/{issues + users + 1:,} aggregates", end="", file=sys.stderr)
    await flush()
    print(file=sys.stderr)
    return time.perf_counter() - started


async def measure(
    store: SqliteViewStore,
    repeat: int,
    limit: int,
    *,
    docs: list[dict] | None = None,
    pages: list[list[str]] | None = None,
) -> list[tuple[str, list[float], int]]:
    """Times per shape; parameters drawn from ``docs`` (default: the store's first 5,000 summaries) with a fixed
    seed, so two stores given the same docs answer the same queries; each page's ids go to ``pages`` if given."""
    rng = random.Random(7)
    docs = docs if docs is not None else await store.find(Query("issue_summary", limit=5000))
    results = []
    for name, make in SHAPES.items():
        times: list[float] = []
        rows = 0
        for _ in range(repeat):
            params = make(Pick(rng, docs))
            params = Browse(**{**{f: getattr(params, f) for f in params.__dataclass_fields__}, "limit": limit})
            started = time.perf_counter()
            items, _ = await params.fetch(store)
            times.append((time.perf_counter() - started) * 1000)
            rows += len(items)
            if pages is not None:
                pages.append([item["id"] for item in items])
        results.append((name, times, rows // repeat))
    return results


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--issues", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=None, help="default: issues / 10")
    parser.add_argument("--repeat", type=int, default=200, help="timed runs per shape")
    parser.add_argument("--limit", type=int, default=20, help="page size")
    parser.add_argument(
        "--store",
        type=Path,
        default=None,
        help="a SQLite views file to keep: seeded when missing, reused (not re-seeded) when present",
    )
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

    async def run() -> None:
        with tempfile.TemporaryDirectory() as folder:
            path = args.store or Path(folder) / "views.db"
            reuse = path.exists()
            store = SqliteViewStore(f"sqlite:///{path}")
            if reuse:  # the collections still need declaring to this store object
                await ProjectionRunner("main", ALL, None, store).setup()
            seconds = 0.0 if reuse else await seed(store, args.issues, args.users or max(10, args.issues // 10))
            results = await measure(store, args.repeat, args.limit)
            await store.close()
        print(f"# uncached browse on SQLite: {args.issues:,} issues, page {args.limit}, {args.repeat} runs per shape")
        machine = platform.processor() or platform.machine()
        versions = f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}"
        print(f"# {machine}, {os.cpu_count()} cpus, {versions}")
        print(f"# reused {path}\n" if reuse else f"# seeded through the projector in {seconds:.0f} s\n")
        print(f"| {'shape':24} | {'p50 ms':>7} | {'p95 ms':>7} | {'p99 ms':>7} | {'rows':>4} |")
        print(f"|{'-' * 26}|{'-' * 9}|{'-' * 9}|{'-' * 9}|{'-' * 6}|")
        for name, times, rows in results:
            p50, p95, p99 = statistics.median(times), pct(times, 0.95), pct(times, 0.99)
            flag = "" if p95 < 20 else "  <- over the 20 ms target"
            print(f"| {name:24} | {p50:7.2f} | {p95:7.2f} | {p99:7.2f} | {rows:4d} |{flag}")

    asyncio.run(run())


if __name__ == "__main__":
    main()
