"""Profiles and the service catalogue."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from projectors.ports import Query
from query_api.deps import Cached, Consistent, Views
from query_api.responses import READ_ERRORS, json_bytes, json_value
from snapfix.auth import CurrentActor
from snapfix.http import ProblemError

router = APIRouter(responses=READ_ERRORS)


@router.get("/v1/users/me", tags=["users"])
async def me(actor: CurrentActor, request: Request, views: Views, cache: Cached, freshness: Consistent) -> Response:
    """Your own profile, with your email."""
    raw = await cache.get("user_profile", actor.user_id, lambda: views.get("user_profile", actor.user_id))
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
