"""Loading an aggregate's state from its events, and wrapping decided events in envelopes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from events.envelope import Envelope, Metadata, Position
from events.ports import EventStore
from events.types import DomainEvent, payload_of
from events.upcasting import decode


class State(Protocol):
    """What every aggregate's state is: a frozen dataclass with its id and the version it is at."""

    __dataclass_fields__: ClassVar[dict[str, Any]]

    @property
    def id(self) -> str: ...

    @property
    def version(self) -> int: ...


S = TypeVar("S", bound=State)
Evolve = Callable[[S, DomainEvent, datetime], S]


@dataclass(frozen=True, slots=True)
class Loaded(Generic[S]):
    """An aggregate's state, the version it is at and where its newest event sits."""

    state: S
    version: int
    position: Position | None


def fold(initial: S, evolve: Evolve[S], events: Sequence[Envelope]) -> Loaded[S]:
    state = initial
    for env in events:
        state = evolve(state, decode(env), env.occurred_at)
    version = events[-1].aggregate_version if events else 0
    position = events[-1].position if events else None
    return Loaded(replace(state, version=version), version, position)


async def load(store: EventStore, initial: S, evolve: Evolve[S], aggregate_id: str) -> Loaded[S]:
    return fold(initial, evolve, await store.load(aggregate_id))


def envelopes(
    aggregate_type: str,
    aggregate_id: str,
    after_version: int,
    events: Sequence[DomainEvent],
    meta: Metadata,
    now: datetime,
) -> list[Envelope]:
    return [
        Envelope(
            event_type=event.event_type(),
            schema_version=event.schema_version,
            aggregate_type=aggregate_type,
            aggregate_id=aggregate_id,
            aggregate_version=after_version + i,
            payload=payload_of(event),
            occurred_at=now,
            actor_id=meta.actor_id,
            correlation_id=meta.correlation_id,
            causation_id=meta.causation_id,
        )
        for i, event in enumerate(events, start=1)
    ]
