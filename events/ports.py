"""The event-log ports: what the write side and the projectors need from a log.

Adapters (``SqliteEventLog``, ``KafkaEventLog``, ...) implement them and pass the
one contract suite in ``tests/contract/test_event_log.py``.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from events.envelope import Envelope, Position

Checkpoint = Mapping[int, int]  # partition -> offset of the last event consumed


class EventLogError(Exception):
    """A log adapter failed; the driver's error is chained as the cause."""


class ConcurrencyConflict(Exception):
    """The aggregate moved on since the writer read it: the append wrote nothing."""

    def __init__(self, aggregate_id: str, expected: int, actual: int | None = None) -> None:
        super().__init__(f"aggregate {aggregate_id} is not at version {expected} (now {actual})")
        self.aggregate_id = aggregate_id
        self.expected = expected
        self.actual = actual


@dataclass(frozen=True, slots=True)
class Claim:
    """A unique key reserved atomically with an append (an email, an idempotency key)."""

    key: str
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ClaimRecord:
    """A claim as stored, with the append that made it."""

    key: str
    aggregate_id: str
    version: int
    position: Position
    data: Mapping[str, Any]


class ClaimTaken(Exception):
    """A claim's key is already held: the append wrote nothing."""

    def __init__(self, record: ClaimRecord) -> None:
        super().__init__(f"claim already taken: {record.key}")
        self.record = record


@dataclass(frozen=True, slots=True)
class Snapshot:
    """An aggregate's decided state at one version, kept beside the log so a load reads only what came after.

    Never trusted over the log: it names the event it was folded up to (``last_event_id``), and a
    loader that finds another event at that version, or a ``fingerprint`` of other folds or event
    schemas than its own, discards it and folds from the log.
    """

    aggregate_id: str
    aggregate_type: str
    version: int
    last_event_id: str
    position: Position | None
    fingerprint: str
    state: Mapping[str, Any]


class EventStore(abc.ABC):
    """The write side's view of the log: one aggregate's stream, appended with optimistic concurrency."""

    @abc.abstractmethod
    async def load(self, aggregate_id: str, after_version: int = 0) -> list[Envelope]:
        """The aggregate's events after ``after_version``, in version order (empty if there are none).

        ``after_version`` must be 0 or the last version of an append (what a snapshot or a cached
        state was folded up to), so a store that keeps appends as units can start there.
        """

    @abc.abstractmethod
    async def version_of(self, aggregate_id: str) -> int:
        """The version of the aggregate's newest event, 0 when it has none: one keyed lookup, never a scan."""

    @abc.abstractmethod
    async def load_snapshot(self, aggregate_id: str) -> Snapshot | None:
        """The snapshot kept for the aggregate, if the log holds the event it names at its version."""

    @abc.abstractmethod
    async def save_snapshot(self, snapshot: Snapshot) -> None:
        """Keep a snapshot, replacing an older one of the same aggregate (a newer one already kept stays)."""

    @abc.abstractmethod
    async def append(
        self,
        aggregate_id: str,
        expected_version: int,
        events: Sequence[Envelope],
        claims: Sequence[Claim] = (),
    ) -> list[Envelope]:
        """Durably record events at versions expected+1.. with their claims, all or nothing.

        Raises ConcurrencyConflict if the stream is not at ``expected_version`` and
        ClaimTaken if a claim's key is held; in both cases nothing is written.
        """

    @abc.abstractmethod
    async def get_claim(self, key: str) -> ClaimRecord | None:
        """The claim held under ``key``, if any."""

    async def close(self) -> None:  # noqa: B027 - optional for adapters without resources
        """Release connections."""


class EventLog(abc.ABC):
    """The read side's view of the log: every event in log order, from a checkpoint."""

    @abc.abstractmethod
    async def read(self, after: Checkpoint, limit: int) -> list[Envelope]:
        """Up to ``limit`` events after the checkpoint, each partition in order, positions set."""

    @abc.abstractmethod
    async def head(self) -> dict[int, int]:
        """The offset of the newest event per partition (empty when the log is empty)."""

    @abc.abstractmethod
    async def wait(self, after: Checkpoint, timeout: float) -> None:
        """Return when there may be events after ``after``, or after ``timeout`` seconds."""

    async def position_at(self, moment: datetime) -> dict[int, int]:
        """The checkpoint just before the first event recorded at or after ``moment``, per partition.

        Optional (``snapfix export --since`` needs it): reading after it starts at ``moment``.
        Like Kafka's ``offsets_for_times``, it trusts that recording time grows with the offset.
        A partition with no event that late maps to its head.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot find a position by time")

    async def close(self) -> None:  # noqa: B027 - optional for adapters without resources
        """Release connections."""
