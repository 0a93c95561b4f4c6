"""Projector catch-up: a pre-filled SQLite log folded by ``projectors.runner.ProjectionRunner``."""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from events import types as e
from events.sqlite_log import SqliteEventLog

CATEGORIES = (("pothole", "roads"), ("streetlight", "lighting"), ("garbage", "sanitation"), ("tree", "parks"))


def _row(agg_type: str, agg_id: str, version: int, event: e.DomainEvent, at: datetime, actor: str) -> tuple:
    return (
        str(uuid.uuid4()), event.event_type(), event.schema_version, agg_type, agg_id, version,
        at.isoformat(), actor, str(uuid.uuid4()), None, orjson.dumps(e.payload_of(event)),
    )  # fmt: skip


async def prefill(path: Path, n_events: int) -> int:
    """Write about ``n_events`` realistic events straight into a fresh SQLite log; returns how many."""
    log = SqliteEventLog(f"sqlite:///{path}")
    await log.open()
    await log.close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    t = datetime(2026, 1, 1, tzinfo=UTC)
    users = [str(uuid.uuid4()) for _ in range(1000)]
    rows = [
        _row("user", u, 1, e.UserRegistered(email=f"u{i}@example.org", display_name=f"U{i}", password_hash="x"),  # noqa: S106
             t, u)
        for i, u in enumerate(users)
    ]  # fmt: skip
    i = 0
    while len(rows) < n_events:
        issue, reporter = str(uuid.uuid4()), users[i % len(users)]
        code, dept = CATEGORIES[i % len(CATEGORIES)]
        t += timedelta(seconds=1)
        events: list[e.DomainEvent] = [
            e.IssueReported(reporter_id=reporter, title=f"Issue {i}", description="Deep and wide. " * 5,
                            category=code, department=dept, lat=51.5, lon=-0.12, address=f"{i} Main Street"),
            e.IssueUpvoted(user_id=users[(i + 1) % len(users)]),
            e.IssueUpvoted(user_id=users[(i + 2) % len(users)]),
            e.IssueCommented(comment_id=str(uuid.uuid4()), author_id=users[(i + 3) % len(users)], body="Me too"),
            e.IssueStatusChanged(from_status="reported", to_status="acknowledged", note="Crew booked"),
        ]  # fmt: skip
        rows.extend(_row("issue", issue, v, ev, t, reporter) for v, ev in enumerate(events, start=1))
        i += 1
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO events (event_id, event_type, schema_version, aggregate_type, aggregate_id,"
        " aggregate_version, occurred_at, actor_id, correlation_id, causation_id, payload)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    conn.execute("COMMIT")
    conn.close()
    return len(rows)


class CountingStore:
    """Wraps a view store to count the view writes each commit carries."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.writes = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def commit(
        self, projector: str, changes: Sequence[Any], checkpoint: Mapping[int, int], *, live: Any = None
    ) -> None:
        self.writes += len(changes)
        await self._inner.commit(projector, changes, checkpoint, live=live)


async def catch_up(log_path: Path, view_store: Any, total: int, batch_size: int = 500) -> dict:
    """Fold the whole log with the production runner and wiring; events/s overall and over time."""
    import logging

    import structlog

    from projectors.catalog import ALL
    from projectors.runner import ProjectionRunner
    from snapfix.cache import CacheStats, MemoryCache, ViewCache

    # as in a served process (SNAPFIX_LOG_LEVEL=warning): no per-event debug lines on stdout
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    log = SqliteEventLog(f"sqlite:///{log_path}")
    await log.open()
    store = CountingStore(view_store)
    cache = MemoryCache()
    runner = ProjectionRunner(
        f"bench-{uuid.uuid4().hex[:6]}", ALL, log, store, cache=cache,  # type: ignore[arg-type]
        view_cache=ViewCache(cache, 300, CacheStats()), batch_size=batch_size,
    )  # fmt: skip
    await runner.setup()
    series: list[tuple[float, float]] = []
    t0 = last_t = time.perf_counter()
    last_n = 0
    while n := await runner.run_once():
        now = time.perf_counter()
        if now - last_t >= 0.5:
            series.append((now - t0, (runner.applied - last_n) / (now - last_t)))
            last_t, last_n = now, runner.applied
        del n
    elapsed = time.perf_counter() - t0
    await log.close()
    return {
        "runner": runner.name,  # the live projector a rebuild gets level with
        "events": runner.applied,
        "expected": total,
        "seconds": elapsed,
        "events_per_s": runner.applied / elapsed,
        "view_writes": store.writes,
        "writes_per_event": store.writes / max(1, runner.applied),
        "dead_lettered": runner.dead_lettered,
        "series": series,
        "batch_size": batch_size,
    }
