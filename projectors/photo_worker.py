"""The photo worker: a process manager that thumbnails each new photo and records it through the command side.

Replays do not reprocess photos: the worker has its own checkpoint, and before doing
anything it asks the issue aggregate whether the thumbnail event already exists (the
``RecordThumbnail`` decision is itself idempotent, so even a race ends in one event).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime

import structlog

from command_api import commands as c
from command_api import images
from command_api.domain.actor import SYSTEM
from command_api.handlers import CommandHandlers
from events.codec import envelope_to_dict
from events.envelope import Envelope, Metadata
from events.ports import EventLog
from projectors.ports import Change, Put, ViewStore
from projectors.process_manager import ProcessManager
from projectors.projection import iso
from projectors.runner import DEAD_LETTERS
from snapfix.blobs import BlobStore

log = structlog.get_logger(__name__)


class PhotoWorker(ProcessManager):
    name = "photo-worker"
    collections = (DEAD_LETTERS,)

    def __init__(
        self,
        event_log: EventLog,
        store: ViewStore,
        blobs: BlobStore,
        handlers: CommandHandlers,
        max_pixels: int,
        **kwargs: float,
    ) -> None:
        super().__init__(event_log, store, **kwargs)  # type: ignore[arg-type]
        self._blobs = blobs
        self._handlers = handlers
        self._max_pixels = max_pixels
        self.thumbnailed = 0

    async def handle(self, batch: Sequence[Envelope]) -> list[Change]:
        dead: list[Change] = []
        for env in batch:
            if env.event_type != "IssuePhotoAdded":
                continue
            try:
                await self._thumbnail(env)
            except images.ImageRefused as error:  # can never succeed: record it and go on
                dead.append(self._dead_letter(env, error))
        return dead

    async def _thumbnail(self, env: Envelope) -> None:
        photo_id, blob_key = env.payload["photo_id"], env.payload["blob_key"]
        state = await self._handlers.issue_state(env.aggregate_id)
        if photo_id in state.thumbnailed:
            return
        stored = await self._blobs.get(blob_key)
        if stored is None:
            raise images.ImageRefused(f"photo blob {blob_key} is missing")
        thumb = await asyncio.to_thread(images.thumbnail, stored[0], self._max_pixels)
        thumb_key = f"thumbnails/{env.aggregate_id}/{photo_id}.{thumb.extension}"
        await self._blobs.put(thumb_key, thumb.data, thumb.content_type)
        cmd = c.RecordThumbnail(env.aggregate_id, photo_id, thumb_key, thumb.width, thumb.height)
        meta = Metadata(actor_id=SYSTEM.user_id, correlation_id=env.correlation_id, causation_id=env.event_id)
        await self._handlers.issue_command(cmd, SYSTEM, meta)
        self.thumbnailed += 1
        log.info("photo.thumbnailed", issue_id=env.aggregate_id, photo_id=photo_id)

    def _dead_letter(self, env: Envelope, error: Exception) -> Put:
        assert env.position is not None
        log.error("photo.dead_letter", issue_id=env.aggregate_id, reason=str(error))
        return Put(
            "dead_letters",
            {
                "id": f"{self.name}:{env.position.partition}:{env.position.offset}",
                "projector": self.name,
                "partition": env.position.partition,
                "position": env.position.offset,
                "status": "open",
                "reason": f"{type(error).__name__}: {error}",
                "envelope": envelope_to_dict(env),
                "recorded_at": iso(datetime.now(UTC)),
            },
        )
