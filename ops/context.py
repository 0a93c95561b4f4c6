"""The adapters an operator command needs, opened from settings and closed when it ends."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from events.ports import EventLog, EventStore
from projectors.catalog import ALL
from projectors.ports import ViewStore
from projectors.runner import DEAD_LETTERS
from snapfix import bootstrap
from snapfix.settings import Settings


@dataclass
class Adapters:
    store: EventStore | None = None
    log: EventLog | None = None
    views: ViewStore | None = None


@contextlib.asynccontextmanager
async def opened(settings: Settings, *, log: bool = True, views: bool = True) -> AsyncIterator[Adapters]:
    found = Adapters()
    try:
        if log:
            found.store, found.log = await bootstrap.open_event_log(settings)
        if views:
            found.views = await bootstrap.open_view_store(settings)
            await found.views.setup(
                [*(p.collection for p in ALL), *(r.collection for p in ALL for r in p.rollups), DEAD_LETTERS]
            )
        yield found
    finally:
        if found.views is not None:
            await found.views.close()
        if found.log is not None:
            await found.log.close()
