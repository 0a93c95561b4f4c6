"""The final public bytes of ``GET /v1/issues/{id}``, cached whole so a hit is one lookup and a send.

The public form is built from two views, ``issue_detail`` and ``issue_duplicates`` (the
latter changes when *another* issue is marked a duplicate of this one), so neither
document's version alone can guard the cached response. Each issue has a stamp instead, a
counter that the projector bumps after it has committed and written through either
document (``changed``), and then it stores a tombstone under version ``2 * stamp``.

A reader filling a miss reads the stamp *before* it reads the documents and stores its
response under version ``2 * stamp + 1``; the cache's compare-and-set
(``put_versioned``) keeps the higher version. So:

- a reader that read the stamp before the projector's bump may have read old documents;
  its ``2 * s + 1`` is below the tombstone ``2 * (s + 1)``, whichever lands first;
- a reader that read the stamp after the bump read the new documents (they were
  committed and written through before it), and its ``2 * s + 1`` beats the tombstone.

Once ``changed`` has returned, no response built from older documents can be served (a
tombstone lives as long as an entry; a reader slower than half that is not allowed to
store, so it cannot outlive the tombstone that refuses it). Hidden issues are never
stored: the route answers them 404 from the views.

The stamps are counters, which never expire; like the browse generation, they assume a
cache that does not evict keys without a time to live (Redis' default and ``volatile-*``
policies; the in-process cache keeps counters apart from its LRU).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from snapfix.cache import Cache, CacheError, CacheStats

TOMBSTONE = b""
ETAG_END = b"\n"  # an ETag is a quoted hex string: it never holds a newline


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """A cached public detail: the body and its ETag, exactly as the route answers them."""

    body: bytes
    etag: bytes


@dataclass(frozen=True, slots=True)
class Stamp:
    """An issue's stamp as a reader saw it before reading the documents, and when it read it."""

    value: int
    read_at: float


class DetailResponses:
    """Public issue details by issue id, guarded by a per-issue stamp (see the module docstring)."""

    def __init__(self, cache: Cache, ttl_s: int, stats: CacheStats) -> None:
        self._cache = cache
        self._ttl = ttl_s
        self.stats = stats

    @staticmethod
    def key(issue_id: str) -> str:
        return f"public:issue_detail:{issue_id}"

    @staticmethod
    def stamp_key(issue_id: str) -> str:
        return f"stamp:issue_detail:{issue_id}"

    async def get(self, issue_id: str) -> StoredResponse | None:
        """The stored response, or None (miss, tombstone or cache down).

        A hit counts as a hit of the view cache; a miss counts nothing here, because the
        route's own view-cache lookup that follows counts it.
        """
        try:
            raw = await self._cache.get(self.key(issue_id))
        except CacheError:
            return None
        if not raw:
            return None
        etag, _, body = raw.partition(ETAG_END)
        self.stats.hits += 1
        return StoredResponse(body, etag)

    async def stamp(self, issue_id: str) -> Stamp | None:
        """The issue's stamp, to read before reading its documents; None while the cache is down."""
        read_at = time.monotonic()
        try:
            return Stamp(await self._cache.counter(self.stamp_key(issue_id)), read_at)
        except CacheError:
            return None

    async def put(self, issue_id: str, stamp: Stamp, response: StoredResponse) -> None:
        """Store a response built from documents read after ``stamp``; refused if a change came since."""
        if time.monotonic() - stamp.read_at > self._ttl / 2:
            return
        try:
            await self._cache.put_versioned(
                self.key(issue_id), 2 * stamp.value + 1, response.etag + ETAG_END + response.body, self._ttl
            )
        except CacheError:
            return

    async def changed(self, issue_id: str) -> None:
        """The projector committed (and wrote through) a newer detail or duplicates document: retire older responses.

        Raises CacheError when the cache is down (the caller logs it and goes on).
        """
        stamp = await self._cache.incr(self.stamp_key(issue_id))
        await self._cache.put_versioned(self.key(issue_id), 2 * stamp, TOMBSTONE, self._ttl)
