"""Export throughput of a 1,000,000-event log, SQLite or Kafka: JSON Lines and Parquet.

    .venv/bin/python bench/export_bench.py [--events 1000000] [--folder /tmp/snapfix-export-bench]
    .venv/bin/python bench/export_bench.py --source kafka [--bootstrap 127.0.0.1:9092] [--partitions 6]

SQLite: the log is written straight into the SQLite schema with valid envelopes (issues
reported, commented, upvoted), which takes seconds rather than the hours the command API
would need. The ceiling beside each figure is a bare read of the same rows (SELECT and
orjson.loads of each payload), measured in the same run.

Kafka: the same envelopes are produced to a fresh topic with pipelined sends (records as
KafkaPublisher writes them: key, JSON value, headers, occurred_at as the timestamp), then
the real ``snapfix export`` command (a process, start-up included) reads the whole topic to
JSON Lines and to Parquet; the ceiling is a bare aiokafka drain of the same topic (getmany
and orjson.loads of each value). The topic is deleted afterwards. ``kafka_export_bench`` is
the importable form for the bench harness.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from events.envelope import Envelope
from events.sqlite_log import SCHEMA, SqliteEventLog
from ops.export import JsonLinesSink, ParquetSink, Slice, export

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def rows(n: int) -> Iterator[tuple[Any, ...]]:  # tuples for executemany
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


# --- Kafka -------------------------------------------------------------------------------------------

SNAPFIX = str(Path(sys.executable).with_name("snapfix"))


def envelopes(n: int) -> Iterator[Envelope]:
    """The SQLite bench's events as envelopes, so both sources export the same history."""
    for row in rows(n):
        event_id, kind, schema, aggregate_type, aggregate_id, version, occurred, actor, correlation, _, payload = row
        yield Envelope(
            event_type=kind,
            schema_version=schema,
            aggregate_type=aggregate_type,
            aggregate_id=aggregate_id,
            aggregate_version=version,
            payload=orjson.loads(payload),
            occurred_at=datetime.fromisoformat(occurred),
            event_id=event_id,
            actor_id=actor,
            correlation_id=correlation,
        )


async def produce(bootstrap: str, topic: str, n: int, window: int = 20_000) -> float:
    """Pipelined idempotent acks=all sends, ``window`` in flight at most; returns the seconds taken."""
    from aiokafka import AIOKafkaProducer

    from events.codec import encode
    from events.kafka_log import record_headers

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5, max_batch_size=256 * 1024
    )
    await producer.start()
    started = time.perf_counter()
    try:
        pending: list[asyncio.Future[Any]] = []
        for env in envelopes(n):
            pending.append(
                await producer.send(
                    topic,
                    value=encode(env),
                    key=env.aggregate_id.encode(),
                    headers=record_headers(env),
                    timestamp_ms=int(env.occurred_at.timestamp() * 1000),
                )
            )
            if len(pending) >= window:
                await asyncio.gather(*pending)
                pending = []
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return time.perf_counter() - started


async def drain(bootstrap: str, topic: str, ids: list[int], n: int) -> float:
    """The ceiling: a bare aiokafka read of every partition from the beginning, each value parsed."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in ids]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        seen = 0
        started = time.perf_counter()
        while seen < n:
            for records in (await consumer.getmany(timeout_ms=1000, max_records=10_000)).values():
                seen += len(records)
                for record in records:
                    orjson.loads(record.value)
        return time.perf_counter() - started
    finally:
        await consumer.stop()


def cli_export(env: dict[str, str], out: Path) -> float:
    """``snapfix export -o out`` as an operator runs it (a process, start-up included); returns the seconds."""
    started = time.perf_counter()
    run = subprocess.run(
        [SNAPFIX, "export", "--no-progress", "-o", str(out)], env=env, capture_output=True, text=True, check=False
    )
    elapsed = time.perf_counter() - started
    if run.returncode != 0:
        raise RuntimeError(f"snapfix export failed: {run.stderr[-2000:]}")
    return elapsed


def exported_rows(out: Path) -> int:
    if out.suffix == ".parquet":
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(out).metadata.num_rows)
    with out.open("rb") as f:
        return sum(1 for _ in f)


async def kafka_export_bench(
    bootstrap: str = "127.0.0.1:9092", events: int = 1_000_000, folder: Path | None = None, partitions: int = 6
) -> dict[str, Any]:
    """Produce ``events`` to a fresh topic, time ``snapfix export`` (JSON Lines, Parquet) and a bare drain of it.

    Rates are events per second; the files are checked to hold every event. The topic and
    the files are removed afterwards.
    """
    from events.kafka_log import KafkaTopic, delete_topic, ensure_topic

    folder = folder or Path(tempfile.mkdtemp(prefix="snapfix-kafka-export-"))
    folder.mkdir(parents=True, exist_ok=True)
    topic = KafkaTopic(bootstrap=bootstrap, name=f"snapfix.bench.export.{uuid.uuid4().hex[:12]}", partitions=partitions)
    ids = await ensure_topic(topic)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SNAPFIX_")}
    env.update(
        SNAPFIX_EVENT_LOG=f"kafka://{bootstrap}",
        SNAPFIX_KAFKA_TOPIC=topic.name,
        SNAPFIX_KAFKA_PARTITIONS=str(partitions),
        SNAPFIX_LOG_FORMAT="json",
    )
    results: dict[str, Any] = {"events": events, "topic": topic.name, "partitions": partitions}
    try:
        produced = await produce(bootstrap, topic.name, events)
        results["produce_events_per_s"] = round(events / produced)
        bare = await drain(bootstrap, topic.name, ids, events)
        results["drain_events_per_s"] = round(events / bare)
        for label, name in (("jsonl", "events.jsonl"), ("parquet", "events.parquet")):
            out = folder / name
            elapsed = await asyncio.to_thread(cli_export, env, out)
            found = exported_rows(out)
            if found != events:
                raise RuntimeError(f"{out} holds {found} events, not {events}")
            results[f"export_{label}_events_per_s"] = round(events / elapsed)
            results[f"export_{label}_seconds"] = round(elapsed, 1)
            results[f"export_{label}_mb"] = round(out.stat().st_size / 1e6)
            results[f"export_{label}_of_ceiling"] = round(bare / elapsed, 3)
            out.unlink()
    finally:
        await delete_topic(topic)
    return results


def main_kafka(args: argparse.Namespace) -> None:
    r = asyncio.run(kafka_export_bench(args.bootstrap, args.events, args.folder, args.partitions))
    n = r["events"]
    print(f"produced {n:,} events to {r['topic']} ({r['partitions']} partitions): {r['produce_events_per_s']:,} ev/s")
    print(f"ceiling (bare aiokafka drain + orjson.loads): {r['drain_events_per_s']:,} ev/s")
    for label, name in (("jsonl", "JSON Lines, upcast"), ("parquet", "Parquet, upcast")):
        print(
            f"{name:20s} {r[f'export_{label}_events_per_s']:>10,} ev/s  {r[f'export_{label}_seconds']:6.1f}s"
            f"  {r[f'export_{label}_mb']:6} MB  ({r[f'export_{label}_of_ceiling']:.0%} of the ceiling)"
        )
    print("topic deleted")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--source", choices=("sqlite", "kafka"), default="sqlite")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--folder", type=Path, default=Path(tempfile.gettempdir()) / "snapfix-export-bench")
    parser.add_argument("--bootstrap", default="127.0.0.1:9092", help="Kafka, with --source kafka")
    parser.add_argument("--partitions", type=int, default=6, help="of the fresh topic, with --source kafka")
    args = parser.parse_args()
    args.folder.mkdir(parents=True, exist_ok=True)
    if args.source == "kafka":
        main_kafka(args)
        return
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
