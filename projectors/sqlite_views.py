"""SqliteViewStore: views in SQLite tables; declared fields become indexed columns, arrays side tables.

Each collection ``c`` is a table ``v_c(id, doc, <fields>)``; each array field ``a``
is a table ``v_c__a(id, value)`` indexed on ``(value, id)``. A commit is one
transaction holding the view changes and the projector's checkpoint.

Generations: generation 0 of ``c`` is ``v_c``, generation ``g`` is ``v_c__g<g>``. The
``aliases`` table says which one is live; every read and every commit looks it up (a
primary-key read, microseconds), inside the commit's transaction for writes, so a swap
(one transaction that also compares checkpoints) is atomic for the live projector.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import orjson

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
    ahead,
    builder_name,
    split_generation,
)
from snapfix.sqlite import SqliteConnection, sqlite_path, transaction

T = TypeVar("T")

NAME = re.compile(r"^[a-z][a-z0-9_]*$")
SQL_TYPES = {"text": "TEXT", "real": "REAL", "int": "INTEGER"}
OPS = {"eq": "=", "ne": "!=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
RANGE_OPS = frozenset({"gt", "gte", "lt", "lte"})
TERM_OPS = frozenset({"contains", "prefix"})
# A search term held by at least this many rows is "frequent": walking the sort index and
# checking each row for the term finds a page sooner than gathering every holder and sorting.
FREQUENT_TERM_ROWS = 2000
# How long such a walk may run before the query gathers instead: words that are each common
# but seldom meet would otherwise walk the whole index.
WALK_BUDGET_S = 0.005
# A prefix held by at most this many distinct terms is checked as those terms: a row's check is
# then that many primary-key probes, each among one term's postings (pages a walk soon has
# cached), instead of a range probe by id that lands on a random page of the id index.
PREFIX_TERMS = 8
# A walk over an index range that equalities fix (one geo cell, one status) and that holds at
# most this many rows runs to its end without the budget: it reads the range's index entries,
# a probe per term each, and only the rows whose terms match, a bounded cost that gathering
# (every holder's posting, then its row) seldom beats and that an interrupt would waste.
RANGE_WALK_ROWS = 10_000
# The most values of a list (``in``) walked one by one and merged (a box's cells number at most 32).
MAX_WALKS = 32


BOOKKEEPING = (
    "CREATE TABLE IF NOT EXISTS checkpoints (projector TEXT, partition INTEGER, "
    "offset INTEGER NOT NULL, PRIMARY KEY (projector, partition))",
    "CREATE TABLE IF NOT EXISTS aliases (collection TEXT PRIMARY KEY, live INTEGER NOT NULL, "
    "building INTEGER, retired INTEGER, swapped_at TEXT)",
)


def _ident(name: str) -> str:
    if not NAME.match(name):
        raise ValueError(f"not a safe identifier: {name!r}")
    return name


def _prefix(collection: str, generation: int) -> str:
    """The stem of a generation's table and index names (generation 0 keeps the original names)."""
    return _ident(collection) if generation == 0 else f"{_ident(collection)}__g{generation}"


def _aliases(conn: sqlite3.Connection, collection: str) -> Generations:
    row = conn.execute(
        "SELECT live, building, retired, swapped_at FROM aliases WHERE collection = ?", (collection,)
    ).fetchone()
    return Generations(*row) if row else Generations()


def _checkpoint(conn: sqlite3.Connection, projector: str) -> dict[int, int]:
    rows = conn.execute("SELECT partition, offset FROM checkpoints WHERE projector = ?", (projector,)).fetchall()
    return dict(rows)


class SqliteViewStore(ViewStore):
    def __init__(self, url: str, *, frequent_term_rows: int = FREQUENT_TERM_ROWS) -> None:
        path = sqlite_path(url)
        self._frequent = frequent_term_rows
        self._writer = SqliteConnection(path, synchronous="NORMAL", name="views-w")
        self._reader = SqliteConnection(path, synchronous="NORMAL", name="views-r")
        # reads by id (documents, checkpoints, aliases) on the loop's thread: see snapfix/sqlite.py
        self._by_key = SqliteConnection(path, synchronous="NORMAL", name="views-k", inline=True)
        self._collections: dict[str, Collection] = {}

    async def _read(self, fn: Callable[[sqlite3.Connection], T], *, by_key: bool = False) -> T:
        """Run a read (by key: inline); a driver error leaves as ViewStoreError (a 503, never a 500)."""
        try:
            return await (self._by_key if by_key else self._reader).run(fn)
        except sqlite3.Error as e:
            raise ViewStoreError(f"reading the views failed: {e}") from e

    async def setup(self, collections: Sequence[Collection]) -> None:
        declared = []
        for col in collections:
            base, generation = split_generation(col.name)
            self._collections[base] = Collection(base, col.fields, col.arrays, col.indexes)
            declared.append((self._collections[base], generation))

        def body(conn: sqlite3.Connection) -> None:
            for statement in BOOKKEEPING:
                conn.execute(statement)
            for col, generation in declared:
                live = _aliases(conn, col.name).live if generation is None else generation
                for statement in _create(col, _prefix(col.name, live)):
                    conn.execute(statement)

        await self._writer.run(lambda c: transaction(c, body))

    def _col(self, name: str) -> Collection:
        try:
            return self._collections[name]
        except KeyError:
            raise ViewStoreError(f"collection {name!r} was not set up") from None

    def _target(self, name: str) -> tuple[Collection, int | None]:
        base, generation = split_generation(name)
        return self._col(base), generation

    @staticmethod
    def _table(conn: sqlite3.Connection, col: Collection, generation: int | None) -> str:
        """The table of a generation; a plain name follows the alias (read on this connection)."""
        live = _aliases(conn, col.name).live if generation is None else generation
        return f"v_{_prefix(col.name, live)}"

    async def get(self, collection: str, id: str) -> Doc | None:
        col, generation = self._target(collection)

        def query(conn: sqlite3.Connection) -> Any:
            table = self._table(conn, col, generation)
            return conn.execute(f"SELECT doc FROM {table} WHERE id = ?", (id,)).fetchone()

        row = await self._read(query, by_key=True)
        return orjson.loads(row[0]) if row else None

    async def get_many(self, collection: str, ids: Sequence[str]) -> dict[str, Doc]:
        if not ids:
            return {}
        col, generation = self._target(collection)
        unique = list(dict.fromkeys(ids))

        def query(conn: sqlite3.Connection) -> list[tuple[str, bytes]]:
            table = self._table(conn, col, generation)
            out: list[tuple[str, bytes]] = []
            for start in range(0, len(unique), 500):
                chunk = unique[start : start + 500]
                marks = ",".join("?" * len(chunk))
                out += conn.execute(f"SELECT id, doc FROM {table} WHERE id IN ({marks})", chunk).fetchall()
            return out

        return {id_: orjson.loads(doc) for id_, doc in await self._read(query, by_key=True)}

    def _where(
        self, conn: sqlite3.Connection, col: Collection, table: str, where: tuple[Cond, ...], *, walk: bool
    ) -> tuple[list[str], list[Any], bool]:
        """SQL conditions for ``where``, and whether a term is checked along an index walk (see ``_terms``)."""
        clauses: list[str] = []
        params: list[Any] = []
        walked = False
        if terms := [cond for cond in where if cond.op in TERM_OPS]:
            clauses, params, walked = self._terms(conn, col, table, terms, walk=walk)
        for _, clause, values in self._fields(col, where):
            clauses.append(clause)
            params += values
        return clauses, params, walked

    def _fields(self, col: Collection, where: tuple[Cond, ...]) -> list[tuple[Cond, str, list[Any]]]:
        """(condition, SQL, parameters) for each condition on a column (search terms are ``_terms``'s)."""
        out: list[tuple[Cond, str, list[Any]]] = []
        for cond in where:
            if cond.op in TERM_OPS:
                continue
            column = self._column(col, cond.field)
            if cond.op != "in":
                out.append((cond, f"{column} {OPS[cond.op]} ?", [cond.value]))
            elif values := list(cond.value):
                out.append((cond, f"{column} IN ({','.join('?' * len(values))})", values))
            else:
                out.append((cond, "0", []))
        return out

    def _terms(
        self, conn: sqlite3.Connection, col: Collection, table: str, terms: list[Cond], *, walk: bool
    ) -> tuple[list[str], list[Any], bool]:
        """Search-term conditions, shaped by how many rows hold each term.

        Gathered terms drive the query: the ids holding all of them (an INTERSECT of their
        postings), then sorted. With ``walk``, when every term is frequent (a bounded count
        reaches ``frequent_term_rows``), each is instead checked row by row while SQLite walks
        the sort index: a page of common words costs about ``limit / share`` index steps
        instead of gathering and sorting tens of thousands of holders. If some term is rare it
        gathers, and the frequent ones are checked on its few holders.
        """
        matches: list[tuple[str, list[Any]]] = []
        for cond in terms:
            if cond.field not in col.arrays:
                raise ViewStoreError(f"{cond.field!r} is not an array field of {col.name}")
            side = f"{table}__{_ident(cond.field)}"
            if cond.op == "contains":
                matches.append((f"SELECT id FROM {side} WHERE value = ?", [cond.value]))
            else:
                matches.append((f"SELECT id FROM {side} WHERE value >= ? AND value < ?",
                                [cond.value, cond.value + "\U0010ffff"]))  # fmt: skip
        if walk:
            frequent = [_holders(conn, sql, values, self._frequent) >= self._frequent for sql, values in matches]
        else:
            frequent = [False] * len(matches)
        clauses: list[str] = []
        params: list[Any] = []
        gathered = [m for m, f in zip(matches, frequent, strict=True) if not f]
        if gathered:
            clauses.append(f"id IN ({' INTERSECT '.join(sql for sql, _ in gathered)})")
            params += [v for _, values in gathered for v in values]
        for cond, (sql, values), checked in zip(terms, matches, frequent, strict=True):
            if checked:
                side = f"{table}__{_ident(cond.field)}"
                held = _prefix_terms(conn, side, cond.value) if cond.op == "prefix" else [cond.value]
                if held is not None:  # one (value, id) key per term: a probe among that term's postings
                    sql, values = f"SELECT id FROM {side} WHERE value IN ({','.join('?' * len(held))})", held
                clauses.append(f"EXISTS ({sql} AND id = {table}.id)")
                params += values
        return clauses, params, walk and not gathered

    def _column(self, col: Collection, field: str) -> str:
        if field != "id" and field not in col.fields:
            raise ViewStoreError(f"{field!r} is not a declared field of {col.name}")
        return _ident(field)

    async def find(self, query: Query) -> list[Doc]:
        col, generation = self._target(query.collection)
        order = ", ".join(f"{self._column(col, f)} {'DESC' if desc else 'ASC'}" for f, desc in query.order_by)
        keyset: tuple[str, list[Any]] | None = self._keyset(col, query) if query.after is not None else None
        terms = [cond for cond in query.where if cond.op in TERM_OPS]
        head, index = (_walk_index(col, query) if terms else None) or (frozenset(), None)
        covered = index or frozenset()
        rest = [cond for cond in query.where if cond.op not in TERM_OPS]
        residual = index is not None and any(cond.field not in covered for cond in rest)
        # A list on a fixed column of the index (geo cells) is walked one value at a time, each
        # walk stopping at a page, and the walks merged: the index keeps each value's rows in order.
        listed = next((c for c in rest if c.op == "in" and c.field in head), None)
        # Ranges the index cannot answer (a box's lat/lon) may reject most of its rows, so a walk
        # may run to the end of its range: worth counting first. ``hidden = 0`` rejects few.
        ranged = index is not None and any(c.op in RANGE_OPS and c.field not in covered for c in rest)

        def select(conn: sqlite3.Connection, table: str, walk: bool) -> tuple[str, list[Any], bool]:
            """The statement, its parameters, and whether it walks on a time budget."""
            ahead, params, walked = self._terms(conn, col, table, terms, walk=walk) if terms else ([], [], False)
            index_first = walked and residual
            behind: list[str] = []  # conditions the walked index cannot answer: checked on its matches only
            later: list[Any] = []
            fixed: list[tuple[str, list[Any]]] = []  # the equalities that bound the walk
            for cond, clause, values in self._fields(col, query.where):
                if index_first and cond is listed:
                    continue
                if index_first and cond.field not in covered:
                    behind.append(clause)
                    later += values
                else:
                    ahead.append(clause)
                    params += values
                if cond.field in head:
                    fixed.append((clause, values))
            if keyset is not None:
                ahead.append(keyset[0])
                params += keyset[1]
            if index_first and listed is not None:
                column = self._column(col, listed.field)
                values = list(dict.fromkeys(listed.value))
                each = [[*fixed, (f"{column} = ?", [v])] for v in values]
                bounded = ranged and all(_rows_at_most(conn, table, f, RANGE_WALK_ROWS) for f in each)
                walks = [p for v in values for p in (*params, v, *later, query.limit)]
                sql = _merged_walks(table, query, [*ahead, f"{column} = ?"], behind, len(values))
                return sql, [*walks, query.limit], not bounded
            if index_first:
                budget = not (ranged and fixed and _rows_at_most(conn, table, fixed, RANGE_WALK_ROWS))
                return _index_first(table, query, ahead, behind), [*params, *later, query.limit], budget
            sql = f"SELECT doc FROM {table}"
            if ahead:
                sql += " WHERE " + " AND ".join(ahead)
            return f"{sql} ORDER BY {order} LIMIT ?", [*params, query.limit], walked

        def run(conn: sqlite3.Connection) -> list[Any]:
            table = self._table(conn, col, generation)
            sql, params, budget = select(conn, table, walk=True)
            if not budget:
                return conn.execute(sql, params).fetchall()
            try:  # common words: the walk finds a page fast unless they seldom meet (then gather)
                with _time_budget(conn, WALK_BUDGET_S):
                    return conn.execute(sql, params).fetchall()
            except sqlite3.OperationalError as e:
                if "interrupt" not in str(e):
                    raise
            sql, params, _ = select(conn, table, walk=False)
            return conn.execute(sql, params).fetchall()

        def snapshot(conn: sqlite3.Connection) -> list[Any]:
            """One read transaction: the terms a prefix was expanded to are the ones the walk sees."""
            conn.execute("BEGIN")
            try:
                return run(conn)
            finally:
                if conn.in_transaction:
                    conn.execute("COMMIT")

        rows = await self._read(snapshot if terms else run)
        return [orjson.loads(r[0]) for r in rows]

    def _keyset(self, col: Collection, query: Query) -> tuple[str, list[Any]]:
        """Rows strictly after ``query.after`` in the query's order, for any mix of directions."""
        assert query.after is not None
        if len(query.after) != len(query.order_by):
            raise ViewStoreError("a cursor must carry one value per order_by field")
        ors: list[str] = []
        params: list[Any] = []
        for i, (field, desc) in enumerate(query.order_by):
            ands = [f"{self._column(col, f)} = ?" for f, _ in query.order_by[:i]]
            ands.append(f"{self._column(col, field)} {'<' if desc else '>'} ?")
            ors.append("(" + " AND ".join(ands) + ")")
            params += [*query.after[:i], query.after[i]]
        return "(" + " OR ".join(ors) + ")", params

    async def count(self, collection: str, where: tuple[Cond, ...] = ()) -> int:
        col, generation = self._target(collection)

        def run(conn: sqlite3.Connection) -> Any:
            table = self._table(conn, col, generation)
            clauses, params, _ = self._where(conn, col, table, where, walk=False)
            sql = f"SELECT COUNT(*) FROM {table}"
            if clauses:
                sql += " WHERE " + " AND ".join(clauses)
            return conn.execute(sql, params).fetchone()

        row = await self._read(run)
        return int(row[0])

    async def commit(
        self,
        projector: str,
        changes: Sequence[Change],
        checkpoint: Mapping[int, int],
        *,
        live: Mapping[str, int] | None = None,
    ) -> None:
        targets = {change.collection: self._target(change.collection) for change in changes}
        expected = {self._col(name).name: generation for name, generation in (live or {}).items()}

        def body(conn: sqlite3.Connection) -> None:
            moved = [name for name, generation in expected.items() if _aliases(conn, name).live != generation]
            if moved:  # checked in the write transaction: no swap can fall between this and the writes
                raise GenerationMoved(f"a swap made another generation of {', '.join(moved)} live")
            # Resolved inside the transaction: a swap can never fall between the lookup and the writes.
            tables = {name: (col, self._table(conn, col, gen)) for name, (col, gen) in targets.items()}
            for change in changes:
                col, table = tables[change.collection]
                for sql, params in self._plan(col, table, change):
                    conn.execute(sql, params)
            conn.executemany(
                "INSERT INTO checkpoints (projector, partition, offset) VALUES (?, ?, ?) "
                "ON CONFLICT (projector, partition) DO UPDATE SET offset = excluded.offset",
                [(projector, p, o) for p, o in checkpoint.items()],
            )

        try:
            await self._writer.run(lambda c: transaction(c, body))
        except sqlite3.Error as e:
            raise ViewStoreError(f"commit of {projector} failed: {e}") from e

    @staticmethod
    def _plan(col: Collection, table: str, change: Change) -> list[tuple[str, Sequence[Any]]]:
        doc_id = change.doc["id"] if isinstance(change, Put) else change.id
        plan: list[tuple[str, Sequence[Any]]] = [
            (f"DELETE FROM {table}__{a} WHERE id = ?", (doc_id,)) for a in col.arrays
        ]
        if isinstance(change, Delete):
            plan.append((f"DELETE FROM {table} WHERE id = ?", (doc_id,)))
            return plan
        doc = change.doc
        names = ["id", "doc", *col.fields]
        values = [doc_id, orjson.dumps(doc), *(doc.get(f) for f in col.fields)]
        plan.append(
            (
                f"INSERT OR REPLACE INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                values,
            )
        )
        for array in col.arrays:
            for value in dict.fromkeys(doc.get(array) or ()):
                plan.append(
                    (
                        f"INSERT OR IGNORE INTO {table}__{array} (id, value) VALUES (?, ?)",
                        (doc_id, value),
                    )
                )
        return plan

    async def checkpoint(self, projector: str) -> dict[int, int]:
        def query(conn: sqlite3.Connection) -> dict[int, int]:
            try:
                return _checkpoint(conn, projector)
            except sqlite3.OperationalError:  # not set up yet: nothing applied
                return {}

        return await self._read(query, by_key=True)

    async def drop(self, collections: Sequence[str], projector: str) -> None:
        targets = [self._target(name) for name in collections]

        def body(conn: sqlite3.Connection) -> None:
            for col, generation in targets:
                table = self._table(conn, col, generation)
                conn.execute(f"DELETE FROM {table}")
                for array in col.arrays:
                    conn.execute(f"DELETE FROM {table}__{array}")
            conn.execute("DELETE FROM checkpoints WHERE projector = ?", (projector,))

        await self._writer.run(lambda c: transaction(c, body))

    # --- generations --------------------------------------------------------------

    async def generations(self, collection: str) -> Generations:
        def query(conn: sqlite3.Connection) -> Generations:
            try:
                return _aliases(conn, collection)
            except sqlite3.OperationalError:  # not set up yet
                return Generations()

        return await self._read(query, by_key=True)

    async def live_generations(self, collections: Sequence[str]) -> dict[str, int]:
        def query(conn: sqlite3.Connection) -> dict[str, int]:
            try:
                rows = dict(conn.execute("SELECT collection, live FROM aliases").fetchall())
            except sqlite3.OperationalError:  # not set up yet
                rows = {}
            return {name: rows.get(name, 0) for name in collections}

        return await self._read(query, by_key=True)

    async def begin_generation(self, collection: Collection) -> int:
        self._collections.setdefault(collection.name, collection)
        col = self._col(collection.name)

        def body(conn: sqlite3.Connection) -> int:
            for statement in BOOKKEEPING:
                conn.execute(statement)
            current = _aliases(conn, col.name)
            generation = current.building
            if generation is None:
                generation = max(current.live, current.retired or 0) + 1
                conn.execute(
                    "INSERT INTO aliases (collection, live, building) VALUES (?, ?, ?) "
                    "ON CONFLICT (collection) DO UPDATE SET building = excluded.building",
                    (col.name, current.live, generation),
                )
            for statement in _create(col, _prefix(col.name, generation)):
                conn.execute(statement)
            return generation

        return await self._writer.run(lambda c: transaction(c, body))

    async def swap(self, generations: Mapping[str, int], builder: str, leader: str) -> bool:
        cols = {self._col(name).name: generation for name, generation in generations.items()}

        def body(conn: sqlite3.Connection) -> bool:
            current = {name: _aliases(conn, name) for name in cols}
            for name, generation in cols.items():
                if current[name].building != generation:
                    raise ViewStoreError(f"generation {generation} of {name} is not being built")
            if ahead(_checkpoint(conn, leader), _checkpoint(conn, builder)):
                return False
            for name, generation in cols.items():
                conn.execute(
                    "UPDATE aliases SET live = ?, building = NULL, retired = ?, "
                    "swapped_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE collection = ?",
                    (generation, current[name].live, name),
                )
            return True

        return await self._writer.run(lambda c: transaction(c, body))

    async def drop_generation(self, collection: str, generation: int) -> None:
        col = self._col(collection)

        def body(conn: sqlite3.Connection) -> None:
            current = _aliases(conn, col.name)
            if generation == current.live:
                raise ViewStoreError(f"generation {generation} of {col.name} is live")
            table = f"v_{_prefix(col.name, generation)}"
            for array in col.arrays:
                conn.execute(f"DROP TABLE IF EXISTS {table}__{array}")
            conn.execute(f"DROP TABLE IF EXISTS {table}")
            conn.execute("DELETE FROM checkpoints WHERE projector = ?", (builder_name(col.name, generation),))
            conn.execute(
                "UPDATE aliases SET retired = CASE WHEN retired = ? THEN NULL ELSE retired END, "
                "building = CASE WHEN building = ? THEN NULL ELSE building END WHERE collection = ?",
                (generation, generation, col.name),
            )

        await self._writer.run(lambda c: transaction(c, body))

    async def close(self) -> None:
        await self._writer.close()
        await self._reader.close()
        await self._by_key.close()


def _holders(conn: sqlite3.Connection, postings: str, values: list[Any], enough: int) -> int:
    """How many rows hold a term, counted up to ``enough`` and no further."""
    return int(conn.execute(f"SELECT COUNT(*) FROM ({postings} LIMIT {int(enough)})", values).fetchone()[0])


def _walk_index(col: Collection, query: Query) -> tuple[frozenset[str], frozenset[str]] | None:
    """A declared index that lists the query's rows in its order once its equalities are fixed.

    Its fixed columns and all its columns; the one with the most fixed columns (the fewest
    rows to walk), or None when no index serves the order.
    """
    fixed = {cond.field for cond in query.where if cond.op == "eq"}
    listed = {c.field for c in query.where if c.op == "in" and 1 < len(c.value) <= MAX_WALKS} - fixed
    order = [field for field, _ in query.order_by]
    wanted = [desc for _, desc in query.order_by]
    best: tuple[frozenset[str], frozenset[str]] | None = None
    for index in col.indexes:
        if len(index) < len(order):
            continue
        head, tail = index[: len(index) - len(order)], index[len(index) - len(order) :]
        descending = [f.startswith("-") for f in tail]
        if [f.lstrip("-") for f in tail] != order or descending not in (wanted, [not d for d in wanted]):
            continue
        columns = {f.lstrip("-") for f in head}
        if columns <= fixed | listed and len(columns & listed) <= 1 and (best is None or len(head) > len(best[0])):
            best = frozenset(f.lstrip("-") for f in head), frozenset({*(f.lstrip("-") for f in index), "id"})
    return best


def _rows_at_most(conn: sqlite3.Connection, table: str, fixed: list[tuple[str, list[Any]]], most: int) -> bool:
    """Whether the index range the equalities select holds at most ``most`` rows (counted no further)."""
    where = " AND ".join(clause for clause, _ in fixed)
    sql = f"SELECT COUNT(*) FROM (SELECT 1 FROM {table} WHERE {where} LIMIT {int(most) + 1})"
    return int(conn.execute(sql, [v for _, values in fixed for v in values]).fetchone()[0]) <= most


def _index_first(table: str, query: Query, ahead: list[str], behind: list[str], *, keys: bool = False) -> str:
    """A walk that checks search terms on the index alone and reads a row only when its terms match.

    Walking ``ahead`` (the index's conditions, the EXISTS of each term, the keyset) reads
    the index and the postings, never the table; only the matches are looked up by rowid for
    ``behind`` (a box's lat/lon, ``hidden``). SQLite flattens the subquery into a join of the
    table with itself; the query's order names the subquery's columns so the walk keeps it.
    """
    names = ", ".join(f"{_ident(field)} AS _k{i}" for i, (field, _) in enumerate(query.order_by))
    order = ", ".join(f"k._k{i} {'DESC' if desc else 'ASC'}" for i, (_, desc) in enumerate(query.order_by))
    walk = f"SELECT rowid AS _hit, {names} FROM {table} WHERE {' AND '.join(ahead)}"
    shown = "".join(f", k._k{i} AS _k{i}" for i in range(len(query.order_by))) if keys else ""
    return (
        f"SELECT doc{shown} FROM {table} JOIN ({walk}) AS k ON {table}.rowid = k._hit "
        f"WHERE {' AND '.join(behind)} ORDER BY {order} LIMIT ?"
    )


def _merged_walks(table: str, query: Query, ahead: list[str], behind: list[str], walks: int) -> str:
    """``walks`` index-first walks (one per listed value, each to a page), merged in the query's order."""
    walk = _index_first(table, query, ahead, behind, keys=True)
    keys = ", ".join(f"_k{i}" for i in range(len(query.order_by)))
    order = ", ".join(f"_k{i} {'DESC' if desc else 'ASC'}" for i, (_, desc) in enumerate(query.order_by))
    return " UNION ALL ".join([f"SELECT doc, {keys} FROM ({walk})"] * walks) + f" ORDER BY {order} LIMIT ?"


def _prefix_terms(conn: sqlite3.Connection, side: str, prefix: str) -> list[str] | None:
    """The distinct terms starting with ``prefix``, one index seek each; None past PREFIX_TERMS of them."""
    found: list[str] = []
    after, op = prefix, ">="
    while len(found) <= PREFIX_TERMS:
        sql = f"SELECT value FROM {side} WHERE value {op} ? AND value < ? ORDER BY value LIMIT 1"
        row = conn.execute(sql, (after, prefix + "\U0010ffff")).fetchone()
        if row is None:
            return found
        found.append(row[0])
        after, op = row[0], ">"
    return None


@contextlib.contextmanager
def _time_budget(conn: sqlite3.Connection, seconds: float) -> Iterator[None]:
    """Interrupt the statement running on ``conn`` once ``seconds`` have passed (sqlite3 raises OperationalError)."""
    deadline = time.perf_counter() + seconds
    conn.set_progress_handler(lambda: int(time.perf_counter() > deadline), 1000)
    try:
        yield
    finally:
        conn.set_progress_handler(None, 0)


def _create(col: Collection, prefix: str) -> list[str]:
    """The statements that create one generation's tables and indexes, if missing."""
    table = f"v_{prefix}"
    columns = "".join(f", {_ident(f)} {SQL_TYPES[t]}" for f, t in col.fields.items())
    statements = [f"CREATE TABLE IF NOT EXISTS {table} (id TEXT PRIMARY KEY, doc BLOB NOT NULL{columns})"]
    for index in col.indexes:
        parts = [f"{_ident(f.lstrip('-'))}{' DESC' if f.startswith('-') else ''}" for f in index]
        name = f"ix_{prefix}__{'_'.join(f.lstrip('-') for f in index)}"
        statements.append(f"CREATE INDEX IF NOT EXISTS {name} ON {table} ({', '.join(parts)})")
    for array in col.arrays:
        side = f"{table}__{_ident(array)}"
        statements.append(
            f"CREATE TABLE IF NOT EXISTS {side} (id TEXT NOT NULL, value TEXT NOT NULL, "
            "PRIMARY KEY (value, id)) WITHOUT ROWID"
        )
        statements.append(f"CREATE INDEX IF NOT EXISTS ix_{prefix}__{array}__id ON {side} (id)")
    return statements
