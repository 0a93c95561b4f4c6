"""The cached public issue detail and its fast path, on the in-process cache and on Redis.

A hit is answered before FastAPI routing (query_api/fast_detail.py) with bytes stored by
the route; these tests hold it to the route's exact answer, and hold the cache to the
issue's promise: once the projector has applied an event, no older public form is served.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY

from projectors.ports import Doc
from query_api.routes import issues as issue_routes
from snapfix.app import create_app
from snapfix.cache import MemoryCache, ViewCache
from snapfix.detail_cache import DetailResponses, StoredResponse
from tests.conftest import embedded_settings
from tests.contract.backends import require_engine
from tests.e2e.test_query_side import BrokenCache, SwitchableViews, settle
from tests.helpers import auth, fresh, make_user, report, sign_up

SAME_HEADERS = ("etag", "cache-control", "content-type", "content-length")


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.engines)])
async def app(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[FastAPI]:
    """The one-process app with its projector, its cache in process or on the shared Redis."""
    overrides: dict[str, object] = {}
    if request.param == "redis":
        require_engine("redis")
        overrides["cache"] = "redis://127.0.0.1:6379/0"  # keys hold the issues' fresh uuids: no clash with others
    application = create_app(embedded_settings(tmp_path, **overrides), "all")
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://snapfix.test") as http:
        yield http


@pytest.fixture
def route_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Issue ids the detail route built or looked up itself (a fast-path hit never gets there)."""
    calls: list[str] = []
    real = issue_routes._current_detail

    async def counted(issue_id: str, *args: Any) -> Any:
        calls.append(issue_id)
        return await real(issue_id, *args)

    monkeypatch.setattr(issue_routes, "_current_detail", counted)
    return calls


async def warmed(client: httpx.AsyncClient, issue_id: str) -> httpx.Response:
    """Read twice: the first read (a miss) stores the response, the second is a hit."""
    first = await client.get(f"/v1/issues/{issue_id}")
    assert first.status_code == 200, first.text
    second = await client.get(f"/v1/issues/{issue_id}")
    assert second.status_code == 200
    return second


def assert_same_answer(a: httpx.Response, b: httpx.Response) -> None:
    assert a.status_code == b.status_code
    assert a.content == b.content
    for name in SAME_HEADERS:
        assert a.headers.get(name) == b.headers.get(name), name


class TestFastPath:
    async def test_a_hit_answers_the_routes_bytes_and_headers_without_the_route(
        self, app: FastAPI, client: httpx.AsyncClient, route_calls: list[str]
    ) -> None:
        ada = await sign_up(client)
        issue = await report(client, ada)
        await settle(app)
        built = await client.get(f"/v1/issues/{issue['id']}")  # a miss: the route builds and stores
        assert route_calls == [issue["id"]]
        hit = await client.get(f"/v1/issues/{issue['id']}")
        assert route_calls == [issue["id"]], "the hit went through the route"
        assert_same_answer(hit, built)
        assert hit.headers["content-type"] == "application/json"
        assert hit.headers["cache-control"] == "public, max-age=1"
        assert hit.headers["x-correlation-id"]
        mine = await client.get(f"/v1/issues/{issue['id']}", headers={"X-Correlation-ID": "trace-me-42"})
        assert mine.headers["x-correlation-id"] == "trace-me-42"
        # the route's uncached answers (a consistency token; a query string) are the same bytes
        waited = await client.get(f"/v1/issues/{issue['id']}", headers=fresh(issue["position"]))
        assert_same_answer(waited, hit)
        assert waited.headers["x-consistency"] == "fresh"
        queried = await client.get(f"/v1/issues/{issue['id']}", params={"unused": "1"})
        assert_same_answer(queried, hit)
        assert len(route_calls) == 2  # the token read bypasses the response cache; the query string is routed

    async def test_if_none_match_is_a_304_on_the_fast_path_as_on_the_route(
        self, app: FastAPI, client: httpx.AsyncClient, route_calls: list[str]
    ) -> None:
        ada = await sign_up(client)
        issue = await report(client, ada)
        await settle(app)
        etag = (await warmed(client, issue["id"])).headers["etag"]
        calls = len(route_calls)
        fast = await client.get(f"/v1/issues/{issue['id']}", headers={"If-None-Match": f'"other", {etag}'})
        assert len(route_calls) == calls
        routed = await client.get(f"/v1/issues/{issue['id']}?x=1", headers={"If-None-Match": etag})
        assert (fast.status_code, routed.status_code) == (304, 304)
        assert fast.content == routed.content == b""
        assert {k: v for k, v in fast.headers.items() if k != "x-correlation-id"} == {
            k: v for k, v in routed.headers.items() if k != "x-correlation-id"
        }
        other = await client.get(f"/v1/issues/{issue['id']}", headers={"If-None-Match": '"nope"'})
        assert other.status_code == 200

    async def test_hits_count_in_the_request_and_cache_metrics(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        ada = await sign_up(client)
        issue = await report(client, ada)
        await settle(app)
        await warmed(client, issue["id"])
        requests = {"method": "GET", "route": "/v1/issues/{issue_id}", "status": "200"}
        before = REGISTRY.get_sample_value("snapfix_http_requests_total", requests) or 0
        hits = REGISTRY.get_sample_value("snapfix_cache_lookups_total", {"cache": "views", "result": "hit"}) or 0
        for _ in range(3):
            await client.get(f"/v1/issues/{issue['id']}")
        assert REGISTRY.get_sample_value("snapfix_http_requests_total", requests) == before + 3
        assert REGISTRY.get_sample_value("snapfix_cache_lookups_total", {"cache": "views", "result": "hit"}) == hits + 3

    async def test_missing_and_malformed_ids_answer_as_the_route_does(self, client: httpx.AsyncClient) -> None:
        missing = await client.get("/v1/issues/no-such-issue")
        assert missing.status_code == 404
        assert missing.headers["content-type"] == "application/problem+json"
        assert (await client.get("/v1/issues/bad%20id")).status_code == 422


class TestNoStaleHits:
    async def test_every_change_shows_on_the_next_read_once_projected(
        self, app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        """Edit, comment, upvote, hide and unhide, and duplicate-of (which changes the original)."""
        ada, ben = await sign_up(client, "Ada"), await sign_up(client, "Ben")
        sam = await make_user(app, client, "Sam", "staff")
        issue, dup = await report(client, ada), await report(client, ben)
        await settle(app)
        path = f"/v1/issues/{issue['id']}"

        async def after(method: str, url: str, user: dict[str, str], body: dict[str, Any] | None = None) -> Any:
            await warmed(client, issue["id"])
            done = await client.request(method, url, json=body, headers=auth(user))
            assert done.status_code < 300, done.text
            await settle(app)
            return await client.get(path)

        shown = (await after("PATCH", path, ada, {"title": "A crater on Main Street"})).json()
        assert shown["title"] == "A crater on Main Street"
        shown = (await after("POST", f"{path}/comments", ben, {"body": "Nearly fell in!"})).json()
        assert [c["body"] for c in shown["comment_list"]] == ["Nearly fell in!"]
        shown = (await after("PUT", f"{path}/upvote", ben)).json()
        assert (shown["upvotes"], shown["upvotes_total"]) == (1, 1)
        hidden = await after("POST", f"{path}/moderation", sam, {"action": "hide", "reason": "abusive"})
        assert hidden.status_code == 404
        assert (await client.get(path)).status_code == 404  # a hidden issue is never cached
        await client.post(f"{path}/moderation", json={"action": "unhide", "reason": "appeal"}, headers=auth(sam))
        await settle(app)
        shown = (await after("POST", f"/v1/issues/{dup['id']}/duplicate-of", sam, {"issue_id": issue["id"]})).json()
        assert shown["duplicates"] == [{"id": dup["id"], "upvotes": 0}]
        assert shown == (await client.get(path, headers=fresh("0.0"))).json()  # the route's own build agrees

    async def test_a_reader_that_loaded_old_documents_cannot_store_them_after_the_projector(
        self, app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        """A miss reads the detail, stalls, the projector applies a comment, then the miss tries to store."""
        c = app.state.container
        ada = await sign_up(client)
        issue = await report(client, ada)
        await settle(app)
        gate = GatedViews(c.views)
        c.views = gate
        reader = asyncio.create_task(client.get(f"/v1/issues/{issue['id']}"))
        await asyncio.wait_for(gate.reached.wait(), 10)  # it has the old detail and waits for the duplicates
        commented = await client.post(
            f"/v1/issues/{issue['id']}/comments", json={"body": "Still there"}, headers=auth(ada)
        )
        assert commented.status_code == 201
        await settle(app)
        gate.release.set()
        stale = await reader
        assert stale.json()["comments"] == 0  # what it loaded before the projector's commit
        c.views = gate.inner
        shown = (await client.get(f"/v1/issues/{issue['id']}")).json()
        assert shown["comments"] == 1
        assert (await client.get(f"/v1/issues/{issue['id']}")).json() == shown


class GatedViews(SwitchableViews):
    """Holds the first read of ``issue_duplicates`` until released."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self.reached, self.release = asyncio.Event(), asyncio.Event()

    async def get(self, collection: str, id: str) -> Doc | None:
        if collection == "issue_duplicates" and not self.release.is_set():
            self.reached.set()
            await self.release.wait()
        return await self.inner.get(collection, id)


class TestGuard:
    """The stamp protocol itself, with every interleaving of a filling reader and the projector."""

    @pytest.mark.parametrize("order", ["reader-first", "projector-first"])
    async def test_a_response_built_before_a_change_is_never_served_after_it(self, order: str) -> None:
        details = DetailResponses(MemoryCache(), 60, ViewCache(MemoryCache(), 60).stats)
        await details.changed("i", epoch=0)  # the issue was projected once
        stamp = await details.stamp("i")
        assert stamp is not None
        old = StoredResponse(b'{"v":1}', b'"1"')
        if order == "reader-first":
            await details.put("i", stamp, old)
            assert await details.get("i") == old
            await details.changed("i", epoch=0)
        else:
            await details.changed("i", epoch=0)
            await details.put("i", stamp, old)
        assert await details.get("i") is None
        after = await details.stamp("i")
        assert after is not None
        new = StoredResponse(b'{"v":2}', b'"2"')
        await details.put("i", after, new)
        assert await details.get("i") == new

    async def test_a_reader_that_saw_the_new_stamp_may_store_before_the_tombstone_lands(self) -> None:
        cache = MemoryCache()
        details = DetailResponses(cache, 60, ViewCache(cache, 60).stats)
        stamp_now = await cache.incr(details.stamp_key("i"))  # the projector's bump, its tombstone not yet written
        stamp = await details.stamp("i")
        assert stamp is not None
        assert stamp.value == stamp_now
        new = StoredResponse(b"{}", b'"n"')
        await details.put("i", stamp, new)
        await cache.put_versioned(details.key("i"), 2 * stamp_now, b"", 60)  # the late tombstone loses
        assert await details.get("i") == new


class TestCacheDown:
    async def test_reads_are_correct_and_uncached_while_the_cache_is_down(
        self, app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        c = app.state.container
        ada = await sign_up(client)
        issue = await report(client, ada)
        await settle(app)
        good = await warmed(client, issue["id"])
        working = c.view_cache
        c.view_cache = ViewCache(BrokenCache(), 60, working.stats)
        misses = working.stats.misses
        down = await client.get(f"/v1/issues/{issue['id']}")
        assert_same_answer(down, good)
        assert working.stats.misses == misses + 1
        commented = await client.post(f"/v1/issues/{issue['id']}/comments", json={"body": "Deeper"}, headers=auth(ada))
        assert commented.status_code == 201
        await settle(app)
        assert (await client.get(f"/v1/issues/{issue['id']}")).json()["comments"] == 1
        c.view_cache = working
        assert (await client.get(f"/v1/issues/{issue['id']}")).json()["comments"] == 1


class TestProfileAndHealthFastPaths:
    async def test_your_cached_profile_is_the_routes_answer_without_the_route(
        self, app: FastAPI, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """GET /v1/users/me: a hit sends the route's bytes and headers; a bad token still gets the route's 401."""
        from query_api.routes import users as user_routes

        calls: list[str] = []
        real = user_routes._profile

        async def counted(user_id: str, *args: Any) -> Any:
            calls.append(user_id)
            return await real(user_id, *args)

        monkeypatch.setattr(user_routes, "_profile", counted)
        ada = await sign_up(client)
        await settle(app)  # the projector wrote the new profile through to the cache
        hit = await client.get("/v1/users/me", headers=auth(ada))
        assert calls == [], "the hit went through the route"
        routed = await client.get("/v1/users/me", headers={**auth(ada), "X-Consistency-Token": "0.1"})
        assert calls == [ada["user_id"]]  # a read with a token is the route's
        assert_same_answer(hit, routed)
        assert hit.headers["cache-control"] == "private, no-cache"
        assert hit.json()["email"] == ada["email"]
        not_modified = await client.get("/v1/users/me", headers={**auth(ada), "If-None-Match": hit.headers["etag"]})
        assert not_modified.status_code == 304
        forged = await client.get("/v1/users/me", headers={"Authorization": "Bearer not-a-token"})
        assert forged.status_code == 401
        assert forged.headers["content-type"] == "application/problem+json"
        await client.patch("/v1/users/me", json={"display_name": "Ada L."}, headers=auth(ada))
        await settle(app)
        renamed = await client.get("/v1/users/me", headers=auth(ada))
        assert renamed.json()["display_name"] == "Ada L."  # the projector wrote the change through

    async def test_healthz_answers_what_the_route_documents(self, client: httpx.AsyncClient) -> None:
        """The health check, answered before the framework, is the documented JSON with a correlation id."""
        health = await client.get("/healthz", headers={"X-Correlation-ID": "probe-1"})
        assert (health.status_code, health.json()) == (200, {"status": "ok"})
        assert health.headers["content-type"] == "application/json"
        assert health.headers["x-correlation-id"] == "probe-1"
