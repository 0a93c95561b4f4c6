"""Raw ceilings on the engines: no SnapFix code, the same client libraries and settings the adapters use."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

from bench.loadgen import record
from bench.procs import load_core, pinned

DOC_TEMPLATE = {
    "title": "Pothole on Main Street",
    "description": "Deep enough to lose a wheel. " * 8,
    "category": "pothole",
    "status": "reported",
    "department": "roads",
    "location": {"lat": 51.5074, "lon": -0.1278},
    "address": "1 Main Street",
    "upvotes": 3,
    "timeline": [{"at": "2026-01-01T00:00:00Z", "what": "reported"}] * 3,
}


def fake_doc(i: int) -> dict[str, Any]:
    return {"id": f"bench-{i:08d}", "version": 1, "reporter_id": f"user-{i % 997}", **DOC_TEMPLATE}


def figure(value: float, unit: str, how: str, **extra: Any) -> dict[str, Any]:
    return {"value": value, "unit": unit, "how": how, **extra}


# --- redis -------------------------------------------------------------------------------------------


def redis_benchmark(port: int, requests: int) -> dict[str, Any]:
    """``redis-benchmark`` GET and SET, 50 clients, no pipelining, on the load core."""
    argv = pinned(
        ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-t", "get,set", "-n", str(requests), "-q",
         "-d", "1000", "-c", "50"],
        load_core(),
    )  # fmt: skip
    record(argv)
    out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    rates = {m.group(1).lower(): float(m.group(2)) for m in re.finditer(r"(GET|SET): ([\d.]+) requests", out)}
    return figure(rates.get("get", 0.0), "ops/s", " ".join(argv), set_ops_s=rates.get("set", 0.0))


async def redis_py_get_loop(url: str, seconds: float, concurrency: int) -> dict[str, Any]:
    """Raw redis-py asyncio GETs of a 1 kB value by ``concurrency`` tasks sharing one pool."""
    from redis.asyncio import Redis

    r = Redis.from_url(url)
    key = f"bench:{uuid.uuid4().hex}"
    await r.set(key, b"x" * 1000)
    count = await _loop(lambda: r.get(key), seconds, concurrency)
    await r.delete(key)
    await r.aclose()
    return figure(count / seconds, "ops/s", f"redis.asyncio GET loop, {concurrency} tasks, {seconds}s")


async def cache_adapter_get_loop(url: str, seconds: float, concurrency: int) -> dict[str, Any]:
    """The same loop through SnapFix's RedisCache adapter (a versioned hash read)."""
    from snapfix.redis_cache import RedisCache

    cache = RedisCache(url)
    key = f"bench:{uuid.uuid4().hex}"
    await cache.put_versioned(key, 1, b"x" * 1000, 300)
    count = await _loop(lambda: cache.get(key), seconds, concurrency)
    await cache.delete(key)
    await cache.close()
    return figure(count / seconds, "ops/s", f"snapfix.redis_cache.RedisCache.get loop, {concurrency} tasks")


async def memory_cache_get_loop(seconds: float, concurrency: int) -> dict[str, Any]:
    from snapfix.cache import MemoryCache

    cache = MemoryCache()
    await cache.put_versioned("k", 1, b"x" * 1000, 300)
    count = await _loop(lambda: cache.get("k"), seconds, concurrency)
    return figure(count / seconds, "ops/s", f"snapfix.cache.MemoryCache.get loop, {concurrency} tasks")


async def _loop(op: Any, seconds: float, concurrency: int) -> int:
    deadline = time.perf_counter() + seconds
    counts = [0] * concurrency

    async def worker(i: int) -> None:
        while time.perf_counter() < deadline:
            await op()
            counts[i] += 1

    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return sum(counts)


# --- kafka -------------------------------------------------------------------------------------------


async def kafka_ceilings(bootstrap: str, messages: int, one_at_a_time: int) -> dict[str, Any]:
    """Raw aiokafka: idempotent acks=all producer (pipelined, then one at a time) and a consumer drain."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    topic = f"bench-{uuid.uuid4().hex[:12]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    value = orjson.dumps(fake_doc(0))
    try:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5)
        await producer.start()
        try:
            t0 = time.perf_counter()
            futures = [await producer.send(topic, value, key=f"agg-{i % 1000}".encode()) for i in range(messages)]
            await asyncio.gather(*futures)
            pipelined = messages / (time.perf_counter() - t0)
            t0 = time.perf_counter()
            for i in range(one_at_a_time):
                await producer.send_and_wait(topic, value, key=f"agg-{i % 1000}".encode())
            sequential = one_at_a_time / (time.perf_counter() - t0)
        finally:
            await producer.stop()
        total = messages + one_at_a_time
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, max_poll_records=2000)
        await consumer.start()
        try:
            tp = TopicPartition(topic, 0)
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            seen = 0
            t0 = time.perf_counter()
            while seen < total:
                batch = await consumer.getmany(tp, timeout_ms=1000, max_records=2000)
                for records in batch.values():
                    seen += len(records)
                    for rec in records:
                        orjson.loads(rec.value)
            drain = seen / (time.perf_counter() - t0)
        finally:
            await consumer.stop()
    finally:
        await admin.delete_topics([topic])
        await admin.close()
    how = f"aiokafka 1-partition topic {topic} (deleted after), {len(value)} B values, acks=all, idempotence"
    return {
        "kafka_produce_pipelined": figure(pipelined, "msg/s", how + f", {messages} sends then gather"),
        "kafka_produce_one_at_a_time": figure(sequential, "msg/s", how + f", {one_at_a_time} send_and_wait"),
        "kafka_consume_drain": figure(drain, "msg/s", f"aiokafka getmany(2000) from the beginning, {total} msgs"),
        "event_bytes": len(value),
    }


# --- view stores -------------------------------------------------------------------------------------


def sqlite_bulk_upsert(path: Path, docs: int, batch: int = 500) -> dict[str, Any]:
    """Raw sqlite3 upserts of JSON documents, ``batch`` per transaction, with the view store's pragmas."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE IF NOT EXISTS v (id TEXT PRIMARY KEY, doc BLOB NOT NULL, status TEXT, updated TEXT)")
    conn.execute("CREATE INDEX IF NOT EXISTS ix_v_status ON v (status, updated)")
    rows = [(d["id"], orjson.dumps(d), d["status"], "2026-01-01") for d in map(fake_doc, range(docs))]
    t0 = time.perf_counter()
    for i in range(0, docs, batch):
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO v (id, doc, status, updated) VALUES (?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
            "doc = excluded.doc, status = excluded.status, updated = excluded.updated",
            rows[i : i + batch],
        )
        conn.execute("COMMIT")
    rate = docs / (time.perf_counter() - t0)
    conn.close()
    return figure(rate, "docs/s", f"sqlite3 executemany upsert, {batch}/transaction, WAL, synchronous=NORMAL")


async def mongo_bulk_upsert(url: str, docs: int, batch: int = 500) -> dict[str, Any]:
    """Raw AsyncMongoClient ``bulk_write`` of ReplaceOne(upsert) in batches, into a bench database dropped after."""
    from pymongo import AsyncMongoClient, ReplaceOne

    client: AsyncMongoClient = AsyncMongoClient(url, serverSelectionTimeoutMS=3000)
    db_name = f"bench_{uuid.uuid4().hex[:8]}"
    col = client[db_name]["v"]
    try:
        await col.create_index([("status", 1), ("updated", -1)])
        payload = [fake_doc(i) for i in range(docs)]
        t0 = time.perf_counter()
        for i in range(0, docs, batch):
            ops = [ReplaceOne({"_id": d["id"]}, {"_id": d["id"], **d}, upsert=True) for d in payload[i : i + batch]]
            await col.bulk_write(ops, ordered=True)
        rate = docs / (time.perf_counter() - t0)
    finally:
        await client.drop_database(db_name)
        await client.close()
    return figure(rate, "docs/s", f"AsyncMongoClient bulk_write ReplaceOne(upsert), {batch}/batch, db {db_name}")


def sqlite_raw_read(path: Path, batch: int = 500) -> dict[str, Any]:
    """Raw read of a SQLite event log, in position order and batches, decoding each payload (the 'consume')."""
    conn = sqlite3.connect(path)
    t0 = time.perf_counter()
    last, seen = 0, 0
    while True:
        rows = conn.execute(
            "SELECT position, payload FROM events WHERE position > ? ORDER BY position LIMIT ?", (last, batch)
        ).fetchall()
        if not rows:
            break
        for row in rows:
            orjson.loads(row[1])
        last = rows[-1][0]
        seen += len(rows)
    rate = seen / (time.perf_counter() - t0)
    conn.close()
    return figure(rate, "events/s", f"sqlite3 SELECT ... WHERE position > ? LIMIT {batch}, orjson.loads each")
