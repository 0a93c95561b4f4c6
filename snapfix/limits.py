"""Request limits: body size (413) and rate limits on writes and sign-in (429 with Retry-After).

Both run as ASGI middleware, before any body is parsed, so an oversized or abusive
request costs almost nothing. Counts live behind a small port: the in-process adapter
serves the one-process deployment; several command-API processes need a shared counter
(a ``RedisRateLimiter`` with INCR and EXPIRE is the follow-up), or each process enforces
its share of the limit.
"""

from __future__ import annotations

import abc
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from snapfix.settings import Settings
from snapfix.tokens import InvalidToken, Tokens

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
BODILESS_METHODS = frozenset({"GET", "HEAD"})  # not rate limited; a body only if the request declares one
SIGN_IN_PATHS = frozenset({"/v1/auth/token", "/v1/auth/refresh"})
MULTIPART_OVERHEAD = 64 * 1024


class RateLimiter(abc.ABC):
    """Counts hits per key in fixed windows."""

    @abc.abstractmethod
    async def hit(self, key: str, limit: int, window_s: int) -> float | None:
        """Count one hit; None if within ``limit`` for the current window, else seconds until it resets."""


class MemoryRateLimiter(RateLimiter):
    """Fixed windows in a dict; old windows are swept as new ones start."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, max_keys: int = 100_000) -> None:
        self._clock = clock
        self._max_keys = max_keys
        self._windows: dict[str, tuple[float, int]] = {}

    async def hit(self, key: str, limit: int, window_s: int) -> float | None:
        now = self._clock()
        start, count = self._windows.get(key, (now, 0))
        if now - start >= window_s:
            start, count = now, 0
        if count >= limit:
            return start + window_s - now
        if len(self._windows) >= self._max_keys:
            self._windows = {k: v for k, v in self._windows.items() if now - v[0] < window_s}
        self._windows[key] = (start, count + 1)
        return None


@dataclass(frozen=True, slots=True)
class _Refusal:
    status: int
    code: str
    title: str
    detail: str
    retry_after: int | None = None


class _TooLarge(Exception):
    pass


class LimitsMiddleware:
    """413 for bodies over the limit (photo uploads get the photo limit); 429 past a rate limit."""

    def __init__(self, app: ASGIApp, settings: Settings, limiter: RateLimiter | None = None) -> None:
        self.app = app
        self._settings = settings
        self._limiter = limiter or MemoryRateLimiter()
        self._tokens = Tokens(settings)

    def _body_limit(self, path: str) -> int:
        if path.startswith("/v1/issues/") and path.endswith("/photos"):
            return self._settings.photo_max_bytes + MULTIPART_OVERHEAD
        return self._settings.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] in BODILESS_METHODS and _bodiless(scope):  # reads: nothing to count or refuse
            await self.app(scope, receive, send)
            return
        refusal = await self._rate_limited(scope)
        limit = self._body_limit(scope["path"])
        declared = _header(scope, b"content-length")
        if refusal is None and declared is not None and (not declared.isdigit() or int(declared) > limit):
            refusal = _too_large(limit)
        if refusal is not None:
            await _refuse(send, refusal)
            return
        received = 0
        started = False

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _TooLarge
            return message

        async def watch(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watch)
        except _TooLarge:
            if not started:
                await _refuse(send, _too_large(limit))

    async def _rate_limited(self, scope: Scope) -> _Refusal | None:
        s = self._settings
        method, path = scope["method"], scope["path"]
        if method not in WRITE_METHODS:
            return None
        client = scope.get("client")
        ip = client[0] if client else "unknown"
        checks: list[tuple[str, int]] = []
        if path in SIGN_IN_PATHS:
            checks.append((f"signin:{ip}", s.rate_limit_sign_ins))
        else:
            checks.append((f"ip:{ip}", s.rate_limit_ip_writes))
            user = self._user(scope)
            if user is not None:
                checks.append((f"user:{user}", s.rate_limit_user_writes))
        for key, limit in checks:
            if limit <= 0:
                continue
            wait = await self._limiter.hit(key, limit, s.rate_limit_window_s)
            if wait is not None:
                seconds = max(1, math.ceil(wait))
                detail = f"too many requests; retry in {seconds} s"
                return _Refusal(429, "rate-limited", "Too many requests", detail, seconds)
        return None

    def _user(self, scope: Scope) -> str | None:
        """The signed-in user, when the bearer token is valid (an invalid one is refused later, by the route)."""
        authorization = _header(scope, b"authorization")
        if not authorization or not authorization.lower().startswith("bearer "):
            return None
        try:
            return self._tokens.check(authorization[7:].strip(), "access").user_id
        except InvalidToken:
            return None


def _too_large(limit: int) -> _Refusal:
    return _Refusal(413, "body-too-large", "Request body too large", f"the body exceeds the limit of {limit} bytes")


def _bodiless(scope: Scope) -> bool:
    """No Content-Length and no Transfer-Encoding: HTTP/1.1 gives the request no body at all."""
    return not any(key in (b"content-length", b"transfer-encoding") for key, _ in scope["headers"])


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


async def _refuse(send: Send, refusal: _Refusal) -> None:
    body = orjson.dumps(
        {
            "type": f"/problems/{refusal.code}",
            "title": refusal.title,
            "status": refusal.status,
            "detail": refusal.detail,
        }
    )
    headers = [(b"content-type", b"application/problem+json"), (b"content-length", str(len(body)).encode())]
    if refusal.retry_after is not None:
        headers.append((b"retry-after", str(refusal.retry_after).encode()))
    await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
