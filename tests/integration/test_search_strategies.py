"""The SQLite store's two plans for a search term give the same pages.

A rare term drives the query (its holders, then sorted); a frequent one is checked row by
row while the sort index is walked (``frequent_term_rows``). Which plan runs must never
change an answer: the same seeded city is browsed, page after page to the end, with every
term counted as frequent and with none counted as frequent, and the two must agree on
every page, including the cursors.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from events.sqlite_log import SqliteEventLog
from ops.seed import Plan, write
from projectors.catalog import ALL
from projectors.runner import ProjectionRunner
from projectors.sqlite_views import SqliteViewStore
from query_api.browse import Browse
from tests.contract.backends import sqlite_url

QUERIES = [
    {"q": "pothole"},
    {"q": "po"},
    {"q": "deep pothole"},
    {"q": "broken st"},
    {"q": "street", "sort": "oldest"},
    {"q": "st", "sort": "upvotes"},
    {"q": "garbage", "status": "reported"},
    {"q": "water", "category": "water-leak", "sort": "updated"},
    {"q": "no-such-word-anywhere"},
]


@asynccontextmanager
async def walk_and_gather(tmp_path: Path, issues: int) -> AsyncIterator[tuple[SqliteViewStore, SqliteViewStore]]:
    """The same seeded city in two stores: every term frequent (the walk), and none (the gather)."""
    log = SqliteEventLog(sqlite_url(tmp_path, "events"))
    await log.open()
    await write(log, Plan(issues=issues, users=40), "hash")
    walk = SqliteViewStore(sqlite_url(tmp_path, "walk"), frequent_term_rows=1)
    gather = SqliteViewStore(sqlite_url(tmp_path, "gather"), frequent_term_rows=10**9)
    for store in (walk, gather):
        runner = ProjectionRunner("main", ALL, log, store, batch_size=2000)
        await runner.setup()
        await runner.catch_up()
    yield walk, gather
    for store in (walk, gather):
        await store.close()
    await log.close()


@pytest.fixture
async def stores(tmp_path: Path) -> AsyncIterator[tuple[SqliteViewStore, SqliteViewStore]]:
    async with walk_and_gather(tmp_path, 300) as both:
        yield both


async def all_pages(store: SqliteViewStore, params: dict[str, str]) -> list[tuple[list[str], str | None]]:
    pages: list[tuple[list[str], str | None]] = []
    cursor: str | None = None
    while True:
        items, cursor = await Browse(**params, cursor=cursor, limit=7).fetch(store)  # type: ignore[arg-type]
        pages.append(([item["id"] for item in items], cursor))
        if cursor is None:
            return pages


@pytest.mark.parametrize("params", QUERIES, ids=[" ".join(f"{k}={v}" for k, v in q.items()) for q in QUERIES])
async def test_both_plans_give_the_same_pages(
    stores: tuple[SqliteViewStore, SqliteViewStore], params: dict[str, str]
) -> None:
    walk, gather = stores
    walked, gathered = await all_pages(walk, params), await all_pages(gather, params)
    assert walked == gathered
    ids = [i for page, _ in walked for i in page]
    assert len(ids) == len(set(ids))


async def test_common_words_do_match_many_issues(stores: tuple[SqliteViewStore, SqliteViewStore]) -> None:
    """The comparison above is not between empty answers: the seeded city holds the words."""
    walk, _ = stores
    pages = await all_pages(walk, {"q": "po"})
    assert sum(len(page) for page, _ in pages) > 20
