"""SqliteEventLog: the embedded event log, one SQLite file in WAL mode with a global position.

The UNIQUE (aggregate_id, aggregate_version) constraint refuses a stale writer
from any process; triggers refuse any UPDATE or DELETE of a recorded event.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson

from events.envelope import Envelope, Position
from events.ports import (
    Checkpoint,
    Claim,
    ClaimRecord,
    ClaimTaken,
    ConcurrencyConflict,
    EventLog,
    EventLogError,
    EventStore,
)
from snapfix.sqlite import SqliteConnection, sqlite_path, transaction

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    position          INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id          TEXT    NOT NULL UNIQUE,
    event_type        TEXT    NOT NULL,
    schema_version    INTEGER NOT NULL,
    aggregate_type    TEXT    NOT NULL,
    aggregate_id      TEXT    NOT NULL,
    aggregate_version INTEGER NOT NULL CHECK (aggregate_version >= 1),
    occurred_at       TEXT    NOT NULL,
    actor_id          TEXT,
    correlation_id    TEXT,
    causation_id      TEXT,
    payload           BLOB    NOT NULL,
    UNIQUE (aggregate_id, aggregate_version)
);
CREATE TRIGGER IF NOT EXISTS events_append_only_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
CREATE TRIGGER IF NOT EXISTS events_append_only_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
CREATE TABLE IF NOT EXISTS claims (
    key          TEXT PRIMARY KEY,
    aggregate_id TEXT    NOT NULL,
    version      INTEGER NOT NULL,
    position     INTEGER NOT NULL,
    data         BLOB    NOT NULL
);
"""

COLUMNS = (
    "position, event_id, event_type, schema_version, aggregate_type, aggregate_id, aggregate_version,"
    " occurred_at, actor_id, correlation_id, causation_id, payload"
)


def _row_to_envelope(row: tuple[Any, ...]) -> Envelope:
    return Envelope(
        position=Position(0, row[0]),
        event_id=row[1],
        event_type=row[2],
        schema_version=row[3],
        aggregate_type=row[4],
        aggregate_id=row[5],
        aggregate_version=row[6],
        occurred_at=datetime.fromisoformat(row[7]),
        actor_id=row[8],
        correlation_id=row[9],
        causation_id=row[10],
        payload=orjson.loads(row[11]),
    )


class SqliteEventLog(EventStore, EventLog):
    """Both ports over one SQLite file: a writer thread and a reader thread."""

    def __init__(self, url: str, *, synchronous: str = "FULL") -> None:
        path = sqlite_path(url)
        self._writer = SqliteConnection(path, synchronous=synchronous, name="eventlog-w")
        self._reader = SqliteConnection(path, synchronous=synchronous, name="eventlog-r")
        self._appended = asyncio.Event()

    async def open(self) -> None:
        await self._writer.run(lambda c: c.executescript(SCHEMA))

    async def close(self) -> None:
        await self._writer.close()
        await self._reader.close()

    # --- EventStore -------------------------------------------------------------

    async def load(self, aggregate_id: str) -> list[Envelope]:
        def query(conn: sqlite3.Connection) -> list[Envelope]:
            rows = conn.execute(
                f"SELECT {COLUMNS} FROM events WHERE aggregate_id = ? ORDER BY aggregate_version",
                (aggregate_id,),
            ).fetchall()
            return [_row_to_envelope(r) for r in rows]

        return await self._reader.run(query)

    async def append(
        self,
        aggregate_id: str,
        expected_version: int,
        events: Sequence[Envelope],
        claims: Sequence[Claim] = (),
    ) -> list[Envelope]:
        if not events:
            return []
        for i, event in enumerate(events, start=1):
            if event.aggregate_id != aggregate_id or event.aggregate_version != expected_version + i:
                raise ValueError("events must belong to the aggregate and follow the expected version")

        def body(conn: sqlite3.Connection) -> list[Envelope]:
            row = conn.execute(
                "SELECT MAX(aggregate_version) FROM events WHERE aggregate_id = ?", (aggregate_id,)
            ).fetchone()
            current = row[0] or 0
            if current != expected_version:
                raise ConcurrencyConflict(aggregate_id, expected_version, current)
            for claim in claims:
                held = _claim(conn, claim.key)
                if held is not None:
                    raise ClaimTaken(held)
            recorded = []
            for event in events:
                cursor = conn.execute(
                    "INSERT INTO events (event_id, event_type, schema_version, aggregate_type, aggregate_id,"
                    " aggregate_version, occurred_at, actor_id, correlation_id, causation_id, payload)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        event.event_id,
                        event.event_type,
                        event.schema_version,
                        event.aggregate_type,
                        event.aggregate_id,
                        event.aggregate_version,
                        event.occurred_at.isoformat(),
                        event.actor_id,
                        event.correlation_id,
                        event.causation_id,
                        orjson.dumps(event.payload),
                    ),
                )
                assert cursor.lastrowid is not None
                recorded.append(event.at(Position(0, cursor.lastrowid)))
            last = recorded[-1]
            assert last.position is not None
            for claim in claims:
                conn.execute(
                    "INSERT INTO claims (key, aggregate_id, version, position, data) VALUES (?, ?, ?, ?, ?)",
                    (
                        claim.key,
                        aggregate_id,
                        last.aggregate_version,
                        last.position.offset,
                        orjson.dumps(dict(claim.data)),
                    ),
                )
            return recorded

        def run(conn: sqlite3.Connection) -> list[Envelope]:
            try:
                return transaction(conn, body)
            except sqlite3.IntegrityError as e:
                # Another process won the race between our read and our insert.
                raise ConcurrencyConflict(aggregate_id, expected_version) from e

        try:
            recorded = await self._writer.run(run)
        except sqlite3.Error as e:
            raise EventLogError(f"append to {aggregate_id} failed: {e}") from e
        self._appended.set()
        return recorded

    async def get_claim(self, key: str) -> ClaimRecord | None:
        return await self._reader.run(lambda conn: _claim(conn, key))

    # --- EventLog ---------------------------------------------------------------

    async def read(self, after: Checkpoint, limit: int) -> list[Envelope]:
        start = after.get(0, 0)

        def query(conn: sqlite3.Connection) -> list[Envelope]:
            rows = conn.execute(
                f"SELECT {COLUMNS} FROM events WHERE position > ? ORDER BY position LIMIT ?",
                (start, limit),
            ).fetchall()
            return [_row_to_envelope(r) for r in rows]

        return await self._reader.run(query)

    async def head(self) -> dict[int, int]:
        row = await self._reader.run(lambda c: c.execute("SELECT MAX(position) FROM events").fetchone())
        return {0: row[0]} if row and row[0] is not None else {}

    async def position_at(self, moment: datetime) -> dict[int, int]:
        """A binary search over positions on their recording time: about 20 primary-key reads for a million events."""

        def search(conn: sqlite3.Connection) -> dict[int, int]:
            bounds = "SELECT COALESCE(MIN(position), 1), COALESCE(MAX(position), 0) FROM events"
            low, high = conn.execute(bounds).fetchone()
            first_late = high + 1  # the smallest position recorded at or after ``moment``
            while low <= high:
                middle = (low + high) // 2
                row = conn.execute(
                    "SELECT position, occurred_at FROM events WHERE position >= ? ORDER BY position LIMIT 1", (middle,)
                ).fetchone()
                if row is None or datetime.fromisoformat(row[1]) >= moment:
                    first_late = row[0] if row is not None else first_late
                    high = middle - 1
                else:
                    low = row[0] + 1
            return {0: first_late - 1}

        return await self._reader.run(search)

    async def wait(self, after: Checkpoint, timeout: float) -> None:
        self._appended.clear()  # before reading the head, so an append in between still wakes us
        head = await self.head()
        if head.get(0, 0) > after.get(0, 0):
            return
        try:
            await asyncio.wait_for(self._appended.wait(), timeout)
        except TimeoutError:
            return


def _claim(conn: sqlite3.Connection, key: str) -> ClaimRecord | None:
    row = conn.execute("SELECT key, aggregate_id, version, position, data FROM claims WHERE key = ?", (key,)).fetchone()
    if row is None:
        return None
    return ClaimRecord(row[0], row[1], row[2], Position(0, row[3]), orjson.loads(row[4]))
