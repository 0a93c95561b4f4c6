"""Browsing issues, one issue's detail, and its history."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, Path, Query, Request, Response

from projectors.feeds import ORIGIN, feed_collection
from projectors.ports import Cond, Doc, ViewStore, ViewStoreUnavailable
from projectors.ports import Query as ViewQuery
from query_api.browse import BadParameter, Browse, Sort, parse_bbox, parse_near
from query_api.consistency import once_projected
from query_api.deps import Cached, Consistent, Pages, Views
from query_api.public import public_detail
from query_api.responses import FAST_PATH_MISSED, READ_ERRORS, etag_of, json_bytes, json_value
from query_api.time_travel import detail_as_of
from snapfix.auth import ContainerDep
from snapfix.bootstrap import Container
from snapfix.cache import ViewCache
from snapfix.detail_cache import StoredResponse
from snapfix.http import ProblemError

router = APIRouter(tags=["issues"], responses=READ_ERRORS)
FEEDS = feed_collection.name
IssueId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9-]+$")]
Filter = Annotated[str | None, Query(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_,-]+$")]
AsOf = Annotated[
    str | None,
    Query(min_length=4, max_length=40, pattern=r"^[0-9T:.\-+Z]+$", description="the issue as it was at this time"),
]
Stamp = Annotated[
    str | None,
    Query(
        min_length=4,
        max_length=40,
        pattern=r"^[0-9T:.\-+Z]+$",
        description="an ISO 8601 UTC time, e.g. 2026-01-31T00:00:00Z",
    ),
]


Bbox = Annotated[
    str | None,
    Query(max_length=120, pattern=r"^[0-9eE.,+\-]+$", description="minLon,minLat,maxLon,maxLat: -0.2,51.4,0.0,51.6"),
]
Near = Annotated[
    str | None, Query(max_length=80, pattern=r"^[0-9eE.,+\-]+$", description="lat,lon: only issues within radius_m")
]
Radius = Annotated[float | None, Query(gt=0, le=50_000, description="metres around `near` (default 1000)")]
Text = Annotated[
    str | None, Query(min_length=1, max_length=200, description="words in the title, description, address or category")
]


async def browse_params(
    c: ContainerDep,
    status: Filter = None,
    category: Filter = None,
    department: Filter = None,
    reporter: Filter = None,
    created_after: Stamp = None,
    created_before: Stamp = None,
    bbox: Bbox = None,
    near: Near = None,
    radius_m: Radius = None,
    q: Text = None,
    sort: Sort = "newest",
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> Browse:
    """The browse parameters, checked: each malformed one is a 400 problem naming it.

    A coroutine, so FastAPI never sends it through its thread pool (a thread hop per browse request).
    """
    if radius_m is not None and near is None:
        raise ProblemError(400, "bad-near", "Bad near", "radius_m needs near=lat,lon")
    try:
        return Browse(
            status,
            category,
            department,
            reporter,
            _utc(created_after),
            _utc(created_before),
            sort,
            cursor,
            min(limit, c.settings.max_page_size),
            bbox=None if bbox is None else parse_bbox(bbox),
            near=None if near is None else parse_near(near, radius_m),
            q=q,
        )
    except BadParameter as e:
        raise ProblemError(400, e.code, "Bad parameter", str(e)) from None


BrowseParams = Annotated[Browse, Depends(browse_params)]


async def page_bytes(params: Browse, views: Views) -> bytes:
    with _bad_cursor():
        items, next_cursor = await params.fetch(views)
    return orjson.dumps({"items": items, "next_cursor": next_cursor})


async def feed_page(params: Browse, views: Views, pages: Pages, *, cached: bool) -> bytes | None:
    """The page from its browse feed when one holds it whole (projectors/feeds.py), else None.

    A read with a consistency token reads the feed from the views: the projector writes it
    through to the cache only after committing the position the token waited for.
    """
    feed_id = params.feed()
    if feed_id is None or not await pages.feeds_trusted(lambda: views.get(FEEDS, ORIGIN)):
        return None

    async def load() -> Doc | None:
        return await views.get(FEEDS, feed_id)

    feed = await (pages.feed(feed_id, load) if cached else load())
    with _bad_cursor():
        page = params.from_feed(feed)
    return None if page is None else orjson.dumps({"items": page[0], "next_cursor": page[1]})


@contextmanager
def _bad_cursor() -> Iterator[None]:
    try:
        yield
    except BadParameter as e:
        raise ProblemError(400, e.code, "Bad parameter", str(e)) from None


@router.get("/v1/issues")
async def browse(params: BrowseParams, request: Request, views: Views, pages: Pages, freshness: Consistent) -> Response:
    """Browse issues, filtered and sorted, a page at a time: follow `next_cursor` until it is null.

    `bbox` and `near` + `radius_m` select by place (`sort=nearest` orders by distance and adds
    `distance_m`); `q` finds words, the last one as a prefix, accents and case ignored.
    """
    raw = await feed_page(params, views, pages, cached=freshness is None)
    if raw is None and params.cursor is None and freshness is None:  # first pages are what most readers ask for
        raw = await pages.get(params.cache_key(), lambda: page_bytes(params, views))
    elif raw is None:
        raw = await page_bytes(params, views)
    return json_bytes(raw, request, freshness=freshness, cache_control="public, max-age=2")


def _utc(stamp: str | None) -> str | None:
    """Bring a client's ISO time to the views' fixed-width UTC form, or refuse it."""
    if stamp is None:
        return None
    from datetime import UTC, datetime

    from projectors.projection import iso

    try:
        moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        raise ProblemError(400, "bad-time", "Bad time", f"{stamp!r} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return iso(moment)


DETAIL_CACHE_CONTROL = "public, max-age=1"


@router.get("/v1/issues/{issue_id}")
async def detail(
    issue_id: IssueId,
    request: Request,
    c: ContainerDep,
    views: Views,
    cache: Cached,
    freshness: Consistent,
    as_of: AsOf = None,
) -> Response:
    """One issue with its comments and timeline; `as_of` shows it as it was at that time.

    An issue just reported but not projected yet is waited for (within `SNAPFIX_CONSISTENCY_WAIT_MS`),
    so following the `Location` of a 201 never meets a 404; an id nobody reported is a 404 at once.
    """
    if as_of is None and freshness is None:
        return await _current_detail(issue_id, request, c, views, cache)
    raw = await _detail_document(issue_id, c, views, cache)
    shown = None if raw is None else public_detail(orjson.loads(raw), await _duplicates(views, issue_id))
    if shown is not None and as_of is not None:  # time travel: the same fold over its history view
        past = await detail_as_of(views, issue_id, _utc(as_of) or "")
        shown = None if past is None else public_detail(past, await views.get("issue_duplicates", issue_id))
    if shown is None:
        raise ProblemError(404, "not-found", "Not found", f"no issue {issue_id}")
    return json_value(shown, request, freshness=freshness, cache_control=DETAIL_CACHE_CONTROL)


async def _detail_document(issue_id: str, c: Container, views: ViewStore, cache: ViewCache) -> bytes | None:
    """The detail view's document, waited for when the log holds the issue and the views not yet."""

    async def fetch() -> bytes | None:
        return await cache.get("issue_detail", issue_id, lambda: views.get("issue_detail", issue_id))

    return await fetch() or await once_projected(c, issue_id, fetch)


async def _current_detail(
    issue_id: str, request: Request, c: Container, views: ViewStore, cache: ViewCache
) -> Response:
    """The public detail from the response cache, or built and then cached under the stamp read before building.

    The fast path (query_api/fast_detail.py) serves most hits before routing; when it has
    already looked and missed, the lookup is not repeated here.
    """
    details = cache.details
    if not request.scope.get(FAST_PATH_MISSED):
        hit = await details.get(issue_id)
        if hit is not None:
            return json_bytes(hit.body, request, cache_control=DETAIL_CACHE_CONTROL, etag=hit.etag.decode())
    stamp = await details.stamp(issue_id)  # before the documents: see snapfix/detail_cache.py
    raw = await _detail_document(issue_id, c, views, cache)
    if raw is None:
        raise ProblemError(404, "not-found", "Not found", f"no issue {issue_id}")
    try:
        duplicates, complete = await views.get("issue_duplicates", issue_id), True
    except ViewStoreUnavailable:  # served without its duplicates while the store is down, but not cached
        duplicates, complete = None, False
    shown = public_detail(orjson.loads(raw), duplicates)
    if shown is None:  # hidden: never cached, so a hidden issue is never served from the cache
        raise ProblemError(404, "not-found", "Not found", f"no issue {issue_id}")
    body = orjson.dumps(shown)
    etag = etag_of(body)
    if stamp is not None and complete:
        await details.put(issue_id, stamp, StoredResponse(body, etag.encode()))
    return json_bytes(body, request, cache_control=DETAIL_CACHE_CONTROL, etag=etag)


async def _duplicates(views: ViewStore, issue_id: str) -> Doc | None:
    """The issue's duplicates; none while the store is down, so a cached detail can still be served."""
    try:
        return await views.get("issue_duplicates", issue_id)
    except ViewStoreUnavailable:
        return None


@router.get("/v1/issues/{issue_id}/history")
async def history(
    issue_id: IssueId,
    request: Request,
    c: ContainerDep,
    views: Views,
    freshness: Consistent,
    after_version: Annotated[int, Query(ge=0, description="continue after this version")] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> Response:
    """The issue's events, in order (passwords and other secrets never appear here); a new issue is waited for."""
    query = ViewQuery(
        "issue_history",
        (Cond("aggregate_id", "eq", issue_id), Cond("version", "gt", after_version)),
        (("version", False),),
        None,
        limit + 1,
    )

    async def fetch() -> list[Doc] | None:
        return await views.find(query) or None

    rows = await fetch() or []
    if not rows and after_version == 0:
        rows = await once_projected(c, issue_id, fetch) or []
    if not rows and after_version == 0:
        raise ProblemError(404, "not-found", "Not found", f"no issue {issue_id}")
    items = rows[:limit]
    next_cursor = str(items[-1]["version"]) if len(rows) > limit else None
    body = orjson.dumps(
        {"items": [{k: v for k, v in r.items() if k != "id"} for r in items], "next_cursor": next_cursor}
    )
    return json_bytes(body, request, freshness=freshness)
