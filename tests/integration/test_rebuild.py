"""Zero-downtime rebuilds: browse traffic during a rebuild sees no error and no gap, on SQLite and MongoDB views.

The MongoDB runs use FerretDB on PostgreSQL (``ops/engines.sh``); on its SQLite backend the
live projector could not keep up with the writes, so the test stayed SQLite-only until then.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from events.envelope import Envelope, Position
from events.sqlite_log import SqliteEventLog
from ops.rebuild import rebuild
from projectors.catalog import BY_NAME
from projectors.ports import Generations, Put, ViewStore, at_generation, builder_name
from snapfix.bootstrap import MAIN_PROJECTOR, open_view_store
from snapfix.settings import Settings
from tests.conftest import embedded_settings
from tests.contract.backends import require_engine
from tests.contract.test_view_store import mongo_database
from tests.helpers import fresh, report, sign_up

VIEW_STORES = ["sqlite", pytest.param("mongodb", marks=pytest.mark.engines)]


@pytest.fixture
async def settings(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Settings]:
    """The embedded deployment, with its views in SQLite (default) or in a fresh MongoDB (FerretDB) database."""
    if getattr(request, "param", "sqlite") == "mongodb":
        require_engine("mongodb")
        async with mongo_database() as url:
            yield embedded_settings(tmp_path, view_store=url)
        return
    yield embedded_settings(tmp_path)


async def browse_all(http: httpx.AsyncClient, **headers: str) -> set[str]:
    """Every issue id, following the cursor page by page; any non-200 answer fails the test."""
    seen: set[str] = set()
    cursor = None
    while True:
        params = {"limit": "7", **({"cursor": cursor} if cursor else {})}
        page = await http.get("/v1/issues", params=params, headers=headers)
        assert page.status_code == 200, page.text
        body = page.json()
        seen |= {item["id"] for item in body["items"]}
        cursor = body["next_cursor"]
        if cursor is None:
            return seen


async def operator(settings: Settings) -> tuple[SqliteEventLog, ViewStore]:
    """The log and views as a separate `snapfix rebuild` process opens them."""
    log = SqliteEventLog(settings.event_log)
    await log.open()
    return log, await open_view_store(settings)


class TestRebuild:
    @pytest.mark.parametrize("settings", VIEW_STORES, indirect=True)
    async def test_browsing_during_a_rebuild_sees_every_issue_and_no_error(
        self, client: httpx.AsyncClient, settings: Settings
    ) -> None:
        """Reads and writes go on while the summary is rebuilt and swapped; nothing is missing before or after."""
        ada = await sign_up(client)
        answers = [await report(client, ada, title=f"Issue number {i}") for i in range(25)]
        created = {a["id"] for a in answers}
        latest = answers[-1]["position"]
        log, views = await operator(settings)
        done = asyncio.Event()
        rounds = 0

        async def browse() -> None:
            nonlocal rounds
            while not done.is_set():
                known, token = set(created), latest  # what was written before this round
                seen = await browse_all(client, **fresh(token))
                assert known <= seen
                rounds += 1

        async def write() -> None:
            nonlocal latest
            while not done.is_set():
                answer = await report(client, ada, title="Reported during the rebuild")
                created.add(answer["id"])
                latest = answer["position"]
                await asyncio.sleep(0.01)

        async def operate() -> None:
            try:
                await rebuild(BY_NAME["issue_summary"], log, views, leader=MAIN_PROJECTOR, grace_s=0.2, batch_size=5)
            finally:
                done.set()

        await asyncio.gather(browse(), write(), operate())
        last = await report(client, ada, title="After the rebuild")
        assert created | {last["id"]} <= await browse_all(client, **fresh(last["position"]))
        assert rounds > 0
        assert len(created) > 25, "no write landed while the rebuild ran"
        assert (await views.generations("issue_summary")).live == 1
        assert (await views.generations("issue_summary")).retired is None
        await views.close()
        await log.close()

    @pytest.mark.parametrize("settings", VIEW_STORES, indirect=True)
    async def test_a_crashed_rebuild_resumes_from_its_checkpoint(
        self, client: httpx.AsyncClient, settings: Settings
    ) -> None:
        """A rebuild that stopped mid-way continues its generation from where its builder committed."""
        ada = await sign_up(client)
        for i in range(5):
            await report(client, ada, title=f"Issue number {i}")
        log, views = await operator(settings)
        await views.setup([BY_NAME["issue_detail"].collection])
        generation = await views.begin_generation(BY_NAME["issue_detail"].collection)
        marker = {"id": "marker", "version": 1}
        await views.commit(
            builder_name("issue_detail", generation), [Put(at_generation("issue_detail", 1), marker)], {0: 3}
        )
        result = await rebuild(BY_NAME["issue_detail"], log, views, leader=MAIN_PROJECTOR, grace_s=0)
        assert (result.generation, result.resumed, result.dropped) == (generation, True, True)
        assert result.events == (await log.head())[0] - 3
        assert await views.get("issue_detail", "marker") == marker  # built on, not started again
        assert await views.generations("issue_detail") == Generations(
            live=1, swapped_at=(await views.generations("issue_detail")).swapped_at
        )
        await views.close()
        await log.close()


class NeverIdle:
    """The log as a builder sees it under steady writes: whenever it has caught up, one more event lands."""

    def __init__(self, log: SqliteEventLog, write_one: Callable[[], Awaitable[None]], most: int) -> None:
        self._log = log
        self._write_one = write_one
        self.left = most

    async def read(self, after: dict[int, int], limit: int) -> list[Envelope]:
        batch = await self._log.read(after, limit)
        if not batch and self.left:
            self.left -= 1
            await self._write_one()
            batch = await self._log.read(after, limit)
        return batch

    def __getattr__(self, name: str) -> Any:
        return getattr(self._log, name)


class TestSteadyWrites:
    async def test_a_rebuild_that_never_reads_an_empty_batch_swaps_once_level_with_the_leader(
        self, app: FastAPI, client: httpx.AsyncClient, settings: Settings
    ) -> None:
        """Level with the live projector is enough: waiting for an empty read could wait for ever."""
        ada = await sign_up(client)
        for i in range(3):
            await report(client, ada, title=f"Issue number {i}")
        log, views = await operator(settings)

        async def write_one() -> None:  # a citizen reports, and the live projector applies it at once
            position = (await report(client, ada, title="One more"))["position"]
            assert await app.state.container.runner.wait_until(*_position(position), 10)

        busy = NeverIdle(log, write_one, most=40)
        result = await rebuild(BY_NAME["issue_summary"], busy, views, leader=MAIN_PROJECTOR, grace_s=0)  # type: ignore[arg-type]
        assert result.generation == 1
        assert busy.left >= 38, f"the rebuild waited for {40 - busy.left} writes before it swapped"
        await views.close()
        await log.close()


def _position(token: str) -> tuple[int, int]:
    position = Position.from_token(token)
    return position.partition, position.offset
