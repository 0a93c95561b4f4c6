"""The projector ends the cache's epoch whenever an older copy may have outlived its change.

The cache's time to live is a memory bound (an hour by default), not a staleness one. Two
moments could leave an older copy in the cache with nothing to retire it: a projector that
died between a commit and its write-through (the runner that takes over starts after that
commit), and a write-through the cache did not take. So a runner ends the epoch when it
starts, and after such a write-through at its next check that reaches the cache.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from events.sqlite_log import SqliteEventLog
from ops.seed import Plan, write
from projectors.catalog import ALL
from projectors.runner import ProjectionRunner
from projectors.sqlite_views import SqliteViewStore
from snapfix.cache import VIEWS_EPOCH, CacheError, MemoryCache, ViewCache

SENTINEL = ViewCache.key("issue_detail", "sentinel")


class FlakyCache(MemoryCache):
    """An in-process cache that can be taken down and brought back, keeping what it held."""

    down = False

    def _check(self) -> None:
        if self.down:
            raise CacheError("down")

    async def get(self, key: str) -> bytes | None:
        self._check()
        return await super().get(key)

    async def get_current(self, key: str, epoch_key: str) -> tuple[bytes | None, int]:
        self._check()
        return await super().get_current(key, epoch_key)

    async def put_versioned(self, key: str, version: int, value: bytes, ttl_s: int, *, epoch: int = 0) -> bool:
        self._check()
        return await super().put_versioned(key, version, value, ttl_s, epoch=epoch)

    async def incr(self, key: str) -> int:
        self._check()
        return await super().incr(key)

    async def counter(self, key: str) -> int:
        self._check()
        return await super().counter(key)

    async def counters(self, keys: Sequence[str]) -> list[int]:
        self._check()
        return await super().counters(keys)

    async def follow(self, key: str, label: str) -> int:
        self._check()
        return await super().follow(key, label)


@pytest.fixture
async def log(tmp_path: Path) -> AsyncIterator[SqliteEventLog]:
    events = SqliteEventLog(f"sqlite:///{tmp_path / 'events.db'}")
    await events.open()
    await write(events, Plan(issues=5, users=3, seed=1), "hash")
    yield events
    await events.close()


async def served(cache: MemoryCache, key: str) -> bytes | None:
    return (await cache.get_current(key, VIEWS_EPOCH))[0]


async def store_sentinel(cache: MemoryCache) -> None:
    """An entry stored in the current epoch, as a reader's fill would be."""
    epoch = (await cache.counters([VIEWS_EPOCH]))[0]
    await cache.put_versioned(SENTINEL, 1, b"old copy", 3600, epoch=epoch)


def runner_for(tmp_path: Path, log: SqliteEventLog, cache: MemoryCache) -> ProjectionRunner:
    store = SqliteViewStore(f"sqlite:///{tmp_path / 'views.db'}")
    return ProjectionRunner("main", ALL, log, store, cache=cache, view_cache=ViewCache(cache, 3600))


async def test_a_runner_that_starts_ends_the_epoch(tmp_path: Path, log: SqliteEventLog) -> None:
    """It may follow one that died between a commit and its write-through."""
    cache = FlakyCache()
    await runner_for(tmp_path, log, cache).setup()  # the one before: it published the views' generations
    await store_sentinel(cache)
    assert await served(cache, SENTINEL) == b"old copy"
    await runner_for(tmp_path, log, cache).setup()
    assert await served(cache, SENTINEL) is None


async def test_a_write_through_the_cache_did_not_take_ends_the_epoch_once_it_answers(
    tmp_path: Path, log: SqliteEventLog
) -> None:
    """Normal batches keep the epoch; a batch whose write-through failed ends it at the next check."""
    cache = FlakyCache()
    runner = runner_for(tmp_path, log, cache)
    await runner.setup()
    await runner.catch_up()
    await store_sentinel(cache)
    await write(log, Plan(issues=2, users=1, seed=2), "hash")
    await runner.catch_up()
    assert await served(cache, SENTINEL) == b"old copy"  # write-throughs that landed end nothing

    cache.down = True
    await write(log, Plan(issues=2, users=1, seed=3), "hash")
    assert await runner.catch_up() > 0  # the views move on without the cache
    cache.down = False
    assert await served(cache, SENTINEL) == b"old copy"  # until the projector reaches the cache again
    await runner.check_epoch()
    assert await served(cache, SENTINEL) is None
