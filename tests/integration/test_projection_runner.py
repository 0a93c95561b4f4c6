"""The projector worker on the embedded log and store: replay equals live, crashes converge, poison is parked."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from events.envelope import Envelope
from events.sqlite_log import SqliteEventLog
from projectors.catalog import ALL, BY_NAME
from projectors.ports import Change, Doc, Query, ViewStore
from projectors.runner import DEAD_LETTERS, ProjectionRunner
from projectors.sqlite_views import SqliteViewStore
from tests.strategies import histories


async def dump(store: ViewStore) -> dict[str, list[Doc]]:
    """Every document of every view, in id order: two stores are equal when their dumps are."""
    return {p.name: await store.find(Query(p.name, order_by=(("id", False),), limit=100_000)) for p in ALL}


async def write(log: SqliteEventLog, history: list[Envelope]) -> None:
    for aggregate_id, group in itertools.groupby(history, key=lambda e: e.aggregate_id):
        batch = list(group)
        await log.append(aggregate_id, batch[0].aggregate_version - 1, batch)


async def runner_on(folder: Path, log: SqliteEventLog, batch_size: int, name: str = "views") -> ProjectionRunner:
    store = SqliteViewStore(f"sqlite:///{folder}/{name}-{uuid.uuid4().hex[:6]}.db")
    runner = ProjectionRunner("main", ALL, log, store, batch_size=batch_size)
    await runner.setup()
    return runner


class CrashingStore(SqliteViewStore):
    """A view store whose process 'dies' (raises) on the n-th commit, before writing anything."""

    def __init__(self, url: str, crash_on: int) -> None:
        super().__init__(url)
        self.commits = 0
        self.crash_on = crash_on

    async def commit(
        self,
        projector: str,
        changes: Sequence[Change],
        checkpoint: Mapping[int, int],
        *,
        live: Mapping[str, int] | None = None,
    ) -> None:
        self.commits += 1
        if self.commits == self.crash_on:
            raise RuntimeError("killed mid-batch")
        await super().commit(projector, changes, checkpoint, live=live)


class TestReplay:
    @given(histories(max_steps=30))
    @settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    async def test_replaying_the_log_into_empty_views_equals_the_live_views(
        self, tmp_path: Path, history: list[Envelope]
    ) -> None:
        """Live (event by event, as commands arrive) and a full replay in big batches give identical views."""
        folder = tmp_path / uuid.uuid4().hex
        log = SqliteEventLog(f"sqlite:///{folder}/events.db")
        await log.open()
        live = await runner_on(folder, log, batch_size=1)
        for env in history:
            await log.append(env.aggregate_id, env.aggregate_version - 1, [env])
            await live.catch_up()
        replay = await runner_on(folder, log, batch_size=1000, name="replay")
        await replay.catch_up()
        assert await dump(live._store) == await dump(replay._store)
        await log.close()


class TestCrashes:
    @given(histories(max_steps=40))
    @settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    async def test_a_worker_killed_mid_batch_converges_after_restart(
        self, tmp_path: Path, history: list[Envelope]
    ) -> None:
        """A commit that dies loses the whole batch; the restarted worker redoes it and ends where a clean one does."""
        folder = tmp_path / uuid.uuid4().hex
        log = SqliteEventLog(f"sqlite:///{folder}/events.db")
        await log.open()
        await write(log, history)
        url = f"sqlite:///{folder}/crashy.db"
        crashy = CrashingStore(url, crash_on=2)
        first = ProjectionRunner("main", ALL, log, crashy, batch_size=3)  # >= 5 events: at least two batches
        await first.setup()
        crashed = False
        try:
            await first.catch_up()
        except RuntimeError:
            crashed = True
        assert crashed
        assert first.checkpoint == {0: 3}  # the first batch committed, the second died with its changes
        restarted = ProjectionRunner("main", ALL, log, SqliteViewStore(url), batch_size=5)
        await restarted.setup()
        await restarted.catch_up()
        clean = await runner_on(folder, log, batch_size=1000, name="clean")
        await clean.catch_up()
        assert await dump(restarted._store) == await dump(clean._store)
        await log.close()


class TestPoisonEvents:
    async def test_a_poison_event_is_dead_lettered_and_projection_goes_on(self, tmp_path: Path) -> None:
        """An unknown type and a malformed payload are parked with reasons; the good events around them apply."""
        log = SqliteEventLog(f"sqlite:///{tmp_path}/events.db")
        await log.open()

        def event(aggregate: str, kind: str, payload: dict) -> Envelope:
            return Envelope(
                event_type=kind,
                schema_version=1,
                aggregate_type="issue",
                aggregate_id=aggregate,
                aggregate_version=1,
                payload=payload,
            )

        good = {
            "reporter_id": "r",
            "title": "Hole",
            "description": "d",
            "category": "pothole",
            "department": "roads",
            "lat": 1.0,
            "lon": 2.0,
        }
        await log.append("a", 0, [event("a", "IssueReported", good)])
        await log.append("b", 0, [event("b", "IssueTeleported", {"x": 1})])
        await log.append("c", 0, [event("c", "IssueReported", {"title": 3})])
        await log.append("d", 0, [event("d", "IssueReported", good)])
        runner = await runner_on(tmp_path, log, batch_size=100)
        assert await runner.catch_up() == 4
        store = runner._store
        assert await store.get("issue_summary", "a") is not None
        assert await store.get("issue_summary", "d") is not None
        dead = await store.find(Query(DEAD_LETTERS.name, order_by=(("position", False), ("id", False))))
        assert [(d["position"], d["envelope"]["aggregate_id"]) for d in dead] == [(2, "b"), (3, "c")]
        assert "IssueTeleported" in dead[0]["reason"]
        assert "title" in dead[1]["reason"]
        assert runner.checkpoint == {0: 4}
        assert runner.dead_lettered == 2
        await log.close()


class SwapWhileFolding(SqliteViewStore):
    """A store on which a rebuild's swap lands after the live projector's batch read its views, before its commit."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.swap_next: Callable[[], Awaitable[bool]] | None = None
        self.swapped = False

    async def commit(
        self,
        projector: str,
        changes: Sequence[Change],
        checkpoint: Mapping[int, int],
        *,
        live: Mapping[str, int] | None = None,
    ) -> None:
        if self.swap_next is not None and projector == "main":
            swap, self.swap_next = self.swap_next, None
            self.swapped = await swap()
        await super().commit(projector, changes, checkpoint, live=live)


async def rebuilt_views(store: ViewStore, names: Sequence[str]) -> dict[str, list[Doc]]:
    """The documents the plain names read (the live generations), in id order."""
    return {name: await store.find(Query(name, order_by=(("id", False),), limit=100_000)) for name in names}


class TestSwapDuringABatch:
    @given(histories(max_steps=40), st.integers(1, 6), st.integers(1, 12))
    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    async def test_a_batch_that_read_the_old_generation_is_folded_again_from_the_new_one(
        self, tmp_path: Path, history: list[Envelope], leader_at: int, builder_ahead: int
    ) -> None:
        """The swap falls between the live batch's reads and its commit, with the builder ahead of the leader.

        Committed as folded, the batch would write the old generation's documents, as they
        were before events the builder already folded, over the new generation: a feed
        loses an issue for good, since the summary's fold then sees those events as applied.
        """
        folder = tmp_path / uuid.uuid4().hex
        log = SqliteEventLog(f"sqlite:///{folder}/events.db")
        await log.open()
        await write(log, history)
        leader_at = min(leader_at, len(history) - 1)
        store = SwapWhileFolding(f"sqlite:///{folder}/views.db")
        leader = ProjectionRunner("main", ALL, log, store, batch_size=leader_at)
        await leader.setup()
        await leader.run_once()
        summary = BY_NAME["issue_summary"]
        group = [summary.collection, *(r.collection for r in summary.rollups)]
        generations = {col.name: await store.begin_generation(col) for col in group}
        builder = ProjectionRunner.rebuilder(summary, generations, log, store, batch_size=leader_at + builder_ahead)
        await builder.setup()
        await builder.run_once()
        store.swap_next = lambda: store.swap(generations, builder.name, "main")
        leader._batch_size = 2  # the next batch is shorter than the builder's lead
        await leader.catch_up()
        assert store.swapped
        replay = await runner_on(folder, log, batch_size=1000, name="replay")
        await replay.catch_up()
        names = [col.name for col in group]
        assert await rebuilt_views(store, names) == await rebuilt_views(replay._store, names)
        await log.close()
