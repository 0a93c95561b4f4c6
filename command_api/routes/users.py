"""Registration, sign-in and profile changes."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Path, Response, status

from command_api import commands as c
from command_api.deps import Handlers, IdempotencyDep, Meta
from command_api.domain.actor import ROLES
from command_api.domain.errors import DomainError
from command_api.domain.session import RefreshTokenReused
from command_api.models import CommandAccepted, LogoutBody, ProfilePatch, RefreshBody, RegisterBody, TokenResponse
from command_api.routes.common import COMMAND_ERRORS, PROBLEM, accepted
from events.envelope import Metadata
from snapfix.auth import ContainerDep, CurrentActor
from snapfix.http import ProblemError
from snapfix.tokens import InvalidToken, TokenPair

UserId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9-]+$")]
Role = Annotated[str, Path(pattern="^(" + "|".join(ROLES) + ")$", description="citizen, staff or admin")]

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


@dataclass(frozen=True, slots=True)
class SignInForm:
    username: str
    password: str


async def sign_in_form(
    username: Annotated[str, Form(description="the email you registered with")],
    password: Annotated[str, Form(json_schema_extra={"format": "password"})],
    grant_type: Annotated[str | None, Form(pattern="^password$", description="OAuth2's `password`, or none")] = None,  # noqa: ARG001
    scope: Annotated[str, Form()] = "",  # noqa: ARG001 - OAuth2 fields a client may send; no scopes here
    client_id: Annotated[str | None, Form()] = None,  # noqa: ARG001
    client_secret: Annotated[str | None, Form(json_schema_extra={"format": "password"})] = None,  # noqa: ARG001
) -> SignInForm:
    """OAuth2's password form, read by a coroutine: a class dependency would cost a thread hop per sign-in."""
    return SignInForm(username, password)


@router.post(
    "/v1/auth/token",
    response_model=TokenResponse,
    tags=["auth"],
    responses={401: {"description": "Wrong email or password", **PROBLEM}},
)
async def sign_in(
    form: Annotated[SignInForm, Depends(sign_in_form)], handlers: Handlers, c_: ContainerDep, meta: Meta
) -> dict[str, Any]:
    """OAuth2 password flow: the form's `username` is the email. Each sign-in starts a session."""
    user = await handlers.authenticate(form.username, form.password)
    if user is None:
        raise _bad_credentials()
    assert c_.tokens is not None
    family, token_id = uuid.uuid4().hex, uuid.uuid4().hex
    await handlers.start_session(
        user.id, family, token_id, Metadata(actor_id=user.id, correlation_id=meta.correlation_id)
    )
    return _pair(c_.tokens.issue(user.as_actor(), c_.clock(), family, token_id))


def _pair(pair: TokenPair) -> dict[str, Any]:
    return {
        "access_token": pair.access_token,
        "refresh_token": pair.refresh_token,
        "token_type": pair.token_type,
        "expires_in": pair.expires_in,
    }


def _invalid_refresh(detail: str, code: str = "invalid-token") -> ProblemError:
    return ProblemError(401, code, "Invalid refresh token", detail, headers={"WWW-Authenticate": "Bearer"})


@router.post(
    "/v1/auth/refresh",
    response_model=TokenResponse,
    tags=["auth"],
    responses={401: {"description": "The refresh token is not valid, spent, or its session ended", **PROBLEM}},
)
async def refresh(body: RefreshBody, handlers: Handlers, c_: ContainerDep, meta: Meta) -> dict[str, Any]:
    """Trade a refresh token for a new pair (rotation); roles are read afresh. A spent token ends the session."""
    assert c_.tokens is not None
    try:
        claims = c_.tokens.check_refresh(body.refresh_token)
    except InvalidToken as e:
        raise _invalid_refresh(str(e)) from None
    user = await handlers.user(claims.actor.user_id)
    if user is None:
        raise _invalid_refresh("the account no longer exists")
    new_token_id = uuid.uuid4().hex
    acting = Metadata(actor_id=user.id, correlation_id=meta.correlation_id)
    try:
        await handlers.rotate_refresh_token(user.id, claims.family, claims.token_id, new_token_id, acting)
    except RefreshTokenReused as e:
        raise _invalid_refresh(str(e), "refresh-token-reused") from None
    except DomainError as e:
        raise _invalid_refresh(str(e)) from None
    return _pair(c_.tokens.issue(user.as_actor(), c_.clock(), claims.family, new_token_id))


@router.post(
    "/v1/auth/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    tags=["auth"],
    responses={401: {"description": "The refresh token is not valid", **PROBLEM}},
)
async def logout(body: LogoutBody, handlers: Handlers, c_: ContainerDep, meta: Meta) -> Response:
    """Sign out: the session's refresh tokens stop working (access tokens expire within minutes)."""
    assert c_.tokens is not None
    try:
        claims = c_.tokens.check_refresh(body.refresh_token)
        acting = Metadata(actor_id=claims.actor.user_id, correlation_id=meta.correlation_id)
        await handlers.end_session(claims.actor.user_id, claims.family, acting)
    except (InvalidToken, DomainError) as e:
        raise _invalid_refresh(str(e)) from None
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.patch("/v1/users/me", response_model=CommandAccepted, responses=COMMAND_ERRORS)
async def change_profile(
    body: ProfilePatch, actor: CurrentActor, handlers: Handlers, meta: Meta, idem: IdempotencyDep, response: Response
) -> dict[str, Any]:
    """Change your display name."""
    result = await handlers.change_profile(c.ChangeProfile(actor.user_id, body.display_name), actor, meta, idem=idem)
    return accepted(result, response)


@router.put("/v1/users/{user_id}/roles/{role}", response_model=CommandAccepted, responses=COMMAND_ERRORS)
async def grant_role(
    user_id: UserId, role: Role, actor: CurrentActor, handlers: Handlers, meta: Meta, response: Response
) -> dict[str, Any]:
    """Admins give a user a role (idempotent); it shows in their tokens from their next refresh."""
    return accepted(await handlers.grant_role(c.GrantRole(user_id, role), actor, meta), response)


@router.delete("/v1/users/{user_id}/roles/{role}", response_model=CommandAccepted, responses=COMMAND_ERRORS)
async def revoke_role(
    user_id: UserId, role: Role, actor: CurrentActor, handlers: Handlers, meta: Meta, response: Response
) -> dict[str, Any]:
    """Admins take a role away (idempotent); every user keeps `citizen`, and no admin demotes themself."""
    return accepted(await handlers.revoke_role(c.RevokeRole(user_id, role), actor, meta), response)
