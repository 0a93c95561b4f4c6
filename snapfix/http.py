"""HTTP plumbing shared by both APIs: problem+json errors, correlation ids, request metrics."""

from __future__ import annotations

import functools
import re
import time
from typing import Any

import orjson
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from prometheus_client import Counter, Histogram
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from command_api.domain.errors import (
    AlreadyExists,
    DomainError,
    Forbidden,
    Invalid,
    InvalidTransition,
    NotFound,
)
from snapfix.logs import new_correlation_id

log = structlog.get_logger(__name__)

PROBLEM_JSON = "application/problem+json"
CORRELATION_HEADER = "x-correlation-id"
SAFE_CORRELATION = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

HTTP_REQUESTS = Counter("snapfix_http_requests_total", "HTTP requests", ["method", "route", "status"])
HTTP_DURATION = Histogram(
    "snapfix_http_request_duration_seconds",
    "HTTP request duration",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)

DOMAIN_STATUS: dict[type[DomainError], int] = {
    NotFound: 404,
    Forbidden: 403,
    InvalidTransition: 409,
    AlreadyExists: 409,
    Invalid: 422,
}


class JSONResponse(Response):
    """JSON through orjson (FastAPI's own ORJSONResponse is deprecated)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class ProblemResponse(JSONResponse):
    media_type = PROBLEM_JSON


def problem(
    status: int, code: str, title: str, detail: str, *, headers: dict[str, str] | None = None, **extra: Any
) -> ProblemResponse:
    """An RFC 9457 problem document with a stable ``type`` per kind of error."""
    body = {"type": f"/problems/{code}", "title": title, "status": status, "detail": detail, **extra}
    return ProblemResponse(body, status_code=status, headers=headers)


class ProblemError(Exception):
    """Raise from a route to answer with a problem document."""

    def __init__(
        self, status: int, code: str, title: str, detail: str, headers: dict[str, str] | None = None, **extra: Any
    ) -> None:
        super().__init__(detail)
        self.status, self.code, self.title, self.detail = status, code, title, detail
        self.headers = headers
        self.extra = extra

    def response(self) -> ProblemResponse:
        return problem(self.status, self.code, self.title, self.detail, headers=self.headers, **self.extra)


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    return [
        {"loc": [str(p) for p in err.get("loc", ())], "msg": err.get("msg", ""), "type": err.get("type", "")}
        for err in exc.errors()
    ]


def install_error_handlers(app: FastAPI) -> None:
    """Every error leaves as problem+json; an unexpected one as a 500 that hides its internals."""

    @app.exception_handler(ProblemError)
    async def _problem(_: Request, exc: ProblemError) -> ProblemResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> ProblemResponse:
        return problem(
            422,
            "validation-error",
            "Invalid request",
            "The request does not match the schema; see errors.",
            errors=_validation_errors(exc),
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> ProblemResponse:
        code = {404: "not-found", 405: "method-not-allowed", 401: "unauthorized"}.get(exc.status_code, "http-error")
        return problem(
            exc.status_code,
            code,
            str(exc.detail) if exc.status_code != 404 else "Not found",
            str(exc.detail),
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(DomainError)
    async def _domain(_: Request, exc: DomainError) -> ProblemResponse:
        status = next((s for cls, s in DOMAIN_STATUS.items() if isinstance(exc, cls)), 400)
        return problem(status, exc.code, type(exc).__name__, str(exc))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> ProblemResponse:
        log.exception("http.unexpected_error", error_type=type(exc).__name__)
        return problem(
            500,
            "internal-error",
            "Internal error",
            "Something went wrong on our side; the correlation id identifies it in our logs.",
        )


@functools.lru_cache(maxsize=1024)  # a client may send any method name
def _request_metrics(method: str, route: str, status: int) -> tuple[Counter, Histogram]:
    """The labelled children for one kind of request, looked up once (routes and statuses are few)."""
    return HTTP_REQUESTS.labels(method, route, str(status)), HTTP_DURATION.labels(method, route)


def correlation_id_of(scope: Scope) -> str:
    """The client's ``X-Correlation-ID`` when it is well-formed, else a new one."""
    supplied = next((v.decode("latin-1") for k, v in scope["headers"] if k == CORRELATION_HEADER.encode()), "")
    return supplied if SAFE_CORRELATION.match(supplied) else new_correlation_id()


def record_request(logger: Any, method: str, route: str, status: int, started: float, **extra: Any) -> None:
    """Count, time and log one answered request (the middleware below and the detail fast path share it)."""
    elapsed = time.perf_counter() - started
    counter, duration = _request_metrics(method, route, status)
    counter.inc()
    duration.observe(elapsed)
    logger.info("http.request", method=method, route=route, status=status, ms=round(elapsed * 1000, 2), **extra)


def request_logger() -> Any:
    """The request log, bound once by whoever serves (after the process configured logging): the module's
    lazy logger would rebuild itself for every request's line, even one filtered out."""
    return log.bind()


class CorrelationMiddleware:
    """Gives every request a correlation id (the client's, if well-formed), logs and times it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._log = request_logger()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        correlation_id = correlation_id_of(scope)
        status = 500
        started = time.perf_counter()

        async def send_with_header(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-correlation-id", correlation_id.encode())]
            await send(message)

        # bind and reset directly: the context-manager form costs three times as much, on every request
        bound = structlog.contextvars.bind_contextvars(correlation_id=correlation_id)
        try:
            await self.app(scope, receive, send_with_header)
        finally:
            try:
                route = getattr(scope.get("route"), "path", "unmatched")
                record_request(self._log, scope["method"], route, status, started)
            finally:
                structlog.contextvars.reset_contextvars(**bound)


HEALTHY = b'{"status":"ok"}'


@functools.cache
def _health_log() -> Any:
    """Bound on first use, once the process configured logging (see ``request_logger``)."""
    return request_logger()


async def answer_health(scope: Scope, send: Send) -> bool:
    """``GET /healthz`` answered before the framework (what snapfix/ops_routes.py answers); True if it was."""
    global _health_log
    if scope["type"] != "http" or scope["path"] != "/healthz" or scope["method"] != "GET" or scope["query_string"]:
        return False
    started = time.perf_counter()
    correlation_id = correlation_id_of(scope)
    headers = [(b"content-length", b"15"), (b"content-type", b"application/json"),
               (b"x-correlation-id", correlation_id.encode())]  # fmt: skip
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": HEALTHY})
    record_request(_health_log(), "GET", "/healthz", 200, started, correlation_id=correlation_id)
    return True
