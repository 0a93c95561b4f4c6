"""The view-store port: documents in named collections, a small query language, atomic commits.

Adapters (``SqliteViewStore``, ``MongoViewStore``) pass the one contract suite in
``tests/contract/test_view_store.py``. They know nothing of issues: collections,
their indexed fields and their indexes are declared by the projections.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Doc = dict[str, Any]
FieldType = Literal["text", "real", "int"]
Op = Literal["eq", "ne", "in", "gt", "gte", "lt", "lte", "contains", "prefix"]


class ViewStoreError(Exception):
    """A view-store adapter failed; the driver's error is chained as the cause."""


class ViewStoreUnavailable(ViewStoreError):
    """The store cannot be reached right now; the caller may retry later."""


@dataclass(frozen=True, slots=True)
class Collection:
    """A collection's name, its scalar fields that queries may use, its array fields, and its indexes.

    Every document has a string ``id``. An index is a tuple of field names; a
    leading ``-`` marks a descending field.
    """

    name: str
    fields: Mapping[str, FieldType] = field(default_factory=dict)
    arrays: tuple[str, ...] = ()
    indexes: tuple[tuple[str, ...], ...] = ()


@dataclass(frozen=True, slots=True)
class Cond:
    """One condition: ``contains`` and ``prefix`` apply to array fields, the rest to scalar fields."""

    field: str
    op: Op
    value: Any


@dataclass(frozen=True, slots=True)
class Query:
    """A filtered, ordered, keyset-paginated query. ``order_by`` must end with ``id`` for stable pages."""

    collection: str
    where: tuple[Cond, ...] = ()
    order_by: tuple[tuple[str, bool], ...] = (("id", False),)  # (field, descending)
    after: tuple[Any, ...] | None = None  # the order_by values of the last row of the previous page
    limit: int = 50


@dataclass(frozen=True, slots=True)
class Put:
    collection: str
    doc: Doc


@dataclass(frozen=True, slots=True)
class Delete:
    collection: str
    id: str


Change = Put | Delete

GENERATION_MARK = "@"


def at_generation(collection: str, generation: int) -> str:
    """The name that addresses one generation of a collection directly, bypassing its alias (``name@3``)."""
    return f"{collection}{GENERATION_MARK}{generation}"


def split_generation(name: str) -> tuple[str, int | None]:
    """``("name", 3)`` for ``name@3``; ``("name", None)`` for a plain name, which follows the alias."""
    base, mark, generation = name.partition(GENERATION_MARK)
    if not mark:
        return name, None
    if not generation.isdigit():
        raise ViewStoreError(f"not a generation: {name!r}")
    return base, int(generation)


@dataclass(frozen=True, slots=True)
class Generations:
    """A collection's alias record: the generation readers follow, one being built, one awaiting its drop.

    A collection that was never rebuilt is at generation 0. ``swapped_at`` (ISO UTC) is when
    ``retired`` stopped being live: it may be dropped once readers have had a grace period.
    """

    live: int = 0
    building: int | None = None
    retired: int | None = None
    swapped_at: str | None = None


def builder_name(collection: str, generation: int) -> str:
    """The checkpoint name of the runner that builds one generation of a collection."""
    return f"rebuild:{at_generation(collection, generation)}"


class GenerationMoved(ViewStoreError):
    """A swap made another generation live after the batch read its documents: fold the batch again.

    Written into the new generation, a fold of the old one's documents would carry the old
    fold (or a builder-ahead document's older state) into what the rebuild just made.
    """


class GenerationsUnsupported(ViewStoreError):
    """This adapter cannot build generations yet: rebuild in place with ``drop`` instead."""


class ViewStore(abc.ABC):
    """Where projections keep their views and their checkpoints."""

    @abc.abstractmethod
    async def setup(self, collections: Sequence[Collection]) -> None:
        """Create the collections and their indexes if missing (idempotent)."""

    @abc.abstractmethod
    async def get(self, collection: str, id: str) -> Doc | None:
        """One document by id."""

    @abc.abstractmethod
    async def get_many(self, collection: str, ids: Sequence[str]) -> dict[str, Doc]:
        """The documents that exist among ``ids``, by id."""

    @abc.abstractmethod
    async def find(self, query: Query) -> list[Doc]:
        """The documents matching a query, in its order, at most ``limit``."""

    @abc.abstractmethod
    async def count(self, collection: str, where: tuple[Cond, ...] = ()) -> int:
        """How many documents match."""

    @abc.abstractmethod
    async def commit(
        self,
        projector: str,
        changes: Sequence[Change],
        checkpoint: Mapping[int, int],
        *,
        live: Mapping[str, int] | None = None,
    ) -> None:
        """Apply the changes and move the projector's checkpoint, as one write where the store allows.

        ``live`` (collection -> generation) is what the batch saw live before it read anything:
        if a swap has moved any of them since, nothing is written and GenerationMoved is raised.
        """

    @abc.abstractmethod
    async def checkpoint(self, projector: str) -> dict[int, int]:
        """The projector's checkpoint: partition -> offset of the last event applied."""

    @abc.abstractmethod
    async def drop(self, collections: Sequence[str], projector: str) -> None:
        """Remove the collections' documents and the projector's checkpoint (for a full rebuild)."""

    # --- generations: zero-downtime rebuilds --------------------------------------
    # A plain collection name follows the collection's alias to its live generation, on
    # every read and every commit (never from a long-lived cache: the live projector's
    # next batch must read what the swap made live). ``name@g`` addresses generation g.

    async def generations(self, collection: str) -> Generations:  # noqa: ARG002 - a default for adapters without generations
        """The collection's alias record (generation 0, nothing building, when never rebuilt)."""
        return Generations()

    async def live_generations(self, collections: Sequence[str]) -> dict[str, int]:
        """The generation each collection's plain name reads now (see ``commit``'s ``live``)."""
        return {name: (await self.generations(name)).live for name in collections}

    async def begin_generation(self, collection: Collection) -> int:  # noqa: ARG002 - a default for adapters without generations
        """Create an empty shadow generation and record it as building; resumes the one already building."""
        raise GenerationsUnsupported(f"{type(self).__name__} has no generations")

    async def swap(self, generations: Mapping[str, int], builder: str, leader: str) -> bool:  # noqa: ARG002 - a default for adapters without generations
        """Make the building generations (collection -> generation) live in one atomic step, unless ``leader`` is ahead.

        ``builder`` is the checkpoint of the runner that built them, ``leader`` the live
        projector that keeps writing them (through the aliases) afterwards. True when
        swapped, each previous live generation becoming ``retired``; False, and nothing
        changed, while the leader's checkpoint is ahead of the builder's on any partition.
        """
        raise GenerationsUnsupported(f"{type(self).__name__} has no generations")

    async def drop_generation(self, collection: str, generation: int) -> None:  # noqa: ARG002 - a default for adapters without generations
        """Remove a generation that is not live (retired or abandoned) with its builder's checkpoint."""
        raise GenerationsUnsupported(f"{type(self).__name__} has no generations")

    async def ping(self) -> None:  # noqa: B027 - embedded stores are always there
        """Raise ViewStoreUnavailable if the store cannot answer."""

    async def close(self) -> None:  # noqa: B027
        """Release connections."""


def ahead(leader: Mapping[int, int], builder: Mapping[int, int]) -> bool:
    """True while the live projector has applied something the builder has not (absent = -1)."""
    return any(offset > builder.get(partition, -1) for partition, offset in leader.items())
