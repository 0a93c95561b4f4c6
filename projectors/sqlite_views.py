"""SqliteViewStore: views in SQLite tables; declared fields become indexed columns, arrays side tables.

Each collection ``c`` is a table ``v_c(id, doc, <fields>)``; each array field ``a``
is a table ``v_c__a(id, value)`` indexed on ``(value, id)``. A commit is one
transaction holding the view changes and the projector's checkpoint.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from projectors.ports import Change, Collection, Cond, Delete, Doc, Put, Query, ViewStore, ViewStoreError
from snapfix.sqlite import SqliteConnection, sqlite_path, transaction

NAME = re.compile(r"^[a-z][a-z0-9_]*$")
SQL_TYPES = {"text": "TEXT", "real": "REAL", "int": "INTEGER"}
OPS = {"eq": "=", "ne": "!=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


def _ident(name: str) -> str:
    if not NAME.match(name):
        raise ValueError(f"not a safe identifier: {name!r}")
    return name


class SqliteViewStore(ViewStore):
    def __init__(self, url: str) -> None:
        path = sqlite_path(url)
        self._writer = SqliteConnection(path, synchronous="NORMAL", name="views-w")
        self._reader = SqliteConnection(path, synchronous="NORMAL", name="views-r")
        self._collections: dict[str, Collection] = {}

    async def setup(self, collections: Sequence[Collection]) -> None:
        for col in collections:
            self._collections[col.name] = col
        statements = [
            "CREATE TABLE IF NOT EXISTS checkpoints (projector TEXT, partition INTEGER, "
            "offset INTEGER NOT NULL, PRIMARY KEY (projector, partition))"
        ]
        for col in collections:
            table = f"v_{_ident(col.name)}"
            columns = "".join(f", {_ident(f)} {SQL_TYPES[t]}" for f, t in col.fields.items())
            statements.append(f"CREATE TABLE IF NOT EXISTS {table} (id TEXT PRIMARY KEY, doc BLOB NOT NULL{columns})")
            for index in col.indexes:
                parts = [f"{_ident(f.lstrip('-'))}{' DESC' if f.startswith('-') else ''}" for f in index]
                name = f"ix_{col.name}__{'_'.join(f.lstrip('-') for f in index)}"
                statements.append(f"CREATE INDEX IF NOT EXISTS {name} ON {table} ({', '.join(parts)})")
            for array in col.arrays:
                side = f"{table}__{_ident(array)}"
                statements.append(
                    f"CREATE TABLE IF NOT EXISTS {side} (id TEXT NOT NULL, value TEXT NOT NULL, "
                    "PRIMARY KEY (value, id)) WITHOUT ROWID"
                )
                statements.append(f"CREATE INDEX IF NOT EXISTS ix_{col.name}__{array}__id ON {side} (id)")
        script = ";\n".join(statements) + ";"
        await self._writer.run(lambda c: c.executescript(script))

    def _col(self, name: str) -> Collection:
        try:
            return self._collections[name]
        except KeyError:
            raise ViewStoreError(f"collection {name!r} was not set up") from None

    async def get(self, collection: str, id: str) -> Doc | None:
        table = f"v_{_ident(self._col(collection).name)}"
        row = await self._reader.run(lambda c: c.execute(f"SELECT doc FROM {table} WHERE id = ?", (id,)).fetchone())
        return orjson.loads(row[0]) if row else None

    async def get_many(self, collection: str, ids: Sequence[str]) -> dict[str, Doc]:
        if not ids:
            return {}
        table = f"v_{_ident(self._col(collection).name)}"
        unique = list(dict.fromkeys(ids))

        def query(conn: sqlite3.Connection) -> list[tuple[str, bytes]]:
            out: list[tuple[str, bytes]] = []
            for start in range(0, len(unique), 500):
                chunk = unique[start : start + 500]
                marks = ",".join("?" * len(chunk))
                out += conn.execute(f"SELECT id, doc FROM {table} WHERE id IN ({marks})", chunk).fetchall()
            return out

        return {id_: orjson.loads(doc) for id_, doc in await self._reader.run(query)}

    def _where(self, col: Collection, where: tuple[Cond, ...]) -> tuple[list[str], list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        table = f"v_{col.name}"
        for cond in where:
            if cond.op in ("contains", "prefix"):
                if cond.field not in col.arrays:
                    raise ViewStoreError(f"{cond.field!r} is not an array field of {col.name}")
                side = f"{table}__{_ident(cond.field)}"
                if cond.op == "contains":
                    clauses.append(f"id IN (SELECT id FROM {side} WHERE value = ?)")
                    params.append(cond.value)
                else:
                    clauses.append(f"id IN (SELECT id FROM {side} WHERE value >= ? AND value < ?)")
                    params += [cond.value, cond.value + "\U0010ffff"]
                continue
            column = self._column(col, cond.field)
            if cond.op == "in":
                values = list(cond.value)
                if not values:
                    clauses.append("0")
                    continue
                clauses.append(f"{column} IN ({','.join('?' * len(values))})")
                params += values
            else:
                clauses.append(f"{column} {OPS[cond.op]} ?")
                params.append(cond.value)
        return clauses, params

    def _column(self, col: Collection, field: str) -> str:
        if field != "id" and field not in col.fields:
            raise ViewStoreError(f"{field!r} is not a declared field of {col.name}")
        return _ident(field)

    async def find(self, query: Query) -> list[Doc]:
        col = self._col(query.collection)
        clauses, params = self._where(col, query.where)
        if query.after is not None:
            keyset, keyset_params = self._keyset(col, query)
            clauses.append(keyset)
            params += keyset_params
        order = ", ".join(f"{self._column(col, f)} {'DESC' if desc else 'ASC'}" for f, desc in query.order_by)
        sql = f"SELECT doc FROM v_{col.name}"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += f" ORDER BY {order} LIMIT ?"
        params.append(query.limit)
        rows = await self._reader.run(lambda c: c.execute(sql, params).fetchall())
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
        col = self._col(collection)
        clauses, params = self._where(col, where)
        sql = f"SELECT COUNT(*) FROM v_{col.name}"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        row = await self._reader.run(lambda c: c.execute(sql, params).fetchone())
        return int(row[0])

    async def commit(self, projector: str, changes: Sequence[Change], checkpoint: Mapping[int, int]) -> None:
        plans = [self._plan(change) for change in changes]

        def body(conn: sqlite3.Connection) -> None:
            for statements in plans:
                for sql, params in statements:
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

    def _plan(self, change: Change) -> list[tuple[str, Sequence[Any]]]:
        col = self._col(change.collection)
        table = f"v_{col.name}"
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
        def query(conn: sqlite3.Connection) -> list[tuple[int, int]]:
            try:
                return conn.execute(
                    "SELECT partition, offset FROM checkpoints WHERE projector = ?", (projector,)
                ).fetchall()
            except sqlite3.OperationalError:  # not set up yet: nothing applied
                return []

        return dict(await self._reader.run(query))

    async def drop(self, collections: Sequence[str], projector: str) -> None:
        cols = [self._col(name) for name in collections]

        def body(conn: sqlite3.Connection) -> None:
            for col in cols:
                conn.execute(f"DELETE FROM v_{col.name}")
                for array in col.arrays:
                    conn.execute(f"DELETE FROM v_{col.name}__{array}")
            conn.execute("DELETE FROM checkpoints WHERE projector = ?", (projector,))

        await self._writer.run(lambda c: transaction(c, body))

    async def close(self) -> None:
        await self._writer.close()
        await self._reader.close()
