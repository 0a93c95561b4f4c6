"""The cache contract: every Cache adapter keeps values, versions and counters the same way."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from query_api.caching import PageCache
from snapfix.cache import VIEWS_EPOCH, Cache, MemoryCache, ViewCache
from snapfix.detail_cache import StoredResponse
from snapfix.redis_cache import RedisCache
from tests.contract.backends import require_engine

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.engines)])
async def cache(request: pytest.FixtureRequest) -> AsyncIterator[Cache]:
    if request.param == "redis":
        require_engine("redis")
        prefix = f"test-{uuid.uuid4().hex}:"
        adapter: Cache = RedisCache(REDIS_URL, prefix=prefix)
        yield adapter
        await adapter.close()
        await forget_keys(prefix)
        return
    adapter = MemoryCache(capacity=1000)
    yield adapter
    await adapter.close()


async def forget_keys(prefix: str) -> None:
    """Remove what one test left behind (its counters never expire) without touching anyone else's keys."""
    client = Redis.from_url(REDIS_URL)
    try:
        async for found in client.scan_iter(match=f"{prefix}*"):
            await client.delete(found)
    finally:
        await client.aclose()


def key() -> str:
    return f"test:{uuid.uuid4().hex}"


class TestVersionedEntries:
    async def test_a_miss_is_none(self, cache: Cache) -> None:
        """An unknown key is a miss."""
        assert await cache.get(key()) is None

    async def test_a_stored_value_is_returned(self, cache: Cache) -> None:
        """put_versioned on an empty key stores the bytes."""
        k = key()
        assert await cache.put_versioned(k, 1, b"one", 60)
        assert await cache.get(k) == b"one"

    async def test_an_older_or_equal_version_never_replaces_a_newer_one(self, cache: Cache) -> None:
        """A reader that raced the projector cannot overwrite the newer document."""
        k = key()
        await cache.put_versioned(k, 5, b"five", 60)
        assert not await cache.put_versioned(k, 4, b"four", 60)
        assert not await cache.put_versioned(k, 5, b"five-again", 60)
        assert await cache.get(k) == b"five"
        assert await cache.put_versioned(k, 6, b"six", 60)
        assert await cache.get(k) == b"six"

    async def test_entries_expire(self, cache: Cache) -> None:
        """An entry past its time to live is a miss."""
        k = key()
        await cache.put_versioned(k, 1, b"x", 1)
        await asyncio.sleep(1.2)
        assert await cache.get(k) is None

    async def test_delete_forgets(self, cache: Cache) -> None:
        """After delete the key misses and any version can be stored again."""
        k = key()
        await cache.put_versioned(k, 9, b"nine", 60)
        await cache.delete(k)
        assert await cache.get(k) is None
        assert await cache.put_versioned(k, 1, b"one", 60)


class TestCounters:
    async def test_incr_counts_from_one(self, cache: Cache) -> None:
        """A new counter starts at 0, so the first incr answers 1."""
        k = key()
        assert [await cache.incr(k) for _ in range(3)] == [1, 2, 3]

    async def test_counter_reads_without_counting(self, cache: Cache) -> None:
        """counter answers 0 for a new counter and the current value after incr, changing nothing."""
        k = key()
        assert await cache.counter(k) == 0
        await cache.incr(k)
        await cache.incr(k)
        assert [await cache.counter(k), await cache.counter(k)] == [2, 2]


class TestViewCache:
    async def test_a_read_after_the_projector_wrote_never_sees_the_older_copy(self, cache: Cache) -> None:
        """Loader returns v1 (stale read) but the projector already wrote v2: the cache keeps v2."""
        views = ViewCache(cache, 60)
        doc_id = uuid.uuid4().hex
        await views.written("things", {"id": doc_id, "version": 2, "v": "new"}, 0)

        async def stale() -> dict:
            return {"id": doc_id, "version": 1, "v": "old"}

        await cache.delete(ViewCache.key("things", doc_id))
        assert await views.get("things", doc_id, stale) == b'{"id":"' + doc_id.encode() + b'","version":1,"v":"old"}'
        await views.written("things", {"id": doc_id, "version": 2, "v": "new"}, 0)
        raw = await views.get("things", doc_id, stale)
        assert raw is not None
        assert b'"new"' in raw
        assert views.stats.hits == 1
        assert views.stats.misses == 1


class TestEpochs:
    async def test_an_entry_is_served_only_in_the_epoch_it_was_stored_in(self, cache: Cache) -> None:
        """get_current answers the value with the epoch counter; once the counter moves on, a miss."""
        k, epochs = key(), key()
        assert await cache.get_current(k, epochs) == (None, 0)
        await cache.put_versioned(k, 1, b"old", 60)
        assert await cache.get_current(k, epochs) == (b"old", 0)
        assert await cache.follow(epochs, "issue_detail@1") == 1
        assert await cache.get_current(k, epochs) == (None, 1)

    async def test_a_later_epoch_replaces_any_version_and_an_earlier_one_never_does(self, cache: Cache) -> None:
        """Versions are compared within an epoch only: a rebuilt document may keep its version."""
        k, epochs = key(), key()
        await cache.put_versioned(k, 9, b"old generation", 60, epoch=0)
        assert await cache.put_versioned(k, 9, b"new generation", 60, epoch=1)
        assert not await cache.put_versioned(k, 10, b"late old reader", 60, epoch=0)
        assert not await cache.put_versioned(k, 9, b"same again", 60, epoch=1)
        await cache.follow(epochs, "x")
        assert await cache.get_current(k, epochs) == (b"new generation", 1)
        assert await cache.put_versioned(k, 10, b"newer", 60, epoch=1)
        assert await cache.get_current(k, epochs) == (b"newer", 1)

    async def test_follow_moves_once_per_new_label(self, cache: Cache) -> None:
        """Publishing the same label again, from any process, leaves the epoch where it is."""
        epochs = key()
        assert [await cache.follow(epochs, label) for label in ("a@0", "a@0", "a@1", "a@1", "a@0")] == [1, 1, 2, 2, 3]
        assert await cache.counter(epochs) == 3

    async def test_counters_reads_several_at_once(self, cache: Cache) -> None:
        """A stamp and the epoch are read in one round trip; missing counters are 0."""
        a, b = key(), key()
        await cache.incr(a)
        await cache.incr(a)
        assert await cache.counters([a, b]) == [2, 0]

    async def test_stamped_values_of_an_earlier_epoch_are_never_served(self, cache: Cache) -> None:
        """A detail and a feed written through or filled before a swap's epoch are misses after it."""
        views = ViewCache(cache, 60)
        issue, feed = uuid.uuid4().hex, uuid.uuid4().hex
        await views.feeds.changed(feed, epoch=0, value=b'{"v":"old"}')  # the projector's write-through
        stamp = await views.details.stamp(issue)
        assert stamp is not None
        await views.details.put(issue, stamp, StoredResponse(b'{"v":"old"}', b'"o"'))  # a reader's fill
        assert await views.feeds.get(feed) == b'{"v":"old"}'
        assert await views.details.get(issue) is not None
        epoch = await cache.follow(VIEWS_EPOCH, f"swap {uuid.uuid4().hex}")
        assert await views.feeds.get(feed) is None
        assert await views.details.get(issue) is None
        await views.details.put(issue, stamp, StoredResponse(b'{"v":"late"}', b'"l"'))  # a fill that read the old views
        assert await views.details.get(issue) is None
        again = await views.details.stamp(issue)
        assert again is not None
        assert again.epoch == epoch
        await views.details.put(issue, again, StoredResponse(b'{"v":"new"}', b'"n"'))
        assert await views.details.get(issue) == StoredResponse(b'{"v":"new"}', b'"n"')

    async def test_view_documents_that_keep_their_version_are_refilled_in_the_new_epoch(self, cache: Cache) -> None:
        """A rebuilt document with the old one's version is read from the views, then cached again."""
        views = ViewCache(cache, 60)
        doc_id = uuid.uuid4().hex

        async def generation(title: str) -> dict:
            return {"id": doc_id, "version": 3, "title": title}

        assert b"old" in (await views.get("things", doc_id, lambda: generation("old")) or b"")
        assert b"old" in (await views.get("things", doc_id, lambda: generation("unused")) or b"")
        await cache.follow(VIEWS_EPOCH, f"swap {uuid.uuid4().hex}")
        assert b"new" in (await views.get("things", doc_id, lambda: generation("new")) or b"")
        assert b"new" in (await views.get("things", doc_id, lambda: generation("unused")) or b"")
        assert (views.stats.hits, views.stats.misses) == (2, 2)

    async def test_browse_pages_of_an_earlier_epoch_are_never_served(self, cache: Cache) -> None:
        """The page generation is epoch-bound: a swap starts a new key space though no summary changed."""
        pages = PageCache(cache, 60)

        async def page(body: bytes) -> bytes:
            return body

        assert await pages.get("newest", lambda: page(b"old")) == b"old"
        assert await pages.get("newest", lambda: page(b"unused")) == b"old"
        await cache.follow(VIEWS_EPOCH, f"swap {uuid.uuid4().hex}")
        assert await pages.get("newest", lambda: page(b"new")) == b"new"
        assert await pages.get("newest", lambda: page(b"unused")) == b"new"


@pytest.mark.engines
async def test_the_settings_prefix_reaches_every_redis_key() -> None:
    """SNAPFIX_CACHE_PREFIX keeps deployments sharing one Redis database apart."""
    from snapfix.bootstrap import open_cache
    from snapfix.settings import Settings

    require_engine("redis")
    prefix = f"test-{uuid.uuid4().hex}:"
    cache = await open_cache(Settings(cache=REDIS_URL, cache_prefix=prefix))  # type: ignore[call-arg]
    client = Redis.from_url(REDIS_URL)
    try:
        await cache.put_versioned("page:x", 1, b"v", 60)
        await cache.incr("gen:x")
        assert sorted([k async for k in client.scan_iter(match=f"{prefix}*")]) == [
            f"{prefix}gen:x".encode(),
            f"{prefix}page:x".encode(),
        ]
        assert await client.exists("page:x", "gen:x") == 0
    finally:
        await cache.close()
        await client.aclose()
        await forget_keys(prefix)
