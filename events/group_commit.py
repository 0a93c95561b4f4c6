"""Group commit: callers that arrive while one write is in flight share the next one.

A write to a log pays a fixed cost (an fsync, a round trip) that does not grow much with
the number of records it carries. ``GroupCommit`` turns concurrent callers into batches
without a timer: the first caller starts a flush at once; whoever arrives while it runs
waits for the next flush, which takes all of them. At low load nothing waits longer than
its own write; under load the fixed cost is shared.

The flush answers each item on its own (a result or an exception), so one refused item
never fails its batch-mates.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

Flush = Callable[[list[T]], Awaitable[Sequence[R | BaseException]]]


class GroupCommit(Generic[T, R]):
    """Runs ``flush`` over everything submitted while the previous flush ran."""

    def __init__(self, flush: Flush[T, R], name: str, *, history: int = 1000) -> None:
        self._flush = flush
        self._name = name
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._task: asyncio.Task[None] | None = None
        self._history = history
        self.sizes: list[int] = []  # items per flush, newest last (bounded): what benchmarks report

    async def submit(self, item: T) -> R:
        """Queue ``item`` for the next flush and return its own outcome once that flush is done."""
        done: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, done))
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=self._name)
        # shielded: a caller that gives up does not cancel the flush its batch-mates wait for
        return await asyncio.shield(done)

    async def drain(self) -> None:
        """Wait until nothing is queued or in flight (before closing the resource the flush writes to)."""
        while self._task is not None:
            await asyncio.shield(self._task)

    async def _run(self) -> None:
        try:
            while self._pending:
                group, self._pending = self._pending, []
                try:
                    outcomes = await self._flush([item for item, _ in group])
                    if len(outcomes) != len(group):
                        raise RuntimeError(f"{self._name}: {len(outcomes)} outcomes for {len(group)} items")
                except Exception as error:  # noqa: BLE001 - every waiter gets the flush's failure
                    outcomes = [error] * len(group)
                for (_, done), outcome in zip(group, outcomes, strict=True):
                    if done.cancelled():
                        continue
                    if isinstance(outcome, BaseException):
                        done.set_exception(outcome)
                    else:
                        done.set_result(outcome)
                self.sizes = [*self.sizes[-(self._history - 1) :], len(group)]
        finally:
            self._task = None
