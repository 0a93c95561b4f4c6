"""Your notifications: changes to the issues you reported or follow."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Query, Request, Response

from projectors.ports import Cond
from projectors.ports import Query as ViewQuery
from query_api.deps import Views
from query_api.responses import READ_ERRORS, json_value
from snapfix.auth import CurrentActor
from snapfix.http import ProblemError

router = APIRouter(tags=["users"], responses=READ_ERRORS)


@router.get("/v1/users/me/notifications")
async def notifications(
    actor: CurrentActor,
    request: Request,
    views: Views,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> Response:
    """Newest first; follow `next_cursor` until it is null."""
    where: tuple[Cond, ...] = (Cond("user_id", "eq", actor.user_id),)
    after = _decode(cursor) if cursor else None
    rows = await views.find(ViewQuery("notifications", where, (("created_at", True), ("id", True)), after, limit + 1))
    items = rows[:limit]
    next_cursor = orjson.dumps([items[-1]["created_at"], items[-1]["id"]]).hex() if len(rows) > limit else None
    return json_value({"items": items, "next_cursor": next_cursor}, request, cache_control="private, no-cache")


def _decode(cursor: str) -> tuple[str, str]:
    try:
        created_at, doc_id = orjson.loads(bytes.fromhex(cursor))
    except (ValueError, TypeError):
        raise ProblemError(400, "bad-cursor", "Bad cursor", "the cursor is not one this API gave out") from None
    if not isinstance(created_at, str) or not isinstance(doc_id, str):
        raise ProblemError(400, "bad-cursor", "Bad cursor", "the cursor is not one this API gave out")
    return created_at, doc_id
