"""Read-your-writes: wait, within a bound, until the views have applied a command's position."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog

from events.envelope import Position
from events.ports import EventLogError
from snapfix.bootstrap import MAIN_PROJECTOR, Container

log = structlog.get_logger(__name__)
T = TypeVar("T")


async def wait_for_token(c: Container, token: str) -> bool:
    """True once the views have caught up to ``token``; False if the bound passed first."""
    position = Position.from_token(token)
    bound = c.settings.consistency_wait_ms / 1000
    if c.runner is not None:  # the projector runs in this process: it tells us when it moves
        return await c.runner.wait_until(position.partition, position.offset, bound)
    assert c.views is not None
    deadline = time.monotonic() + bound
    delay = 0.002
    while True:
        checkpoint = await c.views.checkpoint(MAIN_PROJECTOR)
        if checkpoint.get(position.partition, -1) >= position.offset:
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.05)


async def once_projected(c: Container, aggregate_id: str, fetch: Callable[[], Awaitable[T | None]]) -> T | None:
    """What ``fetch`` finds once the views show an aggregate the log already holds, within the consistency bound.

    Called after ``fetch`` found nothing: a client following the ``Location`` of a 201 gets the
    resource, not a 404. One keyed lookup in the write side tells a new aggregate from an id
    nobody created, which gets None at once, with no wait and no scan of the log.
    """
    if c.existence is None:
        return None
    try:
        if await c.existence.version_of(aggregate_id) == 0:
            return None
    except EventLogError as error:  # the write side is down: answer from the views alone
        log.warning("consistency.existence_unavailable", reason=str(error))
        return None
    deadline = time.monotonic() + c.settings.consistency_wait_ms / 1000
    delay = 0.002
    while (left := deadline - time.monotonic()) > 0:
        if c.runner is not None:  # the projector runs here: wake when it commits a batch
            await c.runner.progressed(min(left, 0.05))
        else:
            await asyncio.sleep(min(delay, left))
            delay = min(delay * 2, 0.05)
        found = await fetch()
        if found is not None:
            return found
    log.info("consistency.not_projected_in_time", aggregate_id=aggregate_id)
    return None
