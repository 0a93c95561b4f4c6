"""Cache entries guarded by a per-key stamp, so a reader racing the projector never leaves a stale entry.

Some cached values are not one view document with its own version: a public issue
detail is built from two views, and a browse feed's own version restarts when its view
is rebuilt. Each key has a stamp instead, a counter in the cache that the projector bumps
after it has committed a change (``changed``), and then it stores either the new value
(write-through) or a tombstone under version ``2 * stamp``.

A reader filling a miss reads the stamp *before* it reads the views and stores its value
under version ``2 * stamp + 1``; the cache's compare-and-set (``put_versioned``) keeps the
higher version. So:

- a reader that read the stamp before the projector's bump may have read old views;
  its ``2 * s + 1`` is below the projector's ``2 * (s + 1)``, whichever lands first;
- a reader that read the stamp after the bump read the new views (they were committed
  before it), and its ``2 * s + 1`` may replace the projector's entry with the same value.

Once ``changed`` has returned, no value built from older views can be served (the
projector's entry lives as long as any other; a reader slower than half that is not
allowed to store, so it cannot outlive the entry that refuses it).

Values are also stored in the epoch read with the stamp (one ``counters`` round trip), and
served only in it (snapfix/cache.py): a rebuild's swap ends the epoch, so no value built
from the old generation is served after it, though no key's stamp moved. The projector's
``changed`` stores in the epoch it read after its commit, which is at least the epoch of
any reader that read the views before that commit, so the stamp order above still holds.

The stamps (and the epoch) are counters, which never expire; like the browse generation, they assume a
cache that does not evict keys without a time to live (Redis' default and ``volatile-*``
policies; the in-process cache keeps counters apart from its LRU).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from snapfix.cache import TOMBSTONE, VIEWS_EPOCH, Cache, CacheError, CacheStats, lookup


@dataclass(frozen=True, slots=True)
class Stamp:
    """A key's stamp and the epoch as a reader saw them before reading the views, and when it read them."""

    value: int
    epoch: int
    read_at: float


class Stamped:
    """Values under ``{kind}`` keys guarded by per-key stamps (see the module docstring)."""

    def __init__(self, cache: Cache, kind: str, ttl_s: int, stats: CacheStats) -> None:
        self._cache = cache
        self._kind = kind
        self._ttl = ttl_s
        self.stats = stats

    def key(self, key: str) -> str:
        return f"public:{self._kind}:{key}"

    def stamp_key(self, key: str) -> str:
        return f"stamp:{self._kind}:{key}"

    async def get(self, key: str, *, count_miss: bool = True) -> bytes | None:
        """The stored value, or None (a miss, a tombstone, an earlier epoch's or a cache that is down), counted."""
        hit, _ = await lookup(self._cache, self.key(key), self.stats, count_miss=count_miss)
        return hit

    async def stamp(self, key: str) -> Stamp | None:
        """The key's stamp and the epoch, to read before reading the views; None while the cache is down."""
        read_at = time.monotonic()
        try:
            value, epoch = await self._cache.counters([self.stamp_key(key), VIEWS_EPOCH])
        except CacheError:
            return None
        return Stamp(value, epoch, read_at)

    async def put(self, key: str, stamp: Stamp, value: bytes) -> None:
        """Store a value built from views read after ``stamp``; refused if a change came since."""
        if time.monotonic() - stamp.read_at > self._ttl / 2:
            return
        try:
            await self._cache.put_versioned(self.key(key), 2 * stamp.value + 1, value, self._ttl, epoch=stamp.epoch)
        except CacheError:
            return

    async def changed(self, key: str, *, epoch: int, value: bytes = TOMBSTONE) -> None:
        """The projector committed a change: retire older values, or write the new one through.

        ``epoch`` is the epoch the projector read after its commit. Raises CacheError when the
        cache is down (the caller logs it and goes on).
        """
        stamp = await self._cache.incr(self.stamp_key(key))
        await self._cache.put_versioned(self.key(key), 2 * stamp, value, self._ttl, epoch=epoch)
