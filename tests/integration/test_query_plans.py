"""Every documented browse shape is answered from an index: each store is asked for its query plan.

The shapes come from the query API's own parameter handling (``Browse``), so a new
filter or sort that lacks an index fails here. A store joins by adding a ``planner``:
an async function giving the plan of a query as lines, and the words that betray a
full scan.

MongoDB: on a real MongoDB server the planner is ``explain`` and a ``COLLSCAN`` stage
fails. The project's engine is FerretDB v1 on PostgreSQL, whose ``explain`` is
PostgreSQL's plan of its own SQL over a JSONB table, with ``filterPushdown``,
``sortPushdown`` and ``limitPushdown`` flags. Stock FerretDB 1.24 pushes down no
``$and`` filter (the store's shape) and never a sort, so every browse shape was a
``Seq Scan`` of the whole table sorted in memory. SnapFix's build runs a find whose
filter translates exactly as one SQL query with its sort and limit (the ordered
pushdown of ops/engines/ferretdb/snapfix.patch), so on FerretDB the test asserts that
every shape is pushed down whole (all three flags), and that every index
MongoViewStore declares exists (``list_indexes``) with, for every shape, one leading
with a field the shape filters on or sorts by. It does not assert "no Seq Scan": on
a city of 400 issues PostgreSQL rightly prefers reading the small table to walking an
index; the plans at 5,000 and more issues are in bench/ (``bench/run --only ferretdb``).
The COLLSCAN check itself needs a real MongoDB; ``mongo_plan`` does it when
``serverInfo`` has no ``ferretdbVersion``.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pymongo import ASCENDING, DESCENDING

from events.sqlite_log import SqliteEventLog
from ops.seed import Plan, write
from projectors import geo
from projectors.catalog import ALL
from projectors.mongo_views import MongoViewStore, _index_keys, _path
from projectors.ports import Query, ViewStore
from projectors.runner import ProjectionRunner
from projectors.sqlite_views import SqliteViewStore
from query_api.browse import SUMMARY as SUMMARY_NAME
from query_api.browse import Browse, Near, geo_conditions
from tests.contract.backends import require_engine, sqlite_url

CENTRE = Near(51.5074, -0.1278, 1500)
SMALL_BOX = geo.Box(51.49, -0.15, 51.52, -0.10)
CITY_BOX = geo.Box(51.28, -0.51, 51.69, 0.33)


def shapes() -> dict[str, Query]:
    """Every documented query shape, as the query API builds it."""
    out: dict[str, Query] = {}
    sorts = ("newest", "oldest", "upvotes", "updated")
    for sort in sorts:
        out[f"sort={sort}"] = Browse(sort=sort).query()  # type: ignore[arg-type]
        for param, value in (("status", "reported"), ("category", "pothole"), ("department", "roads")):
            out[f"{param}&sort={sort}"] = Browse(**{param: value, "sort": sort}).query()  # type: ignore[arg-type]
        out[f"reporter&sort={sort}"] = Browse(reporter="someone", sort=sort).query()  # type: ignore[arg-type]
    out["status-list"] = Browse(status="reported,acknowledged,in_progress").query()
    out["created-range"] = Browse(created_after="2026-01-01T00:00:00.000000Z", created_before="2026-02-01").query()
    out["bbox-small"] = Browse(bbox=SMALL_BOX).query()
    out["bbox-city"] = Browse(bbox=CITY_BOX, sort="upvotes").query()
    out["near&sort=upvotes"] = Browse(near=CENTRE, sort="upvotes").query()
    out["q-one-word"] = Browse(q="pothole").query()
    out["q-words-and-prefix"] = Browse(q="deep pothole stat").query()
    out["q&status"] = Browse(q="broken", status="reported").query()
    out["nearest-ring"] = Query(
        SUMMARY_NAME, (*Browse().where(with_geo=False), *geo_conditions(geo.around(51.5, -0.12, 500))), limit=5000
    )  # type: ignore[misc]
    newest = out["sort=newest"]
    out["newest-after-cursor"] = Query(newest.collection, newest.where, newest.order_by, ("2026-01-01", "x"), 21)
    return {name: q for name, q in out.items() if q is not None}


@dataclass(frozen=True)
class Planner:
    explain: Callable[[ViewStore, Query], Awaitable[list[str]]]
    full_scan: Callable[[list[str]], bool]


async def sqlite_plan(store: ViewStore, query: Query) -> list[str]:
    """Run the query once with a trace on the reader connection, then EXPLAIN QUERY PLAN what it ran."""
    assert isinstance(store, SqliteViewStore)
    statements: list[str] = []
    reader = store._reader

    def trace_on(conn: sqlite3.Connection) -> None:
        conn.set_trace_callback(statements.append)

    def trace_off(conn: sqlite3.Connection) -> None:
        conn.set_trace_callback(None)

    await reader.run(trace_on)
    await store.find(query)
    await reader.run(trace_off)
    (sql,) = [s for s in statements if s.lstrip().upper().startswith("SELECT DOC") and " FROM v_issue_summary" in s]
    rows = await reader.run(lambda c: c.execute(f"EXPLAIN QUERY PLAN {sql}").fetchall())
    return [row[-1] for row in rows]


def sqlite_full_scan(plan: list[str]) -> bool:
    """A table read from end to end: SCAN without an index, or an index walk whose order is then thrown away."""
    bare = any(line.startswith("SCAN ") and " INDEX " not in line for line in plan)
    walked_then_sorted = any(line.startswith("SCAN ") for line in plan) and any("TEMP B-TREE" in line for line in plan)
    return bare or walked_then_sorted


def _stages(plan: Any) -> Iterator[str]:
    """Every ``stage`` of a MongoDB plan tree (inputStage, inputStages, queryPlan)."""
    if isinstance(plan, dict):
        if "stage" in plan:
            yield str(plan["stage"])
        for value in plan.values():
            yield from _stages(value)
    elif isinstance(plan, list):
        for item in plan:
            yield from _stages(item)


def _postgres_nodes(plan: Any) -> Iterator[str]:
    """FerretDB's explain: PostgreSQL's plan nodes, for the record."""
    if isinstance(plan, dict):
        if "Node Type" in plan:
            yield f"{plan['Node Type']} {plan.get('Relation Name', plan.get('Index Name', ''))}".strip()
        for value in plan.values():
            yield from _postgres_nodes(value)
    elif isinstance(plan, list):
        for item in plan:
            yield from _postgres_nodes(item)


async def mongo_plan(store: ViewStore, query: Query) -> list[str]:
    """The find MongoViewStore runs for the query, explained; on FerretDB, index coverage instead (see above)."""
    assert isinstance(store, MongoViewStore)
    col, mongo = await store._resolve(query.collection)
    where = store._filter(col, query.where)
    if query.after is not None:
        where = {"$and": [where, store._keyset(col, query)]}
    order = [(store._field(col, f), DESCENDING if desc else ASCENDING) for f, desc in query.order_by]
    explained = await mongo.find(where, sort=order, limit=query.limit).explain()
    if "ferretdbVersion" not in explained.get("serverInfo", {}):
        return [f"stage {stage}" for stage in _stages(explained.get("queryPlanner", {}))]

    pushed = [f"{flag}={explained.get(flag)}" for flag in ("filterPushdown", "sortPushdown", "limitPushdown")]
    lines = [f"ferretdb {node}" for node in _postgres_nodes(explained.get("queryPlanner", {}))]
    if not all(explained.get(flag) for flag in ("filterPushdown", "sortPushdown", "limitPushdown")):
        lines.append(f"NOT PUSHED DOWN whole: {', '.join(pushed)}")
    existing = {
        tuple((k, int(d)) for k, d in index["key"].items()): index["name"] async for index in await mongo.list_indexes()
    }
    for keys in _index_keys(col):
        if tuple(keys) not in existing:
            lines.append(f"MISSING declared index {keys} on {mongo.name}")
    used = {_path(cond.field) for cond in query.where} | {_path(query.order_by[0][0])}
    leading = sorted(f"index {name} leads with {keys[0][0]}" for keys, name in existing.items() if keys[0][0] in used)
    return lines + (leading or [f"NO INDEX leads with any of {sorted(used)}"])


def mongo_full_scan(plan: list[str]) -> bool:
    """A real MongoDB's COLLSCAN; on FerretDB a declared index missing, or no index a planner could start from."""
    return any(line.startswith(("stage COLLSCAN", "MISSING ", "NO INDEX ", "NOT PUSHED ")) for line in plan)


PLANNERS = {"sqlite": Planner(sqlite_plan, sqlite_full_scan), "mongodb": Planner(mongo_plan, mongo_full_scan)}


@pytest.fixture(params=["sqlite", "sqlite-frequent-terms", pytest.param("mongodb", marks=pytest.mark.engines)],
                scope="module")  # fmt: skip
def store_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def seeded(store_name: str, tmp_path: Path) -> AsyncIterator[ViewStore]:
    """A store holding a small seeded city, built by the real projector (MongoDB: a database of its own)."""
    log = SqliteEventLog(sqlite_url(tmp_path, "events"))
    await log.open()
    store: ViewStore
    if store_name == "mongodb":
        require_engine("mongodb")
        store = MongoViewStore(f"mongodb://127.0.0.1:27017/snapfix_test_plans_{uuid.uuid4().hex[:12]}")
    elif store_name == "sqlite-frequent-terms":  # every search term counts as frequent: the index-walk plan
        store = SqliteViewStore(sqlite_url(tmp_path, "views"), frequent_term_rows=1)
    else:
        store = SqliteViewStore(sqlite_url(tmp_path, "views"))
    runner = ProjectionRunner("main", ALL, log, store, batch_size=2000)
    await runner.setup()
    await write(log, Plan(issues=400, users=50), "hash")
    await runner.catch_up()
    yield store
    if isinstance(store, MongoViewStore):
        await store._client.drop_database(store._db.name)
    await store.close()
    await log.close()


async def test_no_documented_query_shape_scans_the_summary_view(seeded: ViewStore, store_name: str) -> None:
    """The store's own plan for every shape reads an index, never the whole summary view."""
    planner = PLANNERS[store_name.split("-")[0]]
    scans = {}
    for name, query in sorted(shapes().items()):
        plan = await planner.explain(seeded, query)
        if planner.full_scan(plan):
            scans[name] = plan
    assert scans == {}
