"""The query side over HTTP on the embedded deployment: browse, search, geo, stats, caching and failures."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from ops.seed import Plan, write
from projectors import geo, search
from projectors.ports import Doc, Query, ViewStore, ViewStoreUnavailable
from snapfix.cache import Cache, CacheError, ViewCache
from tests.helpers import auth, fresh, report, sign_up

CENTRE = (51.5074, -0.1278)


async def settle(app: FastAPI) -> None:
    """Wait until the in-process projector has applied everything in the log."""
    c = app.state.container
    head = await c.log.head()
    for partition, offset in head.items():
        assert await c.runner.wait_until(partition, offset, 60)


@pytest.fixture
async def city(app: FastAPI) -> list[Doc]:
    """A seeded city of 300 issues; yields every summary, straight from the store, as the reference."""
    c = app.state.container
    await write(c.store, Plan(issues=300, users=40, seed=7), "not-a-real-hash")
    await settle(app)
    return await c.views.find(Query("issue_summary", limit=10_000))


async def every_page(http: httpx.AsyncClient, path: str, **params: Any) -> list[dict]:
    items: list[dict] = []
    cursor = None
    while True:
        response = await http.get(path, params={**params, **({"cursor": cursor} if cursor else {})})
        assert response.status_code == 200, response.text
        body = response.json()
        items += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            return items


def ids(items: Sequence[dict]) -> list[str]:
    return [i["id"] for i in items]


class TestBrowse:
    @pytest.mark.parametrize(
        ("sort", "key"),
        [
            ("newest", lambda d: (d["created_at"], d["id"])),
            ("oldest", lambda d: (d["created_at"], d["id"])),
            ("upvotes", lambda d: (d["upvotes"], d["id"])),
            ("updated", lambda d: (d["updated_at"], d["id"])),
        ],
    )
    async def test_pages_visit_every_issue_once_in_order(
        self, client: httpx.AsyncClient, city: list[Doc], sort: str, key: Any
    ) -> None:
        """Following next_cursor yields every issue exactly once, in the sort's order."""
        items = await every_page(client, "/v1/issues", sort=sort, limit=37)
        expected = sorted(city, key=key, reverse=sort != "oldest")
        assert ids(items) == ids(expected)

    async def test_new_issues_arriving_while_paging_cause_no_duplicates_or_gaps(
        self, client: httpx.AsyncClient, city: list[Doc]
    ) -> None:
        """Issues reported between pages never push an already-listed issue onto a later page."""
        ada = await sign_up(client, "Ada")
        seen: list[str] = []
        cursor = None
        while True:
            params = {"limit": 50, **({"cursor": cursor} if cursor else {})}
            page = (await client.get("/v1/issues", params=params)).json()
            seen += ids(page["items"])
            await report(client, ada, title="Arrived while paging")
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert len(seen) == len(set(seen))
        assert set(ids(city)) <= set(seen)

    async def test_filters_combine_with_a_created_range(self, client: httpx.AsyncClient, city: list[Doc]) -> None:
        """status (a list), category and a created range select exactly the matching issues."""
        middle = sorted(d["created_at"] for d in city)[len(city) // 2]
        items = await every_page(
            client, "/v1/issues", status="reported,acknowledged", category="pothole", created_after=middle
        )
        expected = [
            d
            for d in city
            if d["status"] in ("reported", "acknowledged") and d["category"] == "pothole" and d["created_at"] >= middle
        ]
        assert sorted(ids(items)) == sorted(ids(expected))
        assert all("terms" not in i and "gh5" not in i and "lat" not in i for i in items)


class TestSearch:
    @pytest.mark.parametrize("q", ["pothole", "Deep pot", "cafe", "CAFÉ ROW", "station road", "bro"])
    async def test_text_search_matches_the_reference_tokenizer(
        self, client: httpx.AsyncClient, city: list[Doc], q: str
    ) -> None:
        """q finds exactly the issues whose terms hold its words, the last as a prefix, accents ignored."""
        items = await every_page(client, "/v1/issues", q=q, limit=100)
        expected = [d for d in city if search.matches(d["terms"], q)]
        assert expected, "the seeded city should hold matches for every query here"
        assert sorted(ids(items)) == sorted(ids(expected))


class TestGeo:
    async def test_a_bbox_selects_exactly_the_issues_inside_it(
        self, client: httpx.AsyncClient, city: list[Doc]
    ) -> None:
        box = geo.Box(51.48, -0.2, 51.54, -0.05)
        items = await every_page(client, "/v1/issues", bbox="-0.2,51.48,-0.05,51.54", limit=100)
        assert sorted(ids(items)) == sorted(d["id"] for d in city if box.holds(d["lat"], d["lon"]))

    @pytest.mark.parametrize("radius", [300, 2500, 12_000])
    async def test_nearest_pages_are_ordered_by_distance_and_match_a_brute_force(
        self, client: httpx.AsyncClient, city: list[Doc], radius: int
    ) -> None:
        """sort=nearest lists everything within the radius, nearest first, across pages, each once."""
        lat, lon = CENTRE
        items = await every_page(client, "/v1/issues", near=f"{lat},{lon}", radius_m=radius, sort="nearest", limit=7)
        distances = {d["id"]: geo.haversine_m(lat, lon, d["lat"], d["lon"]) for d in city}
        expected = sorted((dist, i) for i, dist in distances.items() if dist <= radius)
        assert ids(items) == [i for _, i in expected]
        assert all(abs(i["distance_m"] - distances[i["id"]]) < 0.1 for i in items)

    async def test_near_with_another_sort_filters_by_exact_distance(
        self, client: httpx.AsyncClient, city: list[Doc]
    ) -> None:
        lat, lon = CENTRE
        items = await every_page(client, "/v1/issues", near=f"{lat},{lon}", radius_m=4000, sort="upvotes", limit=9)
        expected = [d for d in city if geo.haversine_m(lat, lon, d["lat"], d["lon"]) <= 4000]
        assert ids(items) == ids(sorted(expected, key=lambda d: (d["upvotes"], d["id"]), reverse=True))


class TestBadParameters:
    @pytest.mark.parametrize(
        ("params", "status"),
        [
            ({"bbox": "1,2,3"}, 400),
            ({"bbox": "10,50,5,51"}, 400),
            ({"bbox": "a,b,c,d"}, 422),
            ({"near": "51.5"}, 400),
            ({"near": "95,0"}, 400),
            ({"radius_m": "100"}, 400),
            ({"near": "51.5,0", "radius_m": "0"}, 422),
            ({"near": "51.5,0", "radius_m": "90000"}, 422),
            ({"sort": "nearest"}, 400),
            ({"sort": "loudest"}, 422),
            ({"q": "!!!"}, 400),
            ({"limit": "0"}, 422),
            ({"limit": "101"}, 422),
            ({"cursor": "not-a-cursor"}, 400),
            ({"created_after": "yesterday"}, 422),
            ({"status": "a b"}, 422),
        ],
    )
    async def test_each_bad_parameter_is_a_problem_document(
        self, client: httpx.AsyncClient, params: dict, status: int
    ) -> None:
        response = await client.get("/v1/issues", params=params)
        assert response.status_code == status, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        assert {"type", "title", "status", "detail"} <= response.json().keys()

    @pytest.mark.usefixtures("city")
    async def test_a_cursor_is_refused_with_other_filters(self, client: httpx.AsyncClient) -> None:
        first = (await client.get("/v1/issues", params={"category": "pothole", "limit": 2})).json()
        other = await client.get("/v1/issues", params={"category": "garbage", "cursor": first["next_cursor"]})
        assert other.status_code == 400
        assert other.json()["type"] == "/problems/bad-cursor"


class TestStats:
    async def test_stats_agree_with_the_issues(self, client: httpx.AsyncClient, city: list[Doc]) -> None:
        """Counts by status, category and department and the backlog equal a recount of the summaries."""
        body = (await client.get("/v1/stats")).json()
        assert body["total"] == len(city)
        for field, key in (("status", "by_status"), ("category", "by_category"), ("department", "by_department")):
            counts: dict[str, int] = {}
            for d in city:
                counts[d[field]] = counts.get(d[field], 0) + 1
            assert body[key] == dict(sorted(counts.items()))
        backlog: dict[str, int] = {}
        for d in city:
            if d["status"] in ("reported", "acknowledged", "in_progress", "reopened"):
                backlog[d["department"]] = backlog.get(d["department"], 0) + 1
        assert body["open_backlog_by_department"] == dict(sorted(backlog.items()))
        roads = body["time_to_resolve_by_department"]["roads"]
        assert roads["resolved"] > 0
        assert 0 < roads["median_s"] <= roads["p90_s"]

    async def test_stats_for_a_box_count_the_cells_covering_it(
        self, client: httpx.AsyncClient, city: list[Doc]
    ) -> None:
        response = await client.get("/v1/stats", params={"bbox": "-0.15,51.49,-0.10,51.52"})
        body = response.json()
        cells = set(body["cells"])
        precision = len(next(iter(cells)))
        inside = [d for d in city if d[geo.field(precision)] in cells]
        assert body["total"] == len(inside)
        assert response.headers["cache-control"] == "public, max-age=30"


class TestUsers:
    async def test_a_public_profile_has_no_email(self, client: httpx.AsyncClient, app: FastAPI) -> None:
        ada = await sign_up(client, "Ada")
        await report(client, ada)
        await settle(app)
        profile = await client.get(f"/v1/users/{ada['user_id']}")
        assert profile.status_code == 200
        assert profile.json()["display_name"] == "Ada"
        assert "email" not in profile.json()
        assert (await client.get("/v1/users/nobody-here")).status_code == 404

    @pytest.mark.usefixtures("city")
    async def test_my_issues_are_mine_only(self, client: httpx.AsyncClient) -> None:
        ada = await sign_up(client, "Ada")
        mine = [await report(client, ada, title=f"Mine {n}") for n in range(3)]
        listed = await client.get("/v1/users/me/issues", headers={**auth(ada), **fresh(mine[-1]["position"])})
        assert sorted(ids(listed.json()["items"])) == sorted(m["id"] for m in mine)
        assert listed.headers["cache-control"] == "private, no-cache"
        assert (await client.get("/v1/users/me/issues")).status_code == 401


class TestCaching:
    @pytest.mark.usefixtures("city")
    async def test_a_first_page_is_served_from_the_cache_until_the_projector_changes_it(
        self, client: httpx.AsyncClient, app: FastAPI
    ) -> None:
        """Repeated first pages hit; after a write has been projected the page shows it at once."""
        first = await client.get("/v1/issues", params={"limit": 5})
        stats = app.state.page_cache.stats
        hits = stats.hits
        again = await client.get("/v1/issues", params={"limit": 5})
        assert again.content == first.content
        assert stats.hits == hits + 1
        ada = await sign_up(client, "Ada")
        created = await report(client, ada, title="Brand new")
        await settle(app)
        after = await client.get("/v1/issues", params={"limit": 5})
        assert after.json()["items"][0]["id"] == created["id"]

    async def test_etag_and_if_none_match_give_304_on_every_read(
        self, client: httpx.AsyncClient, city: list[Doc]
    ) -> None:
        issue_id = city[0]["id"]
        for path in ("/v1/issues", f"/v1/issues/{issue_id}", f"/v1/issues/{issue_id}/history", "/v1/stats"):
            first = await client.get(path)
            assert first.status_code == 200
            assert "cache-control" in first.headers
            again = await client.get(path, headers={"If-None-Match": first.headers["etag"]})
            assert again.status_code == 304, path

    @pytest.mark.usefixtures("city")
    async def test_hits_and_misses_are_exported_as_metrics(self, client: httpx.AsyncClient) -> None:
        await client.get("/v1/issues")
        await client.get("/v1/issues")
        text = (await client.get("/metrics")).text
        assert 'snapfix_cache_lookups_total{cache="browse",result="hit"}' in text


class SwitchableViews(ViewStore):
    """A view store that can be switched off (raises ViewStoreUnavailable) or made to hang."""

    def __init__(self, inner: ViewStore) -> None:
        self.inner = inner
        self.mode = "up"

    async def _gate(self) -> None:
        if self.mode == "down":
            raise ViewStoreUnavailable("switched off by the test")
        if self.mode == "hang":
            await asyncio.sleep(30)

    async def setup(self, collections: Any) -> None:
        await self.inner.setup(collections)

    async def get(self, collection: str, id: str) -> Doc | None:
        await self._gate()
        return await self.inner.get(collection, id)

    async def get_many(self, collection: str, ids: Any) -> dict[str, Doc]:
        await self._gate()
        return await self.inner.get_many(collection, ids)

    async def find(self, query: Query) -> list[Doc]:
        await self._gate()
        return await self.inner.find(query)

    async def count(self, collection: str, where: Any = ()) -> int:
        await self._gate()
        return await self.inner.count(collection, where)

    async def commit(self, projector: str, changes: Any, checkpoint: Any, *, live: Any = None) -> None:
        await self.inner.commit(projector, changes, checkpoint, live=live)

    async def live_generations(self, collections: Any) -> dict[str, int]:
        return await self.inner.live_generations(collections)

    async def checkpoint(self, projector: str) -> dict[int, int]:
        await self._gate()
        return await self.inner.checkpoint(projector)

    async def drop(self, collections: Any, projector: str) -> None:
        await self.inner.drop(collections, projector)


class BrokenCache(Cache):
    """A cache whose server is gone: every call raises CacheError."""

    async def get(self, key: str) -> bytes | None:  # noqa: ARG002 - the port's signature
        raise CacheError("down")

    async def get_current(self, key: str, epoch_key: str) -> tuple[bytes | None, int]:  # noqa: ARG002 - the port's signature
        raise CacheError("down")

    async def put_versioned(self, key: str, version: int, value: bytes, ttl_s: int, *, epoch: int = 0) -> bool:  # noqa: ARG002 - the port's signature
        raise CacheError("down")

    async def incr(self, key: str) -> int:  # noqa: ARG002 - the port's signature
        raise CacheError("down")

    async def counter(self, key: str) -> int:  # noqa: ARG002 - the port's signature
        raise CacheError("down")

    async def counters(self, keys: Sequence[str]) -> list[int]:  # noqa: ARG002 - the port's signature
        raise CacheError("down")

    async def follow(self, key: str, label: str) -> int:  # noqa: ARG002 - the port's signature
        raise CacheError("down")

    async def delete(self, key: str) -> None:  # noqa: ARG002 - the port's signature
        raise CacheError("down")


class TestFailures:
    @pytest.mark.parametrize("mode", ["down", "hang"])
    async def test_with_the_store_down_cached_reads_are_served_and_the_rest_are_503(
        self, client: httpx.AsyncClient, app: FastAPI, city: list[Doc], mode: str
    ) -> None:
        """What the cache has is served; anything else is a 503 problem with Retry-After; then it recovers."""
        c = app.state.container
        cached_id, other_id = city[0]["id"], city[1]["id"]
        assert (await client.get(f"/v1/issues/{cached_id}")).status_code == 200
        assert (await client.get("/v1/issues", params={"limit": 3})).status_code == 200
        switch = SwitchableViews(c.views)
        c.views, switch.mode = switch, mode
        assert (await client.get(f"/v1/issues/{cached_id}")).status_code == 200
        assert (await client.get("/v1/issues", params={"limit": 3})).status_code == 200
        # the projector wrote every detail and browse feed through to the cache
        assert (await client.get("/v1/issues", params={"limit": 4, "status": "reported"})).status_code == 200
        # history, pages of other lists and stats are not cached
        for path in (f"/v1/issues/{other_id}/history", "/v1/issues?sort=oldest&limit=4", "/v1/stats"):
            down = await client.get(path)
            assert down.status_code == 503, path
            assert down.headers["retry-after"] == "1"
            assert down.headers["content-type"].startswith("application/problem+json")
        switch.mode = "up"
        assert (await client.get(f"/v1/issues/{other_id}/history")).status_code == 200

    async def test_with_the_cache_down_reads_stay_correct(
        self, client: httpx.AsyncClient, app: FastAPI, city: list[Doc]
    ) -> None:
        """Every read still answers from the views, and a projected write shows at once."""
        c = app.state.container
        broken = BrokenCache()
        c.cache = broken
        c.view_cache = ViewCache(broken, 60)
        if hasattr(app.state, "page_cache"):
            del app.state.page_cache
        issue_id = city[0]["id"]
        assert (await client.get(f"/v1/issues/{issue_id}")).json()["id"] == issue_id
        listed = await client.get("/v1/issues", params={"limit": 3})
        assert listed.status_code == 200
        ada = await sign_up(client, "Ada")
        created = await report(client, ada, title="Seen without a cache")
        await settle(app)
        assert (await client.get("/v1/issues", params={"limit": 3})).json()["items"][0]["id"] == created["id"]
        assert (await client.get("/v1/stats")).status_code == 200
