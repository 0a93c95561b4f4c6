"""MongoEventStore: the write side's EventStore on MongoDB or FerretDB, publishing to Kafka through an outbox.

Why this shape (docs/adr/0001-write-side-consistency-on-kafka.md): Kafka cannot refuse a
stale writer, and FerretDB v1 has neither transactions nor an atomic conditional update (it
evaluates an update's filter, then rewrites the document by ``_id``). Its one atomic
primitive, shared with MongoDB, is an insert refused by a duplicate ``_id``; and only a
lookup by ``_id`` avoids a collection scan. So every decision is the insert of an immutable
document whose ``_id`` names what it decides, and every read is a lookup by ``_id``:

- ``commits/<aggregate>/<after>/<slot>``: one append, the events ``after+1..last``. Writers at
  the same version race for the same ``_id``; one wins. A slot holds a commit or a *fence*,
  an empty tombstone proving that a stalled or crashed append can never land there (the next
  writer takes the next slot). The stream is the chain of commits walked from version 0;
  commits are immutable, so a process caches the prefix it has walked.
- ``outbox/<commit>#<append>``: written before the commit, deleted once Kafka acknowledged
  it; ``relay_once`` publishes what a crash left behind, per aggregate in version order.
- ``claims/<key>#<generation>``: a unique key (an email, an idempotency key) reserved for one
  append before its commit is written. The claim is held when that append landed, dead when
  its slot holds anything else, pending while the slot is empty; a pending claim older than
  the lease is fenced, then the next generation may be claimed.

Publishing happens after the commit: if Kafka does not acknowledge within the bound the
command is still accepted (it is durable) and its events come back without positions, so
the API answers ``position: null``; the relay publishes them. A crash between publish and
acknowledgement can publish an event twice, with the same (aggregate id, version, event id).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any, TypeVar

import structlog
from pymongo import AsyncMongoClient
from pymongo.errors import ConfigurationError, DuplicateKeyError, PyMongoError

from events.codec import decode_envelope, encode
from events.envelope import Envelope, Position
from events.kafka_log import KafkaPublisher
from events.ports import (
    Claim,
    ClaimRecord,
    ClaimTaken,
    ConcurrencyConflict,
    EventLogError,
    EventStore,
)

log = structlog.get_logger(__name__)

Doc = dict[str, Any]
T = TypeVar("T")
Fault = Callable[[str], Awaitable[None]]
"""A test-only hook called at each step of an append: "claimed", "committed", "published"."""

COMMIT, FENCE = "commit", "fence"
MAX_CLAIM_ROUNDS = 1000


def utcnow() -> datetime:
    return datetime.now(UTC)


def slot_id(aggregate_id: str, after: int, slot: int) -> str:
    return f"{aggregate_id}/{after}/{slot}"


@dataclass(frozen=True, slots=True)
class _Commit:
    """One append as stored: immutable but for ``published`` and the positions Kafka gave it."""

    id: str
    aggregate_id: str
    after: int
    append_id: str
    events: tuple[Envelope, ...]
    published: bool = False

    @property
    def last(self) -> int:
        return self.after + len(self.events)

    @property
    def outbox_id(self) -> str:
        return f"{self.id}#{self.append_id}"

    @classmethod
    def from_doc(cls, doc: Doc) -> _Commit:
        positions = [Position.from_token(token) for token in doc.get("positions") or ()]
        try:
            raws = [decode_envelope(raw.encode()) for raw in doc["events"]]
        except (ValueError, KeyError, TypeError) as e:
            raise EventLogError(f"commit {doc['_id']} holds an unreadable event: {e}") from e
        events = tuple(e.at(p) for e, p in zip(raws, positions, strict=True)) if positions else tuple(raws)
        return cls(doc["_id"], doc["aggregate_id"], doc["after"], doc["append_id"], events, bool(positions))

    def to_doc(self) -> Doc:
        return {
            "_id": self.id,
            "kind": COMMIT,
            "aggregate_id": self.aggregate_id,
            "after": self.after,
            "last": self.last,
            "append_id": self.append_id,
            "events": [encode(e).decode() for e in self.events],  # JSON text: exact and key-safe
            "published": False,
            "at": utcnow(),
        }

    def at_positions(self, positions: Sequence[Position]) -> _Commit:
        return replace(self, events=tuple(e.at(p) for e, p in zip(self.events, positions, strict=True)), published=True)


@dataclass(frozen=True, slots=True)
class _Chain:
    """The prefix of a stream this process has walked: its commits, and fences seen at its head."""

    commits: tuple[_Commit, ...] = ()
    fences: int = 0

    @property
    def head(self) -> int:
        return self.commits[-1].last if self.commits else 0

    def next_slot(self, aggregate_id: str) -> str:
        return slot_id(aggregate_id, self.head, self.fences)

    def extended(self, commit: _Commit) -> _Chain:
        return _Chain((*self.commits, commit))

    def fenced(self) -> _Chain:
        return _Chain(self.commits, self.fences + 1)

    def marked(self, done: dict[str, _Commit]) -> _Chain:
        return _Chain(tuple(done.get(c.id, c) for c in self.commits), self.fences)


class ClaimState(Enum):
    LANDED = "landed"  # its append is in the stream: the key is held
    DEAD = "dead"  # its slot holds another commit or a fence: the key is free
    PENDING = "pending"  # its slot is empty: the append may still land (until fenced)


class MongoEventStore(EventStore):
    """Streams, claims and the outbox in a MongoDB database; published to Kafka by ``publisher``."""

    def __init__(
        self,
        url: str,
        publisher: KafkaPublisher,
        *,
        claim_lease_s: float = 5.0,
        relay_grace_s: float = 2.0,
        cache_size: int = 10_000,
        faults: Fault | None = None,
    ) -> None:
        self._client: AsyncMongoClient[Doc] = AsyncMongoClient(url, tz_aware=True, serverSelectionTimeoutMS=5000)
        try:
            db = self._client.get_default_database()
        except ConfigurationError as e:
            raise ValueError(f"the write store URL must name a database: {url!r}") from e
        self._commits, self._outbox, self._claims = db["commits"], db["outbox"], db["claims"]
        self._publisher = publisher
        self._lease = timedelta(seconds=claim_lease_s)
        self._grace = timedelta(seconds=relay_grace_s)
        self._cache: OrderedDict[str, _Chain] = OrderedDict()
        self._cache_size = cache_size
        self._faults = faults

    async def open(self) -> None:
        try:
            await self._client.admin.command("ping")
        except PyMongoError as e:
            raise EventLogError(f"cannot reach the write store: {e}") from e
        await self._publisher.start()

    async def close(self) -> None:
        await self._publisher.stop()
        await self._client.close()

    # --- EventStore -------------------------------------------------------------------

    async def load(self, aggregate_id: str) -> list[Envelope]:
        chain = await _mongo(self._walk(aggregate_id), f"loading {aggregate_id}")
        return [event for commit in chain.commits for event in commit.events]

    async def append(
        self,
        aggregate_id: str,
        expected_version: int,
        events: Sequence[Envelope],
        claims: Sequence[Claim] = (),
    ) -> list[Envelope]:
        _check_batch(aggregate_id, expected_version, events)
        if not events:
            return []
        chain = await self._chain_at(aggregate_id, expected_version)
        slot, append_id = chain.next_slot(aggregate_id), events[-1].event_id
        commit = _Commit(slot, aggregate_id, expected_version, append_id, tuple(events))
        await self._claim_all(commit, claims)
        await self._fault("claimed")
        await _mongo(self._outbox.insert_one(_outbox_doc(commit)), f"appending to {aggregate_id}")
        await self._insert_commit(commit)
        self._remember(aggregate_id, chain.extended(commit))
        await self._fault("committed")
        return list((await self._publish_or_defer(commit)).events)

    async def get_claim(self, key: str) -> ClaimRecord | None:
        latest = await _mongo(self._latest_claim(key), f"reading claim {key}")
        if latest is None:
            return None
        state, commit = await _mongo(self._claim_state(latest), f"reading claim {key}")
        if state is not ClaimState.LANDED or commit is None:
            return None
        return await self._record(latest, commit)

    # --- the relay ----------------------------------------------------------------------

    async def relay_once(self, limit: int = 1000) -> int:
        """Publish what crashed writers left in the outbox; returns the number of events published."""
        entries = await _mongo(self._outbox.find({}).to_list(limit), "reading the outbox")
        by_aggregate: dict[str, list[Doc]] = {}
        for entry in sorted(entries, key=lambda e: (e["aggregate_id"], e["after"])):
            by_aggregate.setdefault(entry["aggregate_id"], []).append(entry)
        published = 0
        for aggregate_id, pending in by_aggregate.items():
            published += await self._relay_aggregate(aggregate_id, pending)
        return published

    async def run_relay(self, stop: asyncio.Event, interval_s: float = 1.0) -> None:
        """Relay until ``stop`` is set; a failure is logged and retried on the next round."""
        while not stop.is_set():
            try:
                if published := await self.relay_once():
                    log.info("outbox.relayed", events=published)
            except EventLogError as e:
                log.warning("outbox.relay_failed", reason=str(e))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval_s)

    async def _relay_aggregate(self, aggregate_id: str, entries: list[Doc]) -> int:
        """Entries in version order; stop at the first one a live writer may still be working on."""
        published = 0
        for entry in entries:
            if entry["at"] > utcnow() - self._grace:
                break
            doc = await _mongo(self._settled_slot(entry), f"relaying {aggregate_id}")
            if doc is None:
                break  # its writer may still insert the commit: decide after the lease
            if doc.get("append_id") == entry["append_id"] and not doc["published"]:
                commit = await self._publish_through(_Commit.from_doc(doc))
                published += len(commit.events)
            else:
                await _mongo(self._outbox.delete_one({"_id": entry["_id"]}), "cleaning the outbox")
        return published

    async def _settled_slot(self, entry: Doc) -> Doc | None:
        """The document in an outbox entry's slot, fencing the slot if the entry is past its lease."""
        doc = await self._commits.find_one({"_id": entry["commit_id"]})
        if doc is None and entry["at"] < utcnow() - self._lease:
            await self._fence(entry["commit_id"], entry["aggregate_id"], entry["after"])
            doc = await self._commits.find_one({"_id": entry["commit_id"]})
        return doc

    # --- the stream -----------------------------------------------------------------------

    async def _walk(self, aggregate_id: str) -> _Chain:
        """Follow the chain from what this process knows to the head, by ``_id`` lookups."""
        chain = self._cache.get(aggregate_id, _Chain())
        while (doc := await self._commits.find_one({"_id": chain.next_slot(aggregate_id)})) is not None:
            chain = chain.extended(_Commit.from_doc(doc)) if doc["kind"] == COMMIT else chain.fenced()
        self._remember(aggregate_id, chain)
        return chain

    async def _chain_at(self, aggregate_id: str, expected: int) -> _Chain:
        chain = self._cache.get(aggregate_id)
        if chain is None or chain.head < expected:  # unknown here, or behind: walk to the head
            chain = await _mongo(self._walk(aggregate_id), f"appending to {aggregate_id}")
        if chain.head != expected:
            raise ConcurrencyConflict(aggregate_id, expected, chain.head)
        return chain

    async def _insert_commit(self, commit: _Commit) -> None:
        try:
            await self._commits.insert_one(commit.to_doc())
        except DuplicateKeyError:
            await _mongo(self._outbox.delete_one({"_id": commit.outbox_id}), "cleaning the outbox")
            await _mongo(self._walk(commit.aggregate_id), "reading the stream")  # learn who moved on
            raise ConcurrencyConflict(commit.aggregate_id, commit.after) from None
        except PyMongoError as e:
            await self._settle_unknown_outcome(commit, e)

    async def _settle_unknown_outcome(self, commit: _Commit, error: PyMongoError) -> None:
        """The insert may or may not have happened: find out, or make sure it never will."""
        try:
            if not await self._fence(commit.id, commit.aggregate_id, commit.after):
                doc = await self._commits.find_one({"_id": commit.id})
                if doc is not None and doc.get("append_id") == commit.append_id:
                    return  # it did land
        except PyMongoError as e:
            raise EventLogError(f"append to {commit.aggregate_id}: outcome unknown ({error})") from e
        raise EventLogError(f"append to {commit.aggregate_id} failed and was not recorded: {error}") from error

    async def _fence(self, slot: str, aggregate_id: str, after: int) -> bool:
        """Take an empty slot with a tombstone; False if something already holds it."""
        fence = {"_id": slot, "kind": FENCE, "aggregate_id": aggregate_id, "after": after, "at": utcnow()}
        try:
            await self._commits.insert_one(fence)
        except DuplicateKeyError:
            return False
        log.info("write_store.fenced", slot=slot)
        return True

    def _remember(self, aggregate_id: str, chain: _Chain) -> None:
        known = self._cache.get(aggregate_id)
        if known is None or (chain.head, chain.fences) >= (known.head, known.fences):
            self._cache[aggregate_id] = chain
        self._cache.move_to_end(aggregate_id)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    # --- publishing -------------------------------------------------------------------------

    async def _publish_or_defer(self, commit: _Commit) -> _Commit:
        """Publish now; if Kafka does not answer in time, leave it to the relay (no positions)."""
        try:
            return await self._publish_through(commit)
        except EventLogError as e:
            log.warning("outbox.publish_deferred", aggregate_id=commit.aggregate_id, reason=str(e))
            return commit

    async def _publish_through(self, commit: _Commit) -> _Commit:
        """Publish ``commit`` after every unpublished commit before it, in version order; mark them."""
        batch = [*await self._unpublished_before(commit), commit]
        positions = await self._publisher.publish([e for c in batch for e in c.events])
        await self._fault("published")
        done: list[_Commit] = []
        for c in batch:
            done.append(c.at_positions(positions[: len(c.events)]))
            positions = positions[len(c.events) :]
        await self._mark(done)
        return done[-1]

    async def _unpublished_before(self, commit: _Commit) -> list[_Commit]:
        """Earlier commits Kafka has not acknowledged yet (normally none), oldest first."""
        chain = self._cache.get(commit.aggregate_id)
        if chain is None or chain.head < commit.after:
            chain = await _mongo(self._walk(commit.aggregate_id), "reading the outbox")
        backlog: list[_Commit] = []
        for earlier in reversed([c for c in chain.commits if c.last <= commit.after]):
            if earlier.published:
                break
            doc = await _mongo(self._commits.find_one({"_id": earlier.id}), "reading the outbox")
            if doc is not None and doc["published"]:
                break
            backlog.insert(0, earlier)
        return backlog

    async def _mark(self, done: list[_Commit]) -> None:
        """Record Kafka's positions and empty the outbox; a failure only means the relay republishes."""
        try:
            for c in done:
                positions = [e.position.token() for e in c.events if e.position]  # FerretDB: no nested arrays
                await self._commits.update_one({"_id": c.id}, {"$set": {"published": True, "positions": positions}})
                await self._outbox.delete_one({"_id": c.outbox_id})
        except PyMongoError as e:
            log.warning("outbox.mark_failed", aggregate_id=done[-1].aggregate_id, reason=str(e))
        chain = self._cache.get(done[-1].aggregate_id)
        if chain is not None:
            self._remember(done[-1].aggregate_id, chain.marked({c.id: c for c in done}))

    # --- claims -------------------------------------------------------------------------------

    async def _claim_all(self, commit: _Commit, claims: Sequence[Claim]) -> None:
        """Reserve every key for this commit, in key order; on failure free the ones already held."""
        held = 0
        try:
            for claim in sorted(claims, key=lambda c: c.key):
                await _mongo(self._claim(claim, commit), f"claiming {claim.key}")
                held += 1
        except Exception:
            if held:  # fencing our own slot kills our claims at once instead of after the lease
                await _mongo(self._fence(commit.id, commit.aggregate_id, commit.after), "releasing claims")
            raise

    async def _claim(self, claim: Claim, commit: _Commit) -> None:
        delay = 0.005
        for _ in range(MAX_CLAIM_ROUNDS):
            latest = await self._latest_claim(claim.key)
            if latest is not None:
                state, doc = await self._claim_state(latest)
                if state is ClaimState.LANDED and doc is not None:
                    raise ClaimTaken(await self._record(latest, doc))
                if state is ClaimState.PENDING:
                    if latest["at"] > utcnow() - self._lease:
                        await asyncio.sleep(delay)  # its writer is most likely between claim and commit
                        delay = min(delay * 2, 0.1)
                    else:
                        await self._fence(latest["commit_id"], latest["aggregate_id"], latest["after"])
                    continue
            generation = 0 if latest is None else latest["gen"] + 1
            if await self._insert_claim(claim, generation, commit):
                return
        raise EventLogError(f"claim {claim.key} still contended after {MAX_CLAIM_ROUNDS} rounds")

    async def _insert_claim(self, claim: Claim, generation: int, commit: _Commit) -> bool:
        doc = {
            "_id": f"{claim.key}#{generation}",
            "key": claim.key,
            "gen": generation,
            "commit_id": commit.id,
            "append_id": commit.append_id,
            "aggregate_id": commit.aggregate_id,
            "after": commit.after,
            "version": commit.last,
            "data": dict(claim.data),
            "at": utcnow(),
        }
        try:
            await self._claims.insert_one(doc)
        except DuplicateKeyError:
            return False
        return True

    async def _latest_claim(self, key: str) -> Doc | None:
        """The newest generation of a key's claim: earlier ones are all dead."""
        latest, generation = None, 0
        while (doc := await self._claims.find_one({"_id": f"{key}#{generation}"})) is not None:
            latest, generation = doc, generation + 1
        return latest

    async def _claim_state(self, claim: Doc) -> tuple[ClaimState, Doc | None]:
        doc = await self._commits.find_one({"_id": claim["commit_id"]})
        if doc is None:
            return ClaimState.PENDING, None
        if doc["kind"] == COMMIT and doc["append_id"] == claim["append_id"]:
            return ClaimState.LANDED, doc
        return ClaimState.DEAD, doc

    async def _record(self, claim: Doc, doc: Doc) -> ClaimRecord:
        commit = await self._published(_Commit.from_doc(doc))
        position = commit.events[-1].position
        assert position is not None
        return ClaimRecord(claim["key"], claim["aggregate_id"], claim["version"], position, dict(claim["data"]))

    async def _published(self, commit: _Commit) -> _Commit:
        """The commit with its positions: wait for its writer to publish it, else publish it ourselves."""
        delay = 0.005
        while not commit.published:
            doc = await _mongo(self._commits.find_one({"_id": commit.id}), "reading a claim")
            if doc is not None and doc["published"]:
                return _Commit.from_doc(doc)
            if doc is None or doc["at"] < utcnow() - self._grace:
                return await self._publish_through(commit)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)
        return commit

    # --- helpers ------------------------------------------------------------------------------

    async def _fault(self, step: str) -> None:
        if self._faults is not None:
            await self._faults(step)


async def _mongo(operation: Awaitable[T], what: str) -> T:
    """Await a driver call, translating its errors at the boundary."""
    try:
        return await operation
    except PyMongoError as e:
        raise EventLogError(f"{what} failed: {e}") from e


def _outbox_doc(commit: _Commit) -> Doc:
    return {
        "_id": commit.outbox_id,
        "commit_id": commit.id,
        "append_id": commit.append_id,
        "aggregate_id": commit.aggregate_id,
        "after": commit.after,
        "at": utcnow(),
    }


def _check_batch(aggregate_id: str, expected_version: int, events: Sequence[Envelope]) -> None:
    for i, event in enumerate(events, start=1):
        if event.aggregate_id != aggregate_id or event.aggregate_version != expected_version + i:
            raise ValueError("events must belong to the aggregate and follow the expected version")
