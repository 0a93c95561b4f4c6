"""Read a slice of the log and write it for analysts: JSON Lines, or Parquet for pandas and DuckDB.

A slice runs from a position or a time to another, filtered by event type and
aggregate. Events are upcast to their latest schema version unless ``raw`` asks for
the stored form; an event this code cannot read is written as stored, marked
``unreadable`` with the reason, and counted.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import IO, Any

import orjson

from events.codec import envelope_to_dict
from events.envelope import Envelope
from events.ports import EventLog
from events.types import UnknownEventType, event_class
from events.upcasting import UnreadableEvent, upcast

Progress = Callable[[int], None]


@dataclass(frozen=True, slots=True)
class Slice:
    """What to read: ``after`` is exclusive, ``through`` inclusive (per partition); times bound ``occurred_at``."""

    after: dict[int, int] = field(default_factory=dict)
    through: dict[int, int] | None = None
    since: datetime | None = None
    until: datetime | None = None
    event_types: frozenset[str] = frozenset()
    aggregates: frozenset[str] = frozenset()
    limit: int | None = None


@dataclass(slots=True)
class Tally:
    scanned: int = 0
    written: int = 0
    unreadable: int = 0


async def resolve(event_log: EventLog, selection: Slice) -> Slice:
    """Turn the times of a slice into positions the log can seek to (``position_at``)."""
    after, through = selection.after, selection.through
    if selection.since is not None:
        start = await event_log.position_at(selection.since)
        after = {p: max(o, after.get(p, 0)) for p, o in start.items()} | {
            p: o for p, o in after.items() if p not in start
        }
    if selection.until is not None:
        # One millisecond past ``until``: Kafka's record timestamps are whole milliseconds, so a
        # later bound never cuts an event of ``until``'s millisecond; ``_wanted`` trims the extra.
        end = await event_log.position_at(selection.until + timedelta(milliseconds=1))
        through = end if through is None else {p: min(o, through.get(p, o)) for p, o in end.items()}
    return Slice(
        after, through, selection.since, selection.until, selection.event_types, selection.aggregates, selection.limit
    )


async def read_slice(
    event_log: EventLog, selection: Slice, tally: Tally, *, batch: int = 5000, progress: Progress | None = None
) -> AsyncIterator[list[Envelope]]:
    """The slice's events in log order, a batch at a time (filters applied)."""
    cursor = dict(selection.after)
    through = selection.through
    left = selection.limit
    while left is None or left > 0:
        events = await event_log.read(cursor, batch)
        if not events:
            return
        chosen: list[Envelope] = []
        finished = False
        for env in events:
            assert env.position is not None
            part, offset = env.position.partition, env.position.offset
            cursor[part] = offset
            if through is not None and offset > through.get(part, -1):
                # past the end of the only bounded partition (SQLite's one): nothing more to read
                finished = finished or (len(through) <= 1 and part in through)
                continue
            if _wanted(env, selection):
                chosen.append(env)
        tally.scanned += len(events)
        if progress is not None:
            progress(len(events))
        if left is not None:
            chosen = chosen[:left]
            left -= len(chosen)
        if chosen:
            yield chosen
        if finished or (through is not None and all(cursor.get(p, 0) >= o for p, o in through.items())):
            return


def _wanted(env: Envelope, selection: Slice) -> bool:
    if selection.event_types and env.event_type not in selection.event_types:
        return False
    if selection.aggregates and env.aggregate_id not in selection.aggregates:
        return False
    if selection.since is not None and env.occurred_at < selection.since:
        return False
    return selection.until is None or env.occurred_at <= selection.until


def record(env: Envelope, raw: bool, tally: Tally) -> dict[str, Any]:
    """One exported event: the envelope with its position, the payload upcast unless ``raw``."""
    assert env.position is not None
    out = envelope_to_dict(env)
    out["partition"], out["offset"] = env.position.partition, env.position.offset
    if not raw:
        try:
            out["payload"] = upcast(env.event_type, env.schema_version, env.payload)
            out["schema_version"] = event_class(env.event_type).schema_version
        except (UnreadableEvent, UnknownEventType) as e:
            tally.unreadable += 1
            out["unreadable"] = f"{type(e).__name__}: {e}"
    return out


class JsonLinesSink:
    """One JSON object per line; orjson keeps it fast."""

    def __init__(self, out: IO[bytes]) -> None:
        self._out = out

    def write(self, records: list[dict[str, Any]]) -> None:
        self._out.write(b"".join(orjson.dumps(r, option=orjson.OPT_APPEND_NEWLINE) for r in records))

    def close(self) -> None:
        self._out.flush()


PARQUET_COLUMNS = (
    ("partition", "int32"),
    ("offset", "int64"),
    ("event_id", "string"),
    ("event_type", "string"),
    ("schema_version", "int32"),
    ("aggregate_type", "string"),
    ("aggregate_id", "string"),
    ("aggregate_version", "int64"),
    ("occurred_at", "timestamp"),
    ("actor_id", "string"),
    ("correlation_id", "string"),
    ("causation_id", "string"),
    ("payload", "string"),  # JSON text: DuckDB's json functions and pandas' json_normalize read it
    ("unreadable", "string"),
)


class ParquetSink:
    """Row groups of a fixed schema; ``payload`` is JSON text so every event type fits one table."""

    def __init__(self, out: IO[bytes] | str, row_group: int = 100_000) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self._pa = pa
        types = {
            "int32": pa.int32(),
            "int64": pa.int64(),
            "string": pa.string(),
            "timestamp": pa.timestamp("us", "UTC"),
        }
        self._schema = pa.schema([(name, types[kind]) for name, kind in PARQUET_COLUMNS])
        self._writer = pq.ParquetWriter(out, self._schema, compression="zstd")
        self._row_group = row_group
        self._pending: list[dict[str, Any]] = []

    def write(self, records: list[dict[str, Any]]) -> None:
        self._pending += records
        if len(self._pending) >= self._row_group:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        rows = self._pending
        columns = {name: [r.get(name) for r in rows] for name, _ in PARQUET_COLUMNS}
        columns["payload"] = [orjson.dumps(r["payload"]).decode() for r in rows]
        columns["occurred_at"] = [datetime.fromisoformat(r["occurred_at"]) for r in rows]
        self._writer.write_table(self._pa.table(columns, schema=self._schema))
        self._pending = []

    def close(self) -> None:
        self._flush()
        self._writer.close()


async def export(
    event_log: EventLog,
    selection: Slice,
    sink: JsonLinesSink | ParquetSink,
    *,
    raw: bool = False,
    batch: int = 5000,
    progress: Progress | None = None,
) -> Tally:
    """Write the slice to the sink; returns what was scanned, written and unreadable."""
    tally = Tally()
    resolved = await resolve(event_log, selection)
    async for events in read_slice(event_log, resolved, tally, batch=batch, progress=progress):
        sink.write([record(env, raw, tally) for env in events])
        tally.written += len(events)
    sink.close()
    return tally
