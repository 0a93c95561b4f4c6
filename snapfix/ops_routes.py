"""Liveness, readiness with each dependency, and Prometheus metrics: served by every role."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Any

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from events.ports import EventLogError
from snapfix.auth import ContainerDep
from snapfix.bootstrap import Container, open_log_reader
from snapfix.http import JSONResponse

router = APIRouter(tags=["operations"])
# A hung view store or cache (no socket timeout on a pooled connection) would hold the probe for as
# long as the server hangs; a probe must answer within its caller's timeout (often 1 s), so these two
# checks run side by side, each given up after this bound. The event log's first check starts a
# Kafka consumer, which may legitimately take longer, so it keeps its client's own timeouts.
PING_TIMEOUT_S = 1.0
STATUS_SHARED_S = 1.0  # how long one GET /ops/status answer of a role without a log serves every caller


async def _check(call: Awaitable[object], timeout_s: float | None = None) -> str:
    """The check's entry: ok, or down with the reason (a timeout or the error's type)."""
    try:
        async with asyncio.timeout(timeout_s):
            await call
    except TimeoutError:
        return f"down: no answer within {timeout_s} s"
    except Exception as e:  # noqa: BLE001 - any failure means not ready
        return f"down: {type(e).__name__}"
    return "ok"


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "A dependency is down"}})
async def readyz(c: ContainerDep) -> Response:
    """Each dependency answers; 503 names the ones that do not."""
    checks: dict[str, Any] = {}
    if c.log is not None:
        checks["event_log"] = await _check(c.log.head())
    bounded = [("view_store", c.views), ("cache", c.cache)]
    found = await asyncio.gather(*(_check(dep.ping(), PING_TIMEOUT_S) for _, dep in bounded if dep is not None))
    checks.update(zip([name for name, dep in bounded if dep is not None], found, strict=True))
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not ready", "checks": checks}, status_code=200 if ready else 503
    )


@router.get("/ops/status")
async def ops_status(c: ContainerDep) -> Response:
    """Every projector's position, lag in events and seconds, view generations, dead letters, last error."""
    from ops.status import projector_status

    if c.views is None:
        return JSONResponse({"projectors": [], "detail": "this role has no view store"})
    if c.log is not None:
        return JSONResponse({"projectors": await projector_status(c.views, c.log, c.runner)})
    # A query API holds no log; lag needs its head, read through a reader opened for the purpose (the
    # CLI does the same). That costs a log connection, and the route needs no credentials, so one answer
    # serves every request for STATUS_SHARED_S: one reader at a time, however many ask.
    shared = c.status_answers
    async with shared.lock:
        if shared.body is None or time.monotonic() - shared.at > STATUS_SHARED_S:
            shared.body, shared.at = await _status_through_a_reader(c), time.monotonic()
        body = shared.body
    return JSONResponse(body)


async def _status_through_a_reader(c: Container) -> dict[str, Any]:
    from ops.status import projector_status

    assert c.views is not None
    try:
        reader = await open_log_reader(c.settings)
    except EventLogError:
        return {"projectors": await projector_status(c.views, None), "detail": "the log is unreachable"}
    try:
        return {"projectors": await projector_status(c.views, reader)}
    finally:
        await reader.close()


@router.get("/metrics", response_class=Response)
async def metrics() -> Response:
    """Prometheus text format."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
