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

import orjson
import structlog
from pymongo import AsyncMongoClient, UpdateOne
from pymongo.errors import BulkWriteError, ConfigurationError, DuplicateKeyError, PyMongoError

from events.codec import decode_envelope, encode
from events.envelope import Envelope, Position
from events.group_commit import GroupCommit
from events.kafka_log import KafkaPublisher
from events.ports import (
    Claim,
    ClaimRecord,
    ClaimTaken,
    ConcurrencyConflict,
    EventLogError,
    EventStore,
    Snapshot,
)

log = structlog.get_logger(__name__)

Doc = dict[str, Any]
T = TypeVar("T")
Fault = Callable[[str], Awaitable[None]]
"""A test-only hook called at each step of an append: "claimed", "committed", "published"."""

COMMIT, FENCE = "commit", "fence"
HEAD_FIELDS = {"kind": 1, "last": 1, "published": 1}  # what following a chain reads of a commit: never its events
DUPLICATE_KEY = 11000
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
    """What this process knows of a stream's head: where its next append goes, and what is published.

    Commits are immutable, so a known head is never wrong, only behind. ``head_commit`` is the
    commit that ends at ``head`` (None for an empty stream). ``published`` is True when that
    commit is known to be in Kafka, and with it every commit before it: each publisher sends the
    unpublished commits before its own first, and marks them in that order. None means unknown.
    """

    head: int = 0
    fences: int = 0
    head_commit: str | None = None
    published: bool | None = True  # an empty stream has nothing left to publish

    def next_slot(self, aggregate_id: str) -> str:
        return slot_id(aggregate_id, self.head, self.fences)

    def extended(self, commit_id: str, last: int, published: bool) -> _Chain:
        return _Chain(last, 0, commit_id, published)

    def fenced(self) -> _Chain:
        return _Chain(self.head, self.fences + 1, self.head_commit, self.published)


@dataclass(frozen=True, slots=True)
class _Inserted:
    """The commit landed in its slot."""


@dataclass(frozen=True, slots=True)
class _Collided:
    """Another append (or a fence) holds the slot: the writer's expected version is stale."""


@dataclass(frozen=True, slots=True)
class _Unclear:
    """The insert failed in a way that does not say whether it landed."""

    error: PyMongoError


InsertOutcome = _Inserted | _Collided | _Unclear


class ClaimState(Enum):
    LANDED = "landed"  # its append is in the stream: the key is held
    DEAD = "dead"  # its slot holds another commit or a fence: the key is free
    PENDING = "pending"  # its slot is empty: the append may still land (until fenced)


class MongoEventStore(EventStore):
    """Streams, claims and the outbox in a MongoDB database; published to Kafka by ``publisher``.

    Concurrent appends share their round trips (events/group_commit.py): one ``insert_many`` of
    outbox entries and one of commits per group, then one produce batch and one marking. Each
    append keeps its own outcome: a stale one fails alone. Without a publisher the store only
    reads (a query API asking whether an aggregate exists).
    """

    def __init__(
        self,
        url: str,
        publisher: KafkaPublisher | None,
        *,
        claim_lease_s: float = 5.0,
        relay_grace_s: float = 2.0,
        cache_size: int = 100_000,
        faults: Fault | None = None,
    ) -> None:
        self._client: AsyncMongoClient[Doc] = AsyncMongoClient(url, tz_aware=True, serverSelectionTimeoutMS=5000)
        try:
            db = self._client.get_default_database()
        except ConfigurationError as e:
            raise ValueError(f"the write store URL must name a database: {url!r}") from e
        self._commits, self._outbox, self._claims = db["commits"], db["outbox"], db["claims"]
        self._snapshots = db["snapshots"]
        self._publisher = publisher
        self._lease = timedelta(seconds=claim_lease_s)
        self._grace = timedelta(seconds=relay_grace_s)
        self._cache: OrderedDict[str, _Chain] = OrderedDict()
        self._cache_size = cache_size
        self._faults = faults
        self._inserts: GroupCommit[_Commit, InsertOutcome] = GroupCommit(self._insert_group, "write-store-commits")
        self._publishes: GroupCommit[tuple[_Commit, ...], tuple[_Commit, ...]] = GroupCommit(
            self._publish_group, "write-store-publish"
        )

    async def open(self) -> None:
        try:
            await self._client.admin.command("ping")
            if self._publisher is not None:  # a writer finds an aggregate's unpublished commits by it
                await self._outbox.create_index([("aggregate_id", 1), ("after", 1)])
        except PyMongoError as e:
            raise EventLogError(f"cannot reach the write store: {e}") from e
        if self._publisher is not None:
            await self._publisher.start()

    async def close(self) -> None:
        await self._inserts.drain()
        await self._publishes.drain()
        if self._publisher is not None:
            await self._publisher.stop()
        await self._client.close()

    @property
    def group_sizes(self) -> list[int]:
        """Appends per shared commit insert, newest last: what the benchmark reports."""
        return self._inserts.sizes

    # --- EventStore -------------------------------------------------------------------

    async def load(self, aggregate_id: str, after_version: int = 0) -> list[Envelope]:
        commits = await _mongo(self._commits_after(aggregate_id, after_version), f"loading {aggregate_id}")
        return [event for commit in commits for event in commit.events]

    async def version_of(self, aggregate_id: str) -> int:
        chain = await _mongo(self._probe(aggregate_id, self._cache.get(aggregate_id, _Chain())), "reading a head")
        return chain.head

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
        if self._publisher is None:
            raise EventLogError("this write store was opened to read only")
        chain = await self._chain_at(aggregate_id, expected_version)
        slot, append_id = chain.next_slot(aggregate_id), events[-1].event_id
        commit = _Commit(slot, aggregate_id, expected_version, append_id, tuple(events))
        await self._claim_all(commit, claims)
        await self._fault("claimed")
        outcome = await self._inserts.submit(commit)
        await self._settle(commit, outcome)
        self._remember(aggregate_id, chain.extended(commit.id, commit.last, published=False))
        await self._fault("committed")
        return list((await self._publish_or_defer(commit, chain)).events)

    async def get_claim(self, key: str) -> ClaimRecord | None:
        latest = await _mongo(self._latest_claim(key), f"reading claim {key}")
        if latest is None:
            return None
        state, commit = await _mongo(self._claim_state(latest), f"reading claim {key}")
        if state is not ClaimState.LANDED or commit is None:
            return None
        return await self._record(latest, commit)

    async def load_snapshot(self, aggregate_id: str) -> Snapshot | None:
        """The kept snapshot, once the commit it was folded up to is found where it says."""
        doc = await _mongo(self._snapshots.find_one({"_id": aggregate_id}), f"reading a snapshot of {aggregate_id}")
        if doc is None:
            return None
        head = await _mongo(self._commits.find_one({"_id": doc["head_commit"]}), "checking a snapshot")
        if head is None or head["kind"] != COMMIT or head["append_id"] != doc["last_event_id"]:
            log.warning("write_store.snapshot_discarded", aggregate_id=aggregate_id, version=doc["version"])
            return None
        self._remember(aggregate_id, _Chain(head["last"], 0, head["_id"], bool(head["published"])))
        position = None if doc.get("position") is None else Position.from_token(doc["position"])
        state = orjson.loads(doc["state"])
        return Snapshot(
            aggregate_id,
            doc["aggregate_type"],
            doc["version"],
            doc["last_event_id"],
            position,
            doc["fingerprint"],
            state,
        )

    async def save_snapshot(self, snapshot: Snapshot) -> None:
        """Kept only when this process knows the commit the snapshot ends with (a loader checks it)."""
        chain = self._cache.get(snapshot.aggregate_id)
        if chain is None or chain.head != snapshot.version or chain.head_commit is None:
            return
        doc = {
            "_id": snapshot.aggregate_id,
            "aggregate_type": snapshot.aggregate_type,
            "version": snapshot.version,
            "last_event_id": snapshot.last_event_id,
            "head_commit": chain.head_commit,
            "position": None if snapshot.position is None else snapshot.position.token(),
            "fingerprint": snapshot.fingerprint,
            "state": orjson.dumps(dict(snapshot.state)).decode(),  # JSON text: FerretDB keeps no nested arrays
            "at": utcnow(),
        }
        kept = await _mongo(self._snapshots.find_one({"_id": snapshot.aggregate_id}, {"version": 1}), "snapshot")
        if kept is not None and kept["version"] >= snapshot.version:
            return
        with contextlib.suppress(DuplicateKeyError):  # a racing writer kept one first: either will do
            await _mongo(self._snapshots.replace_one({"_id": snapshot.aggregate_id}, doc, upsert=True), "snapshot")

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
                commit = await self._publish_through(_Commit.from_doc(doc), None)
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

    async def _probe(self, aggregate_id: str, chain: _Chain) -> _Chain:
        """Follow the chain from ``chain`` to the head by ``_id`` lookups, without decoding events."""
        while (doc := await self._commits.find_one({"_id": chain.next_slot(aggregate_id)}, HEAD_FIELDS)) is not None:
            chain = (
                chain.extended(doc["_id"], doc["last"], bool(doc["published"]))
                if doc["kind"] == COMMIT
                else chain.fenced()
            )
        self._remember(aggregate_id, chain)
        return chain

    async def _commits_after(self, aggregate_id: str, after: int) -> list[_Commit]:
        """The commits after version ``after``, which must be 0 or where an append ended.

        The walk starts there only when that is known: this process's head, or a slot after it
        that a writer took (writers only take the slot after a head they checked). Otherwise
        (a head this process no longer remembers) it walks from the stream's start.
        """
        known = self._cache.get(aggregate_id)
        if known is not None and known.head == after:
            start = known
        elif after == 0 or await self._commits.find_one({"_id": slot_id(aggregate_id, after, 0)}, HEAD_FIELDS):
            start = _Chain(after, 0, None, None)
        else:
            start = _Chain()
        chain, commits = start, []
        while (doc := await self._commits.find_one({"_id": chain.next_slot(aggregate_id)})) is not None:
            if doc["kind"] == COMMIT:
                commit = _Commit.from_doc(doc)
                commits.append(commit)
                chain = chain.extended(commit.id, commit.last, commit.published)
            else:
                chain = chain.fenced()
        self._remember(aggregate_id, chain)
        return [c for c in commits if c.after >= after]

    async def _chain_at(self, aggregate_id: str, expected: int) -> _Chain:
        chain = self._cache.get(aggregate_id)
        if chain is None and expected > 0:  # not known here: find the head from a known start
            await _mongo(self._commits_after(aggregate_id, expected), f"appending to {aggregate_id}")
            chain = self._cache.get(aggregate_id)
        if chain is None or chain.head < expected:  # unknown here, or behind: walk to the head
            chain = await _mongo(self._probe(aggregate_id, chain or _Chain()), f"appending to {aggregate_id}")
        if chain.head != expected:
            raise ConcurrencyConflict(aggregate_id, expected, chain.head)
        return chain

    async def _insert_group(self, commits: list[_Commit]) -> list[InsertOutcome]:
        """Outbox entries first (a commit never lands without its trace), then the commits, each its own outcome."""
        outcomes: list[InsertOutcome | None] = [None] * len(commits)
        try:
            await self._outbox.insert_many([_outbox_doc(c) for c in commits], ordered=False)
        except BulkWriteError as e:
            for failure in e.details.get("writeErrors", []):
                outcomes[failure["index"]] = _Unclear(e)  # no trace: its commit must not be written
        except PyMongoError as e:
            raise EventLogError(f"appending failed: {e}") from e
        todo = [i for i, outcome in enumerate(outcomes) if outcome is None]
        try:
            if todo:
                await self._commits.insert_many([commits[i].to_doc() for i in todo], ordered=False)
        except BulkWriteError as e:
            for failure in e.details.get("writeErrors", []):
                i = todo[failure["index"]]
                outcomes[i] = _Collided() if failure.get("code") == DUPLICATE_KEY else _Unclear(e)
        except PyMongoError as e:
            for i in todo:
                outcomes[i] = _Unclear(e)
        return [_Inserted() if outcome is None else outcome for outcome in outcomes]

    async def _settle(self, commit: _Commit, outcome: InsertOutcome) -> None:
        """Raise unless the commit landed: a stale writer gets ConcurrencyConflict, an unknown outcome is found out."""
        if isinstance(outcome, _Collided):
            await _mongo(self._outbox.delete_one({"_id": commit.outbox_id}), "cleaning the outbox")
            await _mongo(self._probe(commit.aggregate_id, self._cache.get(commit.aggregate_id, _Chain())), "reading")
            raise ConcurrencyConflict(commit.aggregate_id, commit.after)
        if isinstance(outcome, _Unclear):
            await self._settle_unknown_outcome(commit, outcome.error)

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
        """Keep the furthest head known; at the same head, a known publishing state over an unknown one."""
        known = self._cache.get(aggregate_id)
        if known is not None and (known.head, known.fences) > (chain.head, chain.fences):
            chain = known
        elif known is not None and (known.head, known.fences) == (chain.head, chain.fences):
            chain = replace(chain, published=known.published if chain.published is None else chain.published)
        self._cache[aggregate_id] = chain
        self._cache.move_to_end(aggregate_id)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    # --- publishing -------------------------------------------------------------------------

    async def _publish_or_defer(self, commit: _Commit, before: _Chain | None) -> _Commit:
        """Publish now; if Kafka does not answer in time, leave it to the relay (no positions)."""
        try:
            return await self._publish_through(commit, before)
        except EventLogError as e:
            log.warning("outbox.publish_deferred", aggregate_id=commit.aggregate_id, reason=str(e))
            return commit

    async def _publish_through(self, commit: _Commit, before: _Chain | None) -> _Commit:
        """Publish ``commit`` after every unpublished commit before it, in version order, and mark them.

        ``before`` is the head the commit was appended after, when the caller knows it: a published
        head needs no look at the outbox.
        """
        backlog = () if before is not None and before.published else await self._unpublished_before(commit)
        done = await self._publishes.submit((*backlog, commit))
        return done[-1]

    async def _unpublished_before(self, commit: _Commit) -> tuple[_Commit, ...]:
        """Earlier commits of the aggregate that Kafka has not acknowledged (normally none), oldest first.

        Every unpublished commit has its outbox entry (written before it, deleted after its mark).
        """
        entries = await _mongo(
            self._outbox.find({"aggregate_id": commit.aggregate_id, "after": {"$lt": commit.after}}).to_list(None),
            "reading the outbox",
        )
        backlog: list[_Commit] = []
        for entry in sorted(entries, key=lambda e: e["after"]):
            doc = await _mongo(self._commits.find_one({"_id": entry["commit_id"]}), "reading the outbox")
            landed = doc is not None and doc["kind"] == COMMIT and doc["append_id"] == entry["append_id"]
            if landed and doc is not None and not doc["published"]:
                backlog.append(_Commit.from_doc(doc))
        return tuple(backlog)

    async def _publish_group(self, items: list[tuple[_Commit, ...]]) -> list[tuple[_Commit, ...]]:
        """One produce batch for every append waiting, then one marking: each item's commits with positions."""
        assert self._publisher is not None
        ordered: dict[str, _Commit] = {}
        for chain in items:
            for c in chain:
                ordered.setdefault(c.id, c)  # two appends sharing a backlog publish it once
        batch = list(ordered.values())
        positions = await self._publisher.publish([e for c in batch for e in c.events])
        await self._fault("published")
        done: dict[str, _Commit] = {}
        for c in batch:
            done[c.id] = c.at_positions(positions[: len(c.events)])
            positions = positions[len(c.events) :]
        await self._mark(list(done.values()))
        return [tuple(done[c.id] for c in chain) for chain in items]

    async def _mark(self, done: list[_Commit]) -> None:
        """Record Kafka's positions and empty the outbox; a failure only means the relay republishes."""
        try:
            await self._commits.bulk_write(
                [
                    UpdateOne(
                        {"_id": c.id},
                        # FerretDB keeps no nested arrays: positions as tokens
                        {
                            "$set": {
                                "published": True,
                                "positions": [e.position.token() for e in c.events if e.position],
                            }
                        },
                    )
                    for c in done
                ],
                ordered=True,  # in version order: a mark that fails leaves every later one unmarked too
            )
            await self._outbox.delete_many({"_id": {"$in": [c.outbox_id for c in done]}})
        except PyMongoError as e:
            log.warning("outbox.mark_failed", aggregate_id=done[-1].aggregate_id, reason=str(e))
            return
        for c in done:
            chain = self._cache.get(c.aggregate_id)
            if chain is not None and chain.head_commit == c.id:
                self._remember(c.aggregate_id, replace(chain, published=True))

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
                return await self._publish_through(commit, None)
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
