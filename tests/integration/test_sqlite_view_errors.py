"""A broken embedded view store is a ViewStoreError (the API's 503), never a raw sqlite3 error (a 500)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from projectors.ports import Collection, Query, ViewStoreError
from projectors.sqlite_views import SqliteViewStore


class TestReadFailures:
    async def test_a_read_that_sqlite_refuses_becomes_a_view_store_error(self, tmp_path: Path) -> None:
        """With the table gone underneath it, get and find raise ViewStoreError with the driver error chained."""
        store = SqliteViewStore(f"sqlite:///{tmp_path}/views.db")
        await store.setup([Collection(name="things", fields={"colour": "text"})])
        with sqlite3.connect(tmp_path / "views.db") as conn:
            conn.execute("DROP TABLE v_things")
        with pytest.raises(ViewStoreError) as raised:
            await store.get("things", "t1")
        assert isinstance(raised.value.__cause__, sqlite3.Error)
        with pytest.raises(ViewStoreError):
            await store.find(Query("things"))
        await store.close()
