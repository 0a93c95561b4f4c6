"""The operator and analyst commands on the embedded deployment: export, replay, status, dead letters."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest
import structlog
from typer.testing import CliRunner

from events.envelope import Envelope
from events.sqlite_log import SqliteEventLog
from events.upcasting import UPCASTERS
from ops.cli import app
from projectors.catalog import ALL
from projectors.runner import ProjectionRunner
from projectors.sqlite_views import SqliteViewStore
from snapfix import ops_routes
from snapfix.app import Role, create_app
from snapfix.bootstrap import MAIN_PROJECTOR, open_log_reader
from snapfix.settings import Settings

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
REPORT = {
    "reporter_id": "u1",
    "title": "Hole",
    "description": "Deep",
    "category": "pothole",
    "department": "roads",
    "lat": 1.0,
    "lon": 2.0,
}


def event(aggregate: str, version: int, kind: str, payload: dict, minutes: int, schema: int = 1) -> Envelope:
    return Envelope(
        event_type=kind,
        schema_version=schema,
        aggregate_type="catalogue" if kind == "CategoryDefined" else "issue",
        aggregate_id=aggregate,
        aggregate_version=version,
        payload=payload,
        occurred_at=T0 + timedelta(minutes=minutes),
    )


HISTORY = [
    event("a", 1, "IssueReported", REPORT, 0),
    event("cat", 1, "CategoryDefined", {"code": "c", "name": "C", "description": "d", "department": "roads"}, 1),
    event("a", 2, "IssueStatusChanged", {"from_status": "reported", "to_status": "acknowledged"}, 10),
    event("b", 1, "IssueReported", {k: v for k, v in REPORT.items() if k != "department"}, 20, schema=0),  # no upcaster
    event("a", 3, "IssueStatusChanged", {"from_status": "acknowledged", "to_status": "in_progress"}, 30),
    event("d", 1, "IssueTeleported", {"to": "moon"}, 40),  # poison: no such event type
]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A log and views holding HISTORY, projected by the live projector; the CLI's environment."""
    settings = {
        "SNAPFIX_EVENT_LOG": f"sqlite:///{tmp_path}/events.db",
        "SNAPFIX_VIEW_STORE": f"sqlite:///{tmp_path}/views.db",
        "SNAPFIX_ENVIRONMENT": "test",
    }

    async def fill() -> None:
        log = SqliteEventLog(settings["SNAPFIX_EVENT_LOG"])
        await log.open()
        for e in HISTORY:
            await log.append(e.aggregate_id, e.aggregate_version - 1, [e])
        views = SqliteViewStore(settings["SNAPFIX_VIEW_STORE"])
        runner = ProjectionRunner(MAIN_PROJECTOR, ALL, log, views)
        await runner.setup()
        await runner.catch_up()
        await views.close()
        await log.close()

    asyncio.run(fill())
    return settings


def cli(env: dict[str, str], *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env=env)
    structlog.reset_defaults()  # the command pointed its logs at the runner's stderr, closed now
    return result.exit_code, result.stdout


async def ops_route(env: dict[str, str], role: Role) -> dict[str, Any]:
    """GET /ops/status from an app of that role, built from the CLI's environment."""
    values = {k.removeprefix("SNAPFIX_").lower(): v for k, v in env.items() if k.startswith("SNAPFIX_")}
    app = create_app(Settings(**values), role)  # type: ignore[arg-type]
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://snapfix.test") as http:
            response = await http.get("/ops/status")
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


class TestExport:
    def test_the_whole_log_comes_out_as_json_lines_upcast(self, env: dict[str, str]) -> None:
        """Every event in log order with its position; the v1 category comes out as v2; unreadable ones as stored."""
        code, out = cli(env, "export", "--no-progress")
        records = lines(out)
        assert code == 0
        assert [r["offset"] for r in records] == [1, 2, 3, 4, 5, 6]
        category = records[1]
        assert (category["schema_version"], category["payload"]["attributes"]) == (2, [])
        assert "unreadable" in records[5]

    def test_raw_keeps_the_stored_form(self, env: dict[str, str]) -> None:
        """--raw writes the stored schema version and payload."""
        category = lines(cli(env, "export", "--raw", "--type", "CategoryDefined", "--no-progress")[1])
        assert [(c["schema_version"], "attributes" in c["payload"]) for c in category] == [(1, False)]

    def test_filters_by_type_aggregate_position_and_time(self, env: dict[str, str]) -> None:
        """Type, aggregate, position range and time range select exactly the matching events."""
        by_type = lines(cli(env, "export", "--type", "IssueStatusChanged", "--no-progress")[1])
        assert [r["offset"] for r in by_type] == [3, 5]
        by_aggregate = lines(cli(env, "export", "--aggregate", "a", "--no-progress")[1])
        assert [r["aggregate_version"] for r in by_aggregate] == [1, 2, 3]
        by_position = lines(cli(env, "export", "--from-position", "0.2", "--to-position", "4", "--no-progress")[1])
        assert [r["offset"] for r in by_position] == [2, 3, 4]
        since = (T0 + timedelta(minutes=10)).isoformat()
        until = (T0 + timedelta(minutes=30)).isoformat()
        by_time = lines(cli(env, "export", "--since", since, "--until", until, "--no-progress")[1])
        assert [r["offset"] for r in by_time] == [3, 4, 5]

    def test_parquet_reads_back_with_pyarrow(self, env: dict[str, str], tmp_path: Path) -> None:
        """A Parquet file has one row per event and the payload as JSON text."""
        target = tmp_path / "events.parquet"
        assert cli(env, "export", "-o", str(target), "--no-progress")[0] == 0
        table = pq.read_table(target)
        assert table.num_rows == 6
        assert json.loads(table.column("payload")[0].as_py())["title"] == "Hole"
        assert str(table.schema.field("occurred_at").type) == "timestamp[us, tz=UTC]"


class TestTimeTravel:
    def test_replay_folds_an_issue_as_it_was_at_a_time(self, env: dict[str, str]) -> None:
        """--until between two status changes shows the status of that moment, through the detail fold."""
        code, out = cli(env, "replay", "--aggregate", "a", "--until", (T0 + timedelta(minutes=15)).isoformat())
        assert code == 0
        state = json.loads(out)
        assert (state["status"], state["version"]) == ("acknowledged", 2)
        assert json.loads(cli(env, "replay", "--aggregate", "a")[1])["status"] == "in_progress"

    def test_before_it_existed_there_is_nothing(self, env: dict[str, str]) -> None:
        """An aggregate folded before its first event is refused with exit code 1."""
        assert cli(env, "replay", "--aggregate", "a", "--until", (T0 - timedelta(days=1)).isoformat())[0] == 1


class TestDeadLettersAndStatus:
    def test_poison_events_are_listed_retried_after_a_fix_and_skipped(
        self, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Two poison events are parked; a retry fails until a fix, then applies; a skip marks the other handled."""
        letters = json.loads(cli(env, "dlq", "list")[1])
        assert [(d["position"], d["envelope"]["aggregate_id"]) for d in letters] == [(4, "b"), (6, "d")]
        assert "no upcaster for IssueReported v0" in letters[0]["reason"]
        assert "IssueTeleported" in letters[1]["reason"]
        poisoned, unknown = letters[0]["id"], letters[1]["id"]
        code, out = cli(env, "dlq", "retry", poisoned)
        assert (code, json.loads(out)["status"]) == (1, "open")  # not fixed yet: it stays open

        def v0_to_v1(payload: dict) -> dict:
            return {**payload, "department": "roads"}

        monkeypatch.setitem(UPCASTERS, ("IssueReported", 0), v0_to_v1)  # the fix, deployed
        code, out = cli(env, "dlq", "retry", poisoned)
        assert (code, json.loads(out)["status"]) == (0, "retried")
        code, out = cli(env, "dlq", "skip", unknown, "--note", "a test event")
        assert (code, json.loads(out)["status"]) == (0, "skipped")
        assert json.loads(cli(env, "dlq", "list")[1]) == []
        assert len(json.loads(cli(env, "dlq", "list", "--status", "all")[1])) == 2

        async def summary() -> dict | None:
            views = SqliteViewStore(env["SNAPFIX_VIEW_STORE"])
            await views.setup([p.collection for p in ALL])
            doc = await views.get("issue_summary", "b")
            await views.close()
            return doc

        assert (asyncio.run(summary()) or {}).get("department") == "roads"

    def test_status_shows_position_lag_generations_and_last_error(self, env: dict[str, str]) -> None:
        """The live projector is at the head with its dead letters counted; JSON as the ops route serves it."""
        code, out = cli(env, "status", "--json")
        assert code == 0
        (main,) = json.loads(out)
        assert (main["projector"], main["position"], main["lag_events"], main["lag_seconds"]) == (
            "main",
            {"0": 6},
            0,
            0.0,
        )
        assert main["generations"]["issue_summary"] == 0
        assert main["dead_letters_open"] == 2
        assert "IssueTeleported" in main["last_error"]
        assert "main: position" in cli(env, "status")[1]

    def test_a_query_api_serves_the_same_status(self, env: dict[str, str]) -> None:
        """GET /ops/status on a query API (no log, no runner of its own) answers what `snapfix status --json` does."""
        (main,) = json.loads(cli(env, "status", "--json")[1])
        (served,) = asyncio.run(ops_route(env, "query"))["projectors"]
        assert served == main

    def test_a_query_api_opens_one_log_reader_for_many_status_requests(
        self, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The route needs no credentials: 20 requests at once, and again within a second, open one reader."""
        opened: list[object] = []

        async def counted(settings: Settings) -> Any:
            reader = await open_log_reader(settings)
            opened.append(reader)
            return reader

        monkeypatch.setattr(ops_routes, "open_log_reader", counted)
        values = {k.removeprefix("SNAPFIX_").lower(): v for k, v in env.items() if k.startswith("SNAPFIX_")}
        app = create_app(Settings(**values), "query")  # type: ignore[arg-type]

        async def burst() -> list[httpx.Response]:
            async with app.router.lifespan_context(app):
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url="http://snapfix.test") as http:
                    first = await asyncio.gather(*(http.get("/ops/status") for _ in range(20)))
                    return [*first, await http.get("/ops/status")]

        responses = asyncio.run(burst())
        assert {r.status_code for r in responses} == {200}
        assert len({r.content for r in responses}) == 1
        assert len(opened) == 1
