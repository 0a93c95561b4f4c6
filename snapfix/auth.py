"""The FastAPI dependencies that turn a bearer token into an Actor, shared by both APIs."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer

from command_api.domain.actor import Actor
from snapfix.bootstrap import Container
from snapfix.http import ProblemError
from snapfix.tokens import InvalidToken

bearer = OAuth2PasswordBearer(tokenUrl="/v1/auth/token", auto_error=False)


async def container(request: Request) -> Container:
    """Dependencies are coroutines so FastAPI never sends them through its thread pool."""
    return request.app.state.container  # type: ignore[no-any-return]


ContainerDep = Annotated[Container, Depends(container)]


def _unauthorized(detail: str) -> ProblemError:
    return ProblemError(401, "unauthorized", "Unauthorized", detail, headers={"WWW-Authenticate": "Bearer"})


async def optional_actor(c: ContainerDep, token: Annotated[str | None, Depends(bearer)]) -> Actor | None:
    if token is None:
        return None
    assert c.tokens is not None
    try:
        return c.tokens.check(token, "access")
    except InvalidToken as e:
        raise _unauthorized(f"the access token is not valid: {e}") from None


async def current_actor(actor: Annotated[Actor | None, Depends(optional_actor)]) -> Actor:
    if actor is None:
        raise _unauthorized("sign in first: send 'Authorization: Bearer <access_token>'")
    return actor


CurrentActor = Annotated[Actor, Depends(current_actor)]
OptionalActor = Annotated[Actor | None, Depends(optional_actor)]
