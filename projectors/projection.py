"""What a projection is: a collection, which document an event touches, and a pure fold."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from events.envelope import Envelope
from events.types import DomainEvent
from projectors.ports import Collection, Doc

Key = Callable[[Envelope], str | None]
Fold = Callable[[Doc | None, Envelope, DomainEvent], Doc | None]


@dataclass(frozen=True, slots=True)
class Projection:
    """``fold(doc, envelope, event)`` returns the new document (or None to delete it); it never mutates."""

    collection: Collection
    key: Key
    fold: Fold

    @property
    def name(self) -> str:
        return self.collection.name


def iso(moment: datetime) -> str:
    """A fixed-width UTC timestamp, so string order is time order in every store."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def already_applied(doc: Doc | None, env: Envelope) -> bool:
    """True when an aggregate-keyed document has seen this event: replays change nothing."""
    return doc is not None and env.aggregate_version <= int(doc.get("version", 0))


def by_aggregate(aggregate_type: str) -> Key:
    def key(env: Envelope) -> str | None:
        return env.aggregate_id if env.aggregate_type == aggregate_type else None

    return key
