"""The envelope every event travels in, and the position a log gives it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

# The event type of a log record that could not be decoded into an envelope (a Kafka record of
# foreign or broken bytes): no code registers it, so a projector dead-letters it and goes on.
UNDECODABLE = "snapfix.UndecodableRecord"


@dataclass(frozen=True, slots=True, order=True)
class Position:
    """Where an event sits in the log: a partition and an offset inside it (SQLite has one partition)."""

    partition: int
    offset: int

    def token(self) -> str:
        """The opaque consistency token handed to clients."""
        return f"{self.partition}.{self.offset}"

    @classmethod
    def from_token(cls, token: str) -> Position:
        partition, _, offset = token.partition(".")
        if not partition.isdigit() or not offset.isdigit():
            raise ValueError(f"not a consistency token: {token!r}")
        return cls(int(partition), int(offset))


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Metadata:
    """Who caused an event and which request it belongs to."""

    actor_id: str | None = None
    correlation_id: str | None = None
    causation_id: str | None = None


@dataclass(frozen=True, slots=True)
class Envelope:
    """An event as stored: the stored form of the payload (a dict) plus everything around it.

    ``position`` is None until a log has recorded the event.
    """

    event_type: str
    schema_version: int
    aggregate_type: str
    aggregate_id: str
    aggregate_version: int
    payload: dict[str, Any]
    occurred_at: datetime = field(default_factory=utcnow)
    event_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    actor_id: str | None = None
    correlation_id: str | None = None
    causation_id: str | None = None
    position: Position | None = None

    def at(self, position: Position) -> Envelope:
        """The same event, recorded at ``position``."""
        return Envelope(
            event_type=self.event_type,
            schema_version=self.schema_version,
            aggregate_type=self.aggregate_type,
            aggregate_id=self.aggregate_id,
            aggregate_version=self.aggregate_version,
            payload=self.payload,
            occurred_at=self.occurred_at,
            event_id=self.event_id,
            actor_id=self.actor_id,
            correlation_id=self.correlation_id,
            causation_id=self.causation_id,
            position=position,
        )
