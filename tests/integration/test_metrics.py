"""Prometheus metrics on the one-process app: commands, appended events, projector progress, dead letters, lag."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
from fastapi import FastAPI
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from events.envelope import Envelope
from events.sqlite_log import SqliteEventLog
from projectors.catalog import ALL
from projectors.runner import ProjectionRunner
from projectors.sqlite_views import SqliteViewStore
from snapfix.bootstrap import MAIN_PROJECTOR
from tests.helpers import PASSWORD, fresh, report, sign_up

TIMEOUT_S = 10.0  # a bound on waiting for the projector, not a measured duration


async def scrape(http: httpx.AsyncClient) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample ``/metrics`` serves, keyed by name and labels."""
    response = await http.get("/metrics")
    assert response.status_code == 200
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def poison(aggregate_id: str) -> Envelope:
    return Envelope(
        event_type="IssueTeleported",  # no such event type: the fold cannot decode it
        schema_version=1,
        aggregate_type="issue",
        aggregate_id=aggregate_id,
        aggregate_version=1,
        payload={"to": "moon"},
    )


class TestMetricsEndpoint:
    async def test_a_reported_issue_counts_its_command_its_event_and_the_projector_that_folded_it(
        self, client: httpx.AsyncClient
    ) -> None:
        """A report through the API moves the command, appended-event and projector counters on /metrics."""
        citizen = await sign_up(client)
        before = await scrape(client)

        issue = await report(client, citizen)
        shown = await client.get(f"/v1/issues/{issue['id']}", headers=fresh(issue["position"]))
        assert shown.status_code == 200
        after = await scrape(client)

        def moved(name: str, **labels: str) -> float:
            return value(after, name, **labels) - value(before, name, **labels)

        assert moved("snapfix_events_appended_total", event_type="IssueReported") == 1
        assert moved("snapfix_commands_total", command="ReportIssue", outcome="ok") == 1
        assert moved("snapfix_projector_events_total", projector=MAIN_PROJECTOR) >= 1
        assert moved("snapfix_projector_batch_duration_seconds_count", projector=MAIN_PROJECTOR) >= 1

    async def test_a_refused_command_is_counted_as_refused(self, client: httpx.AsyncClient) -> None:
        """Registering an email twice counts one RegisterUser as refused, and appends nothing for it."""
        body = {"email": f"twice-{uuid.uuid4().hex[:8]}@example.org", "password": PASSWORD, "display_name": "Bo"}
        assert (await client.post("/v1/users", json=body)).status_code == 201
        before = await scrape(client)

        assert (await client.post("/v1/users", json=body)).status_code == 409
        after = await scrape(client)

        refused = ("snapfix_commands_total", frozenset({"command": "RegisterUser", "outcome": "refused"}.items()))
        appended = ("snapfix_events_appended_total", frozenset({"event_type": "UserRegistered"}.items()))
        assert after[refused] - before.get(refused, 0.0) == 1
        assert after[appended] == before[appended]

    async def test_a_poison_event_increments_the_dead_letter_counter(
        self, app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        """The live projector parks an undecodable event and /metrics counts one more dead letter for it."""
        container = app.state.container
        before = await scrape(client)

        aggregate_id = f"poison-{uuid.uuid4().hex[:8]}"
        [recorded] = await container.store.append(aggregate_id, 0, [poison(aggregate_id)])
        assert recorded.position is not None
        assert await container.runner.wait_until(recorded.position.partition, recorded.position.offset, TIMEOUT_S)
        after = await scrape(client)

        name = "snapfix_dead_letters_total"
        assert value(after, name, projector=MAIN_PROJECTOR) - value(before, name, projector=MAIN_PROJECTOR) == 1


class TestProjectorLag:
    async def test_lag_gauges_count_the_events_a_full_batch_left_behind_and_fall_to_zero_at_the_head(
        self, tmp_path: Path
    ) -> None:
        """With batches of one over three events the gauge reads 2, then 1, then 0 once the runner caught up."""
        log = SqliteEventLog(f"sqlite:///{tmp_path}/events.db")
        await log.open()
        store = SqliteViewStore(f"sqlite:///{tmp_path}/views.db")
        name = f"lagging-{uuid.uuid4().hex[:6]}"
        runner = ProjectionRunner(name, ALL, log, store, batch_size=1)
        try:
            await runner.setup()
            for i in range(3):
                await log.append(f"p{i}", 0, [poison(f"p{i}")])

            seen = []
            while await runner.run_once():
                seen.append(REGISTRY.get_sample_value("snapfix_projector_lag_events", {"projector": name}))

            assert seen == [2, 1, 0]
            assert REGISTRY.get_sample_value("snapfix_projector_lag_seconds", {"projector": name}) == 0
            assert REGISTRY.get_sample_value("snapfix_dead_letters_total", {"projector": name}) == 3
        finally:
            await store.close()
            await log.close()
