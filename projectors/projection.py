"""What a projection is: a collection, which document an event touches, and a pure fold."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from events.envelope import Envelope
from events.types import DomainEvent
from projectors.ports import Collection, Doc

Key = Callable[[Envelope], str | None]
Fold = Callable[[Doc | None, Envelope, DomainEvent], Doc | None]
RollKeys = Callable[[Doc | None, Doc | None], Iterable[str]]
RollFold = Callable[[Doc | None, str, Doc | None, Doc | None, Envelope], Doc | None]


@dataclass(frozen=True, slots=True)
class Rollup:
    """Aggregates kept from another view's changes, in the same commit (the runner writes them first).

    When the view's document changes from ``old`` to ``new`` because of an envelope,
    each aggregate ``id`` in ``keys(old, new)`` becomes ``fold(aggregate, id, old, new,
    envelope)``. The fold must return the aggregate unchanged for an envelope it has
    already counted (e.g. by remembering positions), so redelivery never counts twice.
    """

    collection: Collection
    keys: RollKeys
    fold: RollFold
    # The id of a record the runner writes with its first commit when it starts from the log's
    # start: readers trust the roll-up only once it is there. A roll-up added to a projection
    # that had already run has seen only part of the log until its view is rebuilt.
    origin: str | None = None
    # The document as the store keeps it, when the fold works on a handier form within a batch
    # (the fold must accept both forms); None: the fold's form is the stored one.
    stored: Callable[[Doc], Doc] | None = None


@dataclass(frozen=True, slots=True)
class Projection:
    """``fold(doc, envelope, event)`` returns the new document (or None to delete it); it never mutates."""

    collection: Collection
    key: Key
    fold: Fold
    rollups: tuple[Rollup, ...] = ()

    @property
    def name(self) -> str:
        return self.collection.name

    @property
    def collections(self) -> tuple[Collection, ...]:
        """Its own collection and its roll-ups' (what a store must set up for it)."""
        return (self.collection, *(r.collection for r in self.rollups))


def marked(marks: Mapping[str, int], env: Envelope) -> tuple[dict[str, int], int]:
    """A roll-up's per-partition marks after ``env``, and the version they make.

    The version (the sum of the last offset folded per partition) only grows as the
    roll-up folds more of the log, so a store that copies documents between generations
    without transactions (projectors/mongo_views.py, ``_not_older``) never replaces a
    roll-up with one that has folded less; the issue's own views are guarded by their
    aggregate version and would not roll the lost events again.
    """
    assert env.position is not None
    partition = str(env.position.partition)
    new = {**marks, partition: max(env.position.offset, marks.get(partition, -1))}
    return new, sum(new.values())


def iso(moment: datetime) -> str:
    """A fixed-width UTC timestamp, so string order is time order in every store (isoformat: strftime's cost/5)."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def already_applied(doc: Doc | None, env: Envelope) -> bool:
    """True when an aggregate-keyed document has seen this event: replays change nothing."""
    return doc is not None and env.aggregate_version <= int(doc.get("version", 0))


def by_aggregate(aggregate_type: str) -> Key:
    def key(env: Envelope) -> str | None:
        return env.aggregate_id if env.aggregate_type == aggregate_type else None

    return key
