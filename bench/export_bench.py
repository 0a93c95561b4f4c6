"""Export throughput of a 1,000,000-event SQLite log: JSON Lines and Parquet, upcast and raw.

    .venv/bin/python bench/export_bench.py [--events 1000000] [--folder /tmp/snapfix-export-bench]

The log is written straight into the SQLite schema with valid envelopes (issues reported,
commented, upvoted, moved through statuses), which takes seconds rather than the hours
the command API would need. The ceiling beside each figure is a bare read of the same
rows (SELECT and orjson.loads of each payload), measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from events.sqlite_log import SCHEMA, SqliteEventLog
from ops.export import JsonLinesSink, ParquetSink, Slice, export

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def rows(n: int):  # a generator of tuples for executemany
    issue, version = "", 0
    for i in range(n):
        if version == 0 or version >= 8:
            issue, version = str(uuid.UUID(int=i)), 0
        version += 1
        if version == 1:
            kind, payload = (
                "IssueReported",
                {
                    "reporter_id": "u1",
                    "title": f"Issue {i}",
                    "description": "A hole in the road",
                    "category": "pothole",
                    "department": "roads",
                    "lat": 51.5 + i % 100 / 1000,
                    "lon": -0.12,
                    "address": None,
                },
            )
        elif version % 3 == 0:
            kind, payload = (
                "IssueCommented",
                {"comment_id": f"c{i}", "author_id": "u2", "body": "Me too", "by_staff": False},
            )
        else:
            kind, payload = "IssueUpvoted", {"user_id": f"u{i}"}
        yield (
            str(uuid.UUID(int=n + i)),
            kind,
            1,
            "issue",
            issue,
            version,
            (T0 + timedelta(milliseconds=i)).isoformat(),
            "u1",
            uuid.uuid4().hex,
            None,
            orjson.dumps(payload),
        )


def generate(path: Path, n: int) -> float:
    started = time.perf_counter()
    path.unlink(missing_ok=True)
    conn = sqlite3.connect(path)
    conn.executescript(SCHEMA)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    conn.executemany(
        "INSERT INTO events (event_id, event_type, schema_version, aggregate_type, aggregate_id, aggregate_version,"
        " occurred_at, actor_id, correlation_id, causation_id, payload) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        rows(n),
    )
    conn.commit()
    conn.close()
    return time.perf_counter() - started


def ceiling(path: Path) -> float:
    started = time.perf_counter()
    conn = sqlite3.connect(path)
    for row in conn.execute("SELECT * FROM events ORDER BY position"):
        orjson.loads(row[11])
    conn.close()
    return time.perf_counter() - started


async def timed(path: Path, out: Path, parquet: bool, raw: bool) -> float:
    log = SqliteEventLog(f"sqlite:///{path}")
    started = time.perf_counter()
    with out.open("wb") as stream:
        sink = ParquetSink(stream) if parquet else JsonLinesSink(stream)
        await export(log, Slice(), sink, raw=raw, batch=10_000)
    elapsed = time.perf_counter() - started
    await log.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--folder", type=Path, default=Path(tempfile.gettempdir()) / "snapfix-export-bench")
    args = parser.parse_args()
    args.folder.mkdir(parents=True, exist_ok=True)
    db = args.folder / "events.db"
    n = args.events
    print(f"generated {n:,} events in {generate(db, n):.1f}s ({db.stat().st_size / 1e6:.0f} MB)")
    bare = ceiling(db)
    print(f"ceiling (bare SELECT + orjson.loads): {n / bare:,.0f} ev/s")
    for label, parquet, raw, name in (
        ("JSON Lines, upcast", False, False, "events.jsonl"),
        ("JSON Lines, --raw", False, True, "events-raw.jsonl"),
        ("Parquet, upcast", True, False, "events.parquet"),
    ):
        out = args.folder / name
        elapsed = asyncio.run(timed(db, out, parquet, raw))
        print(
            f"{label:20s} {n / elapsed:>10,.0f} ev/s  {elapsed:6.1f}s  {out.stat().st_size / 1e6:6.0f} MB"
            f"  ({bare / elapsed:.0%} of the ceiling)"
        )


if __name__ == "__main__":
    main()
