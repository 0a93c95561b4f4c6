"""Registration, sign-in and profile changes."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response, status
from fastapi.security import OAuth2PasswordRequestForm

from command_api import commands as c
from command_api.deps import Handlers, IdempotencyDep, Meta
from command_api.models import CommandAccepted, ProfilePatch, RefreshBody, RegisterBody, TokenResponse
from command_api.routes.common import COMMAND_ERRORS, PROBLEM, accepted
from snapfix.auth import ContainerDep, CurrentActor
from snapfix.http import ProblemError
from snapfix.tokens import InvalidToken

router = APIRouter(tags=["users"])


@router.post("/v1/users", status_code=status.HTTP_201_CREATED, response_model=CommandAccepted, responses=COMMAND_ERRORS)
async def register(
    body: RegisterBody, handlers: Handlers, meta: Meta, idem: IdempotencyDep, response: Response
) -> dict[str, Any]:
    """Create an account; 409 if the email is already registered."""
    result = await handlers.register(c.RegisterUser(body.email, body.password, body.display_name), meta, idem)
    response.headers["Location"] = "/v1/users/me"
    return accepted(result, response)


def _bad_credentials() -> ProblemError:
    return ProblemError(
        401,
        "invalid-credentials",
        "Invalid credentials",
        "the email or password is wrong",
        headers={"WWW-Authenticate": "Bearer"},
    )


@router.post(
    "/v1/auth/token",
    response_model=TokenResponse,
    tags=["auth"],
    responses={401: {"description": "Wrong email or password", **PROBLEM}},
)
async def sign_in(
    form: Annotated[OAuth2PasswordRequestForm, Depends()], handlers: Handlers, c_: ContainerDep
) -> dict[str, Any]:
    """OAuth2 password flow: the form's `username` is the email."""
    user = await handlers.authenticate(form.username, form.password)
    if user is None:
        raise _bad_credentials()
    assert c_.tokens is not None
    pair = c_.tokens.issue(user.as_actor(), c_.clock())
    return {
        "access_token": pair.access_token,
        "refresh_token": pair.refresh_token,
        "token_type": pair.token_type,
        "expires_in": pair.expires_in,
    }


@router.post(
    "/v1/auth/refresh",
    response_model=TokenResponse,
    tags=["auth"],
    responses={401: {"description": "The refresh token is not valid", **PROBLEM}},
)
async def refresh(body: RefreshBody, handlers: Handlers, c_: ContainerDep) -> dict[str, Any]:
    """Trade a refresh token for a new pair; roles are read afresh."""
    assert c_.tokens is not None
    try:
        actor = c_.tokens.check(body.refresh_token, "refresh")
    except InvalidToken as e:
        raise ProblemError(401, "invalid-token", "Invalid refresh token", str(e)) from None
    user = await handlers.user(actor.user_id)
    if user is None:
        raise ProblemError(401, "invalid-token", "Invalid refresh token", "the account no longer exists")
    pair = c_.tokens.issue(user.as_actor(), c_.clock())
    return {
        "access_token": pair.access_token,
        "refresh_token": pair.refresh_token,
        "token_type": pair.token_type,
        "expires_in": pair.expires_in,
    }


@router.patch("/v1/users/me", response_model=CommandAccepted, responses=COMMAND_ERRORS)
async def change_profile(
    body: ProfilePatch, actor: CurrentActor, handlers: Handlers, meta: Meta, idem: IdempotencyDep, response: Response
) -> dict[str, Any]:
    """Change your display name."""
    result = await handlers.change_profile(c.ChangeProfile(actor.user_id, body.display_name), actor, meta, idem=idem)
    return accepted(result, response)
