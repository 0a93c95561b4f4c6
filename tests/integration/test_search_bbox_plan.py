"""A search term in a box: the SQLite store's index-first walk gives the pages every other plan gives.

With common words and a box, the store walks the geo cell's sort index, checks each
term on the index and its postings alone, and reads a row (for lat/lon) only when the
terms match (``_index_first``). It must never change an answer: the same seeded city is
browsed page after page to the end with every term counted as frequent (the walk) and
with none (the gather), and both must agree on every page and cursor, and with the
answer worked out in memory from every summary. Boxes are centred on geo-cell corners,
so each spans several cells (the query API asks one query per cell) or, when wide,
lists the cells in one ``in`` condition (the store walks each cell and merges the walks).
The walk also runs on a time budget, and with a budget so small that it always gives up
and gathers.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from projectors import geo, search, sqlite_views
from projectors.ports import Doc, Query
from projectors.sqlite_views import SqliteViewStore
from query_api.browse import ORDER, SUMMARY, Browse
from tests.integration.test_search_strategies import walk_and_gather

WORDS = ["pothole", "st", "deep pot", "garbage", "no-such-word-anywhere"]
SORTS = ["newest", "oldest", "upvotes"]
PAGE = 7
Stores = tuple[SqliteViewStore, SqliteViewStore]


@pytest.fixture
async def stores(tmp_path: Path) -> AsyncIterator[Stores]:
    async with walk_and_gather(tmp_path, 400) as both:
        yield both


def corner_boxes(docs: list[Doc]) -> list[geo.Box]:
    """Boxes of 0.5, 2, 5 and 12 km centred on the south-west corner of the busiest 5-character cell."""
    busiest = max({d["gh5"] for d in docs}, key=lambda cell: sum(d["gh5"] == cell for d in docs))
    lat, lon = next((d["lat"], d["lon"]) for d in docs if d["gh5"] == busiest)
    dlat, dlon = geo.cell_size(5)
    corner_lat = -90 + math.floor((lat + 90) / dlat) * dlat
    corner_lon = -180 + math.floor((lon + 180) / dlon) * dlon
    boxes = []
    for km in (0.5, 2, 5, 12):
        half_lat, half_lon = km / 111 / 2, km / 69 / 2
        boxes.append(
            geo.Box(corner_lat - half_lat, corner_lon - half_lon, corner_lat + half_lat, corner_lon + half_lon)
        )
    boxes.append(geo.Box(corner_lat, corner_lon - dlon, corner_lat + dlat, corner_lon + dlon))  # edges on cell edges
    return boxes


def expected(docs: list[Doc], q: str, box: geo.Box, sort: str) -> list[list[str]]:
    """The pages worked out in memory: visible, holding every word, inside the box, in the sort's order."""
    hits = [d for d in docs if not d["hidden"] and search.matches(d["terms"], q) and box.holds(d["lat"], d["lon"])]
    for field, desc in reversed(ORDER[sort]):
        hits.sort(key=lambda d: d[field], reverse=desc)
    ids = [d["id"] for d in hits]
    return [ids[i : i + PAGE] for i in range(0, len(ids), PAGE)] or [[]]


async def all_pages(store: SqliteViewStore, q: str, box: geo.Box, sort: str) -> list[tuple[list[str], str | None]]:
    pages: list[tuple[list[str], str | None]] = []
    cursor: str | None = None
    while True:
        browse = Browse(q=q, bbox=box, sort=sort, cursor=cursor, limit=PAGE)  # type: ignore[arg-type]
        items, cursor = await browse.fetch(store)
        pages.append(([item["id"] for item in items], cursor))
        if cursor is None:
            return pages


@pytest.mark.parametrize("budget", ["bounded walk", "walk on a budget", "walk given up"])
async def test_a_term_in_a_box_gives_the_same_pages_by_every_plan(
    stores: Stores, budget: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if budget != "bounded walk":  # no cell is small enough to walk without the budget
        monkeypatch.setattr(sqlite_views, "RANGE_WALK_ROWS", 0)
    if budget == "walk given up":  # every walk long enough to be checked is interrupted: the gather answers
        monkeypatch.setattr(sqlite_views, "WALK_BUDGET_S", 0.0)
    walk, gather = stores
    docs = await gather.find(Query(SUMMARY, limit=10**6))
    boxes = corner_boxes(docs)
    cells = [len(geo.best_cover(box)[1]) for box in boxes]
    assert min(cells) > 1  # split into one query per cell
    assert max(cells) > 8  # one query listing the cells
    found = 0
    for box in boxes:
        for q in WORDS:
            for sort in SORTS:
                walked, gathered = await all_pages(walk, q, box, sort), await all_pages(gather, q, box, sort)
                assert walked == gathered, (q, box, sort)
                assert [page for page, _ in walked] == expected(docs, q, box, sort), (q, box, sort)
                found += sum(len(page) for page, _ in walked)
    assert found > 200  # the boxes and words do hold issues: the comparison is not between empty answers


async def test_the_walks_compared_are_the_index_first_ones(stores: Stores) -> None:
    """A common word in a box runs the index-first walk on the walk store, merged walks for a wide box."""
    walk, _ = stores
    docs = await walk.find(Query(SUMMARY, limit=10**6))
    statements: list[str] = []

    def trace(conn: sqlite3.Connection, on: bool) -> None:
        conn.set_trace_callback(statements.append if on else None)

    await walk._reader.run(lambda c: trace(c, True))
    await all_pages(walk, "pothole", corner_boxes(docs)[2], "newest")
    assert any(" JOIN (SELECT rowid AS _hit" in s and " UNION ALL " not in s for s in statements)
    await all_pages(walk, "pothole", corner_boxes(docs)[3], "newest")  # more cells than the query API splits
    await walk._reader.run(lambda c: trace(c, False))
    assert any(" JOIN (SELECT rowid AS _hit" in s and " UNION ALL " in s for s in statements)
