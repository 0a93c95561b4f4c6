"""The operator commands on the distributed deployment: dead letters and status over Kafka and MongoDB views.

tests/integration/test_operations.py proves ``snapfix dlq`` and ``snapfix status`` on the
embedded deployment. Here the same history goes through the real write side (MongoEventStore
publishing to a fresh Kafka topic), with a record of undecodable bytes beside it, and the
real projector role (``snapfix projectors``, the faust worker) folds it into fresh MongoDB
(FerretDB) views. The commands then read what that worker left: the parked poison events,
its position per partition, and the lag once more events wait. Export and replay by time on
Kafka are proven in test_kafka_log_tools.py; the whole-topic export here adds the poison
records and Parquet.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from aiokafka import AIOKafkaProducer
from pymongo import AsyncMongoClient

from events.kafka_log import UNDECODABLE, KafkaEventLog, KafkaPublisher, KafkaTopic, delete_topic
from events.upcasting import UPCASTERS
from projectors.catalog import ALL
from projectors.mongo_views import MongoViewStore
from snapfix.bootstrap import MAIN_PROJECTOR
from tests.contract.backends import require_engine
from tests.integration.test_distributed import base_env
from tests.integration.test_kafka_log_tools import _fill
from tests.integration.test_operations import REPORT, cli, event, lines, ops_route
from tests.kafka_scratch import KAFKA, MONGO
from tests.processes import Role

pytestmark = pytest.mark.engines

# Written through the write store; b (a v0 report with no upcaster) and d (an unknown type) are poison.
HISTORY = [
    event("a", 1, "IssueReported", REPORT, 0),
    event("a", 2, "IssueStatusChanged", {"from_status": "reported", "to_status": "acknowledged"}, 10),
    event("b", 1, "IssueReported", {k: v for k, v in REPORT.items() if k != "department"}, 20, schema=0),
    event("a", 3, "IssueStatusChanged", {"from_status": "acknowledged", "to_status": "in_progress"}, 30),
    event("d", 1, "IssueTeleported", {"to": "moon"}, 40),
]
GARBAGE = b"\xff\xfe this is not an envelope"  # published raw, key "z": the log cannot decode it
WORKER_DEADLINE_S = 180.0


@dataclass
class Deployment:
    """A fresh topic, write store and view store that a real projector worker has folded; the CLI's env."""

    topic: KafkaTopic
    env: dict[str, str]
    head: dict[int, int]  # the last offset per partition when the worker stopped
    positions: dict[str, tuple[int, int]]  # aggregate id of each poison record -> (partition, offset)


async def _publish_history(topic: KafkaTopic, write_store: str) -> dict[str, tuple[int, int]]:
    recorded = await _fill(topic, write_store, HISTORY)
    producer = AIOKafkaProducer(bootstrap_servers=topic.bootstrap, acks="all")
    await producer.start()
    try:
        garbage = await producer.send_and_wait(topic.name, GARBAGE, key=b"z")
    finally:
        await producer.stop()
    positions = {e.aggregate_id: (e.position.partition, e.position.offset) for e in recorded if e.position}
    return {"b": positions["b"], "d": positions["d"], "z": (garbage.partition, garbage.offset)}


async def _head(topic: KafkaTopic) -> dict[int, int]:
    log = KafkaEventLog(topic)
    await log.open()
    try:
        return await log.head()
    finally:
        await log.close()


async def _checkpoint(view_store: str) -> dict[int, int]:
    store = MongoViewStore(view_store)
    try:
        return await store.checkpoint(MAIN_PROJECTOR)
    finally:
        await store.close()


async def _drop(topic: KafkaTopic, env: dict[str, str]) -> None:
    await delete_topic(topic)
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(MONGO)
    for url in (env["SNAPFIX_WRITE_STORE"], env["SNAPFIX_VIEW_STORE"]):
        await client.drop_database(url.rsplit("/", 1)[1])
    await client.close()


def kafka_env(tag: str, topic: KafkaTopic, **values: str) -> dict[str, str]:
    """The distributed deployment's settings for one test: its own topic, consumer group and MongoDB databases."""
    return base_env(
        event_log=f"kafka://{KAFKA}",
        kafka_topic=topic.name,
        kafka_partitions=str(topic.partitions),
        projector_group=f"snapfix-test-{tag}",
        write_store=f"{MONGO}/sfw_{tag}",
        view_store=f"{MONGO}/sfv_{tag}",
        **values,
    )


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    """Sync on purpose: the CLI runs its own event loop (asyncio.run), which cannot nest in an async test."""
    for engine in ("kafka", "mongodb"):
        require_engine(engine)
    tag = uuid.uuid4().hex[:10]
    topic = KafkaTopic(bootstrap=KAFKA, name=f"snapfix.test.{tag}", partitions=3)
    env = kafka_env(tag, topic, cache="memory://", process_managers="false")
    try:
        positions = asyncio.run(_publish_history(topic, env["SNAPFIX_WRITE_STORE"]))
        head = asyncio.run(_head(topic))
        assert sum(o + 1 for o in head.values()) == len(HISTORY) + 1
        worker = Role("projectors", env, tmp_path / "worker.log").start()
        try:
            deadline = time.monotonic() + WORKER_DEADLINE_S
            while asyncio.run(_checkpoint(env["SNAPFIX_VIEW_STORE"])) != head:
                assert worker.proc is not None
                assert worker.proc.poll() is None, (tmp_path / "worker.log").read_text()[-4000:]
                assert time.monotonic() < deadline, (tmp_path / "worker.log").read_text()[-4000:]
                time.sleep(0.3)
        finally:
            worker.stop()
        yield Deployment(topic, env, head, positions)
    finally:
        asyncio.run(_drop(topic, env))


def _letters(env: dict[str, str], *args: str) -> list[dict[str, Any]]:
    code, out = cli(env, "dlq", "list", *args)
    assert code == 0, out
    return json.loads(out)  # type: ignore[no-any-return]


async def _summary(view_store: str, issue: str) -> dict[str, Any] | None:
    store = MongoViewStore(view_store)
    try:
        await store.setup([p.collection for p in ALL])
        return await store.get("issue_summary", issue)
    finally:
        await store.close()


class TestDeadLettersOnKafka:
    def test_poison_records_are_parked_listed_retried_after_a_fix_and_skipped(
        self, deployment: Deployment, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The worker parked three poison records with reason, position and event and folded the rest."""
        letters = _letters(deployment.env)
        by_aggregate = {d["envelope"]["aggregate_id"]: d for d in letters}
        assert sorted(by_aggregate) == ["b", "d", "z"]
        for aggregate, (partition, offset) in deployment.positions.items():
            letter = by_aggregate[aggregate]
            assert (letter["projector"], letter["partition"], letter["position"], letter["status"]) == (
                MAIN_PROJECTOR,
                partition,
                offset,
                "open",
            )
            assert letter["id"] == f"{MAIN_PROJECTOR}:{partition}:{offset}"
        assert "no upcaster for IssueReported v0" in by_aggregate["b"]["reason"]
        assert "IssueTeleported" in by_aggregate["d"]["reason"]
        garbage = by_aggregate["z"]["envelope"]
        assert garbage["event_type"] == UNDECODABLE
        assert garbage["payload"]["value"] == GARBAGE.decode(errors="replace")
        assert garbage["payload"]["error"].startswith("JSONDecodeError")  # why it could not be read
        assert by_aggregate["z"]["reason"].startswith("undecodable record: JSONDecodeError")
        assert (asyncio.run(_summary(deployment.env["SNAPFIX_VIEW_STORE"], "a")) or {}).get("status") == "in_progress"
        assert asyncio.run(_summary(deployment.env["SNAPFIX_VIEW_STORE"], "b")) is None

        poisoned = by_aggregate["b"]["id"]
        code, out = cli(deployment.env, "dlq", "retry", poisoned)
        assert (code, json.loads(out)["status"]) == (1, "open")  # not fixed yet: it stays open

        def v0_to_v1(payload: dict[str, Any]) -> dict[str, Any]:
            return {**payload, "department": "roads"}

        monkeypatch.setitem(UPCASTERS, ("IssueReported", 0), v0_to_v1)  # the fix, deployed
        code, out = cli(deployment.env, "dlq", "retry", poisoned)
        assert (code, json.loads(out)["status"]) == (0, "retried")
        assert (asyncio.run(_summary(deployment.env["SNAPFIX_VIEW_STORE"], "b")) or {}).get("department") == "roads"

        code, out = cli(deployment.env, "dlq", "retry", by_aggregate["z"]["id"])
        assert (code, json.loads(out)["status"]) == (1, "open")  # bytes no fix can read: skip them
        for aggregate in ("d", "z"):
            code, out = cli(deployment.env, "dlq", "skip", by_aggregate[aggregate]["id"], "--note", "test garbage")
            assert (code, json.loads(out)["status"], json.loads(out)["note"]) == (0, "skipped", "test garbage")
        assert _letters(deployment.env) == []
        handled = {d["envelope"]["aggregate_id"]: d["status"] for d in _letters(deployment.env, "--status", "all")}
        assert handled == {"b": "retried", "d": "skipped", "z": "skipped"}


async def _publish_more(topic: KafkaTopic, count: int) -> None:
    publisher = KafkaPublisher(topic, timeout_s=10.0)
    await publisher.start()
    try:
        await publisher.publish([event(f"late-{i}", 1, "IssueReported", REPORT, 50) for i in range(count)])
    finally:
        await publisher.stop()


class TestStatusOnKafka:
    def test_status_shows_position_lag_generations_and_last_error(self, deployment: Deployment) -> None:
        """At the head per partition with the dead letters counted; then lag in events and seconds once more wait."""
        code, out = cli(deployment.env, "status", "--json")
        assert code == 0, out
        (main,) = json.loads(out)
        head = {str(p): o for p, o in sorted(deployment.head.items())}
        assert (main["projector"], main["position"], main["head"], main["lag_events"], main["lag_seconds"]) == (
            MAIN_PROJECTOR,
            head,
            head,
            0,
            0.0,
        )
        assert main["generations"]["issue_summary"] == 0
        assert main["dead_letters_open"] == 3
        latest = max(_letters(deployment.env), key=lambda d: (d["position"], d["id"]))  # the store's order
        assert main["last_error"] == latest["reason"]

        asyncio.run(_publish_more(deployment.topic, 4))  # the worker is stopped: these wait
        code, out = cli(deployment.env, "status", "--json")
        (waiting,) = json.loads(out)
        assert waiting["position"] == head
        assert waiting["lag_events"] == 4
        assert waiting["lag_seconds"] > 0  # the oldest waiting event's age (occurred_at is in the past)
        text = cli(deployment.env, "status")[1]
        assert f"{MAIN_PROJECTOR}: position" in text
        assert "lag 4 events" in text

        (served,) = asyncio.run(ops_route(deployment.env, "query"))["projectors"]
        assert {k: v for k, v in served.items() if k != "lag_seconds"} == {
            k: v for k, v in waiting.items() if k != "lag_seconds"
        }
        assert served["lag_seconds"] >= waiting["lag_seconds"]


class TestExportOnKafka:
    def test_the_whole_topic_comes_out_with_its_poison_marked_unreadable(
        self, deployment: Deployment, tmp_path: Path
    ) -> None:
        """JSON Lines and Parquet from every partition: each record once, the undecodable ones marked.

        An export reads the log alone: it needs no write store (MongoDB) to be reachable.
        """
        code, out = cli(deployment.env, "export", "--no-progress")
        assert code == 0
        records = lines(out)
        assert len(records) == len(HISTORY) + 1
        assert {(r["partition"], r["offset"]) for r in records} == {
            (p, o) for p, last in deployment.head.items() for o in range(last + 1)
        }
        unreadable = {r["aggregate_id"] for r in records if "unreadable" in r}
        assert unreadable == {"b", "d", "z"}
        target = tmp_path / "events.parquet"
        log_only = {**deployment.env, "SNAPFIX_WRITE_STORE": "mongodb://127.0.0.1:9/nowhere"}  # reads Kafka alone
        assert cli(log_only, "export", "-o", str(target), "--no-progress")[0] == 0
        table = pq.read_table(target)
        assert table.num_rows == len(HISTORY) + 1
        assert sorted(table.column("aggregate_id").to_pylist()) == sorted(r["aggregate_id"] for r in records)
