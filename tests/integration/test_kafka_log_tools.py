"""The Kafka event log for analysts and outside tools: time seeks, export and replay, and kcat.

Issue 7 asks that ``snapfix export`` / ``replay`` work by time on the distributed log
(Kafka's ``offsets_for_times``) and that the topic be readable by standard Kafka tools.
Each test writes a known history through the real write side (MongoEventStore, which
publishes to a fresh topic) and reads it back the way an analyst or a tool would.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from events.codec import decode_envelope
from events.envelope import Envelope
from events.kafka_log import KafkaEventLog, KafkaPublisher, KafkaTopic, delete_topic, ensure_topic
from events.mongo_store import MongoEventStore
from tests.conftest import in_ci
from tests.contract.backends import require_engine
from tests.integration.test_operations import REPORT, T0, cli, event, lines
from tests.kafka_scratch import KAFKA, MONGO

pytestmark = pytest.mark.engines

# Three issues over three partitions, minutes apart; the keys spread them over the partitions.
HISTORY = [
    event("a", 1, "IssueReported", REPORT, 0),
    event("b", 1, "IssueReported", REPORT, 5),
    event("a", 2, "IssueStatusChanged", {"from_status": "reported", "to_status": "acknowledged"}, 10),
    event("c", 1, "IssueReported", REPORT, 20),
    event("b", 2, "IssueStatusChanged", {"from_status": "reported", "to_status": "acknowledged"}, 25),
    event("a", 3, "IssueStatusChanged", {"from_status": "acknowledged", "to_status": "in_progress"}, 30),
    event("c", 2, "IssueStatusChanged", {"from_status": "reported", "to_status": "acknowledged"}, 40),
]


@dataclass
class KafkaHistory:
    """A fresh topic and write-store database holding HISTORY; the CLI environment that points at them."""

    topic: KafkaTopic
    env: dict[str, str]
    recorded: list[Envelope]  # HISTORY with the positions Kafka gave it


async def _fill(topic: KafkaTopic, write_store: str, history: list[Envelope] = HISTORY) -> list[Envelope]:
    """Append ``history`` through the real write store (so Kafka gives it positions); returns it as recorded."""
    await ensure_topic(topic)
    store = MongoEventStore(write_store, KafkaPublisher(topic, timeout_s=5.0))
    await store.open()
    recorded: list[Envelope] = []
    try:
        for e in history:
            recorded += await store.append(e.aggregate_id, e.aggregate_version - 1, [e])
    finally:
        await store.close()
    return recorded


async def _remove(topic: KafkaTopic, database: str) -> None:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(MONGO)
    await client.drop_database(database)
    await client.close()
    await delete_topic(topic)


@pytest.fixture
def kafka_history() -> Iterator[KafkaHistory]:
    """Sync on purpose: the CLI runs its own event loop (asyncio.run), which cannot nest in an async test."""
    require_engine("kafka")
    require_engine("mongodb")
    suffix = uuid.uuid4().hex[:12]
    topic = KafkaTopic(bootstrap=KAFKA, name=f"snapfix.test.{suffix}", partitions=3)
    database = f"snapfix_test_{suffix}"
    try:
        recorded = asyncio.run(_fill(topic, f"{MONGO}/{database}"))
        assert all(e.position is not None for e in recorded)
        assert len({e.position.partition for e in recorded if e.position}) > 1, "the history should span partitions"
        env = {
            "SNAPFIX_EVENT_LOG": f"kafka://{KAFKA}",
            "SNAPFIX_KAFKA_TOPIC": topic.name,
            "SNAPFIX_WRITE_STORE": f"{MONGO}/{database}",
            "SNAPFIX_VIEW_STORE": f"{MONGO}/{database}_views",
            "SNAPFIX_ENVIRONMENT": "test",
        }
        yield KafkaHistory(topic, env, recorded)
    finally:
        asyncio.run(_remove(topic, database))


def _key(e: Envelope | dict[str, Any]) -> tuple[str, int]:
    if isinstance(e, Envelope):
        return e.aggregate_id, e.aggregate_version
    return e["aggregate_id"], e["aggregate_version"]


class TestTimeOnKafka:
    def test_position_at_is_the_checkpoint_before_the_first_event_that_late(self, kafka_history: KafkaHistory) -> None:
        """Per partition: o - 1 for the first record at or after the moment, left out at o == 0, head if none."""

        async def seek(minutes: int) -> dict[int, int]:
            log = KafkaEventLog(kafka_history.topic)
            await log.open()
            try:
                return await log.position_at(T0 + timedelta(minutes=minutes))
            finally:
                await log.close()

        def expected(minutes: int) -> dict[int, int]:
            moment = T0 + timedelta(minutes=minutes)
            out: dict[int, int] = {}
            for partition in {e.position.partition for e in kafka_history.recorded if e.position}:
                mine = [e for e in kafka_history.recorded if e.position and e.position.partition == partition]
                late = [e.position.offset for e in mine if e.occurred_at >= moment and e.position]
                if not late:
                    out[partition] = max(e.position.offset for e in mine if e.position)
                elif min(late) > 0:
                    out[partition] = min(late) - 1
            return out

        for minutes in (-60, 0, 10, 11, 30, 40, 41, 600):
            assert asyncio.run(seek(minutes)) == expected(minutes), f"at T0+{minutes}min"
        assert asyncio.run(seek(-60)) == {}

    def test_export_between_two_times_is_exactly_the_events_between_them(self, kafka_history: KafkaHistory) -> None:
        """--since/--until on Kafka select exactly the events recorded in that closed interval."""
        since, until = T0 + timedelta(minutes=10), T0 + timedelta(minutes=30)
        code, out = cli(kafka_history.env, "export", "--since", since.isoformat(), "--until", until.isoformat())
        assert code == 0
        wanted = {_key(e) for e in kafka_history.recorded if since <= e.occurred_at <= until}
        got = [_key(r) for r in lines(out)]
        assert sorted(got) == sorted(wanted)
        only_since = lines(cli(kafka_history.env, "export", "--since", since.isoformat(), "--no-progress")[1])
        assert sorted(map(_key, only_since)) == sorted(
            _key(e) for e in kafka_history.recorded if e.occurred_at >= since
        )

    def test_replay_folds_an_issue_as_it_was_at_a_time(self, kafka_history: KafkaHistory) -> None:
        """Time travel on the distributed deployment: the state between two status changes."""
        code, out = cli(
            kafka_history.env, "replay", "--aggregate", "a", "--until", (T0 + timedelta(minutes=15)).isoformat()
        )
        assert code == 0
        state = json.loads(out)
        assert (state["status"], state["version"]) == ("acknowledged", 2)
        assert json.loads(cli(kafka_history.env, "replay", "--aggregate", "a")[1])["status"] == "in_progress"
        assert (
            cli(kafka_history.env, "replay", "--aggregate", "c", "--until", (T0 + timedelta(minutes=19)).isoformat())[0]
            == 1
        )


def _kcat() -> str:
    """kcat's path; in CI a missing kcat fails (ops/bootstrap.sh test installs it), elsewhere it skips."""
    found = shutil.which("kcat") or shutil.which("kafkacat")
    if found is None:
        message = "kcat is not installed: run ops/bootstrap.sh test (it installs Debian's kcat)"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    return found


def test_kcat_reads_the_topic_as_json_envelopes_with_the_documented_headers(kafka_history: KafkaHistory) -> None:
    """A standard Kafka tool, knowing nothing of SnapFix, reads every record: key, JSON value, headers."""
    run = subprocess.run(
        [_kcat(), "-b", KAFKA, "-C", "-t", kafka_history.topic.name, "-e", "-q", "-J"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    messages = [json.loads(line) for line in run.stdout.splitlines() if line.strip()]
    assert len(messages) == len(HISTORY)
    by_key = {_key(e): e for e in kafka_history.recorded}
    for message in messages:
        envelope = decode_envelope(message["payload"].encode(), None)  # the value is the JSON envelope
        flat = message["headers"]  # kcat -J: [name, value, name, value, ...]
        headers = dict(zip(flat[::2], flat[1::2], strict=True))
        written = by_key[_key(envelope)]
        assert message["key"] == written.aggregate_id
        assert (message["partition"], message["offset"]) == (written.position.partition, written.position.offset)  # type: ignore[union-attr]
        assert envelope.event_id == written.event_id
        assert headers == {
            "event_type": written.event_type,
            "schema_version": str(written.schema_version),
            "aggregate_type": written.aggregate_type,
            "aggregate_id": written.aggregate_id,
            "aggregate_version": str(written.aggregate_version),
        }  # no correlation_id: HISTORY's events carry none
        assert message["ts"] == int(written.occurred_at.timestamp() * 1000), "the record time is occurred_at"
