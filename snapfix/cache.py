"""The cache port, its in-process LRU adapter, and the version-stamped view cache built on it.

Views are cached under their id with their version: the projector writes each
changed document through, and a reader fills a miss only if no newer version is
there, so a reader that raced a projector can never leave a stale entry behind.

Every entry is also stored in an *epoch*, the value of the ``VIEWS_EPOCH`` counter when
its writer read it, before reading the views it is built from; a read serves an entry
only while the counter still holds its epoch (``get_current``), and an entry of a later
epoch replaces any entry of an earlier one whatever their versions. A rebuild swaps in a
new generation of a view: its documents may keep their versions, and the per-key stamps
say nothing of generations, so the swap ends the epoch instead. The counter follows a
label of the live generations of the cached views (``follow``; projectors/runner.py
``publish_views_epoch``): the rebuild publishes it right after its swap, and the live
projector on start and every second after (the Kafka worker: on a timer between batches),
so a swap also reaches an in-process cache the rebuild's own process cannot see, and a
cache that was down at the swap. Publishing the same label again changes nothing, so any
number of processes may do it. A projector also ends the epoch outright (``incr``) when
it starts and after a write-through the cache did not take, so the time to live bounds
memory, not how long an older copy can be served. The check
costs no round trip of its own: the epoch is read with the value, and with the stamp
(``counters``). Old entries are not deleted: they are never served again and age out.
"""

from __future__ import annotations

import abc
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import orjson

VIEWS_EPOCH = "epoch:views"  # the counter every cached value is stored in and served under (see above)
TOMBSTONE = b""  # an entry that retires older ones and is served as a miss (cached values never are empty)


class CacheError(Exception):
    """The cache failed; callers treat this as a miss and carry on uncached."""


class Cache(abc.ABC):
    """Bytes under string keys, each with a version and a time to live."""

    @abc.abstractmethod
    async def get(self, key: str) -> bytes | None:
        """The value, or None on a miss or expiry."""

    @abc.abstractmethod
    async def get_current(self, key: str, epoch_key: str) -> tuple[bytes | None, int]:
        """The value if it was stored in the epoch the counter ``epoch_key`` holds now, and that epoch.

        One round trip: the epoch check is folded into the read it guards.
        """

    @abc.abstractmethod
    async def put_versioned(self, key: str, version: int, value: bytes, ttl_s: int, *, epoch: int = 0) -> bool:
        """Store unless an entry of a later epoch, or of the same epoch with a version >= ``version``, is there.

        True if stored.
        """

    @abc.abstractmethod
    async def incr(self, key: str) -> int:
        """Add one to a counter (created at 0) and return it; counters do not expire."""

    @abc.abstractmethod
    async def counter(self, key: str) -> int:
        """A counter's value without changing it (0 if it was never incremented)."""

    @abc.abstractmethod
    async def counters(self, keys: Sequence[str]) -> list[int]:
        """Several counters' values in one round trip, without changing them."""

    @abc.abstractmethod
    async def follow(self, key: str, label: str) -> int:
        """Add one to a counter unless ``label`` is the label it last followed; return the counter.

        Atomic, so processes that publish the same label together move it once.
        """

    @abc.abstractmethod
    async def delete(self, key: str) -> None:
        """Forget a key."""

    async def ping(self) -> None:  # noqa: B027
        """Raise CacheError if the cache cannot answer."""

    async def close(self) -> None:  # noqa: B027
        """Release connections."""


@dataclass(slots=True)
class _Entry:
    epoch: int
    version: int
    value: bytes
    expires: float


class MemoryCache(Cache):
    """An in-process LRU with per-entry expiry, for the one-process deployment."""

    def __init__(self, capacity: int = 50_000, clock: Callable[[], float] = time.monotonic) -> None:
        self._capacity = capacity
        self._clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._counters: dict[str, int] = {}
        self._labels: dict[str, str] = {}

    def _live(self, key: str) -> _Entry | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.expires <= self._clock():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry

    async def get(self, key: str) -> bytes | None:
        entry = self._live(key)
        return None if entry is None else entry.value

    async def get_current(self, key: str, epoch_key: str) -> tuple[bytes | None, int]:
        epoch = self._counters.get(epoch_key, 0)
        entry = self._live(key)
        return (entry.value if entry is not None and entry.epoch == epoch else None), epoch

    async def put_versioned(self, key: str, version: int, value: bytes, ttl_s: int, *, epoch: int = 0) -> bool:
        if self._capacity == 0:
            return False
        current = self._entries.get(key)
        if (
            current is not None
            and (current.epoch, current.version) >= (epoch, version)
            and current.expires > self._clock()
        ):
            return False
        self._entries[key] = _Entry(epoch, version, value, self._clock() + ttl_s)
        self._entries.move_to_end(key)
        while len(self._entries) > self._capacity:
            self._entries.popitem(last=False)
        return True

    async def incr(self, key: str) -> int:
        self._counters[key] = self._counters.get(key, 0) + 1
        return self._counters[key]

    async def counter(self, key: str) -> int:
        return self._counters.get(key, 0)

    async def counters(self, keys: Sequence[str]) -> list[int]:
        return [self._counters.get(key, 0) for key in keys]

    async def follow(self, key: str, label: str) -> int:
        if self._labels.get(key) != label:
            self._labels[key] = label
            self._counters[key] = self._counters.get(key, 0) + 1
        return self._counters.get(key, 0)

    async def delete(self, key: str) -> None:
        self._entries.pop(key, None)
        self._counters.pop(key, None)
        self._labels.pop(key, None)


class CacheStats:
    """Hit and miss counts, exported as metrics."""

    def __init__(self) -> None:
        self.hits = 0
        self.misses = 0

    @property
    def ratio(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


Loader = Callable[[], Awaitable[dict | None]]


async def lookup(
    cache: Cache, key: str, stats: CacheStats, *, count_miss: bool = True
) -> tuple[bytes | None, int | None]:
    """The bytes cached under ``key`` in the current epoch, counted as a hit or a miss, and that epoch.

    A cache that is down is a miss (and no epoch: nothing read then may be stored), and so is
    a tombstone or an entry of an earlier epoch.
    """
    try:
        hit, epoch = await cache.get_current(key, VIEWS_EPOCH)
    except CacheError:
        hit, epoch = None, None
    if hit:
        stats.hits += 1
        return hit, epoch
    if count_miss:
        stats.misses += 1
    return None, epoch


class ViewCache:
    """Cache-aside for view documents, keyed by collection and id, guarded by the document version and the epoch."""

    def __init__(self, cache: Cache, ttl_s: int, stats: CacheStats | None = None) -> None:
        from snapfix.detail_cache import DetailResponses  # it imports this module
        from snapfix.stamped import Stamped

        self.cache = cache
        self._ttl = ttl_s
        self.stats = stats or CacheStats()
        self.details = DetailResponses(cache, ttl_s, self.stats)  # public issue details, counted as view reads
        self.feeds = Stamped(cache, "issue_feed", ttl_s, self.stats)  # browse feeds, written through by the projector

    @staticmethod
    def key(collection: str, doc_id: str) -> str:
        return f"view:{collection}:{doc_id}"

    async def get(self, collection: str, doc_id: str, load: Loader) -> bytes | None:
        """The document's JSON bytes, from the cache if there, else from ``load`` (cached in the epoch read first)."""
        key = self.key(collection, doc_id)
        hit, epoch = await lookup(self.cache, key, self.stats)
        if hit is not None:
            return hit
        doc = await load()
        if doc is None:
            return None
        raw = orjson.dumps(doc)
        if epoch is not None:
            await self._put(key, int(doc.get("version", 0)), raw, epoch)
        return raw

    async def cached(self, collection: str, doc_id: str) -> bytes | None:
        """The document's bytes if the cache holds them in the current epoch (counted), else None: no load."""
        key = self.key(collection, doc_id)
        hit, _ = await lookup(self.cache, key, self.stats, count_miss=False)
        return hit

    async def written(self, collection: str, doc: dict, epoch: int, *, retire: bool = False) -> None:
        """The projector changed a document: write it through so no older copy can be served.

        ``retire``: store a tombstone instead, when the projector cannot tell whether the document
        was folded from the generation now live (see projectors/runner.py ``_after_commit``).
        Raises CacheError: the projector must know that an older copy may still be served.
        """
        raw = TOMBSTONE if retire else orjson.dumps(doc)
        await self.cache.put_versioned(self.key(collection, doc["id"]), int(doc.get("version", 0)), raw, self._ttl,
                                       epoch=epoch)  # fmt: skip

    async def _put(self, key: str, version: int, raw: bytes, epoch: int) -> None:
        try:
            await self.cache.put_versioned(key, version, raw, self._ttl, epoch=epoch)
        except CacheError:
            return
