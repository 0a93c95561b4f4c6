"""Where every projector stands: position, lag in events and seconds, generations, last error."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from events.ports import EventLog
from projectors.catalog import ALL
from projectors.ports import Cond, Query, ViewStore, builder_name
from projectors.runner import DEAD_LETTERS, ProjectionRunner
from snapfix.bootstrap import MAIN_PROJECTOR


def backlog(head: dict[int, int], checkpoint: dict[int, int]) -> int:
    """Events in the log after a checkpoint (offsets per partition)."""
    return sum(max(0, offset - checkpoint.get(partition, -1)) for partition, offset in head.items())


async def projector_status(
    store: ViewStore, event_log: EventLog | None, runner: ProjectionRunner | None = None
) -> list[dict[str, Any]]:
    """One entry per projector: the live one and any rebuild in progress. Lag is None without a log."""
    generations = {p.name: await store.generations(p.name) for p in ALL}
    entries: list[tuple[str, dict[str, int]]] = [(MAIN_PROJECTOR, {v: g.live for v, g in generations.items()})]
    for view, g in generations.items():
        if g.building is not None:
            entries.append((builder_name(view, g.building), {view: g.building}))
    head = await event_log.head() if event_log is not None else None
    out = []
    for name, gens in entries:
        checkpoint = await store.checkpoint(name)
        lag_events = backlog(head, checkpoint) if head is not None else None
        lag_seconds: float | None = None if head is None else 0.0
        if event_log is not None and lag_events:
            oldest = await event_log.read(checkpoint, 1)
            if oldest:
                lag_seconds = round((datetime.now(UTC) - oldest[0].occurred_at).total_seconds(), 3)
        last_error, open_letters = await _dead_letters(store, name)
        if runner is not None and runner.name == name and runner.last_error:
            last_error = runner.last_error
        out.append(
            {
                "projector": name,
                "position": {str(p): o for p, o in sorted(checkpoint.items())},
                "head": {str(p): o for p, o in sorted(head.items())} if head is not None else None,
                "lag_events": lag_events,
                "lag_seconds": lag_seconds,
                "generations": gens,
                "dead_letters_open": open_letters,
                "last_error": last_error,
            }
        )
    return out


async def _dead_letters(store: ViewStore, projector: str) -> tuple[str | None, int]:
    where = (Cond("projector", "eq", projector), Cond("status", "eq", "open"))
    latest = await store.find(Query(DEAD_LETTERS.name, where, (("position", True), ("id", True)), None, 1))
    return (latest[0]["reason"] if latest else None), await store.count(DEAD_LETTERS.name, where)
