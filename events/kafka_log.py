"""KafkaEventLog: the distributed log, one Kafka topic keyed by aggregate id (the EventLog port).

Kafka cannot refuse a stale writer (KAFKA-2260), so this module only *reads* the log
and offers ``KafkaPublisher`` to the write store (``events.mongo_store``), which decides
what may be published; see docs/adr/0001-write-side-consistency-on-kafka.md.

Records on the topic:

- key: the aggregate id (UTF-8), so one aggregate stays in one partition and keeps its order.
- value: ``events.codec.encode(envelope)``, the JSON envelope; it is the source of truth.
- headers (UTF-8 strings, for routing and tooling that should not parse the value):
  ``event_type``, ``schema_version``, ``aggregate_type``, ``aggregate_id``,
  ``aggregate_version`` and ``correlation_id`` (left out when the event has none).
- timestamp: the envelope's ``occurred_at`` (CreateTime), not the moment of publishing, so
  ``position_at`` (Kafka's ``offsets_for_times``) finds events by the same time the SQLite
  log and ``snapfix export --since/--until`` use, even when the relay publishes late.

Positions are ``Position(partition, kafka offset)``; a checkpoint maps a partition to the
last offset consumed, and a partition missing from it is read from its beginning. After a
crash of a writer the same (aggregate id, version, event id) can appear twice; consumers
apply each (aggregate id, version) once.

A record whose value cannot be decoded does not stop ``read``: it comes back as an envelope
of type ``UNDECODABLE`` (an event type no code registers) carrying the error and the raw
value, so the projector dead-letters it with its position and goes on.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from urllib.parse import urlsplit

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError, for_code

from events.codec import decode_envelope, encode
from events.envelope import UNDECODABLE, Envelope, Position
from events.ports import Checkpoint, EventLog, EventLogError

log = structlog.get_logger(__name__)

RAW_PREVIEW_CHARS = 4096


@dataclass(frozen=True, slots=True)
class KafkaTopic:
    """Where the log lives and how the project creates it (no reliance on broker auto-create)."""

    bootstrap: str
    name: str = "snapfix.events"
    partitions: int = 6
    replication_factor: int = 1
    retention_ms: int = -1  # keep forever: the topic IS the log

    @classmethod
    def from_url(cls, url: str, **settings: Any) -> KafkaTopic:
        """``kafka://host:port[,host:port]`` plus the topic settings."""
        parts = urlsplit(url)
        if parts.scheme != "kafka" or not parts.netloc:
            raise ValueError(f"not a Kafka URL: {url!r}; expected kafka://host:port")
        return cls(bootstrap=parts.netloc, **settings)


async def ensure_topic(topic: KafkaTopic) -> list[int]:
    """Create the topic with its settings if it is missing; returns its partition ids.

    An existing topic is left as it is. Partitions are never added here: that would move
    aggregates to other partitions and break their order for consumers.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=topic.bootstrap)
    try:
        await admin.start()
        new = NewTopic(
            topic.name,
            topic.partitions,
            topic.replication_factor,
            topic_configs={"retention.ms": str(topic.retention_ms)},
        )
        response = await admin.create_topics([new])
        for name, code, *message in response.topic_errors:
            error = for_code(code)
            if code and error is not TopicAlreadyExistsError:
                raise EventLogError(f"cannot create topic {name}: {error.__name__} {message}")
        return await _partitions(admin, topic.name)
    except KafkaError as e:
        raise EventLogError(f"cannot reach Kafka at {topic.bootstrap}: {e}") from e
    finally:
        await admin.close()


async def _partitions(admin: AIOKafkaAdminClient, name: str, timeout_s: float = 10.0) -> list[int]:
    """The topic's partition ids, once the brokers' metadata names them (a new topic takes a moment)."""
    deadline = time.monotonic() + timeout_s
    while True:
        described = await admin.describe_topics([name])
        found = sorted(p["partition"] for t in described if t["topic"] == name for p in t["partitions"])
        if found:
            return found
        if time.monotonic() > deadline:
            raise EventLogError(f"topic {name} has no partitions in the brokers' metadata")
        await asyncio.sleep(0.05)


async def delete_topic(topic: KafkaTopic) -> None:
    """Remove the topic (tests and operators' tools only)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=topic.bootstrap)
    try:
        await admin.start()
        await admin.delete_topics([topic.name])
    except KafkaError as e:
        raise EventLogError(f"cannot delete topic {topic.name}: {e}") from e
    finally:
        await admin.close()


def record_headers(envelope: Envelope) -> list[tuple[str, bytes]]:
    """The headers every record carries (see the module docstring)."""
    headers = [
        ("event_type", envelope.event_type),
        ("schema_version", str(envelope.schema_version)),
        ("aggregate_type", envelope.aggregate_type),
        ("aggregate_id", envelope.aggregate_id),
        ("aggregate_version", str(envelope.aggregate_version)),
    ]
    if envelope.correlation_id is not None:
        headers.append(("correlation_id", envelope.correlation_id))
    return [(name, value.encode()) for name, value in headers]


class Record(Protocol):
    """What aiokafka's ConsumerRecord and faust's Message both carry."""

    key: bytes | None
    value: bytes | None
    partition: int
    offset: int
    headers: Any


def record_to_envelope(record: Record) -> Envelope:
    """The envelope in a record (aiokafka's or faust's), at its position; never raises (see UNDECODABLE)."""
    position = Position(record.partition, record.offset)
    try:
        return decode_envelope(record.value or b"", position)
    except (ValueError, KeyError, TypeError) as error:
        return _undecodable(record, position, error)


def _undecodable(record: Record, position: Position, error: Exception) -> Envelope:
    pairs = record.headers.items() if isinstance(record.headers, dict) else (record.headers or ())
    headers = {name: bytes(value).decode(errors="replace") for name, value in pairs}
    version = headers.get("aggregate_version", "0")
    return Envelope(
        event_type=UNDECODABLE,
        schema_version=0,
        aggregate_type=headers.get("aggregate_type", ""),
        aggregate_id=(record.key or b"").decode(errors="replace"),
        aggregate_version=int(version) if version.isdigit() else 0,
        payload={
            "error": f"{type(error).__name__}: {error}",
            "headers": headers,
            "value": (record.value or b"").decode(errors="replace")[:RAW_PREVIEW_CHARS],
        },
        position=position,
    )


class KafkaPublisher:
    """Appends envelopes to the topic with an idempotent producer (``acks=all``), in call order.

    The producer's idempotence removes duplicates from its own retries; duplicates after a
    writer's crash are handled by consumers (each (aggregate id, version) is applied once).
    """

    def __init__(self, topic: KafkaTopic, *, timeout_s: float = 5.0) -> None:
        self._topic = topic
        self._timeout_s = timeout_s
        self._producer = AIOKafkaProducer(
            bootstrap_servers=topic.bootstrap,
            enable_idempotence=True,
            acks="all",
            request_timeout_ms=max(1000, int(timeout_s * 1000)),
        )

    async def start(self) -> None:
        try:
            await self._producer.start()
        except KafkaError as e:
            raise EventLogError(f"cannot start the Kafka producer: {e}") from e

    async def stop(self) -> None:
        await self._producer.stop()

    async def publish(self, envelopes: Sequence[Envelope]) -> list[Position]:
        """Send in order and wait for the broker's acks; EventLogError if not acked within the bound."""
        if not envelopes:
            return []
        deadline = time.monotonic() + self._timeout_s
        try:
            async with asyncio.timeout(self._timeout_s):
                futures = [await self._send(env) for env in envelopes]
            _, pending = await asyncio.wait(futures, timeout=max(deadline - time.monotonic(), 0.001))
            if pending:  # left to finish or fail on their own; the write store's relay republishes
                raise TimeoutError(f"not acknowledged within {self._timeout_s}s")
            metadata = [future.result() for future in futures]
        except (KafkaError, TimeoutError) as e:
            raise EventLogError(f"publishing to {self._topic.name} failed: {e!r}") from e
        return [Position(m.partition, m.offset) for m in metadata]

    async def _send(self, envelope: Envelope) -> asyncio.Future[Any]:
        return await self._producer.send(
            self._topic.name,
            value=encode(envelope),
            key=envelope.aggregate_id.encode(),
            headers=record_headers(envelope),
            timestamp_ms=int(envelope.occurred_at.timestamp() * 1000),
        )


class KafkaEventLog(EventLog):
    """Reads every partition of the topic by manual assignment and seek (no consumer group).

    One reader at a time: ``read`` and ``wait`` share one consumer and its buffer of records
    fetched ahead, so a ``wait`` that saw records hands them to the next ``read``.
    """

    def __init__(
        self,
        topic: KafkaTopic,
        *,
        fetch_timeout_s: float = 10.0,
        on_close: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._topic = topic
        self._fetch_timeout_s = fetch_timeout_s
        self._on_close = on_close
        self._consumer: AIOKafkaConsumer | None = None
        self._partitions: list[TopicPartition] = []  # fixed at open(): a restart sees added partitions
        self._cursor: dict[int, int] = {}  # the next offset read() hands out, per partition
        self._buffer: dict[int, deque[ConsumerRecord[bytes, bytes]]] = {}
        self._lock = asyncio.Lock()

    async def open(self) -> None:
        """Create the topic if it is missing; the consumer starts on the first read."""
        found = await ensure_topic(self._topic)
        self._partitions = [TopicPartition(self._topic.name, p) for p in found]

    async def close(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
        if self._on_close is not None:
            await self._on_close()

    def close_also(self, closer: Callable[[], Awaitable[None]]) -> None:
        """Release another resource with this log (the write store the bootstrap opened beside it)."""
        self._on_close = closer

    # --- EventLog -------------------------------------------------------------------

    async def read(self, after: Checkpoint, limit: int) -> list[Envelope]:
        async with self._lock:
            try:
                await self._position(after)
                if self._buffered() < limit:
                    await self._fetch(0, limit - self._buffered())
                if not self._buffered() and await self._behind():
                    await self._fetch_some()
            except KafkaError as e:
                raise EventLogError(f"reading {self._topic.name} failed: {e!r}") from e
            return [record_to_envelope(r) for r in self._take(limit)]

    async def head(self) -> dict[int, int]:
        try:
            consumer = await self._started()
            ends = await consumer.end_offsets(self._partitions)
        except KafkaError as e:
            raise EventLogError(f"reading the end of {self._topic.name} failed: {e!r}") from e
        return {tp.partition: end - 1 for tp, end in ends.items() if end > 0}

    async def position_at(self, moment: datetime) -> dict[int, int]:
        """Kafka's own time index (``offsets_for_times``), so a time seek costs one request per broker.

        A partition's first record at or after ``moment`` at offset o gives the checkpoint
        o - 1; o == 0 is left out (a missing partition is read from its beginning). A partition
        with no record that late maps to its last offset; an empty one is left out, as in ``head``.
        Record timestamps are millisecond ``occurred_at`` values, so ``moment`` is rounded down to
        the millisecond: the seek may start a little early, never late; export filters by the
        exact ``occurred_at`` after it.
        """
        millis = int(moment.timestamp() * 1000)
        try:
            consumer = await self._started()
            found = await consumer.offsets_for_times({tp: millis for tp in self._partitions})
            ends = await consumer.end_offsets(self._partitions)
        except KafkaError as e:
            raise EventLogError(f"seeking {self._topic.name} by time failed: {e!r}") from e
        checkpoint: dict[int, int] = {}
        for tp in self._partitions:
            hit = found.get(tp)
            if hit is not None:
                if hit.offset > 0:
                    checkpoint[tp.partition] = hit.offset - 1
            elif ends.get(tp, 0) > 0:
                checkpoint[tp.partition] = ends[tp] - 1
        return checkpoint

    async def wait(self, after: Checkpoint, timeout: float) -> None:
        async with self._lock:
            try:
                await self._position(after)
                if not self._buffered():  # the broker's long poll wakes us when a record lands
                    await self._fetch(int(timeout * 1000), 1000)
            except KafkaError as e:
                raise EventLogError(f"waiting on {self._topic.name} failed: {e!r}") from e

    # --- the consumer and its buffer --------------------------------------------------

    async def _started(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self._topic.bootstrap,
                group_id=None,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
            )
            if not self._partitions:
                raise EventLogError("KafkaEventLog.open() was not called")
            await consumer.start()
            consumer.assign(self._partitions)
            self._buffer = {tp.partition: deque() for tp in self._partitions}
            self._cursor = {}
            self._consumer = consumer
        return self._consumer

    async def _position(self, after: Checkpoint) -> None:
        """Make the next record of each partition the one after the checkpoint (seek only on change)."""
        consumer = await self._started()
        for tp in self._partitions:
            start = after.get(tp.partition, -1) + 1
            if self._cursor.get(tp.partition) != start:
                self._buffer[tp.partition].clear()
                consumer.seek(tp, start)
                self._cursor[tp.partition] = start

    async def _fetch(self, timeout_ms: int, max_records: int) -> None:
        assert self._consumer is not None
        got = await self._consumer.getmany(*self._partitions, timeout_ms=timeout_ms, max_records=max_records)
        for tp, records in got.items():
            self._buffer[tp.partition].extend(records)

    async def _fetch_some(self) -> None:
        """The log has records we have not fetched yet: wait for them, within a bound."""
        deadline = time.monotonic() + self._fetch_timeout_s
        while not self._buffered():
            left = deadline - time.monotonic()
            if left <= 0:
                raise EventLogError(f"records of {self._topic.name} not fetched within {self._fetch_timeout_s}s")
            await self._fetch(int(left * 1000), 1000)

    async def _behind(self) -> bool:
        assert self._consumer is not None
        ends = await self._consumer.end_offsets(self._partitions)
        return any(end > self._cursor[tp.partition] for tp, end in ends.items())

    def _buffered(self) -> int:
        return sum(len(b) for b in self._buffer.values())

    def _take(self, limit: int) -> Iterable[ConsumerRecord[bytes, bytes]]:
        """Up to ``limit`` buffered records, shared fairly between partitions, each in order."""
        taken: list[ConsumerRecord[bytes, bytes]] = []
        while len(taken) < limit and self._buffered():
            busy = [b for b in self._buffer.values() if b]
            share = max(1, (limit - len(taken)) // len(busy))
            for buffer in busy:
                for _ in range(min(share, len(buffer), limit - len(taken))):
                    record = buffer.popleft()
                    self._cursor[record.partition] = record.offset + 1
                    taken.append(record)
        return taken
