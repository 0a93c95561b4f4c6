"""MongoViewStore: views in MongoDB (or FerretDB v1) collections, through PyMongo's native async client.

Each view collection ``c`` is a Mongo collection ``v_c`` holding the view documents
as they are, with ``_id`` equal to ``id`` (queries on ``id`` use ``_id`` and so its
index). Array fields stay plain arrays under a multikey index: ``contains`` is an
equality and ``prefix`` an anchored regex, and both can use that index. The adapter
keeps to what FerretDB v1 and MongoDB both support: no transactions, ``$text``,
geo, change streams, ``$facet`` or ``$lookup``.

Conditions follow SQL's null rule so both stores answer alike: a comparison with
None matches nothing, and ``ne``/``in`` never match a missing field.

Without multi-document transactions, ``commit`` writes the view changes first (one
ordered bulk write per run of changes to one collection) and the checkpoint after
them. A crash in between leaves the checkpoint behind the views, so the events
since it are folded again over the documents already written: the folds ignore an
event whose aggregate version the document has already seen (``already_applied``),
and documents keyed by the event itself (history, dead letters) are rewritten from
the same event. Replay re-applies, it never loses or doubles an effect. The other
order could lose events for good: a checkpoint ahead of its views skips them.
Readers may see a batch half applied for a moment; each document is always whole.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from itertools import groupby
from typing import Any

from bson.errors import BSONError
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, DeleteOne, ReplaceOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import ConfigurationError, ConnectionFailure, PyMongoError

from projectors.ports import (
    Change,
    Collection,
    Cond,
    Delete,
    Doc,
    Query,
    ViewStore,
    ViewStoreError,
    ViewStoreUnavailable,
)

NAME = re.compile(r"^[a-z][a-z0-9_]*$")
COMPARE = {"eq": "$eq", "gt": "$gt", "gte": "$gte", "lt": "$lt", "lte": "$lte"}
NOTHING: dict[str, Any] = {"$in": []}
CHUNK = 1000  # ids per $in, well under the 16 MB command limit
Write = ReplaceOne[Doc] | DeleteOne


@contextmanager
def _translated(action: str) -> Iterator[None]:
    """Driver errors become ours at the boundary: unreachable means the caller may retry later."""
    try:
        yield
    except ConnectionFailure as e:
        raise ViewStoreUnavailable(f"{action}: {e}") from e
    except (PyMongoError, BSONError) as e:
        raise ViewStoreError(f"{action}: {e}") from e


def _checked(col: Collection) -> Collection:
    """Names become collection and field names: refuse anything that could read as an operator or a path."""
    for name in (col.name, *col.fields, *col.arrays, *(f.lstrip("-") for index in col.indexes for f in index)):
        if not NAME.match(name):
            raise ValueError(f"not a safe name in collection {col.name!r}: {name!r}")
    return col


def _path(field: str) -> str:
    return "_id" if field == "id" else field


def _index_keys(col: Collection) -> list[list[tuple[str, int]]]:
    """The declared indexes (a leading ``-`` is descending) and one multikey index per array field."""
    keys = [
        [(_path(f.lstrip("-")), DESCENDING if f.startswith("-") else ASCENDING) for f in index] for index in col.indexes
    ]
    return keys + [[(array, ASCENDING)] for array in col.arrays]


def _compare(op: str, value: Any) -> dict[str, Any]:
    """One comparison under SQL's null rule, so this store and SQLite select the same documents."""
    if op == "in":
        return {"$in": [v for v in value if v is not None]}
    if value is None:
        return NOTHING
    if op == "ne":
        return {"$nin": [value, None]}
    return {COMPARE[op]: value}


def _write(change: Change) -> Write:
    if isinstance(change, Delete):
        return DeleteOne({"_id": change.id})
    doc_id = change.doc["id"]
    return ReplaceOne({"_id": doc_id}, {"_id": doc_id, **change.doc}, upsert=True)


def _plain(doc: Doc) -> Doc:
    doc.pop("_id", None)
    return doc


class MongoViewStore(ViewStore):
    def __init__(self, url: str, *, timeout_ms: int = 2000) -> None:
        """Nothing connects yet; the short timeouts make a store that is down fail fast instead of hanging."""
        try:
            self._client: AsyncMongoClient[Doc] = AsyncMongoClient(
                url, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms
            )
            self._db = self._client.get_default_database()
        except ConfigurationError as e:
            raise ValueError(f"the view store URL must name a database, e.g. mongodb://host:27017/snapfix: {e}") from e
        self._checkpoints: AsyncCollection[Doc] = self._db["checkpoints"]
        self._collections: dict[str, Collection] = {}

    async def setup(self, collections: Sequence[Collection]) -> None:
        for col in collections:
            self._collections[col.name] = _checked(col)
        with _translated("setup"):
            for col in collections:
                await self._create_indexes(col)
            await self._checkpoints.create_index([("projector", ASCENDING)])

    async def _create_indexes(self, col: Collection) -> None:
        for keys in _index_keys(col):
            await self._mongo(col).create_index(keys)

    def _col(self, name: str) -> Collection:
        try:
            return self._collections[name]
        except KeyError:
            raise ViewStoreError(f"collection {name!r} was not set up") from None

    def _mongo(self, col: Collection) -> AsyncCollection[Doc]:
        return self._db[f"v_{col.name}"]

    async def get(self, collection: str, id: str) -> Doc | None:
        mongo = self._mongo(self._col(collection))
        with _translated(f"get from {collection}"):
            doc = await mongo.find_one({"_id": id})
        return _plain(doc) if doc is not None else None

    async def get_many(self, collection: str, ids: Sequence[str]) -> dict[str, Doc]:
        mongo = self._mongo(self._col(collection))
        unique = list(dict.fromkeys(ids))
        found: dict[str, Doc] = {}
        with _translated(f"get_many from {collection}"):
            for start in range(0, len(unique), CHUNK):
                async for doc in mongo.find({"_id": {"$in": unique[start : start + CHUNK]}}):
                    doc_id = doc["_id"]
                    found[doc_id] = _plain(doc)
        return found

    def _filter(self, col: Collection, where: Sequence[Cond]) -> dict[str, Any]:
        """One ``$and`` member per condition, so two conditions on one field never overwrite each other."""
        return {"$and": [self._condition(col, cond) for cond in where]} if where else {}

    def _condition(self, col: Collection, cond: Cond) -> dict[str, Any]:
        if cond.op in ("contains", "prefix"):
            if cond.field not in col.arrays:
                raise ViewStoreError(f"{cond.field!r} is not an array field of {col.name}")
            if cond.op == "prefix":
                return {cond.field: {"$regex": "^" + re.escape(cond.value)}}
            return {cond.field: _compare("eq", cond.value)}
        return {self._field(col, cond.field): _compare(cond.op, cond.value)}

    def _field(self, col: Collection, field: str) -> str:
        if field != "id" and field not in col.fields:
            raise ViewStoreError(f"{field!r} is not a declared field of {col.name}")
        return _path(field)

    async def find(self, query: Query) -> list[Doc]:
        col = self._col(query.collection)
        where = self._filter(col, query.where)
        if query.after is not None:
            where = {"$and": [where, self._keyset(col, query)]}
        order = [(self._field(col, f), DESCENDING if desc else ASCENDING) for f, desc in query.order_by]
        if query.limit <= 0:  # Mongo reads limit 0 as "no limit"
            return []
        with _translated(f"find in {col.name}"):
            return [_plain(doc) async for doc in self._mongo(col).find(where, sort=order, limit=query.limit)]

    def _keyset(self, col: Collection, query: Query) -> dict[str, Any]:
        """Documents strictly after ``query.after`` in the query's order, for any mix of directions."""
        assert query.after is not None
        if len(query.after) != len(query.order_by):
            raise ViewStoreError("a cursor must carry one value per order_by field")
        branches: list[dict[str, Any]] = []
        for i, (field, desc) in enumerate(query.order_by):
            ties = [Cond(f, "eq", v) for (f, _), v in zip(query.order_by[:i], query.after[:i], strict=True)]
            branches.append(self._filter(col, [*ties, Cond(field, "lt" if desc else "gt", query.after[i])]))
        return {"$or": branches}

    async def count(self, collection: str, where: tuple[Cond, ...] = ()) -> int:
        col = self._col(collection)
        with _translated(f"count in {collection}"):
            return await self._mongo(col).count_documents(self._filter(col, where))

    async def commit(self, projector: str, changes: Sequence[Change], checkpoint: Mapping[int, int]) -> None:
        """The changes in order, then the checkpoint: see the module docstring for why replay makes this safe."""
        runs = [
            (self._mongo(self._col(name)), [_write(c) for c in run])
            for name, run in groupby(changes, key=lambda c: c.collection)
        ]
        marks = [
            ReplaceOne(
                {"_id": f"{projector}:{p}"},
                {"_id": f"{projector}:{p}", "projector": projector, "partition": p, "offset": o},
                upsert=True,
            )
            for p, o in checkpoint.items()
        ]
        with _translated(f"commit of {projector}"):
            for mongo, writes in runs:
                await mongo.bulk_write(writes, ordered=True)
            if marks:
                await self._checkpoints.bulk_write(marks, ordered=True)

    async def checkpoint(self, projector: str) -> dict[int, int]:
        with _translated(f"checkpoint of {projector}"):
            return {d["partition"]: d["offset"] async for d in self._checkpoints.find({"projector": projector})}

    async def drop(self, collections: Sequence[str], projector: str) -> None:
        """Forget the checkpoint first: a crash midway then replays into full views, never skips empty ones.

        Dropping a collection and recreating its indexes is much faster than deleting its documents one by one.
        """
        cols = [self._col(name) for name in collections]
        with _translated(f"drop for {projector}"):
            await self._checkpoints.delete_many({"projector": projector})
            for col in cols:
                await self._mongo(col).drop()
                await self._create_indexes(col)

    async def ping(self) -> None:
        with _translated("ping"):
            await self._client.admin.command("ping")

    async def close(self) -> None:
        await self._client.close()
