"""Build the ASGI application for a role: everything in one process, or the command or query API alone."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Literal

import structlog
from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from command_api.app import install_command_errors
from command_api.app import router as command_router
from command_api.domain.actor import SYSTEM
from events.envelope import Metadata
from query_api.app import install_query_errors
from query_api.app import router as query_router
from query_api.fast_detail import FastDetail
from snapfix import bootstrap, loop_lag
from snapfix.http import CorrelationMiddleware, answer_health, install_error_handlers
from snapfix.limits import LimitsMiddleware
from snapfix.ops_routes import router as ops_router
from snapfix.settings import Settings

log = structlog.get_logger(__name__)
Role = Literal["all", "command", "query"]

DESCRIPTION = """
SnapFix: citizens report local problems, city staff triage and fix them, everyone browses.

Writes are commands: each answers `{id, version, position}`. Send `position` back as
`X-Consistency-Token` on a read to see your own write. Send `If-Match: <version>` to refuse
a stale edit (409), and `Idempotency-Key` to make a retry safe. Errors are RFC 9457
`application/problem+json`.
"""


class SnapFixAPI(FastAPI):
    """FastAPI, with cached issue details answered before the framework and its middleware see the request.

    A hit of ``GET /v1/issues/{id}`` is only a cache lookup and two sends; going through
    FastAPI, Starlette's error middleware and ours first would cost it more than half its
    time (query_api/fast_detail.py does their part: correlation id, metrics, log line).
    """

    fast_detail: FastDetail | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if await answer_health(scope, send):
            return
        if self.fast_detail is not None and await self.fast_detail.answer(scope, send):
            return
        await super().__call__(scope, receive, send)


def create_app(settings: Settings, role: Role = "all") -> FastAPI:
    """The app for a role; its adapters are opened by the lifespan, never at import time."""
    write = role in ("all", "command")
    read = role in ("all", "query")
    project = role == "all"

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        container = await bootstrap.build(settings, write=write, read=read, project=project)
        app.state.container = container
        if container.handlers is not None:
            await container.handlers.seed_catalogue(SYSTEM, Metadata(actor_id=SYSTEM.user_id))
        stop = asyncio.Event()
        task = None
        if container.runner is not None:
            await container.runner.catch_up()
            task = asyncio.create_task(container.runner.run_forever(stop), name="projector")
        managers = [asyncio.create_task(m.run_forever(stop), name=m.name) for m in container.process_managers]
        managers.append(asyncio.create_task(loop_lag.monitor(stop), name="loop-lag"))
        managers.append(asyncio.create_task(loop_lag.full_collections(stop), name="full-collections"))
        loop_lag.settle_heap()
        run_relay = getattr(container.store, "run_relay", None)
        if write and run_relay is not None:  # publishes what a crashed command API left in the outbox
            managers.append(asyncio.create_task(run_relay(stop), name="outbox-relay"))
        log.info(
            "snapfix.started",
            role=role,
            event_log=_scheme(settings.event_log),
            view_store=_scheme(settings.view_store),
            cache=_scheme(settings.cache),
        )
        try:
            yield
        finally:
            stop.set()
            if task is not None:
                await task
            for managed in managers:
                await managed
            await bootstrap.close(container)

    titles = {"all": "SnapFix API", "command": "SnapFix command API", "query": "SnapFix query API"}
    app = SnapFixAPI(title=titles[role], version="0.1.0", description=DESCRIPTION, lifespan=lifespan)
    if read:
        app.fast_detail = FastDetail(app.state)
    install_error_handlers(app)
    if write:
        install_command_errors(app)
        app.include_router(command_router)
    if read:
        install_query_errors(app)
        app.include_router(query_router)
    app.include_router(ops_router)
    app.add_middleware(LimitsMiddleware, settings=settings)
    app.add_middleware(CorrelationMiddleware)
    return app


def _scheme(url: str) -> str:
    """The backend kind of a URL, without credentials, for logs."""
    return url.split(":", 1)[0]
