"""After a rebuild swaps a view, nothing cached from its old generation is served: details, feeds, pages.

A rebuild exists to change what the views hold (a fold fixed): here the rebuilt folds write
titles in capitals, and every read after the swap must show them, though no issue changed.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI

from events.sqlite_log import SqliteEventLog
from ops.rebuild import EpochUnpublished, rebuild
from projectors.catalog import ALL, BY_NAME
from projectors.feeds import feed_id
from projectors.ports import Change, Doc
from projectors.projection import Projection
from projectors.runner import BROWSE_GENERATION_VALUE, EPOCH_CHECK_S, ProjectionRunner
from projectors.sqlite_views import SqliteViewStore
from snapfix.bootstrap import MAIN_PROJECTOR
from snapfix.cache import VIEWS_EPOCH, Cache, MemoryCache, ViewCache
from snapfix.settings import Settings
from tests.conftest import embedded_settings
from tests.contract.backends import require_engine
from tests.contract.test_cache import REDIS_URL, forget_keys
from tests.e2e.test_query_side import BrokenCache, settle
from tests.helpers import auth, report, sign_up
from tests.integration.test_rebuild import operator

TITLE = "Pothole on Elm Street"
DETAIL_VIEWS = ("issue_detail", "issue_summary")  # the detail's own view, and the summary with its feeds
READS = {
    "detail": None,  # filled in with the issue's path
    "feed": "/v1/issues?limit=5",  # the newest feed, written through by the projector
    "page": "/v1/issues?q=pothole&limit=5",  # a search: no feed, a page cached under the browse generation
}


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.engines)])
async def settings(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Settings]:
    """The embedded deployment with its in-process cache, or with Redis (keys under a prefix of this test)."""
    if request.param == "redis":
        require_engine("redis")
        prefix = f"test-{uuid.uuid4().hex}:"
        yield embedded_settings(tmp_path, cache=REDIS_URL, cache_prefix=prefix)
        await forget_keys(prefix)
        return
    yield embedded_settings(tmp_path)


def shouting(projection: Projection) -> Projection:
    """The projection with a changed fold (titles in capitals), as a fixed fold that a rebuild rolls out."""

    def fold(doc: Doc | None, env: Any, event: Any) -> Doc | None:
        new = projection.fold(doc, env, event)
        if new is None or new is doc or "title" not in new:
            return new
        return {**new, "title": new["title"].upper()}

    return replace(projection, fold=fold)


async def cached_reads(client: httpx.AsyncClient, issue_id: str) -> dict[str, bytes]:
    """Each read twice: the second one is served from the cache."""
    paths = {**READS, "detail": f"/v1/issues/{issue_id}"}
    out = {}
    for name, path in paths.items():
        assert path is not None
        for _ in range(2):
            response = await client.get(path)
            assert response.status_code == 200, response.text
        out[name] = response.content
    return out


async def warm(app: FastAPI, client: httpx.AsyncClient) -> tuple[str, dict[str, bytes]]:
    """One issue, its detail, its feed and a search page, all cached and showing the title as first folded."""
    ada = await sign_up(client)
    issue = await report(client, ada, title=TITLE)
    await settle(app)
    before = await cached_reads(client, issue["id"])
    assert all(TITLE.encode() in body for body in before.values()), before
    c = app.state.container
    assert c.view_cache.stats.hits >= 1
    assert app.state.page_cache.stats.hits >= 2  # the feed and the page
    return issue["id"], before


def shows_rebuilt(reads: Mapping[str, bytes]) -> bool:
    return all(TITLE.upper().encode() in body and TITLE.encode() not in body for body in reads.values())


class TestRebuildEndsTheCachedGeneration:
    async def test_a_rebuild_given_the_cache_leaves_nothing_of_the_old_generation_served(
        self, app: FastAPI, client: httpx.AsyncClient, settings: Settings
    ) -> None:
        """As soon as the rebuilds return, the detail, the feed and the search page show the rebuilt views."""
        issue_id, _ = await warm(app, client)
        log, views = await operator(settings)
        cache = app.state.container.cache  # the deployment's cache: Redis, or the app's own in this process
        for name in DETAIL_VIEWS:
            await rebuild(shouting(BY_NAME[name]), log, views, leader=MAIN_PROJECTOR, grace_s=0, cache=cache)
        after = await cached_reads(client, issue_id)
        assert shows_rebuilt(after), after
        assert orjson.loads(after["detail"])["title"] == TITLE.upper()
        # then cached again, in the new epoch: the second reads above were hits
        hits = app.state.container.view_cache.stats.hits
        assert (await client.get(f"/v1/issues/{issue_id}")).content == after["detail"]
        assert app.state.container.view_cache.stats.hits == hits + 1
        await views.close()
        await log.close()

    async def test_the_live_projector_ends_it_when_the_rebuild_cannot_reach_the_cache(
        self, app: FastAPI, client: httpx.AsyncClient, settings: Settings
    ) -> None:
        """`snapfix rebuild` in its own process cannot see an in-process cache: the projector publishes the swap."""
        issue_id, _ = await warm(app, client)
        log, views = await operator(settings)
        for name in DETAIL_VIEWS:
            await rebuild(shouting(BY_NAME[name]), log, views, leader=MAIN_PROJECTOR, grace_s=0)
        swapped = time.monotonic()
        while not shows_rebuilt(after := await cached_reads(client, issue_id)):
            assert time.monotonic() - swapped < EPOCH_CHECK_S + 5, after
            await asyncio.sleep(0.05)
        await views.close()
        await log.close()

    async def test_a_cache_down_at_the_swap_fails_the_rebuild_loudly_and_a_rerun_publishes(
        self, app: FastAPI, client: httpx.AsyncClient, settings: Settings
    ) -> None:
        """The swap stands; the rebuild says the cache may still serve the old generation; running it again ends it."""
        issue_id, before = await warm(app, client)
        log, views = await operator(settings)
        projection, cache = shouting(BY_NAME["issue_detail"]), app.state.container.cache
        app.state.container.runner._epochs = BrokenCache()  # the live projector cannot publish either, for now
        down = BrokenCache()
        with pytest.raises(EpochUnpublished):
            await rebuild(projection, log, views, leader=MAIN_PROJECTOR, grace_s=0, cache=down, publish_tries=1)
        assert (await views.generations("issue_detail")).live == 1
        assert (await client.get(f"/v1/issues/{issue_id}")).content == before["detail"]  # the old generation's
        result = await rebuild(projection, log, views, leader=MAIN_PROJECTOR, grace_s=0, cache=cache)
        assert result.resumed
        assert result.dropped
        assert orjson.loads((await client.get(f"/v1/issues/{issue_id}")).content)["title"] == TITLE.upper()
        await views.close()
        await log.close()


class SwapDuringCommit(SqliteViewStore):
    """A view store whose first commit lands just after a swap was published: the batch read the old generation."""

    def __init__(self, url: str, cache: Cache) -> None:
        super().__init__(url)
        self.cache = cache
        self.commits = 0

    async def commit(
        self,
        projector: str,
        changes: Sequence[Change],
        checkpoint: Mapping[int, int],
        *,
        live: Mapping[str, int] | None = None,
    ) -> None:
        self.commits += 1
        if self.commits == 1:
            await self.cache.follow(VIEWS_EPOCH, "a swap published meanwhile")
        await super().commit(projector, changes, checkpoint, live=live)


class TestProjectorAcrossASwap:
    async def test_a_batch_that_straddles_a_published_swap_retires_what_it_touched(
        self, app: FastAPI, client: httpx.AsyncClient, settings: Settings, tmp_path: Path
    ) -> None:
        """What it folded from the old generation is retired in the new epoch, not written through; the next is."""
        ada = await sign_up(client)
        issue = await report(client, ada, title=TITLE)
        await settle(app)
        log = SqliteEventLog(settings.event_log)
        await log.open()
        cache = MemoryCache()
        views = ViewCache(cache, 60)
        store = SwapDuringCommit(f"sqlite:///{tmp_path}/own-views.db", cache)
        runner = ProjectionRunner("own", ALL, log, store, cache=cache, view_cache=views)
        await runner.setup()
        await runner.catch_up()
        newest = feed_id("newest")
        assert await store.get("issue_feed", newest) is not None
        assert (await cache.get_current(ViewCache.key("issue_detail", issue["id"]), VIEWS_EPOCH))[0] == b""
        assert await views.feeds.get(newest) is None
        assert (await cache.get_current(views.feeds.key(newest), VIEWS_EPOCH))[0] == b""  # a tombstone, in the epoch
        assert (await cache.get_current(BROWSE_GENERATION_VALUE, VIEWS_EPOCH))[0] is not None

        commented = await client.post(f"/v1/issues/{issue['id']}/comments", json={"body": "Deeper"}, headers=auth(ada))
        assert commented.status_code in (200, 201, 202), commented.text
        await runner.catch_up()
        detail = (await cache.get_current(ViewCache.key("issue_detail", issue["id"]), VIEWS_EPOCH))[0]
        assert detail is not None
        assert b"Deeper" in detail
        assert await views.feeds.get(newest) is not None
        await store.close()
        await log.close()
