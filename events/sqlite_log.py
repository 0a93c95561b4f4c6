"""SqliteEventLog: the embedded event log, one SQLite file in WAL mode with a global position.

The UNIQUE (aggregate_id, aggregate_version) constraint refuses a stale writer
from any process; triggers refuse any UPDATE or DELETE of a recorded event.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from events.envelope import Envelope, Position
from events.group_commit import GroupCommit
from events.ports import (
    Checkpoint,
    Claim,
    ClaimRecord,
    ClaimTaken,
    ConcurrencyConflict,
    EventLog,
    EventLogError,
    EventStore,
    Snapshot,
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
-- Snapshots are a cache beside the log, not part of it: replaced as aggregates grow, never trusted over it.
CREATE TABLE IF NOT EXISTS snapshots (
    aggregate_id   TEXT PRIMARY KEY,
    aggregate_type TEXT    NOT NULL,
    version        INTEGER NOT NULL,
    last_event_id  TEXT    NOT NULL,
    position       INTEGER,
    fingerprint    TEXT    NOT NULL,
    state          BLOB    NOT NULL
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
    """Both ports over one SQLite file: a writer thread that group-commits, and an inline reader.

    Appends that arrive while a commit is on the writer thread wait for the next one and go
    together: one transaction, one fsync, each in its own savepoint so that a stale append (or a
    claim already held) fails alone and never its batch-mates. Every append is answered only
    after the COMMIT that made it durable returned.
    """

    def __init__(self, url: str, *, synchronous: str = "FULL") -> None:
        path = sqlite_path(url)
        self._writer = SqliteConnection(path, synchronous=synchronous, name="eventlog-w")
        # reads are by key or a bounded slice: on the loop's thread (see snapfix/sqlite.py)
        self._reader = SqliteConnection(path, synchronous=synchronous, name="eventlog-r", inline=True)
        self._appended = asyncio.Event()
        self._group: GroupCommit[_Append | Snapshot, list[Envelope] | None] = GroupCommit(
            self._commit, "eventlog-group-commit"
        )

    async def open(self) -> None:
        await self._writer.run(lambda c: c.executescript(SCHEMA))

    @property
    def group_sizes(self) -> list[int]:
        """Writes per group commit, newest last: what the benchmark reports."""
        return self._group.sizes

    async def close(self) -> None:
        await self._group.drain()
        await self._writer.close()
        await self._reader.close()

    # --- EventStore -------------------------------------------------------------

    async def load(self, aggregate_id: str, after_version: int = 0) -> list[Envelope]:
        def query(conn: sqlite3.Connection) -> list[Envelope]:
            rows = conn.execute(
                f"SELECT {COLUMNS} FROM events WHERE aggregate_id = ? AND aggregate_version > ?"
                " ORDER BY aggregate_version",
                (aggregate_id, after_version),
            ).fetchall()
            return [_row_to_envelope(r) for r in rows]

        return await self._reader.run(query)

    async def version_of(self, aggregate_id: str) -> int:
        return await self._reader.run(lambda conn: _version(conn, aggregate_id))

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
        recorded = await self._write(_Append(aggregate_id, expected_version, tuple(events), tuple(claims)))
        assert isinstance(recorded, list)
        return recorded

    async def load_snapshot(self, aggregate_id: str) -> Snapshot | None:
        # only while the log holds the event the snapshot names at its version: never trusted over the log
        row = await self._reader.run(
            lambda conn: conn.execute(
                "SELECT s.aggregate_id, s.aggregate_type, s.version, s.last_event_id, s.position, s.fingerprint,"
                " s.state FROM snapshots s JOIN events e ON e.aggregate_id = s.aggregate_id"
                " AND e.aggregate_version = s.version AND e.event_id = s.last_event_id WHERE s.aggregate_id = ?",
                (aggregate_id,),
            ).fetchone()
        )
        if row is None:
            return None
        position = None if row[4] is None else Position(0, row[4])
        return Snapshot(row[0], row[1], row[2], row[3], position, row[5], orjson.loads(row[6]))

    async def save_snapshot(self, snapshot: Snapshot) -> None:
        await self._write(snapshot)

    async def _write(self, write: _Append | Snapshot) -> list[Envelope] | None:
        """Wait for the group commit that makes ``write`` durable (see the class docstring)."""
        return await self._group.submit(write)

    async def _commit(self, group: list[_Append | Snapshot]) -> list[list[Envelope] | Exception | None]:
        try:
            outcomes = await self._writer.run(functools.partial(_commit_group, group=group))
        except sqlite3.Error as e:
            raise EventLogError(f"append failed: {e}") from e
        self._appended.set()
        return outcomes

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


@dataclass(frozen=True, slots=True)
class _Append:
    aggregate_id: str
    expected_version: int
    events: tuple[Envelope, ...]
    claims: tuple[Claim, ...]


def _commit_group(
    conn: sqlite3.Connection, group: Sequence[_Append | Snapshot]
) -> list[list[Envelope] | Exception | None]:
    """One transaction for the whole group, one savepoint per write: a refused write is rolled back alone."""

    def body(conn: sqlite3.Connection) -> list[list[Envelope] | Exception | None]:
        outcomes: list[list[Envelope] | Exception | None] = []
        for write in group:
            conn.execute("SAVEPOINT one_write")
            try:
                outcome = _apply(conn, write)
            except (ConcurrencyConflict, ClaimTaken) as refused:
                conn.execute("ROLLBACK TO one_write")
                outcomes.append(refused)
            except sqlite3.IntegrityError as e:  # another process won between our read and our insert
                conn.execute("ROLLBACK TO one_write")
                assert isinstance(write, _Append)  # snapshots replace, they never collide
                conflict = ConcurrencyConflict(write.aggregate_id, write.expected_version)
                conflict.__cause__ = e
                outcomes.append(conflict)
            else:
                outcomes.append(outcome)
            conn.execute("RELEASE one_write")
        return outcomes

    return transaction(conn, body)


def _apply(conn: sqlite3.Connection, write: _Append | Snapshot) -> list[Envelope] | None:
    if isinstance(write, Snapshot):
        _keep_snapshot(conn, write)
        return None
    return _append(conn, write)


def _append(conn: sqlite3.Connection, write: _Append) -> list[Envelope]:
    current = _version(conn, write.aggregate_id)
    if current != write.expected_version:
        raise ConcurrencyConflict(write.aggregate_id, write.expected_version, current)
    for claim in write.claims:
        held = _claim(conn, claim.key)
        if held is not None:
            raise ClaimTaken(held)
    recorded = []
    for event in write.events:
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
    for claim in write.claims:
        conn.execute(
            "INSERT INTO claims (key, aggregate_id, version, position, data) VALUES (?, ?, ?, ?, ?)",
            (
                claim.key,
                write.aggregate_id,
                last.aggregate_version,
                last.position.offset,
                orjson.dumps(dict(claim.data)),
            ),
        )
    return recorded


def _keep_snapshot(conn: sqlite3.Connection, snapshot: Snapshot) -> None:
    """Insert or replace, unless a snapshot of a later version is already kept."""
    conn.execute(
        "INSERT INTO snapshots (aggregate_id, aggregate_type, version, last_event_id, position, fingerprint, state)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (aggregate_id) DO UPDATE SET aggregate_type = excluded.aggregate_type,"
        " version = excluded.version, last_event_id = excluded.last_event_id, position = excluded.position,"
        " fingerprint = excluded.fingerprint, state = excluded.state"
        " WHERE excluded.version >= snapshots.version",
        (
            snapshot.aggregate_id,
            snapshot.aggregate_type,
            snapshot.version,
            snapshot.last_event_id,
            None if snapshot.position is None else snapshot.position.offset,
            snapshot.fingerprint,
            orjson.dumps(dict(snapshot.state)),
        ),
    )


def _version(conn: sqlite3.Connection, aggregate_id: str) -> int:
    row = conn.execute("SELECT MAX(aggregate_version) FROM events WHERE aggregate_id = ?", (aggregate_id,)).fetchone()
    return int(row[0] or 0)


def _claim(conn: sqlite3.Connection, key: str) -> ClaimRecord | None:
    row = conn.execute("SELECT key, aggregate_id, version, position, data FROM claims WHERE key = ?", (key,)).fetchone()
    if row is None:
        return None
    return ClaimRecord(row[0], row[1], row[2], Position(0, row[3]), orjson.loads(row[4]))
