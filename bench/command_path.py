"""The command path with the write-side consistency machinery on and off (issue 4's "Done when").

Why: docs/adr/0001 buys optimistic concurrency, no dual-write loss and unique claims on Kafka
with a commit-slot insert, an outbox entry and a mark per append. This measures what that
costs against the floor of publishing the same envelopes straight to Kafka:

- on:  ``MongoEventStore.append`` (outbox insert, commit-slot insert, idempotent publish,
  mark published and delete the outbox entry), one event per append;
- off: ``KafkaPublisher.publish`` of the same envelopes, no write store: what a log-only
  design would do, with no way to refuse a stale writer.

Each worker appends to an aggregate of its own (no conflicts: this is the cost of the
machinery, not of contention), so concurrency 32 is 32 commands in flight in one process.
The command handler's load before each append (one ``_id`` lookup of the next slot when
the stream is cached) is not included. Runs on a fresh topic and database, removed after.

    .venv/bin/python -m bench.command_path [--appends 2000] [--no-write]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pymongo import AsyncMongoClient

from events.envelope import Envelope
from events.kafka_log import KafkaPublisher, KafkaTopic, delete_topic, ensure_topic
from events.mongo_store import MongoEventStore

KAFKA = "127.0.0.1:9092"
MONGO = "mongodb://127.0.0.1:27017"
RESULTS = Path(__file__).with_name("RESULTS.md")
CONCURRENCY = (1, 32)
WARMUP = 20


@dataclass(frozen=True)
class Row:
    path: str
    concurrency: int
    appends: int
    seconds: float
    latencies_ms: list[float]

    @property
    def throughput(self) -> float:
        return self.appends / self.seconds

    def quantile(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def envelope(aggregate_id: str, version: int) -> Envelope:
    """A small, realistic event (an upvote): the payload size is not what is measured."""
    return Envelope(
        event_type="IssueUpvoted",
        schema_version=1,
        aggregate_type="issue",
        aggregate_id=aggregate_id,
        aggregate_version=version,
        payload={"user_id": str(uuid.uuid4())},
        actor_id="bench",
        correlation_id=str(uuid.uuid4()),
    )


Append = Callable[[str, int], Awaitable[Any]]


async def measure(path: str, append: Append, concurrency: int, appends: int) -> Row:
    """``appends`` appends shared among ``concurrency`` workers, each on its own aggregate, one at a time."""
    per_worker = [appends // concurrency + (1 if w < appends % concurrency else 0) for w in range(concurrency)]
    latencies: list[float] = []

    async def worker(n: int) -> None:
        aggregate_id = f"bench-{uuid.uuid4()}"
        for version in range(1, n + 1):
            started = time.perf_counter()
            await append(aggregate_id, version)
            latencies.append((time.perf_counter() - started) * 1000)

    await asyncio.gather(*(worker(min(WARMUP, n)) for n in per_worker))  # connections, caches, producer batches
    latencies.clear()
    started = time.perf_counter()
    await asyncio.gather(*(worker(n) for n in per_worker))
    return Row(path, concurrency, appends, time.perf_counter() - started, latencies)


async def run(appends: int) -> list[Row]:
    suffix = uuid.uuid4().hex[:12]
    topic = KafkaTopic(bootstrap=KAFKA, name=f"snapfix.bench.{suffix}", partitions=6)
    database = f"snapfix_bench_{suffix}"
    await ensure_topic(topic)
    store = MongoEventStore(f"{MONGO}/{database}", KafkaPublisher(topic))
    publisher = KafkaPublisher(topic)
    rows: list[Row] = []
    try:
        await store.open()
        await publisher.start()

        async def on(aggregate_id: str, version: int) -> None:
            await store.append(aggregate_id, version - 1, [envelope(aggregate_id, version)])

        async def off(aggregate_id: str, version: int) -> None:
            await publisher.publish([envelope(aggregate_id, version)])

        for concurrency in CONCURRENCY:
            for path, append in (("on: MongoEventStore.append", on), ("off: KafkaPublisher.publish", off)):
                rows.append(await measure(path, append, concurrency, appends))
    finally:
        await publisher.stop()
        await store.close()
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(MONGO)
        await client.drop_database(database)
        await client.close()
        await delete_topic(topic)
    return rows


def table(rows: list[Row]) -> str:
    lines = [
        "| consistency | concurrency | appends | appends/s | p50 ms | p99 ms |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.path} | {r.concurrency} | {r.appends} | {r.throughput:,.0f} "
            f"| {statistics.median(r.latencies_ms):.2f} | {r.quantile(0.99):.2f} |"
        )
    return "\n".join(lines)


def section(rows: list[Row]) -> str:
    """The RESULTS.md section: the table, when and on what, and whether the machine was busy."""
    load1, load5, _ = os.getloadavg()
    busy = (
        f" **The machine was busy** (load average {load1:.2f}, {load5:.2f} over 1 and 5 min on {os.cpu_count()} CPUs):"
        " other work shared the CPUs and the engines, so read the figures as a lower bound and compare rows"
        " with each other rather than with other sections."
        if load1 > 1
        else f" Load average {load1:.2f} on {os.cpu_count()} CPUs."
    )
    return (
        "\n\n## Command path: consistency on and off\n\n"
        f"`python -m bench.command_path` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: Kafka and FerretDB (on "
        "PostgreSQL) on this machine, a fresh 6-partition topic and database, one event per append, each worker "
        "on its own aggregate (no conflicts), warm-up excluded. *On* is `MongoEventStore.append` (outbox insert, "
        "commit-slot insert, idempotent publish with acks=all, mark published, outbox delete); *off* is "
        "`KafkaPublisher.publish` of the same envelopes with no write store (no stale-writer refusal, no "
        f"dual-write safety).{busy}\n\n{table(rows)}\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--appends", type=int, default=2000, help="appends per path and concurrency")
    parser.add_argument("--no-write", action="store_true", help="print only; do not append to RESULTS.md")
    args = parser.parse_args()
    rows = asyncio.run(run(args.appends))
    print(table(rows))
    if not args.no_write:
        with RESULTS.open("a") as results:
            results.write(section(rows))


if __name__ == "__main__":
    main()
