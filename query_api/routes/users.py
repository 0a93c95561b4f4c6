"""Profiles and the service catalogue."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated

import orjson
from fastapi import APIRouter, Path, Request, Response

from projectors.ports import Query, ViewStore
from query_api.consistency import once_projected
from query_api.deps import Cached, Consistent, Views
from query_api.responses import READ_ERRORS, json_bytes, json_value
from query_api.routes.issues import BrowseParams, page_bytes
from snapfix.auth import ContainerDep, CurrentActor
from snapfix.bootstrap import Container
from snapfix.cache import ViewCache
from snapfix.http import ProblemError

router = APIRouter(responses=READ_ERRORS)


@router.get("/v1/users/me", tags=["users"])
async def me(
    actor: CurrentActor, request: Request, c: ContainerDep, views: Views, cache: Cached, freshness: Consistent
) -> Response:
    """Your own profile, with your email (right after registering, it is waited for)."""
    raw = await _profile(actor.user_id, c, views, cache)
    if raw is None:
        raise ProblemError(404, "not-found", "Not found", "your profile is not in the views yet; retry shortly")
    return json_bytes(raw, request, freshness=freshness, cache_control="private, no-cache")


@router.get("/v1/categories", tags=["catalogue"])
async def categories(request: Request, views: Views) -> Response:
    """The service catalogue: what can be reported, and which department handles it."""
    rows = await views.find(Query("categories", order_by=(("id", False),), limit=1000))
    fields = ("code", "name", "description", "department", "attributes")
    items = [{k: r.get(k, []) for k in fields} for r in rows if not r.get("retired")]
    return json_value({"items": items, "next_cursor": None}, request, cache_control="public, max-age=60")


async def _profile(user_id: str, c: Container, views: ViewStore, cache: ViewCache) -> bytes | None:
    """The profile document, waited for when the user just registered and the views do not show it yet."""

    async def fetch() -> bytes | None:
        return await cache.get("user_profile", user_id, lambda: views.get("user_profile", user_id))

    return await fetch() or await once_projected(c, user_id, fetch)


PUBLIC_PROFILE = ("id", "display_name", "roles", "created_at")


@router.get("/v1/users/me/issues", tags=["users"])
async def my_issues(
    actor: CurrentActor, params: BrowseParams, request: Request, views: Views, freshness: Consistent
) -> Response:
    """The issues you reported, with every browse filter and sort (`reporter` is always you)."""
    raw = await page_bytes(replace(params, reporter=actor.user_id), views)
    return json_bytes(raw, request, freshness=freshness, cache_control="private, no-cache")


@router.get("/v1/users/{user_id}", tags=["users"])
async def profile(
    user_id: Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9-]+$")],
    request: Request,
    c: ContainerDep,
    views: Views,
    cache: Cached,
    freshness: Consistent,
) -> Response:
    """Someone's public profile: name and roles, never their email."""
    raw = await _profile(user_id, c, views, cache)
    if raw is None:
        raise ProblemError(404, "not-found", "Not found", f"no user {user_id}")
    doc = orjson.loads(raw)
    public = {k: doc.get(k) for k in PUBLIC_PROFILE}
    return json_value(public, request, freshness=freshness, cache_control="public, max-age=60")
