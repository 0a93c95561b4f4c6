"""The cache port, its in-process LRU adapter, and the version-stamped view cache built on it.

Views are cached under their id with their version: the projector writes each
changed document through, and a reader fills a miss only if no newer version is
there, so a reader that raced a projector can never leave a stale entry behind.
"""

from __future__ import annotations

import abc
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import orjson


class CacheError(Exception):
    """The cache failed; callers treat this as a miss and carry on uncached."""


class Cache(abc.ABC):
    """Bytes under string keys, each with a version and a time to live."""

    @abc.abstractmethod
    async def get(self, key: str) -> bytes | None:
        """The value, or None on a miss or expiry."""

    @abc.abstractmethod
    async def put_versioned(self, key: str, version: int, value: bytes, ttl_s: int) -> bool:
        """Store unless an entry with a version >= ``version`` is there; True if stored."""

    @abc.abstractmethod
    async def incr(self, key: str) -> int:
        """Add one to a counter (created at 0) and return it; counters do not expire."""

    @abc.abstractmethod
    async def counter(self, key: str) -> int:
        """A counter's value without changing it (0 if it was never incremented)."""

    @abc.abstractmethod
    async def delete(self, key: str) -> None:
        """Forget a key."""

    async def ping(self) -> None:  # noqa: B027
        """Raise CacheError if the cache cannot answer."""

    async def close(self) -> None:  # noqa: B027
        """Release connections."""


@dataclass(slots=True)
class _Entry:
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

    async def get(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.expires <= self._clock():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry.value

    async def put_versioned(self, key: str, version: int, value: bytes, ttl_s: int) -> bool:
        if self._capacity == 0:
            return False
        current = self._entries.get(key)
        if current is not None and current.version >= version and current.expires > self._clock():
            return False
        self._entries[key] = _Entry(version, value, self._clock() + ttl_s)
        self._entries.move_to_end(key)
        while len(self._entries) > self._capacity:
            self._entries.popitem(last=False)
        return True

    async def incr(self, key: str) -> int:
        self._counters[key] = self._counters.get(key, 0) + 1
        return self._counters[key]

    async def counter(self, key: str) -> int:
        return self._counters.get(key, 0)

    async def delete(self, key: str) -> None:
        self._entries.pop(key, None)
        self._counters.pop(key, None)


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


async def lookup(cache: Cache, key: str, stats: CacheStats, *, count_miss: bool = True) -> bytes | None:
    """The bytes cached under ``key``, counted as a hit or a miss.

    A cache that is down is a miss, and so is an empty value (a tombstone: cached values never are empty).
    """
    try:
        hit = await cache.get(key)
    except CacheError:
        hit = None
    if hit:
        stats.hits += 1
        return hit
    if count_miss:
        stats.misses += 1
    return None


class ViewCache:
    """Cache-aside for view documents, keyed by collection and id, guarded by the document version."""

    def __init__(self, cache: Cache, ttl_s: int, stats: CacheStats | None = None) -> None:
        from snapfix.detail_cache import DetailResponses  # it imports this module
        from snapfix.stamped import Stamped

        self._cache = cache
        self._ttl = ttl_s
        self.stats = stats or CacheStats()
        self.details = DetailResponses(cache, ttl_s, self.stats)  # public issue details, counted as view reads
        self.feeds = Stamped(cache, "issue_feed", ttl_s, self.stats)  # browse feeds, written through by the projector

    @staticmethod
    def key(collection: str, doc_id: str) -> str:
        return f"view:{collection}:{doc_id}"

    async def get(self, collection: str, doc_id: str, load: Loader) -> bytes | None:
        """The document's JSON bytes, from the cache if there, else from ``load`` (and then cached)."""
        key = self.key(collection, doc_id)
        if (hit := await lookup(self._cache, key, self.stats)) is not None:
            return hit
        doc = await load()
        if doc is None:
            return None
        raw = orjson.dumps(doc)
        await self._put(key, int(doc.get("version", 0)), raw)
        return raw

    async def written(self, collection: str, doc: dict) -> None:
        """The projector changed a document: write it through so no older copy can be served."""
        await self._put(self.key(collection, doc["id"]), int(doc.get("version", 0)), orjson.dumps(doc))

    async def _put(self, key: str, version: int, raw: bytes) -> None:
        try:
            await self._cache.put_versioned(key, version, raw, self._ttl)
        except CacheError:
            return
