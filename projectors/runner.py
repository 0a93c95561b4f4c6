"""The projector worker: reads the log from its checkpoint, folds batches, commits views and checkpoint together.

A failing event (undecodable, or a fold that raises) becomes a dead-letter record
in the same commit and the worker goes on; it never skips an event silently.

The rule of replays: a runner applies only projections, pure folds ``(view, event) ->
view``, so running one again over old events repeats no side effect. Process managers
(emails, photo thumbnails, anything that acts on the world) never run inside a
ProjectionRunner: they consume the log live with their own checkpoint, and record what
they did as events before or instead of doing it twice. A rebuild
(``ProjectionRunner.rebuilder``) is a runner with ``rebuilding`` set that writes one
shadow generation, with no cache write-through; it refuses anything that is not a
``Projection``. Code that must tell a rebuild from live traffic reads ``rebuilding``.

The live runner also keeps the caches' epoch (snapfix/cache.py) in step with the views'
generations: it publishes them on start and every ``EPOCH_CHECK_S`` (a rebuild publishes
at its swap too, when it can reach the cache: an in-process cache it cannot), and it
writes each batch through in the epoch it read after the commit. It also ends the epoch
when it starts (it may follow a runner that died between a commit and its write-through)
and after a write-through the cache did not take, once the cache answers: the cache's time
to live then bounds memory, not how long an older copy can be served.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import traceback
from collections.abc import Sequence
from datetime import UTC, datetime

import orjson
import structlog

from events.codec import envelope_to_dict
from events.envelope import UNDECODABLE, Envelope
from events.ports import EventLog
from events.upcasting import decode
from projectors.feeds import ORIGIN, feed_collection
from projectors.ports import (
    Change,
    Collection,
    Doc,
    GenerationMoved,
    Put,
    ViewStore,
    ViewStoreError,
    at_generation,
    builder_name,
)
from projectors.projection import Projection, iso
from snapfix import metrics
from snapfix.cache import TOMBSTONE, VIEWS_EPOCH, Cache, CacheError, ViewCache

log = structlog.get_logger(__name__)

DEAD_LETTERS = Collection(
    name="dead_letters",
    fields={"projector": "text", "status": "text", "position": "int"},
    indexes=(("projector", "status", "position"),),
)
CACHED_COLLECTIONS = frozenset({"issue_detail", "user_profile"})
FEEDS = feed_collection.name  # browse feeds, written through under per-feed stamps (snapfix/stamped.py)
# The views the cached public detail of an issue is built from (snapfix/detail_cache.py).
PUBLIC_DETAIL_SOURCES = frozenset({"issue_detail", "issue_duplicates"})
BROWSE_GENERATION = "gen:issue_summary"
# The counter's value as a plain versioned entry, which every Cache adapter can read back
# (query_api/caching.py keys first pages of browse queries by it).
BROWSE_GENERATION_VALUE = "gen:issue_summary:value"
GENERATION_TTL_S = 86_400
# Every view whose documents a cache holds, itself or built into a cached value (details, feeds,
# browse pages, profiles): a swap of any of them starts a new epoch of the whole cache.
CACHED_VIEWS = ("issue_detail", "issue_duplicates", "issue_summary", FEEDS, "user_profile")
EPOCH_CHECK_S = 1.0
REFOLDS = 3  # swaps met by one batch before it gives up (a swap takes a rebuild: two in a row are rare)


async def publish_views_epoch(cache: Cache, store: ViewStore) -> int:
    """Make the cache's epoch follow the live generations of the cached views; returns the epoch.

    The label, not a bump: it moves the epoch once per swap however many processes publish
    it (the rebuild, every live projector), and again after a store was replaced behind a
    cache that outlived it. Raises CacheError when the cache is down.
    """
    lives = [at_generation(name, (await store.generations(name)).live) for name in CACHED_VIEWS]
    return await cache.follow(VIEWS_EPOCH, " ".join(lives))


class ProjectionRunner:
    """Applies a fixed set of projections under one checkpoint name."""

    def __init__(
        self,
        name: str,
        projections: Sequence[Projection],
        event_log: EventLog | None,
        store: ViewStore,
        *,
        cache: Cache | None = None,
        view_cache: ViewCache | None = None,
        batch_size: int = 500,
        idle_poll_s: float = 0.2,
        generations: dict[str, int] | None = None,
        partial: bool = False,
    ) -> None:
        """``partial``: the runner applies chosen events, not the log (a dead-letter retry), so it never
        writes the roll-ups' origin records, which say a roll-up has folded the log from its start."""
        if any(not isinstance(p, Projection) for p in projections):
            raise TypeError("a ProjectionRunner runs pure projections only; process managers run on their own")
        self.name = name
        self._projections = tuple(projections)
        # logical collection -> the name the store is addressed with (``name@g`` while rebuilding)
        shadow = generations or {}
        self._target = {
            p.name: at_generation(p.name, shadow[p.name]) if p.name in shadow else p.name for p in self._projections
        }
        # a projection's roll-ups live and are rebuilt in step with it
        self._target.update(
            {
                r.collection.name: at_generation(r.collection.name, shadow[r.collection.name])
                if r.collection.name in shadow
                else r.collection.name
                for p in self._projections
                for r in p.rollups
            }
        )
        self._rolled = frozenset(r.collection.name for p in self._projections for r in p.rollups)
        self._stored = {
            r.collection.name: r.stored for p in self._projections for r in p.rollups if r.stored is not None
        }
        self.rebuilding = bool(generations)
        self._log = event_log
        self._store = store
        self._cache = cache
        self._view_cache = view_cache
        self._epochs = cache if cache is not None else view_cache.cache if view_cache is not None else None
        self._epoch_published_at: float | None = None
        # A runner that starts may follow one that died between a commit and its write-through, and a
        # write-through that met a cache that was down left older copies in it: either way the cache's
        # epoch ends at the next check that reaches it (check_epoch), so no entry outlives its change.
        self._missed_write_through = True
        self._batch_size = batch_size
        self._idle_poll_s = idle_poll_s
        self._partial = partial
        self.checkpoint: dict[int, int] = {}
        self.applied = 0
        self.dead_lettered = 0
        self.last_error: str | None = None
        self._progress = asyncio.Condition()

    @classmethod
    def rebuilder(
        cls,
        projection: Projection,
        generations: dict[str, int],
        event_log: EventLog,
        store: ViewStore,
        *,
        batch_size: int = 2000,
    ) -> ProjectionRunner:
        """A runner that builds new generations of one view (and its roll-ups) from the log's start, side-effect free.

        ``generations`` maps the view and each roll-up collection to the shadow generation it writes.
        """
        return cls(
            builder_name(projection.name, generations[projection.name]),
            [projection],
            event_log,
            store,
            batch_size=batch_size,
            generations=generations,
        )

    async def setup(self) -> None:
        declared = [c for p in self._projections for c in p.collections]
        collections = [Collection(self._target[c.name], c.fields, c.arrays, c.indexes) for c in declared]
        await self._store.setup([*collections, DEAD_LETTERS])
        self.checkpoint = await self._store.checkpoint(self.name)
        await self.check_epoch()  # a swap made while no projector ran, or that the rebuild could not publish

    async def run_once(self) -> int:
        """Apply the next batch from the log; returns how many events it covered."""
        assert self._log is not None, "this runner is fed batches by a consumer group, not a log"
        batch = await self._log.read(self.checkpoint, self._batch_size)
        if batch:
            await self.apply(batch)
        else:  # idle: a swap still reaches the caches within EPOCH_CHECK_S
            await self.check_epoch()
        # A short read reached the head; only a full batch may have left events behind.
        waiting = metrics.backlog(await self._log.head(), self.checkpoint) if len(batch) >= self._batch_size else 0
        metrics.set_lag(self.name, waiting, batch)
        return len(batch)

    async def stored_checkpoint(self) -> dict[int, int]:
        """The checkpoint as committed with the views (the truth after a crash or a rebalance)."""
        self.checkpoint = await self._store.checkpoint(self.name)
        return dict(self.checkpoint)

    async def apply(self, batch: list[Envelope]) -> None:
        """Fold a batch, commit views and the touched partitions' checkpoint in one write, then refresh caches.

        Used by the log tailer above and by the Kafka consumer-group worker, which hands over
        the batches of whatever partitions it was assigned.
        """
        started, dead_before = time.perf_counter(), self.dead_lettered
        before = await self.check_epoch()  # before the batch reads any view: see _after_commit
        for attempt in range(1, REFOLDS + 1):
            live = await self._live()  # before the fold reads anything: the commit refuses if a swap moved it
            changes, moved = await self._fold_batch(batch)
            try:
                await self._store.commit(self.name, changes, moved, live=live)
                break
            except GenerationMoved as moved_error:
                self.dead_lettered = dead_before  # the next fold dead-letters the same events again
                if attempt == REFOLDS:
                    raise
                log.info("projection.refold", projector=self.name, attempt=attempt, reason=str(moved_error))
        await self._after_commit(changes, before)
        self.checkpoint = {**self.checkpoint, **moved}
        self.applied += len(batch)
        metrics.batch_applied(self.name, len(batch), self.dead_lettered - dead_before, time.perf_counter() - started)
        async with self._progress:
            self._progress.notify_all()
        log.debug("projection.batch", projector=self.name, events=len(batch), changes=len(changes))

    async def _live(self) -> dict[str, int] | None:
        """The generations this batch reads and writes through plain names (a rebuilder names its own)."""
        if self.rebuilding:
            return None
        return await self._store.live_generations(sorted(self._target))

    async def _fold_batch(self, batch: list[Envelope]) -> tuple[list[Change], dict[int, int]]:
        working = await self._prefetch(batch)
        touched: dict[tuple[str, str], Doc | None] = {}
        dead: list[Change] = []
        checkpoint: dict[int, int] = {}  # only the partitions this batch touched
        for env in batch:
            assert env.position is not None
            checkpoint[env.position.partition] = max(env.position.offset, checkpoint.get(env.position.partition, -1))
            with structlog.contextvars.bound_contextvars(correlation_id=env.correlation_id):
                try:
                    event = decode(env)
                    updates = []
                    for projection in self._projections:
                        doc_id = projection.key(env)
                        if doc_id is None:
                            continue
                        slot = (projection.name, doc_id)
                        current = working.get(slot)
                        new = projection.fold(current, env, event)
                        if new is not current:
                            updates.append((slot, new))
                            updates += await self._roll(projection, current, new, env, working)
                except ViewStoreError:
                    raise  # the store failed, not the event: the batch is retried, never dead-lettered
                except Exception as error:  # noqa: BLE001 - a poison event must not stop the projector
                    dead.append(self._dead_letter(env, error))
                    continue
                for slot, new in updates:  # only once every fold of this event succeeded
                    working[slot] = new
                    touched[slot] = new
                log.debug(
                    "projection.applied",
                    projector=self.name,
                    event_type=env.event_type,
                    position=env.position.token(),
                    views=len(updates),
                )
        # Roll-ups first: a store without transactions that stops midway then never counts twice (see Rollup).
        ordered = sorted(touched.items(), key=lambda item: item[0][0] not in self._rolled)
        changes: list[Change] = [
            Put(self._target[col], self._stored[col](doc) if col in self._stored else doc)
            for (col, _), doc in ordered
            if doc is not None
        ]
        return self._origins() + changes + dead, checkpoint

    def _origins(self) -> list[Change]:
        """The roll-ups' origin records, with the first commit of a runner that starts from the log's start."""
        if self._partial or self.checkpoint:
            return []
        return [
            Put(self._target[r.collection.name], {"id": r.origin, "from_start": True})
            for p in self._projections
            for r in p.rollups
            if r.origin is not None
        ]

    async def _roll(
        self,
        projection: Projection,
        old: Doc | None,
        new: Doc | None,
        env: Envelope,
        working: dict[tuple[str, str], Doc | None],
    ) -> list[tuple[tuple[str, str], Doc | None]]:
        """The aggregates that a change of one of the projection's documents moves (fetched on first use)."""
        out: list[tuple[tuple[str, str], Doc | None]] = []
        for rollup in projection.rollups:
            name = rollup.collection.name
            keys = list(rollup.keys(old, new))
            missing = [key for key in keys if (name, key) not in working]
            if missing:  # one round trip for all of them: a summary change moves a dozen feeds
                found = await self._store.get_many(self._target[name], missing)
                working.update({(name, key): found.get(key) for key in missing})
            for key in keys:
                current = working[(name, key)]
                rolled = rollup.fold(current, key, old, new, env)
                if rolled is not current:
                    out.append(((name, key), rolled))
        return out

    async def _prefetch(self, batch: list[Envelope]) -> dict[tuple[str, str], Doc | None]:
        wanted: dict[str, set[str]] = {}
        for env in batch:
            for projection in self._projections:
                doc_id = projection.key(env)
                if doc_id is not None:
                    wanted.setdefault(projection.name, set()).add(doc_id)
        working: dict[tuple[str, str], Doc | None] = {}
        for collection, ids in wanted.items():
            found = await self._store.get_many(self._target[collection], sorted(ids))
            for doc_id in ids:
                working[(collection, doc_id)] = found.get(doc_id)
        return working

    def _dead_letter(self, env: Envelope, error: Exception) -> Put:
        assert env.position is not None
        self.dead_lettered += 1
        self.last_error = f"{type(error).__name__}: {error}"
        if env.event_type == UNDECODABLE:  # the decoder's own complaint says more than "unknown event type"
            self.last_error = f"undecodable record: {env.payload.get('error', error)}"
        log.error(
            "projection.dead_letter",
            projector=self.name,
            position=env.position.token(),
            event_type=env.event_type,
            reason=self.last_error,
        )
        return Put(
            DEAD_LETTERS.name,
            {
                "id": f"{self.name}:{env.position.partition}:{env.position.offset}",
                "projector": self.name,
                "partition": env.position.partition,
                "position": env.position.offset,
                "status": "open",
                "reason": self.last_error,
                "trace": traceback.format_exception_only(error)[-1].strip(),
                "envelope": {**envelope_to_dict(env)},
                "recorded_at": iso(datetime.now(UTC)),
            },
        )

    async def check_epoch(self) -> int | None:
        """The caches' epoch, published first when ``EPOCH_CHECK_S`` has passed since it last was.

        Called before each batch, and by a worker's timer between batches (projectors/kafka_worker.py).

        None for a runner without a cache, a rebuild's, or while the cache is down.
        """
        if self._epochs is None or self.rebuilding:
            return None
        try:
            now = time.monotonic()
            if self._missed_write_through:
                await publish_views_epoch(self._epochs, self._store)
                epoch = await self._epochs.incr(VIEWS_EPOCH)
                self._missed_write_through = False
                self._epoch_published_at = now
                log.info("projection.cache_epoch_ended", projector=self.name, epoch=epoch)
                return epoch
            if self._epoch_published_at is None or now - self._epoch_published_at >= EPOCH_CHECK_S:
                epoch = await publish_views_epoch(self._epochs, self._store)
                self._epoch_published_at = now
                return epoch
            return (await self._epochs.counters([VIEWS_EPOCH]))[0]
        except CacheError as error:  # published at the next check once the cache is back
            log.warning("projection.cache_unavailable", projector=self.name, reason=str(error))
            return None

    async def _after_commit(self, changes: list[Change], before: int | None) -> None:
        """Write the committed changes through to the caches, in the epoch read after the commit.

        That epoch is at least any reader's that read the views before the commit, so the
        write-through and the stamps retire what such readers store (snapfix/stamped.py).
        ``before`` is the epoch read before the batch read its views: if a swap was published
        in between, the batch may have read documents of the old generation (and committed what
        it folded from them before the swap), so it retires what it touched in the new epoch
        instead of writing those documents through.
        """
        if self.rebuilding or self._epochs is None:  # a shadow generation is nobody's cache yet
            return
        try:
            epoch = (await self._epochs.counters([VIEWS_EPOCH]))[0]
        except CacheError as error:  # unreachable now; the older copies it holds go with its epoch later
            self._missed(error)
            return
        through = epoch == before
        if self._view_cache is not None:
            issues = {
                c.doc["id"] if isinstance(c, Put) else c.id for c in changes if c.collection in PUBLIC_DETAIL_SOURCES
            }
            try:
                for change in changes:
                    if isinstance(change, Put) and change.collection in CACHED_COLLECTIONS:
                        await self._view_cache.written(change.collection, change.doc, epoch, retire=not through)
                # after the write-through above: a reader that sees the new stamp reads the new documents
                for issue_id in sorted(issues):
                    await self._view_cache.details.changed(issue_id, epoch=epoch)
                for change in changes:
                    if isinstance(change, Put) and change.collection == FEEDS and change.doc["id"] != ORIGIN:
                        value = orjson.dumps(change.doc) if through else TOMBSTONE
                        await self._view_cache.feeds.changed(change.doc["id"], epoch=epoch, value=value)
            except CacheError as error:
                self._missed(error)
        if self._cache is not None and any(isinstance(c, Put) and c.collection == "issue_summary" for c in changes):
            try:
                generation = await self._cache.incr(BROWSE_GENERATION)
                await self._cache.put_versioned(
                    BROWSE_GENERATION_VALUE, generation, str(generation).encode(), GENERATION_TTL_S, epoch=epoch
                )
            except CacheError as error:
                self._missed(error)

    def _missed(self, error: CacheError) -> None:
        """A write-through the cache did not take: its epoch ends once it answers again (see check_epoch)."""
        self._missed_write_through = True
        log.warning("projection.cache_unavailable", projector=self.name, reason=str(error))

    async def catch_up(self) -> int:
        """Apply everything the log holds now; returns the number of events."""
        total = 0
        while n := await self.run_once():
            total += n
        return total

    async def run_forever(self, stop: asyncio.Event) -> None:
        log.info("projector.started", projector=self.name, checkpoint=self.checkpoint)
        while not stop.is_set():
            try:
                if await self.run_once():
                    continue
                assert self._log is not None
                await self._log.wait(self.checkpoint, self._idle_poll_s)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - the store or log failed: retry the same batch
                self.last_error = f"{type(error).__name__}: {error}"
                log.warning("projector.retry", projector=self.name, reason=self.last_error)
                await asyncio.sleep(1.0)
        log.info("projector.stopped", projector=self.name, checkpoint=self.checkpoint)

    async def progressed(self, timeout: float) -> None:
        """Return after the next batch is committed, or after ``timeout`` seconds."""
        async with self._progress:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._progress.wait(), timeout)

    def reached(self, partition: int, offset: int) -> bool:
        return self.checkpoint.get(partition, -1) >= offset  # Kafka offsets start at 0

    async def wait_until(self, partition: int, offset: int, timeout: float) -> bool:
        """Wait until this worker has applied the given position; False on timeout."""
        async with self._progress:
            try:
                await asyncio.wait_for(self._progress.wait_for(lambda: self.reached(partition, offset)), timeout)
            except TimeoutError:
                return False
        return True
