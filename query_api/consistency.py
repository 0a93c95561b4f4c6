"""Read-your-writes: wait, within a bound, until the views have applied a command's position."""

from __future__ import annotations

import asyncio
import time

from events.envelope import Position
from snapfix.bootstrap import MAIN_PROJECTOR, Container


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
