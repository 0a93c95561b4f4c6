"""Read your own creation: following the `Location` of a 201 finds the resource, without a consistency token.

The projector is slowed down here so the views trail the log by a known amount: a read of an
id the log holds waits for them (within SNAPFIX_CONSISTENCY_WAIT_MS); an id nobody created is a
404 at once.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from snapfix.app import create_app
from tests.conftest import embedded_settings
from tests.helpers import PASSWORD, auth, sign_in

LAG_S = 0.3


@pytest.fixture
async def lagging_app(tmp_path: Path) -> AsyncIterator[FastAPI]:
    """The one-process app whose projector commits each batch LAG_S late; reads wait up to 30 s."""
    application = create_app(embedded_settings(tmp_path, consistency_wait_ms=30_000), "all")
    async with application.router.lifespan_context(application):
        runner = application.state.container.runner
        apply = runner.apply

        async def late(batch: list[Any]) -> None:
            await asyncio.sleep(LAG_S)
            await apply(batch)

        runner.apply = late
        yield application


@pytest.fixture
async def http(lagging_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=lagging_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://snapfix.test", timeout=10) as client:
        yield client


async def register(http: httpx.AsyncClient) -> dict[str, str]:
    email = f"ada-{uuid.uuid4().hex[:8]}@example.org"
    created = await http.post("/v1/users", json={"email": email, "password": PASSWORD, "display_name": "Ada"})
    assert created.status_code == 201, created.text
    return {**await sign_in(http, email), "user_id": created.json()["id"]}


REPORT = {
    "title": "Pothole on Main Street",
    "description": "Deep enough to lose a wheel in.",
    "category": "pothole",
    "location": {"lat": 51.5074, "lon": -0.1278},
}


class TestReadYourCreation:
    async def test_the_location_of_a_new_issue_answers_200_before_the_views_caught_up(
        self, http: httpx.AsyncClient
    ) -> None:
        """Ten reports, each followed at once to its Location and its history: every read is a 200."""
        ada = await register(http)
        for _ in range(10):
            created = await http.post("/v1/issues", json=REPORT, headers=auth(ada))
            assert created.status_code == 201
            location = created.headers["Location"]
            shown = await http.get(location)
            assert shown.status_code == 200, shown.text
            assert shown.json()["id"] == created.json()["id"]
            history = await http.get(f"{location}/history")
            assert history.status_code == 200
            assert [item["event_type"] for item in history.json()["items"]] == ["IssueReported"]

    async def test_your_profile_right_after_registering_answers_200(self, http: httpx.AsyncClient) -> None:
        """Register, sign in and read /v1/users/me at once: the profile is waited for, not a 404."""
        ada = await register(http)
        me = await http.get("/v1/users/me", headers=auth(ada))
        assert me.status_code == 200, me.text
        assert me.json()["id"] == ada["user_id"]

    async def test_an_id_nobody_created_is_a_404_without_waiting(self, http: httpx.AsyncClient) -> None:
        """With a 30 s consistency bound, an unknown issue still answers 404 well within the client's 10 s."""
        started = time.monotonic()
        unknown = await http.get(f"/v1/issues/{uuid.uuid4()}")
        history = await http.get(f"/v1/issues/{uuid.uuid4()}/history")
        assert (unknown.status_code, history.status_code) == (404, 404)
        assert time.monotonic() - started < 5  # a wait would have taken the whole 30 s bound
