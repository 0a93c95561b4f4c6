"""The final public bytes of ``GET /v1/issues/{id}``, cached whole so a hit is one lookup and a send.

The public form is built from two views, ``issue_detail`` and ``issue_duplicates`` (the
latter changes when *another* issue is marked a duplicate of this one), so neither
document's version alone can guard the cached response. Each issue has a stamp instead
(snapfix/stamped.py): the projector bumps it after it has committed and written through
either document, and stores a tombstone. Like every cached value, a response is served
only in the epoch it was stored in, which a rebuild's swap of either view ends
(snapfix/cache.py). Hidden issues are never stored: the route answers them 404 from
the views.
"""

from __future__ import annotations

from dataclasses import dataclass

from snapfix.cache import Cache, CacheStats
from snapfix.stamped import Stamp, Stamped

ETAG_END = b"\n"  # an ETag is a quoted hex string: it never holds a newline


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """A cached public detail: the body and its ETag, exactly as the route answers them."""

    body: bytes
    etag: bytes


class DetailResponses:
    """Public issue details by issue id, guarded by a per-issue stamp."""

    def __init__(self, cache: Cache, ttl_s: int, stats: CacheStats) -> None:
        self._stamped = Stamped(cache, "issue_detail", ttl_s, stats)
        self.stats = stats

    def key(self, issue_id: str) -> str:
        return self._stamped.key(issue_id)

    def stamp_key(self, issue_id: str) -> str:
        return self._stamped.stamp_key(issue_id)

    async def get(self, issue_id: str) -> StoredResponse | None:
        """The stored response, or None (miss, tombstone or cache down).

        A hit counts as a hit of the view cache; a miss counts nothing here, because the
        route's own view-cache lookup that follows counts it.
        """
        raw = await self._stamped.get(issue_id, count_miss=False)
        if raw is None:
            return None
        etag, _, body = raw.partition(ETAG_END)
        return StoredResponse(body, etag)

    async def stamp(self, issue_id: str) -> Stamp | None:
        """The issue's stamp, to read before reading its documents; None while the cache is down."""
        return await self._stamped.stamp(issue_id)

    async def put(self, issue_id: str, stamp: Stamp, response: StoredResponse) -> None:
        """Store a response built from documents read after ``stamp``; refused if a change came since."""
        await self._stamped.put(issue_id, stamp, response.etag + ETAG_END + response.body)

    async def changed(self, issue_id: str, *, epoch: int) -> None:
        """The projector committed (and wrote through) a newer detail or duplicates document: retire older responses.

        ``epoch`` is the epoch the projector read after its commit. Raises CacheError when the
        cache is down (the caller logs it and goes on).
        """
        await self._stamped.changed(issue_id, epoch=epoch)
