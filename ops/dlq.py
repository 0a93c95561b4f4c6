"""Dead letters: list them, retry them through the folds after a fix, or mark them handled."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from events.codec import envelope_from_dict
from events.envelope import Position
from events.ports import EventStore
from projectors.catalog import ALL, BY_NAME
from projectors.ports import Cond, Delete, Doc, Put, Query, ViewStore, split_generation
from projectors.projection import Projection, iso
from projectors.runner import DEAD_LETTERS, ProjectionRunner

RETRY_PROJECTOR = "dlq-retry"  # its checkpoint never moves: a retry commits no position


class NoSuchDeadLetter(LookupError):
    pass


async def list_letters(store: ViewStore, status: str | None = "open", limit: int = 100) -> list[Doc]:
    where = (Cond("status", "eq", status),) if status else ()
    return await store.find(Query(DEAD_LETTERS.name, where, (("position", False), ("id", False)), None, limit))


def projections_of(projector: str) -> tuple[Projection, ...]:
    """The projections a projector runs: the live one runs them all, a builder (``rebuild:view@g``) one."""
    if projector.startswith("rebuild:"):
        view, _ = split_generation(projector.removeprefix("rebuild:"))
        return (BY_NAME[view],)
    return ALL


async def _letter(store: ViewStore, letter_id: str) -> Doc:
    doc = await store.get(DEAD_LETTERS.name, letter_id)
    if doc is None:
        raise NoSuchDeadLetter(letter_id)
    return doc


async def retry(store: ViewStore, events: EventStore, letter_id: str) -> Doc:
    """Fold the dead event's aggregate again, from its first event, through the projector's projections.

    The folds skip versions a document has already seen, so an aggregate that was never
    created (the usual poison: its first event) comes out whole. If a poison event in the
    middle of a stream left a document ahead of it, rebuild that view instead.
    Returns the letter with its new status: ``retried``, or still ``open`` with the new reason.
    """
    letter = await _letter(store, letter_id)
    envelope = envelope_from_dict(letter["envelope"], Position(letter["partition"], letter["position"]))
    history = await events.load(envelope.aggregate_id) or [envelope]
    runner = ProjectionRunner(RETRY_PROJECTOR, projections_of(letter["projector"]), None, store, partial=True)
    await runner.setup()
    await runner.apply(history)
    now = iso(datetime.now(UTC))
    if runner.dead_lettered:
        updated = {**letter, "reason": runner.last_error, "retried_at": now}
    else:
        updated = {**letter, "status": "retried", "handled_at": now}
    await _clear_retry_letters(store, runner)
    await store.commit(RETRY_PROJECTOR, [Put(DEAD_LETTERS.name, updated)], {})
    return updated


async def _clear_retry_letters(store: ViewStore, runner: ProjectionRunner) -> None:
    """The retry's own failures are reported on the original letter, not kept as new ones."""
    if runner.dead_lettered:
        mine = await store.find(Query(DEAD_LETTERS.name, (Cond("projector", "eq", RETRY_PROJECTOR),), limit=1000))
        await store.commit(RETRY_PROJECTOR, [Delete(DEAD_LETTERS.name, d["id"]) for d in mine], {})


async def skip(store: ViewStore, letter_id: str, note: str | None = None) -> Doc:
    """Mark a dead letter handled without applying it (the event stays in the log, untouched)."""
    letter = await _letter(store, letter_id)
    updated: dict[str, Any] = {**letter, "status": "skipped", "handled_at": iso(datetime.now(UTC))}
    if note:
        updated["note"] = note
    await store.commit(RETRY_PROJECTOR, [Put(DEAD_LETTERS.name, updated)], {})
    return updated
