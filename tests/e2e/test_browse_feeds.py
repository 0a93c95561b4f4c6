"""Browse feeds over HTTP: the pages they serve are byte for byte the summary view's, on both view stores."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI

from ops.seed import Plan, write
from projectors import feeds
from projectors.ports import Delete, Doc, Put, Query, ViewStore
from query_api.browse import Browse
from snapfix.app import create_app
from snapfix.cache import MemoryCache
from tests.conftest import embedded_settings
from tests.contract.backends import require_engine
from tests.e2e.test_query_side import settle
from tests.helpers import auth, fresh, report, sign_up


@pytest.fixture(params=["sqlite", pytest.param("mongodb", marks=pytest.mark.engines)])
async def app(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[FastAPI]:
    """The one-process app on SQLite views, or on MongoDB (FerretDB) views."""
    overrides: dict[str, Any] = {}
    if request.param == "mongodb":
        require_engine("mongodb")
        overrides["view_store"] = f"mongodb://127.0.0.1:27017/snapfix_test_feeds_{uuid.uuid4().hex[:12]}"
    application = create_app(embedded_settings(tmp_path, **overrides), "all")
    async with application.router.lifespan_context(application):
        yield application


async def store_pages(views: ViewStore, **params: Any) -> list[bytes]:
    """Every page of a browse from the summary view alone, as the route would encode it."""
    pages, cursor = [], None
    while True:
        items, cursor = await Browse(**params, cursor=cursor).fetch(views)
        pages.append(orjson.dumps({"items": items, "next_cursor": cursor}))
        if cursor is None:
            return pages


async def route_pages(http: httpx.AsyncClient, **params: Any) -> list[bytes]:
    pages, cursor = [], None
    while True:
        response = await http.get("/v1/issues", params={**params, **({"cursor": cursor} if cursor else {})})
        assert response.status_code == 200, response.text
        pages.append(response.content)
        cursor = response.json()["next_cursor"]
        if cursor is None:
            return pages


def shapes(summaries: list[Doc]) -> list[dict[str, Any]]:
    """Every feed's list, for each value present, one list no issue was ever on, and two lists kept as no feed."""
    out: list[dict[str, Any]] = [{"sort": "upvotes", "category": "pothole"}, {"sort": "oldest"}]
    out.append({"sort": "newest", "category": "no-such-category"})  # a list no issue was ever on: no feed, empty
    for sort, field in feeds.FEEDS:
        if field is None:
            out.append({"sort": sort})
        else:
            out += [{"sort": sort, field: v} for v in sorted({d[field] for d in summaries if d.get(field)})]
    return out


async def assert_feeds_exact(app: FastAPI, http: httpx.AsyncClient, limit: int) -> set[str]:
    """Each feed's list, paged to its end through the route, equals the summary view's pages.

    Returns the feeds that held the list's first page whole (the rest fell back to the view).
    """
    views = app.state.container.views
    served: set[str] = set()
    for shape in shapes(await views.find(Query("issue_summary", limit=10_000))):
        params = {**shape, "limit": limit}
        assert await route_pages(http, **params) == await store_pages(views, **params), shape
        browse = Browse(**params)
        feed_id = browse.feed()
        if feed_id is not None and browse.from_feed(await views.get(feeds.feed_collection.name, feed_id)) is not None:
            served.add(feed_id)
    return served


class TestFeeds:
    async def test_feed_pages_are_the_summary_views_pages_through_changes(
        self, app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        """A seeded city overflows the feeds; then new reports and upvotes move them; every page stays exact."""
        await write(app.state.container.store, Plan(issues=150, users=20, seed=11), "not-a-real-hash")
        await settle(app)
        served = await assert_feeds_exact(app, client, limit=20)
        assert {"newest", "upvotes", "updated"} <= served
        assert len(served) > 10

        ada, ben = await sign_up(client, "Ada"), await sign_up(client, "Ben")
        newest = [await report(client, ada, category=c) for c in ("pothole", "streetlight", "graffiti")]
        for issue in newest[:2]:
            assert (await client.put(f"/v1/issues/{issue['id']}/upvote", headers=auth(ben))).status_code in (200, 204)
        await settle(app)
        served = await assert_feeds_exact(app, client, limit=7)
        assert {"newest", "upvotes", "updated", "newest:category=graffiti"} <= served

    async def test_a_new_issue_heads_the_cached_feed_and_the_fresh_read(
        self, app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        """The projector writes feeds through to the cache: the next page read is a hit showing the new issue."""
        ada = await sign_up(client, "Ada")
        await report(client, ada, title="First")
        await settle(app)
        assert (await client.get("/v1/issues", params={"limit": 5})).status_code == 200
        hits = app.state.page_cache.stats.hits
        second = await report(client, ada, title="Second")
        fresh_read = await client.get("/v1/issues", params={"limit": 5}, headers=fresh(second.get("position")))
        assert fresh_read.json()["items"][0]["id"] == second["id"]
        await settle(app)
        cached = await client.get("/v1/issues", params={"limit": 5})
        assert [i["title"] for i in cached.json()["items"]] == ["Second", "First"]
        assert app.state.page_cache.stats.hits == hits + 1

    async def test_feeds_not_built_from_the_logs_start_are_never_served(
        self, app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        """Feeds added to a deployment that had already projected events hold part of the log: without the
        origin record (written only by a runner starting from the log's start), pages come from the view."""
        ada = await sign_up(client, "Ada")
        reported = [await report(client, ada, title=t) for t in ("Aaa", "Bbb", "Ccc")]
        await settle(app)
        views = app.state.container.views
        name = feeds.feed_collection.name
        feed = await views.get(name, "newest")
        assert feed is not None
        assert await views.get(name, feeds.ORIGIN) is not None
        partial = {**feed, "entries": orjson.dumps(feeds.entries_of(feed)[:1]).decode(), "bound": None}
        await views.commit("late-projector", [Delete(name, feeds.ORIGIN), Put(name, partial)], {})
        app.state.container.cache = MemoryCache()  # nothing cached from before
        listed = await client.get("/v1/issues", params={"limit": 5})
        assert [i["title"] for i in listed.json()["items"]] == ["Ccc", "Bbb", "Aaa"]

        # the origin record is what stands between readers and such a feed
        await views.commit("late-projector", [Put(name, {"id": feeds.ORIGIN, "from_start": True})], {})
        del app.state.page_cache  # a query API started after the rebuild
        listed = await client.get("/v1/issues", params={"limit": 5})
        assert [i["id"] for i in listed.json()["items"]] == [reported[2]["id"]]


class TestTheFeedFastPath:
    async def test_a_popular_first_page_is_the_routes_answer_without_the_route(
        self, app: FastAPI, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A feed's first page is answered before FastAPI (query_api/fast_detail.py) with the route's bytes and
        headers; anything else (another parameter, a comma list, a bad limit) is the route's."""
        from query_api.routes import issues as issue_routes

        calls: list[str | None] = []
        real = issue_routes.feed_page

        async def counted(params: Browse, *args: Any, **kwargs: Any) -> bytes | None:
            calls.append(params.feed())
            return await real(params, *args, **kwargs)

        monkeypatch.setattr(issue_routes, "feed_page", counted)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
            ada = await sign_up(http)
            for _ in range(3):
                await report(http, ada)
            await settle(app)
            fast = await http.get("/v1/issues?status=reported&limit=2")
            assert fast.status_code == 200
            assert calls == []
            routed = await http.get("/v1/issues?status=reported&limit=2&unused=1")
            assert calls == ["newest:status=reported"]
            assert fast.content == routed.content
            for name in ("etag", "cache-control", "content-type", "content-length"):
                assert fast.headers[name] == routed.headers[name], name
            assert len(fast.json()["items"]) == 2
            assert fast.json()["next_cursor"]
            unchanged = await http.get(
                "/v1/issues?status=reported&limit=2", headers={"If-None-Match": fast.headers["etag"]}
            )
            assert unchanged.status_code == 304
            assert calls == ["newest:status=reported"]
            assert (await http.get("/v1/issues?status=reported,acknowledged")).status_code == 200
            assert (await http.get("/v1/issues?limit=0")).status_code == 422
            assert (await http.get("/v1/issues?sort=sideways")).status_code == 422
            assert len(calls) == 2  # the comma list went to the route; the refusals never reached feed_page
