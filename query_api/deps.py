"""The read API's dependencies: the view store, the cache, and the consistency token."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header

from projectors.ports import ViewStore
from query_api.consistency import wait_for_token
from snapfix.auth import ContainerDep
from snapfix.cache import ViewCache
from snapfix.http import ProblemError


def views(c: ContainerDep) -> ViewStore:
    assert c.views is not None, "this process does not serve queries"
    return c.views


def view_cache(c: ContainerDep) -> ViewCache:
    assert c.view_cache is not None
    return c.view_cache


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
Consistent = Annotated[str | None, Depends(consistent)]
