"""Zero-downtime rebuild of one view: build a shadow generation, swap the alias, drop the old one later.

The live projector keeps writing the live generation while the rebuild folds the whole
log into a new one. Once the rebuild is at least as far as the live projector (checked after
every batch, so steady writes that never let it read an empty batch cannot hold it off), the store
swaps the alias atomically (re-applied events change nothing: the folds are idempotent,
so a builder ahead of the leader is as good as level). Readers then follow the alias; the
retired generation stays for a grace period for readers that resolved it just before.

Every step is recorded in the store, so a crashed rebuild resumes: a building generation
continues from its builder's checkpoint; a retired one is dropped once its grace is over.

A swap also ends the caches' epoch (snapfix/cache.py), so nothing cached from the old
generation is served after it. Given the cache, the rebuild publishes the new epoch right
after the swap, retrying for ``PUBLISH_TRIES`` seconds while the cache is down and then
failing loudly (the swap stands; run it again to publish, or let the live projector do
it). The live projector publishes it too, within a second of the swap (on Kafka, the
worker's timer does, between batches): that is what reaches an in-process cache, which only
its own process can see.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog

from events.ports import EventLog
from projectors.ports import Generations, ViewStore, ahead
from projectors.projection import Projection
from projectors.runner import ProjectionRunner, publish_views_epoch
from snapfix.cache import Cache, CacheError

log = structlog.get_logger(__name__)

Progress = Callable[[int], None]
PUBLISH_TRIES = 10  # one a second


class RebuildStalled(RuntimeError):
    """The rebuild could not get level with the live projector within its attempts."""


class EpochUnpublished(RuntimeError):
    """The new generation is live, but the cache may still serve the old one's values: it did not answer."""


@dataclass(frozen=True, slots=True)
class RebuildResult:
    view: str
    generation: int
    events: int
    retired: int | None
    dropped: bool
    resumed: bool


def backlog(head: dict[int, int], checkpoint: dict[int, int]) -> int:
    """Events in the log after a checkpoint (offsets per partition)."""
    return sum(max(0, offset - checkpoint.get(partition, -1)) for partition, offset in head.items())


async def rebuild(
    projection: Projection,
    event_log: EventLog,
    store: ViewStore,
    *,
    leader: str,
    grace_s: float = 30.0,
    batch_size: int = 2000,
    swap_attempts: int = 500,
    on_total: Callable[[int], None] | None = None,
    progress: Progress | None = None,
    cache: Cache | None = None,
    publish_tries: int = PUBLISH_TRIES,
) -> RebuildResult:
    """Rebuild ``projection``'s view into a new generation and make it live; see the module docstring.

    ``cache``: the deployment's shared cache, whose epoch the swap ends at once (an in-process
    cache of another process cannot be reached: leave it None, the live projector publishes).
    """
    name = projection.name
    before = await store.generations(name)
    if before.building is None and before.retired is not None:  # the last rebuild swapped, then stopped
        await _publish_epoch(cache, store, name, publish_tries)
        for rollup in projection.rollups:
            leftover = await store.generations(rollup.collection.name)
            if leftover.retired is not None:
                await _drop_after_grace(store, rollup.collection.name, leftover, grace_s)
        await _drop_after_grace(store, name, before, grace_s)
        return RebuildResult(name, before.live, 0, before.retired, True, True)
    group = [projection.collection, *(r.collection for r in projection.rollups)]  # roll-ups swap with their view
    generations = {col.name: await store.begin_generation(col) for col in group}
    generation = generations[name]
    runner = ProjectionRunner.rebuilder(projection, generations, event_log, store, batch_size=batch_size)
    await runner.setup()
    resumed = bool(runner.checkpoint)
    if on_total is not None:
        on_total(backlog(await event_log.head(), runner.checkpoint))
    log.info("rebuild.started", view=name, generation=generation, resumed=resumed, checkpoint=runner.checkpoint)
    events, failed = 0, 0
    while True:
        n = await runner.run_once()
        events += n
        if progress is not None and n:
            progress(n)
        # Swap once level with the leader, not only at the log's head: under steady writes a
        # builder whose batches take longer than the gap between writes never reads an empty batch.
        if n and ahead(await store.checkpoint(leader), runner.checkpoint):
            continue
        if await store.swap(generations, runner.name, leader):
            break
        failed += 1
        if failed >= swap_attempts:
            raise RebuildStalled(f"{name} generation {generation} could not get level with {leader}")
        await asyncio.sleep(0.01)  # the leader moved past us: catch up again
    after = await store.generations(name)
    log.info("rebuild.swapped", view=name, live=generation, retired=after.retired, events=events)
    await _publish_epoch(cache, store, name, publish_tries)
    dropped = False
    for col in group:
        retired = after if col.name == name else await store.generations(col.name)
        if retired.retired is not None:
            await _drop_after_grace(store, col.name, retired, grace_s)
            dropped = True
    return RebuildResult(name, generation, events, after.retired, dropped, resumed)


async def _publish_epoch(cache: Cache | None, store: ViewStore, view: str, tries: int) -> None:
    """End the caches' epoch after a swap, so none of them serves the old generation's values any more."""
    if cache is None:
        return
    for attempt in range(1, tries + 1):
        try:
            epoch = await publish_views_epoch(cache, store)
        except CacheError as error:
            log.warning("rebuild.cache_unavailable", view=view, attempt=attempt, reason=str(error))
            if attempt < tries:
                await asyncio.sleep(1.0)
            continue
        log.info("rebuild.epoch", view=view, epoch=epoch)
        return
    raise EpochUnpublished(
        f"{view} is swapped, but the cache did not answer: it may serve the old generation until the live"
        " projector publishes the new epoch (within a second of the cache coming back), or run the rebuild again"
    )


async def _drop_after_grace(store: ViewStore, name: str, generations: Generations, grace_s: float) -> None:
    assert generations.retired is not None
    waited = 0.0
    if generations.swapped_at is not None:
        swapped = datetime.fromisoformat(generations.swapped_at.replace("Z", "+00:00"))
        waited = (datetime.now(UTC) - swapped).total_seconds()
    if grace_s > waited:
        log.info("rebuild.grace", view=name, retired=generations.retired, seconds=round(grace_s - waited, 1))
        await asyncio.sleep(grace_s - waited)
    await store.drop_generation(name, generations.retired)
    log.info("rebuild.dropped", view=name, generation=generations.retired)
