"""Cache-aside for the first pages of browse queries, and cache hit/miss counts as Prometheus metrics.

Browse feeds (projectors/feeds.py) are cached under per-feed stamps (snapfix/stamped.py):
the projector writes each changed feed through, so a popular list's page is a hit even
right after a new issue joined it. Other first pages are cached as below.

A page is cached under the summary view's generation, which the projector bumps
after every commit that changed a summary (``BROWSE_GENERATION_VALUE``). A new
generation is a new key space, so a page computed before a change is never read
after the projector has published that change; old pages simply age out. While
no generation is published (a fresh cache), readers publish a random one: any
projector bump replaces it (its version is higher), and a random value never
meets pages of an earlier life of the cache.

The generation, like every cached value, is stored in an epoch and read with it
(snapfix/cache.py ``VIEWS_EPOCH``), so a rebuild's swap of the summary view (which
ends the epoch) makes it a miss: readers then publish a random one in the new epoch,
a new key space again, which any projector bump of that epoch replaces. Pages are
stored in the epoch too; the check rides on reads that were there already.
"""

from __future__ import annotations

import contextlib
import time
import uuid
import weakref
from collections.abc import Awaitable, Callable, Iterator

import orjson
from prometheus_client.core import REGISTRY, CounterMetricFamily
from prometheus_client.registry import Collector

from projectors.feeds import feed_collection
from projectors.ports import Doc
from projectors.runner import BROWSE_GENERATION_VALUE, GENERATION_TTL_S
from snapfix.cache import VIEWS_EPOCH, Cache, CacheError, CacheStats, lookup
from snapfix.stamped import Stamped

ORIGIN_RECHECK_S = 5.0


class PageCache:
    """First pages of popular browse queries, invalidated by generation."""

    def __init__(self, cache: Cache, ttl_s: int, stats: CacheStats | None = None, *, feed_ttl_s: int = 300) -> None:
        self._cache = cache
        self._ttl = ttl_s
        self.stats = stats or CacheStats()
        self._feeds = Stamped(cache, feed_collection.name, feed_ttl_s, self.stats)
        self._trusted = False
        self._checked_at = -ORIGIN_RECHECK_S

    async def feeds_trusted(self, load_origin: Callable[[], Awaitable[Doc | None]]) -> bool:
        """Whether the feeds were built from the log's start (projectors/feeds.py ``ORIGIN``), asked again
        every few seconds until they are: a deployment that gained feeds serves them after its rebuild."""
        if self._trusted:
            return True
        now = time.monotonic()
        if now - self._checked_at >= ORIGIN_RECHECK_S:
            self._checked_at = now
            self._trusted = await load_origin() is not None
        return self._trusted

    async def feed(self, feed_id: str, load: Callable[[], Awaitable[Doc | None]]) -> Doc | None:
        """A browse feed from the cache, or from ``load`` (then cached unless the projector changed it meanwhile)."""
        if (hit := await self._feeds.get(feed_id)) is not None:
            return orjson.loads(hit)  # type: ignore[no-any-return]
        stamp = await self._feeds.stamp(feed_id)  # before the view: see snapfix/stamped.py
        doc = await load()
        if doc is not None and stamp is not None:
            await self._feeds.put(feed_id, stamp, orjson.dumps(doc))
        return doc

    async def get(self, key: str, load: Callable[[], Awaitable[bytes]]) -> bytes:
        """The page's bytes from the cache, or from ``load`` (then cached under the current generation)."""
        found = await self._generation()
        if found is None:  # the cache is down: correct, uncached
            self.stats.misses += 1
            return await load()
        generation, epoch = found
        full = f"page:issue_summary:{generation}:{key}"
        hit, _ = await lookup(self._cache, full, self.stats)
        if hit is not None:
            return hit
        raw = await load()
        with contextlib.suppress(CacheError):
            await self._cache.put_versioned(full, 0, raw, self._ttl, epoch=epoch)
        return raw

    async def _generation(self) -> tuple[str, int] | None:
        """The generation published in the current epoch (published first if none is), and that epoch."""
        try:
            current, epoch = await self._cache.get_current(BROWSE_GENERATION_VALUE, VIEWS_EPOCH)
            if current is None:
                await self._cache.put_versioned(
                    BROWSE_GENERATION_VALUE, 0, f"r{uuid.uuid4().hex}".encode(), GENERATION_TTL_S, epoch=epoch
                )
                current, epoch = await self._cache.get_current(BROWSE_GENERATION_VALUE, VIEWS_EPOCH)
        except CacheError:
            return None
        return None if current is None else (current.decode(), epoch)


class _CacheMetrics(Collector):
    """Sums the hit and miss counts of every live cache of this process, by cache."""

    def __init__(self) -> None:
        self._tracked: weakref.WeakKeyDictionary[CacheStats, str] = weakref.WeakKeyDictionary()

    def track(self, stats: CacheStats, cache: str) -> None:
        self._tracked[stats] = cache

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "snapfix_cache_lookups", "Query-side cache lookups by cache and result", labels=["cache", "result"]
        )
        totals: dict[tuple[str, str], int] = {}
        for stats, cache in list(self._tracked.items()):
            for result, n in (("hit", stats.hits), ("miss", stats.misses)):
                totals[(cache, result)] = totals.get((cache, result), 0) + n
        for (cache, result), n in sorted(totals.items()):
            family.add_metric([cache, result], n)
        yield family


METRICS = _CacheMetrics()
REGISTRY.register(METRICS)
