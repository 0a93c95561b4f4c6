"""Latency of the operations SnapFix's Mongo stores issue, against one FerretDB (or MongoDB) server.

    .venv/bin/python -m bench.ferretdb_backends --uri mongodb://127.0.0.1:27017 --label sqlite
    .venv/bin/python -m bench.ferretdb_backends --label postgresql --json /tmp/pg.json

For each collection size (1,000 and 20,000 documents by default) it fills a collection in a scratch
database (`snapfix_bench_<pid>`, dropped at the end, even on failure), with secondary indexes on
`status` and `created_at` like the view stores', then times, in milliseconds (median and p90 over
the repetitions):

    find_one _id hit / miss, replace_one by _id (upsert), bulk_write of 500 ReplaceOne upserts,
    find {_id: {$in: 200 ids}}, find {status} sorted on created_at limit 20, count_documents {status}

It prints one table (rows: operations, columns: sizes) and, with --json, writes the numbers too.
The server is shared and the machine small: the numbers are indicative, compare them run to run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from pymongo import AsyncMongoClient, ReplaceOne

STATUSES = ("open", "acknowledged", "in_progress", "fixed", "rejected")
BATCH = 1_000


def make_doc(i: int, rev: int = 0) -> dict[str, Any]:
    return {
        "_id": f"doc-{i:07d}",
        "status": STATUSES[i % len(STATUSES)],
        "created_at": 1_700_000_000_000 + i * 997 % 1_000_003,
        "owner": f"user-{i % 97}",
        "title": f"Pothole number {i} on a long street name",
        "votes": i % 13,
        "version": rev,
        "tags": ["road", "pothole"] if i % 2 else ["light"],
        "body": "x" * 200,
    }


async def timed(fn: Callable[[], Awaitable[Any]], reps: int) -> list[float]:
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        await fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def summary(samples: list[float]) -> dict[str, float]:
    s = sorted(samples)
    p90 = s[min(len(s) - 1, round(0.9 * (len(s) - 1)))]
    return {"median": statistics.median(s), "p90": p90, "n": len(s)}


async def bench_size(db: Any, size: int, reps: int, bulk_reps: int) -> dict[str, dict[str, float]]:
    coll = db[f"items_{size}"]
    await coll.drop()
    await coll.create_index("status")
    await coll.create_index("created_at")
    t0 = time.perf_counter()
    for start in range(0, size, BATCH):
        await coll.insert_many([make_doc(i) for i in range(start, min(size, start + BATCH))])
    load_s = time.perf_counter() - t0
    rng = random.Random(size)
    res: dict[str, dict[str, float]] = {}

    async def find_hit() -> None:
        assert await coll.find_one({"_id": f"doc-{rng.randrange(size):07d}"}) is not None

    async def find_miss() -> None:
        assert await coll.find_one({"_id": f"missing-{rng.randrange(10**9)}"}) is None

    async def replace_upsert() -> None:
        i = rng.randrange(size)
        await coll.replace_one({"_id": f"doc-{i:07d}"}, make_doc(i, rev=1), upsert=True)

    async def bulk_upserts() -> None:
        ids = rng.sample(range(size), min(500, size))
        ops = [ReplaceOne({"_id": f"doc-{i:07d}"}, make_doc(i, rev=2), upsert=True) for i in ids]
        r = await coll.bulk_write(ops, ordered=False)
        assert r.matched_count + r.upserted_count == len(ops)

    async def find_in() -> None:
        ids = [f"doc-{i:07d}" for i in rng.sample(range(size), min(200, size))]
        got = await coll.find({"_id": {"$in": ids}}).to_list(None)
        assert len(got) == len(ids)

    async def filter_sort_limit() -> None:
        status = rng.choice(STATUSES)
        got = await coll.find({"status": status}).sort("created_at", -1).limit(20).to_list(None)
        assert len(got) == 20

    async def count() -> None:
        assert await coll.count_documents({"status": rng.choice(STATUSES)}) == size // len(STATUSES)

    plan: list[tuple[str, Callable[[], Awaitable[None]], int]] = [
        ("find_one _id hit", find_hit, reps),
        ("find_one _id miss", find_miss, reps),
        ("replace_one _id upsert", replace_upsert, reps),
        ("bulk_write 500 ReplaceOne upserts", bulk_upserts, bulk_reps),
        ("find _id $in 200", find_in, max(3, reps // 4)),
        ("find status + sort created_at + limit 20", filter_sort_limit, max(3, reps // 2)),
        ("count_documents status", count, max(3, reps // 2)),
    ]
    for name, fn, n in plan:
        await fn()  # warm-up (connection, plan caches), not counted
        res[name] = summary(await timed(fn, n))
        print(f"  {size:>6} docs  {name:<42} median {res[name]['median']:9.1f} ms", file=sys.stderr)
    res["load (insert_many, per 1,000 docs)"] = {"median": load_s * 1000 / (size / 1000), "p90": 0, "n": 1}
    await coll.drop()
    return res


def print_table(label: str, results: dict[int, dict[str, dict[str, float]]]) -> None:
    sizes = sorted(results)
    names = list(results[sizes[0]])
    head = f"| {label} (ms, median / p90) | " + " | ".join(f"{s:,} docs" for s in sizes) + " |"
    print(head)
    print("| --- |" + " ---: |" * len(sizes))
    for name in names:
        cells = []
        for s in sizes:
            r = results[s][name]
            cells.append(f"{r['median']:.1f}" + (f" / {r['p90']:.1f}" if r["n"] > 1 else ""))
        print(f"| {name} | " + " | ".join(cells) + " |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--uri", default="mongodb://127.0.0.1:27017")
    ap.add_argument("--label", default="server")
    ap.add_argument("--sizes", default="1000,20000", help="comma-separated collection sizes")
    ap.add_argument("--reps", type=int, default=20, help="repetitions of the single-document operations")
    ap.add_argument("--bulk-reps", type=int, default=3, help="repetitions of the 500-upsert bulk_write")
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    results = asyncio.run(run(args.uri, sizes, args.reps, args.bulk_reps))
    print_table(args.label, results)
    if args.json:
        Path(args.json).write_text(json.dumps({"label": args.label, "uri": args.uri, "results": results}, indent=1))
    return 0


async def run(uri: str, sizes: list[int], reps: int, bulk_reps: int) -> dict[int, dict[str, dict[str, float]]]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        uri, directConnection=True, serverSelectionTimeoutMS=5000, socketTimeoutMS=600_000
    )
    dbname = f"snapfix_bench_{os.getpid()}"
    results: dict[int, dict[str, dict[str, float]]] = {}
    try:
        await client.admin.command("ping")
        db = client[dbname]
        for size in sizes:
            results[size] = await bench_size(db, size, reps, bulk_reps)
    finally:
        try:
            await client.drop_database(dbname)
        finally:
            await client.close()
    return results


if __name__ == "__main__":
    sys.exit(main())
