"""Sign-in tokens: short-lived HS256 JWT access tokens and longer-lived refresh tokens."""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import jwt

from command_api.domain.actor import Actor
from snapfix.settings import Settings

TokenKind = Literal["access", "refresh"]
CHECKED_TOKENS = 50_000


class InvalidToken(Exception):
    """A token that is malformed, tampered with, expired, or of the wrong kind or audience."""


@dataclass(frozen=True, slots=True)
class RefreshClaims:
    """What a valid refresh token says: who, which session family, and which token of it."""

    actor: Actor
    family: str
    token_id: str


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    token_type: str = "bearer"


class Tokens:
    """Issue and check HS256 JWTs with issuer, audience, expiry and kind."""

    def __init__(self, settings: Settings) -> None:
        self._secret = settings.jwt_secret.get_secret_value()
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._access_ttl = settings.access_token_ttl_s
        self._refresh_ttl = settings.refresh_token_ttl_s
        # access tokens already checked, until they expire: a client sends the same one on every request,
        # and decoding and verifying it costs more than serving a cached read (the signature stays checked once)
        self._checked: OrderedDict[str, tuple[Actor, float]] = OrderedDict()

    def issue(self, actor: Actor, now: datetime, family: str | None = None, token_id: str | None = None) -> TokenPair:
        """An access token and a refresh token; the refresh token names its session family and its own id."""
        refresh_extra = {"fam": family or uuid.uuid4().hex, "jti": token_id or uuid.uuid4().hex}
        return TokenPair(
            access_token=self._encode(actor, "access", now, self._access_ttl),
            refresh_token=self._encode(actor, "refresh", now, self._refresh_ttl, refresh_extra),
            expires_in=self._access_ttl,
        )

    def _encode(
        self, actor: Actor, kind: TokenKind, now: datetime, ttl: int, extra: dict[str, str] | None = None
    ) -> str:
        claims: dict[str, Any] = {
            "sub": actor.user_id,
            "roles": sorted(actor.roles),
            "typ": kind,
            "iss": self._issuer,
            "aud": self._audience,
            "iat": now,
            "nbf": now - timedelta(seconds=5),
            "exp": now + timedelta(seconds=ttl),
            "jti": uuid.uuid4().hex,
            **(extra or {}),
        }
        return jwt.encode(claims, self._secret, algorithm="HS256")

    def check(self, token: str, kind: TokenKind) -> Actor:
        """The actor a valid token speaks for; raises InvalidToken otherwise."""
        if kind == "access":
            known = self._checked.get(token)
            if known is not None and known[1] > time.time():
                return known[0]
        claims = self._claims(token, kind)
        actor = self._actor(claims)
        if kind == "access":
            self._checked[token] = (actor, float(claims["exp"]))
            while len(self._checked) > CHECKED_TOKENS:
                self._checked.popitem(last=False)
        return actor

    def check_refresh(self, token: str) -> RefreshClaims:
        """A valid refresh token's claims; its family and id are then checked against the session."""
        claims = self._claims(token, "refresh")
        family, token_id = claims.get("fam"), claims.get("jti")
        if not isinstance(family, str) or not isinstance(token_id, str) or not family or not token_id:
            raise InvalidToken("the refresh token names no session")
        return RefreshClaims(self._actor(claims), family, token_id)

    def _claims(self, token: str, kind: TokenKind) -> dict[str, Any]:
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=["HS256"],
                audience=self._audience,
                issuer=self._issuer,
                options={"require": ["exp", "iat", "sub", "aud", "iss"]},
            )
        except jwt.PyJWTError as e:
            raise InvalidToken(str(e)) from e
        if claims.get("typ") != kind:
            raise InvalidToken(f"expected a {kind} token")
        return claims

    @staticmethod
    def _actor(claims: dict[str, Any]) -> Actor:
        roles = claims.get("roles")
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise InvalidToken("token roles are malformed")
        return Actor(user_id=str(claims["sub"]), roles=frozenset(roles))
