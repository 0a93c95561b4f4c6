"""Aggregates' decided state, cached per process and snapshotted beside the log: a command costs O(1) in history.

A command used to fold the aggregate's whole history before deciding. Now:

- **The state cache** keeps each aggregate's state at the version it was last known at (after
  a load or a successful append). A command decides on it without reading the log. The log
  still decides: the append names the version the state was at, and the log's unique
  (aggregate, version) constraint refuses it if another process appended meanwhile; the
  command then folds the events it missed and decides again. A decision that appends nothing
  (a no-op, or a refusal) is checked against the log's head version first, so a stale cache
  never answers for the log.
- **Snapshots** are kept beside the log every ``snapshot_every`` events, so a process that
  has not cached an aggregate reads one snapshot and the events after it. A snapshot carries
  a fingerprint of the fold that made it (the state's fields, the fold's source, the event
  schemas and upcasters it read): when any of those change, old snapshots are discarded and
  rebuilt from the log. The store hands out a snapshot only if the log holds the event it
  names at its version.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import inspect
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic

import orjson
import structlog
from pydantic import TypeAdapter, ValidationError

from command_api.aggregates import Evolve, Loaded, S, fold
from events.envelope import Envelope
from events.ports import EventLogError, EventStore, Snapshot
from events.types import EVENT_CLASSES, DomainEvent
from events.upcasting import UPCASTERS

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class AggregateKind(Generic[S]):
    """One kind of aggregate: its type in the log, its state before any event, its fold, its snapshot codec."""

    name: str
    initial: Callable[[str], S]
    evolve: Evolve[S]
    state_type: type[S]
    fingerprint: str = field(init=False)
    adapter: TypeAdapter[S] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fingerprint", _fingerprint(self.name, self.evolve, self.state_type))
        object.__setattr__(self, "adapter", TypeAdapter(self.state_type))


def _fingerprint(name: str, evolve: Callable[..., Any], state_type: type[Any]) -> str:
    """What a snapshot's state depends on; any change gives another fingerprint and retires old snapshots."""
    events = sorted(
        (cls.event_type(), cls.schema_version, sorted(cls.model_fields))
        for cls in EVENT_CLASSES
        if cls.aggregate_type == name
    )
    upcasters = sorted(f"{t}:{v}:{fn.__qualname__}" for (t, v), fn in UPCASTERS.items())
    fields = [(f.name, str(f.type)) for f in dataclasses.fields(state_type)]
    source = inspect.getsource(evolve)
    digest = hashlib.sha256(orjson.dumps([name, events, upcasters, fields, source])).hexdigest()
    return digest[:32]


@dataclass(frozen=True, slots=True)
class Current(Generic[S]):
    """An aggregate's state and whether it was read from the log just now (``fresh``) or from the cache."""

    loaded: Loaded[S]
    fresh: bool

    @property
    def version(self) -> int:
        return self.loaded.version


@dataclass(slots=True)
class _Entry:
    loaded: Loaded[Any]
    checked_at: float  # monotonic time it was last known to be the log's head


class Repository:
    """Loads aggregates through the state cache and snapshots; learns their new state from each append."""

    def __init__(
        self,
        store: EventStore,
        *,
        capacity: int = 100_000,
        snapshot_every: int = 100,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._cache: OrderedDict[str, _Entry] = OrderedDict()
        self._capacity = capacity
        self._snapshot_every = snapshot_every
        self._clock = clock
        self._snapshots: set[asyncio.Task[None]] = set()
        self.folded_events = 0  # events read from the log and folded: what the O(1) tests watch

    async def load(self, kind: AggregateKind[S], aggregate_id: str) -> Current[S]:
        """The cached state when there is one (the append checks it), else the log's."""
        entry = self._cache.get(aggregate_id)
        if entry is not None:
            self._cache.move_to_end(aggregate_id)
            return Current(entry.loaded, fresh=False)
        return Current(await self._from_log(kind, aggregate_id, None), fresh=True)

    def new(self, kind: AggregateKind[S], aggregate_id: str) -> Current[S]:
        """The state of an aggregate about to be created: the cached one if any, else the initial one; no I/O."""
        entry = self._cache.get(aggregate_id)
        if entry is not None:
            return Current(entry.loaded, fresh=False)
        return Current(Loaded(kind.initial(aggregate_id), 0, None), fresh=False)

    async def read(self, kind: AggregateKind[S], aggregate_id: str, max_age_s: float) -> Loaded[S]:
        """State to read, not to append to: the cache is trusted for ``max_age_s`` after it was last checked."""
        entry = self._cache.get(aggregate_id)
        if entry is not None and self._clock() - entry.checked_at <= max_age_s:
            return entry.loaded
        if entry is not None:
            fresher = await self.revalidate(kind, Current(entry.loaded, fresh=False))
            return entry.loaded if fresher is None else fresher.loaded
        return await self._from_log(kind, aggregate_id, None)

    async def revalidate(self, kind: AggregateKind[S], current: Current[S]) -> Current[S] | None:
        """The state the log holds now when it moved past ``current``; None when ``current`` is the head."""
        if current.fresh:
            return None
        aggregate_id = _id_of(current.loaded)
        head = await self._store.version_of(aggregate_id)
        if head == current.version:
            entry = self._cache.get(aggregate_id)
            if entry is not None and entry.loaded.version == head:
                entry.checked_at = self._clock()
            return None
        return Current(await self._from_log(kind, aggregate_id, current.loaded), fresh=True)

    async def refresh(self, kind: AggregateKind[S], aggregate_id: str) -> Current[S]:
        """The state after the events the cache has not seen (all of them when nothing is cached)."""
        entry = self._cache.get(aggregate_id)
        return Current(await self._from_log(kind, aggregate_id, entry.loaded if entry else None), fresh=True)

    def advanced(
        self, kind: AggregateKind[S], before: Loaded[S], events: Sequence[DomainEvent], recorded: Sequence[Envelope]
    ) -> Loaded[S]:
        """The state after ``events`` were appended to ``before`` as ``recorded``; cached, snapshotted when due."""
        state = before.state
        for event, env in zip(events, recorded, strict=True):
            state = kind.evolve(state, event, env.occurred_at)
        last = recorded[-1]
        after = Loaded(
            dataclasses.replace(state, version=last.aggregate_version), last.aggregate_version, last.position
        )  # type: ignore[type-var]
        self._keep(last.aggregate_id, after)
        if last.aggregate_version // self._snapshot_every > before.version // self._snapshot_every:
            self._snapshot_later(kind, last, after)
        return after

    def forget(self, aggregate_id: str) -> None:
        self._cache.pop(aggregate_id, None)

    async def close(self) -> None:
        """Let snapshots being written finish."""
        while self._snapshots:
            await asyncio.gather(*list(self._snapshots), return_exceptions=True)

    # --- the log and the snapshots ---------------------------------------------------

    async def _from_log(self, kind: AggregateKind[S], aggregate_id: str, known: Loaded[S] | None) -> Loaded[S]:
        """Fold what the log holds after ``known`` (else after the kept snapshot, else from the start)."""
        start = known if known is not None else await self._snapshot_state(kind, aggregate_id)
        if start is None:
            start = Loaded(kind.initial(aggregate_id), 0, None)
        tail = await self._store.load(aggregate_id, start.version)
        if tail and tail[0].aggregate_version != start.version + 1:  # not where the start said: fold it all
            log.warning("repository.tail_mismatch", aggregate_id=aggregate_id, version=start.version)
            start, tail = Loaded(kind.initial(aggregate_id), 0, None), await self._store.load(aggregate_id)
        self.folded_events += len(tail)
        loaded = fold(start.state, kind.evolve, tail) if tail else start
        if loaded.version:
            self._keep(aggregate_id, loaded)
            if len(tail) >= self._snapshot_every:  # a long fold: spare the next process from repeating it
                self._snapshot_later(kind, tail[-1], loaded)
        return loaded

    async def _snapshot_state(self, kind: AggregateKind[S], aggregate_id: str) -> Loaded[S] | None:
        try:
            snapshot = await self._store.load_snapshot(aggregate_id)
        except EventLogError as error:  # a snapshot only saves time: fold from the log instead
            log.warning("repository.snapshot_unreadable", aggregate_id=aggregate_id, reason=str(error))
            return None
        if snapshot is None or snapshot.aggregate_type != kind.name or snapshot.fingerprint != kind.fingerprint:
            return None
        try:
            state = kind.adapter.validate_python(dict(snapshot.state))
        except ValidationError as error:
            log.warning("repository.snapshot_discarded", aggregate_id=aggregate_id, reason=str(error))
            return None
        return Loaded(state, snapshot.version, snapshot.position)

    def _keep(self, aggregate_id: str, loaded: Loaded[Any]) -> None:
        self._cache[aggregate_id] = _Entry(loaded, self._clock())
        self._cache.move_to_end(aggregate_id)
        while len(self._cache) > self._capacity:
            self._cache.popitem(last=False)

    def _snapshot_later(self, kind: AggregateKind[S], last: Envelope, loaded: Loaded[S]) -> None:
        """Write a snapshot off the command's path; losing one costs only a longer fold later."""
        snapshot = Snapshot(
            aggregate_id=last.aggregate_id,
            aggregate_type=kind.name,
            version=loaded.version,
            last_event_id=last.event_id,
            position=loaded.position,
            fingerprint=kind.fingerprint,
            state=kind.adapter.dump_python(loaded.state, mode="json"),
        )

        async def save() -> None:
            try:
                await self._store.save_snapshot(snapshot)
            except EventLogError as error:
                log.warning("repository.snapshot_failed", aggregate_id=snapshot.aggregate_id, reason=str(error))

        task = asyncio.create_task(save(), name=f"snapshot-{snapshot.aggregate_id}")
        self._snapshots.add(task)
        task.add_done_callback(self._snapshots.discard)


def _id_of(loaded: Loaded[Any]) -> str:
    return str(loaded.state.id)
