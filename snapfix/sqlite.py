"""A small async bridge to the standard sqlite3 module: each connection lives on its own thread.

Whole transactions run as one function on that thread, so a transaction costs a
single hop from the event loop rather than one per statement.

An *inline* connection runs on the event loop's own thread instead: for reads by key
(tens of microseconds in WAL mode, where a reader never waits for a writer) the hop to a
thread and back costs more than the read, and on one core the hop's thread switch comes
on top. Only short, bounded reads belong there; anything that may take milliseconds
(searches, writes, fsyncs) stays on a thread.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlparse

T = TypeVar("T")


def sqlite_path(url: str) -> str:
    """The file path of a ``sqlite:///relative`` or ``sqlite:////absolute`` URL (``:memory:`` allowed)."""
    parsed = urlparse(url)
    if parsed.scheme != "sqlite":
        raise ValueError(f"not a sqlite URL: {url!r}")
    path = parsed.path[1:] if parsed.path.startswith("/") else parsed.path
    if not path:
        raise ValueError(f"sqlite URL without a path: {url!r}")
    return path


class SqliteConnection:
    """One sqlite3 connection and the one thread that may use it."""

    def __init__(self, path: str, *, synchronous: str = "NORMAL", name: str = "sqlite", inline: bool = False) -> None:
        self._path = path
        self._synchronous = synchronous
        self._inline = inline
        self._executor = None if inline else ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._conn: sqlite3.Connection | None = None

    def _open(self) -> sqlite3.Connection:
        if self._path != ":memory:":
            Path(self._path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False, timeout=30.0)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self._synchronous}")
        # inline, a wait blocks the event loop: bounded short (WAL readers wait only in rare recoveries)
        conn.execute(f"PRAGMA busy_timeout={1000 if self._inline else 30000}")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(connection)`` on the connection's thread."""

        def call() -> T:
            if self._conn is None:
                self._conn = self._open()
            return fn(self._conn)

        if self._executor is None:
            return call()
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    async def close(self) -> None:
        def shut() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        if self._executor is None:
            shut()
            return
        await asyncio.get_running_loop().run_in_executor(self._executor, shut)
        self._executor.shutdown(wait=True)


def transaction(conn: sqlite3.Connection, body: Callable[[sqlite3.Connection], T]) -> T:
    """Run ``body`` inside BEGIN IMMEDIATE ... COMMIT, rolling back on any error."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = body(conn)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:  # a failed COMMIT (disk full, I/O error) leaves the transaction open
            conn.execute("ROLLBACK")
        raise
    return result
