"""Reads that fail fast: a view store that does not answer within a bound counts as unavailable.

The query API answers 503 with ``Retry-After`` (see ``install_query_errors``) instead of
holding a client while a driver waits for a server; it calls the store again on the
next request, so it recovers by itself as soon as the store answers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping, Sequence
from typing import TypeVar

from projectors.ports import Change, Collection, Cond, Doc, Query, ViewStore, ViewStoreUnavailable

T = TypeVar("T")


class BoundedViews(ViewStore):
    """A read-only view of a store whose every call gives up after ``timeout_s``."""

    def __init__(self, inner: ViewStore, timeout_s: float) -> None:
        self._inner = inner
        self._timeout = timeout_s

    async def _bounded(self, call: Awaitable[T]) -> T:
        try:
            async with asyncio.timeout(self._timeout):
                return await call
        except TimeoutError:
            raise ViewStoreUnavailable(f"the view store did not answer within {self._timeout:.2f} s") from None

    async def setup(self, collections: Sequence[Collection]) -> None:
        raise NotImplementedError("the query API never changes the views")

    async def get(self, collection: str, id: str) -> Doc | None:
        return await self._bounded(self._inner.get(collection, id))

    async def get_many(self, collection: str, ids: Sequence[str]) -> dict[str, Doc]:
        return await self._bounded(self._inner.get_many(collection, ids))

    async def find(self, query: Query) -> list[Doc]:
        return await self._bounded(self._inner.find(query))

    async def count(self, collection: str, where: tuple[Cond, ...] = ()) -> int:
        return await self._bounded(self._inner.count(collection, where))

    async def commit(
        self,
        projector: str,
        changes: Sequence[Change],
        checkpoint: Mapping[int, int],
        *,
        live: Mapping[str, int] | None = None,
    ) -> None:
        raise NotImplementedError("the query API never changes the views")

    async def checkpoint(self, projector: str) -> dict[int, int]:
        return await self._bounded(self._inner.checkpoint(projector))

    async def drop(self, collections: Sequence[str], projector: str) -> None:
        raise NotImplementedError("the query API never changes the views")
