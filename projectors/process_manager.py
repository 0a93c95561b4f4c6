"""A log follower with its own checkpoint: the base of the photo worker and the notification worker.

Unlike a projection, a process manager has side effects (thumbnails, commands, emails),
so it keeps its own checkpoint under its own name: a rebuild of the views resets the
views' checkpoint, not this one, and a replay does not start it again. Its handlers must
still be idempotent (a crash between a side effect and the checkpoint commit redelivers
the batch), which each subclass proves with its own guard.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Sequence

import structlog

from events.envelope import Envelope
from events.ports import EventLog
from projectors.ports import Change, Collection, ViewStore

log = structlog.get_logger(__name__)


class ProcessManager(abc.ABC):
    """Reads the log from its checkpoint, hands each batch to ``handle``, commits changes and checkpoint together."""

    name: str
    collections: tuple[Collection, ...] = ()

    def __init__(self, event_log: EventLog, store: ViewStore, *, batch_size: int = 200, idle_poll_s: float = 0.2):
        self._log = event_log
        self._store = store
        self._batch_size = batch_size
        self._idle_poll_s = idle_poll_s
        self.checkpoint: dict[int, int] = {}
        self.last_error: str | None = None

    async def setup(self) -> None:
        await self._store.setup(self.collections)
        self.checkpoint = await self._store.checkpoint(self.name)

    @abc.abstractmethod
    async def handle(self, batch: Sequence[Envelope]) -> list[Change]:
        """Act on a batch; return the view changes to commit with the new checkpoint."""

    async def after_commit(self) -> None:  # noqa: B027 - optional hook
        """Side effects that must follow a durable commit."""

    async def run_once(self) -> int:
        batch = await self._log.read(self.checkpoint, self._batch_size)
        if not batch:
            return 0
        checkpoint = dict(self.checkpoint)
        for env in batch:
            assert env.position is not None
            checkpoint[env.position.partition] = max(checkpoint.get(env.position.partition, 0), env.position.offset)
        changes = await self.handle(batch)
        await self._store.commit(self.name, changes, checkpoint)
        self.checkpoint = checkpoint
        await self.after_commit()
        return len(batch)

    async def catch_up(self) -> int:
        total = 0
        while n := await self.run_once():
            total += n
        return total

    async def run_forever(self, stop: asyncio.Event) -> None:
        log.info("process_manager.started", process_manager=self.name)
        while not stop.is_set():
            try:
                if await self.run_once():
                    continue
                await self._log.wait(self.checkpoint, self._idle_poll_s)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - any failure is retried after a pause, never skipped
                self.last_error = f"{type(error).__name__}: {error}"
                log.warning("process_manager.retry", process_manager=self.name, reason=self.last_error)
                await asyncio.sleep(1.0)
        log.info("process_manager.stopped", process_manager=self.name)
