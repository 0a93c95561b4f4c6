"""The read API's dependencies: the view store (bounded in time), the caches, and the consistency token."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Header, Request

from projectors.ports import ViewStore
from query_api.caching import METRICS, PageCache
from query_api.consistency import wait_for_token
from query_api.resilience import BoundedViews
from snapfix.auth import ContainerDep
from snapfix.bootstrap import Container
from snapfix.cache import CacheStats, ViewCache
from snapfix.http import ProblemError

VIEW_TIMEOUT_S = 0.8  # a store slower than this is down, as far as a reader is concerned: 503 within a second
PAGE_TTL_S = 60


async def views(c: ContainerDep) -> ViewStore:
    assert c.views is not None, "this process does not serve queries"
    return BoundedViews(c.views, VIEW_TIMEOUT_S)


async def view_cache(c: ContainerDep) -> ViewCache:
    assert c.view_cache is not None
    METRICS.track(c.view_cache.stats, "views")
    return c.view_cache


async def page_cache(c: ContainerDep, request: Request) -> PageCache:
    return pages_of(request.app.state, c)


def pages_of(state: Any, c: Container) -> PageCache:
    """One page cache per app (``state`` is the app's), over the container's cache (built on first use)."""
    pages: PageCache | None = getattr(state, "page_cache", None)
    if pages is None:
        assert c.cache is not None
        pages = PageCache(c.cache, PAGE_TTL_S, CacheStats(), feed_ttl_s=c.settings.cache_ttl_s)
        METRICS.track(pages.stats, "browse")
        state.page_cache = pages
    return pages


async def consistent(
    c: ContainerDep,
    x_consistency_token: Annotated[
        str | None, Header(max_length=64, description="a command's `position`: wait until the views show it")
    ] = None,
) -> str | None:
    """``fresh`` or ``stale`` when a token was sent (after waiting), else None."""
    if x_consistency_token is None:
        return None
    try:
        fresh = await wait_for_token(c, x_consistency_token)
    except ValueError:
        raise ProblemError(
            400,
            "bad-consistency-token",
            "Bad consistency token",
            "X-Consistency-Token must be the `position` a command answered",
        ) from None
    return "fresh" if fresh else "stale"


Views = Annotated[ViewStore, Depends(views)]
Cached = Annotated[ViewCache, Depends(view_cache)]
Pages = Annotated[PageCache, Depends(page_cache)]
Consistent = Annotated[str | None, Depends(consistent)]
