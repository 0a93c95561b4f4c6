"""MongoViewStore: views in MongoDB (or FerretDB v1) collections, through PyMongo's native async client.

Each view collection ``c`` is a Mongo collection ``v_c`` holding the view documents
as they are, with ``_id`` equal to ``id`` (queries on ``id`` use ``_id`` and so its
index). Array fields stay plain arrays under a multikey index: ``contains`` is an
equality and ``prefix`` an anchored regex, and both can use that index. The adapter
keeps to what FerretDB v1 and MongoDB both support: no transactions, ``$text``,
geo, change streams, ``$facet`` or ``$lookup``.

Scalar conditions use operators (``$eq``, ``$in``, ranges) and array membership the plain
``{field: value}``: the same to MongoDB, and what lets SnapFix's FerretDB build run a whole
find, sort and limit included, as one indexed SQL query (its ordered pushdown, which assumes
scalar operands, one type per sorted field and a C collation; ops/engines/ferretdb/snapfix.patch).

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

Generations: generation 0 of ``c`` is ``v_c``, generation ``g`` is ``v_c__g<g>``. One
document (``aliases``/``_id: "aliases"``) holds every collection's alias record, so a
grouped swap is one atomic single-document update filtered on the expected ``building``
values. Every read and every commit reads it afresh (no cache: a reader that lagged a swap
would miss what the live projector already wrote to the new generation).

Without transactions, the swap's checkpoint comparison cannot be atomic with the live
projector's commit, so the two meet half-way. The swap first marks the collections
``swapping`` in the alias record, then compares checkpoints, then swaps (or unmarks). A
commit resolves its targets again after writing its views and again after writing its
checkpoint, and writes its changes to any generation that is live or marked ``swapping``
and that it has not written yet. Either the swap read this commit's checkpoint (so the
builder had folded its events), or the commit's last look came after the mark and saw it.
Those copies are idempotent full documents; a copy never replaces a document whose
``version`` is newer (a builder ahead of the leader). A swapper that crashed while marked
leaves the mark until the rebuild resumes or its generation is dropped: until then the
live projector also writes the shadow generation, which is harmless.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from itertools import groupby
from typing import Any

from bson.errors import BSONError
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, DeleteOne, ReplaceOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import ConfigurationError, ConnectionFailure, DuplicateKeyError, PyMongoError

from projectors.ports import (
    Change,
    Collection,
    Cond,
    Delete,
    Doc,
    GenerationMoved,
    Generations,
    Put,
    Query,
    ViewStore,
    ViewStoreError,
    ViewStoreUnavailable,
    ahead,
    builder_name,
    split_generation,
)

NAME = re.compile(r"^[a-z][a-z0-9_]*$")
COMPARE = {"eq": "$eq", "gt": "$gt", "gte": "$gte", "lt": "$lt", "lte": "$lte"}
NOTHING: dict[str, Any] = {"$in": []}
CHUNK = 1000  # ids per $in, well under the 16 MB command limit
Write = ReplaceOne[Doc] | DeleteOne
ALIASES = "aliases"  # the one document (and its collection) holding every alias record
Runs = list[tuple[str, list[Change]]]  # consecutive changes to one addressed collection


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
    """The declared indexes (a leading ``-`` is descending), one multikey index per array field, and one
    index per declared field that no other index holds.

    The last are for FerretDB: PostgreSQL keeps statistics only for indexed expressions, and
    estimates a condition on any other field from defaults (an equality matches 0.5 % of rows),
    so a browse query's ``hidden`` and lat/lon conditions made every index walk look worse than
    sorting the whole table. A real MongoDB may use them or not; they cost a little per write.
    """
    keys = [
        [(_path(f.lstrip("-")), DESCENDING if f.startswith("-") else ASCENDING) for f in index] for index in col.indexes
    ]
    indexed = {f.lstrip("-") for index in col.indexes for f in index}
    unindexed = [[(_path(f), ASCENDING)] for f in col.fields if f not in indexed]
    return keys + [[(array, ASCENDING)] for array in col.arrays] + unindexed


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


def _mongo_name(collection: str, generation: int) -> str:
    """Generation 0 keeps the original name, so stores that were never rebuilt need no migration."""
    return f"v_{collection}" if generation == 0 else f"v_{collection}__g{generation}"


def _record(aliases: Doc, collection: str) -> Generations:
    entry = aliases.get(collection) or {}
    return Generations(entry.get("live", 0), entry.get("building"), entry.get("retired"), entry.get("swapped_at"))


def _targets(aliases: Doc, name: str) -> list[int]:
    """The generations a commit to ``name`` must reach: the live one and one being swapped in; or ``name@g``'s."""
    base, generation = split_generation(name)
    if generation is not None:
        return [generation]
    live = _record(aliases, base).live
    swapping = (aliases.get(base) or {}).get("swapping")
    return [live] if swapping in (None, live) else [live, swapping]


def _unchanged(aliases: Doc, collection: str) -> dict[str, Any]:
    """A filter matching the alias record as read (a missing record matches only while still missing)."""
    if collection not in aliases:
        return {collection: None}
    record = _record(aliases, collection)
    return {f"{collection}.live": record.live, f"{collection}.building": record.building}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


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
        self._aliases: AsyncCollection[Doc] = self._db[ALIASES]
        self._collections: dict[str, Collection] = {}

    async def setup(self, collections: Sequence[Collection]) -> None:
        """``name@g`` sets up generation g; a plain name the live one."""
        declared = []
        for col in collections:
            base, generation = split_generation(col.name)
            self._collections[base] = _checked(Collection(base, col.fields, col.arrays, col.indexes))
            declared.append((self._collections[base], generation))
        with _translated("setup"):
            await self._ensure_aliases()
            aliases = await self._read_aliases()
            for col, generation in declared:
                live = _record(aliases, col.name).live if generation is None else generation
                await self._create_indexes(col, live)
            await self._checkpoints.create_index([("projector", ASCENDING)])

    async def _create_indexes(self, col: Collection, generation: int) -> None:
        for keys in _index_keys(col):
            await self._db[_mongo_name(col.name, generation)].create_index(keys)

    async def _ensure_aliases(self) -> None:
        """The alias document exists before any conditional update needs to match it."""
        with suppress(DuplicateKeyError):
            await self._aliases.insert_one({"_id": ALIASES})

    async def _read_aliases(self) -> Doc:
        return await self._aliases.find_one({"_id": ALIASES}) or {}

    def _col(self, name: str) -> Collection:
        try:
            return self._collections[name]
        except KeyError:
            raise ViewStoreError(f"collection {name!r} was not set up") from None

    async def _resolve(self, name: str) -> tuple[Collection, AsyncCollection[Doc]]:
        """The collection and the Mongo collection of the generation ``name`` addresses, alias read afresh."""
        base, generation = split_generation(name)
        col = self._col(base)
        if generation is None:
            with _translated(f"alias of {base}"):
                aliases = await self._aliases.find_one({"_id": ALIASES}, {base: 1}) or {}
            generation = _record(aliases, base).live
        return col, self._db[_mongo_name(base, generation)]

    async def get(self, collection: str, id: str) -> Doc | None:
        _, mongo = await self._resolve(collection)
        with _translated(f"get from {collection}"):
            doc = await mongo.find_one({"_id": id})
        return _plain(doc) if doc is not None else None

    async def get_many(self, collection: str, ids: Sequence[str]) -> dict[str, Doc]:
        """The projector's prefetch: resolved afresh, so the batch after a swap folds over the new generation."""
        _, mongo = await self._resolve(collection)
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
            # Membership as {field: value}, the form that means "an element" (see _compare's $eq).
            return {cond.field: cond.value} if cond.value is not None else {cond.field: NOTHING}
        return {self._field(col, cond.field): _compare(cond.op, cond.value)}

    def _field(self, col: Collection, field: str) -> str:
        if field != "id" and field not in col.fields:
            raise ViewStoreError(f"{field!r} is not a declared field of {col.name}")
        return _path(field)

    async def find(self, query: Query) -> list[Doc]:
        col, mongo = await self._resolve(query.collection)
        where = self._filter(col, query.where)
        if query.after is not None:
            where = {"$and": [where, self._keyset(col, query)]}
        order = [(self._field(col, f), DESCENDING if desc else ASCENDING) for f, desc in query.order_by]
        if query.limit <= 0:  # Mongo reads limit 0 as "no limit"
            return []
        with _translated(f"find in {col.name}"):
            return [_plain(doc) async for doc in mongo.find(where, sort=order, limit=query.limit)]

    def _keyset(self, col: Collection, query: Query) -> dict[str, Any]:
        """Documents strictly after ``query.after`` in the query's order, for any mix of directions.

        The first field's inclusive bound repeats what the ``$or`` implies, as a plain range a
        planner can start its index walk from (neither PostgreSQL nor MongoDB derives it from the ``$or``).
        """
        assert query.after is not None
        if len(query.after) != len(query.order_by):
            raise ViewStoreError("a cursor must carry one value per order_by field")
        branches: list[dict[str, Any]] = []
        for i, (field, desc) in enumerate(query.order_by):
            ties = [Cond(f, "eq", v) for (f, _), v in zip(query.order_by[:i], query.after[:i], strict=True)]
            branches.append(self._filter(col, [*ties, Cond(field, "lt" if desc else "gt", query.after[i])]))
        (first, desc), *_ = query.order_by
        bound = self._condition(col, Cond(first, "lte" if desc else "gte", query.after[0]))
        return {"$and": [bound, {"$or": branches}]}

    async def count(self, collection: str, where: tuple[Cond, ...] = ()) -> int:
        col, mongo = await self._resolve(collection)
        with _translated(f"count in {collection}"):
            return await mongo.count_documents(self._filter(col, where))

    async def commit(
        self,
        projector: str,
        changes: Sequence[Change],
        checkpoint: Mapping[int, int],
        *,
        live: Mapping[str, int] | None = None,
    ) -> None:
        """The changes in order, then the checkpoint; then again wherever a swap moved them meanwhile.

        See the module docstring: replay makes the order safe, and the looks at the aliases
        before and after the checkpoint make a concurrent swap lose nothing.
        """
        runs: Runs = [(name, list(run)) for name, run in groupby(changes, key=lambda c: c.collection)]
        for name, _ in runs:
            self._col(split_generation(name)[0])
        marks = [
            ReplaceOne(
                {"_id": f"{projector}:{p}"},
                {"_id": f"{projector}:{p}", "projector": projector, "partition": p, "offset": o},
                upsert=True,
            )
            for p, o in checkpoint.items()
        ]
        written: set[tuple[str, int]] = set()
        with _translated(f"commit of {projector}"):
            await self._write_runs(runs, written, live or {})
            await self._write_runs(runs, written)  # a swap begun meanwhile: readers see the copy with the checkpoint
            if marks:
                await self._checkpoints.bulk_write(marks, ordered=True)
            await self._write_runs(runs, written)  # a swap that compared checkpoints before this one moved

    async def _write_runs(
        self, runs: Runs, written: set[tuple[str, int]], live: Mapping[str, int] | None = None
    ) -> None:
        """Write each run to the generations it targets now and has not reached yet.

        Only the first write to the live generation is plain; every later one is a copy.
        The first also checks ``live`` (see ViewStore.commit) against the aliases it reads:
        a swap after that look is one this commit meets half-way (module docstring).
        """
        if not runs and not live:
            return
        aliases = await self._read_aliases()
        moved = [name for name, generation in (live or {}).items() if _record(aliases, name).live != generation]
        if moved:
            raise GenerationMoved(f"a swap made another generation of {', '.join(moved)} live")
        first = not written
        todo = {
            (name, generation)
            for name, _ in runs
            for generation in _targets(aliases, name)
            if (name, generation) not in written
        }
        for name, run in runs:
            base = split_generation(name)[0]
            for generation in _targets(aliases, name):
                if (name, generation) not in todo:
                    continue
                mongo = self._db[_mongo_name(base, generation)]
                copy = not first or generation != _targets(aliases, name)[0]
                writes = [_write(c) for c in (await self._not_older(mongo, run) if copy else run)]
                if writes:
                    await mongo.bulk_write(writes, ordered=True)
        written |= todo

    @staticmethod
    async def _not_older(mongo: AsyncCollection[Doc], run: list[Change]) -> list[Change]:
        """The run without Puts that would replace a newer ``version`` (written by a builder ahead of the leader)."""
        versions = {
            doc["_id"]: doc["version"]
            async for doc in mongo.find(
                {"_id": {"$in": [c.doc["id"] for c in run if isinstance(c, Put)]}, "version": {"$exists": True}},
                {"version": 1},
            )
        }

        def newer(change: Change) -> bool:
            if not isinstance(change, Put) or change.doc["id"] not in versions:
                return False
            mine, theirs = change.doc.get("version"), versions[change.doc["id"]]
            return isinstance(mine, int) and isinstance(theirs, int) and theirs > mine

        return [c for c in run if not newer(c)]

    async def checkpoint(self, projector: str) -> dict[int, int]:
        with _translated(f"checkpoint of {projector}"):
            return {d["partition"]: d["offset"] async for d in self._checkpoints.find({"projector": projector})}

    async def drop(self, collections: Sequence[str], projector: str) -> None:
        """Forget the checkpoint first: a crash midway then replays into full views, never skips empty ones.

        Dropping a collection and recreating its indexes is much faster than deleting its documents one by one.
        """
        with _translated(f"drop for {projector}"):
            aliases = await self._read_aliases()
            targets = [(self._col(split_generation(name)[0]), _targets(aliases, name)[0]) for name in collections]
            await self._checkpoints.delete_many({"projector": projector})
            for col, generation in targets:
                await self._db[_mongo_name(col.name, generation)].drop()
                await self._create_indexes(col, generation)

    # --- generations --------------------------------------------------------------

    async def generations(self, collection: str) -> Generations:
        with _translated(f"generations of {collection}"):
            return _record(await self._read_aliases(), collection)

    async def live_generations(self, collections: Sequence[str]) -> dict[str, int]:
        with _translated("live generations"):
            aliases = await self._read_aliases()
        return {name: _record(aliases, name).live for name in collections}

    async def begin_generation(self, collection: Collection) -> int:
        """Claims the next generation with an update filtered on the record as read, so two callers agree."""
        self._collections.setdefault(collection.name, _checked(collection))
        col = self._col(collection.name)
        with _translated(f"begin_generation of {col.name}"):
            await self._ensure_aliases()
            while True:
                aliases = await self._read_aliases()
                current = _record(aliases, col.name)
                if current.building is not None:
                    generation = current.building
                    break
                generation = max(current.live, current.retired or 0) + 1
                claimed = await self._aliases.update_one(
                    {"_id": ALIASES, **_unchanged(aliases, col.name)},
                    {"$set": {f"{col.name}.live": current.live, f"{col.name}.building": generation}},
                )
                if claimed.matched_count:
                    break
            await self._create_indexes(col, generation)
        return generation

    async def swap(self, generations: Mapping[str, int], builder: str, leader: str) -> bool:
        """Mark, compare checkpoints, then swap in one update: see the module docstring for why the mark."""
        cols = {self._col(name).name: generation for name, generation in generations.items()}
        building = {f"{name}.building": generation for name, generation in cols.items()}
        with _translated(f"swap of {', '.join(cols)}"):
            aliases = await self._read_aliases()
            current = {name: _record(aliases, name) for name in cols}
            for name, generation in cols.items():
                if current[name].building != generation:
                    raise ViewStoreError(f"generation {generation} of {name} is not being built")
            if ahead(await self.checkpoint(leader), await self.checkpoint(builder)):
                return False  # the common case while catching up: no mark, no copies
            marked = await self._aliases.update_one(
                {"_id": ALIASES, **building},
                {"$set": {f"{name}.swapping": generation for name, generation in cols.items()}},
            )
            if not marked.matched_count:
                raise ViewStoreError(f"the generations of {', '.join(cols)} changed during the swap")
            unmark = {f"{name}.swapping": "" for name in cols}
            if ahead(await self.checkpoint(leader), await self.checkpoint(builder)):
                await self._aliases.update_one({"_id": ALIASES, **building}, {"$unset": unmark})
                return False
            now = _now()
            swapped = await self._aliases.update_one(
                {"_id": ALIASES, **building, **{f"{name}.live": current[name].live for name in cols}},
                {
                    "$set": {
                        field: value
                        for name, generation in cols.items()
                        for field, value in (
                            (f"{name}.live", generation),
                            (f"{name}.building", None),
                            (f"{name}.retired", current[name].live),
                            (f"{name}.swapped_at", now),
                        )
                    },
                    "$unset": unmark,
                },
            )
        if not swapped.matched_count:
            raise ViewStoreError(f"the generations of {', '.join(cols)} changed during the swap")
        return True

    async def drop_generation(self, collection: str, generation: int) -> None:
        """Unrecords the generation first (so a concurrent swap of it fails), then refuses it if live, then drops."""
        col = self._col(collection)
        name = col.name
        with _translated(f"drop_generation {generation} of {name}"):
            await self._aliases.update_one(
                {"_id": ALIASES, f"{name}.retired": generation}, {"$set": {f"{name}.retired": None}}
            )
            await self._aliases.update_one(
                {"_id": ALIASES, f"{name}.building": generation},
                {"$set": {f"{name}.building": None}, "$unset": {f"{name}.swapping": ""}},
            )
            if _record(await self._read_aliases(), name).live == generation:
                raise ViewStoreError(f"generation {generation} of {name} is live")
            await self._db[_mongo_name(name, generation)].drop()
            await self._checkpoints.delete_many({"projector": builder_name(name, generation)})

    async def ping(self) -> None:
        with _translated("ping"):
            await self._client.admin.command("ping")

    async def close(self) -> None:
        await self._client.close()
