"""The event-log contract: every adapter of EventStore and EventLog behaves the same."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from events.envelope import Envelope
from events.ports import Claim, ClaimTaken, ConcurrencyConflict, EventLog, EventStore, Snapshot
from events.sqlite_log import SqliteEventLog
from tests.contract.backends import require_engine, sqlite_url
from tests.kafka_scratch import kafka_scratch

Backend = tuple[EventStore, EventLog]


@pytest.fixture(params=["sqlite", pytest.param("kafka", marks=pytest.mark.engines)])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    if request.param == "sqlite":
        log = SqliteEventLog(sqlite_url(tmp_path, "events"))
        await log.open()
        yield log, log
        await log.close()
    elif request.param == "kafka":
        require_engine("kafka")
        require_engine("mongodb")
        async with kafka_scratch() as scratch:
            yield await scratch.store(), await scratch.log()


@pytest.fixture(params=["sqlite", pytest.param("kafka", marks=pytest.mark.engines)])
async def two_stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[EventStore, EventStore]]:
    """Two write sides over one log, as two command-API processes have."""
    if request.param == "sqlite":
        logs = [SqliteEventLog(sqlite_url(tmp_path, "events")) for _ in range(2)]
        for log in logs:
            await log.open()
        yield logs[0], logs[1]
        for log in logs:
            await log.close()
    elif request.param == "kafka":
        require_engine("kafka")
        require_engine("mongodb")
        async with kafka_scratch() as scratch:
            yield await scratch.store(), await scratch.store()


def events_for(aggregate_id: str, after: int, n: int, kind: str = "IssueUpvoted") -> list[Envelope]:
    return [
        Envelope(
            event_type=kind,
            schema_version=1,
            aggregate_type="issue",
            aggregate_id=aggregate_id,
            aggregate_version=after + i,
            payload={"user_id": f"u{after + i}"},
            actor_id="tester",
            correlation_id="corr-1",
        )
        for i in range(1, n + 1)
    ]


async def read_everything(log: EventLog, at_least: int, timeout: float = 10.0) -> list[Envelope]:
    """Read the whole log, waiting until at least ``at_least`` events are visible."""
    deadline = time.monotonic() + timeout
    seen: list[Envelope] = []
    checkpoint: dict[int, int] = {}
    while time.monotonic() < deadline:
        batch = await log.read(checkpoint, 1000)
        for env in batch:
            assert env.position is not None
            checkpoint[env.position.partition] = env.position.offset
        seen += batch
        if len(seen) >= at_least and not batch:
            return seen
        if not batch:
            await log.wait(checkpoint, 0.2)
    return seen


class TestAppendAndLoad:
    async def test_an_unknown_aggregate_has_no_events(self, backend: Backend) -> None:
        """Loading a stream that was never written gives an empty list, not an error."""
        store, _ = backend
        assert await store.load(str(uuid.uuid4())) == []

    async def test_appended_events_load_back_in_version_order_with_their_metadata(self, backend: Backend) -> None:
        """What was appended is what is loaded: versions 1..n, payloads and metadata intact."""
        store, _ = backend
        agg = str(uuid.uuid4())
        await store.append(agg, 0, events_for(agg, 0, 3))
        await store.append(agg, 3, events_for(agg, 3, 2))
        loaded = await store.load(agg)
        assert [e.aggregate_version for e in loaded] == [1, 2, 3, 4, 5]
        assert [e.payload["user_id"] for e in loaded] == ["u1", "u2", "u3", "u4", "u5"]
        assert {(e.actor_id, e.correlation_id) for e in loaded} == {("tester", "corr-1")}

    async def test_append_returns_the_events_with_positions(self, backend: Backend) -> None:
        """Each recorded event carries its position in the log."""
        store, _ = backend
        agg = str(uuid.uuid4())
        recorded = await store.append(agg, 0, events_for(agg, 0, 2))
        assert all(r.position is not None for r in recorded)
        assert recorded[0].position < recorded[1].position  # type: ignore[operator]

    async def test_a_stale_expected_version_is_refused_and_writes_nothing(self, backend: Backend) -> None:
        """Appending at a version the stream has passed raises ConcurrencyConflict and leaves it unchanged."""
        store, _ = backend
        agg = str(uuid.uuid4())
        await store.append(agg, 0, events_for(agg, 0, 2))
        with pytest.raises(ConcurrencyConflict):
            await store.append(agg, 1, events_for(agg, 1, 1))
        with pytest.raises(ConcurrencyConflict):
            await store.append(agg, 0, events_for(agg, 0, 1))
        assert [e.aggregate_version for e in await store.load(agg)] == [1, 2]

    async def test_events_must_continue_from_the_expected_version(self, backend: Backend) -> None:
        """A batch whose versions do not follow the expected version is a programming error."""
        store, _ = backend
        agg = str(uuid.uuid4())
        with pytest.raises(ValueError, match="expected version"):
            await store.append(agg, 0, events_for(agg, 1, 1))

    async def test_of_concurrent_writers_at_one_version_exactly_one_wins(self, backend: Backend) -> None:
        """Twenty writers race for version 1: one succeeds, nineteen conflict, the stream has one event."""
        store, _ = backend
        agg = str(uuid.uuid4())
        results = await asyncio.gather(
            *(store.append(agg, 0, events_for(agg, 0, 1)) for _ in range(20)), return_exceptions=True
        )
        wins = [r for r in results if not isinstance(r, BaseException)]
        conflicts = [r for r in results if isinstance(r, ConcurrencyConflict)]
        assert (len(wins), len(conflicts)) == (1, 19)
        assert [e.aggregate_version for e in await store.load(agg)] == [1]


class TestClaims:
    async def test_a_claim_is_recorded_with_the_append_that_made_it(self, backend: Backend) -> None:
        """get_claim names the aggregate, its version and position after the append."""
        store, _ = backend
        agg, key = str(uuid.uuid4()), f"email:{uuid.uuid4()}@example.org"
        recorded = await store.append(agg, 0, events_for(agg, 0, 2), [Claim(key, {"fingerprint": "abc"})])
        claim = await store.get_claim(key)
        assert claim is not None
        assert (claim.aggregate_id, claim.version, claim.position) == (agg, 2, recorded[-1].position)
        assert claim.data == {"fingerprint": "abc"}

    async def test_a_held_claim_refuses_the_whole_append(self, backend: Backend) -> None:
        """A second append claiming the same key raises ClaimTaken and writes none of its events."""
        store, _ = backend
        first, second, key = str(uuid.uuid4()), str(uuid.uuid4()), f"email:{uuid.uuid4()}"
        await store.append(first, 0, events_for(first, 0, 1), [Claim(key)])
        with pytest.raises(ClaimTaken) as taken:
            await store.append(second, 0, events_for(second, 0, 1), [Claim(key)])
        assert taken.value.record.aggregate_id == first
        assert await store.load(second) == []

    async def test_an_unknown_claim_is_none(self, backend: Backend) -> None:
        """Looking up a key nobody claimed gives None."""
        store, _ = backend
        assert await store.get_claim(f"idem:{uuid.uuid4()}") is None

    async def test_of_concurrent_claims_of_one_key_exactly_one_wins(self, backend: Backend) -> None:
        """Ten aggregates race for one key: exactly one append lands."""
        store, _ = backend
        key = f"email:{uuid.uuid4()}"
        aggs = [str(uuid.uuid4()) for _ in range(10)]
        results = await asyncio.gather(
            *(store.append(a, 0, events_for(a, 0, 1), [Claim(key)]) for a in aggs), return_exceptions=True
        )
        assert sum(not isinstance(r, BaseException) for r in results) == 1
        assert all(isinstance(r, ClaimTaken) for r in results if isinstance(r, BaseException))


class TestReadingTheLog:
    async def test_the_log_yields_every_event_once_with_each_aggregate_in_order(self, backend: Backend) -> None:
        """Reading from the start sees all appended events, each aggregate's versions ascending."""
        store, log = backend
        aggs = [str(uuid.uuid4()) for _ in range(3)]
        for round_ in range(3):
            for agg in aggs:
                await store.append(agg, round_ * 2, events_for(agg, round_ * 2, 2))
        seen = [e for e in await read_everything(log, 18) if e.aggregate_id in aggs]
        assert len(seen) == 18
        assert len({e.event_id for e in seen}) == 18
        for agg in aggs:
            assert [e.aggregate_version for e in seen if e.aggregate_id == agg] == [1, 2, 3, 4, 5, 6]

    async def test_reading_after_a_checkpoint_continues_where_it_left_off(self, backend: Backend) -> None:
        """A checkpoint taken from a read makes the next read start after it."""
        store, log = backend
        agg = str(uuid.uuid4())
        await store.append(agg, 0, events_for(agg, 0, 3))
        first = await read_everything(log, 3)
        checkpoint: dict[int, int] = {}
        for env in first:
            assert env.position is not None
            checkpoint[env.position.partition] = env.position.offset
        await store.append(agg, 3, events_for(agg, 3, 2))
        later = await log.read(checkpoint, 100)
        deadline = time.monotonic() + 10
        while len(later) < 2 and time.monotonic() < deadline:
            await log.wait(checkpoint, 0.2)
            later = await log.read(checkpoint, 100)
        assert [e.aggregate_version for e in later if e.aggregate_id == agg] == [4, 5]

    async def test_the_head_is_the_newest_position(self, backend: Backend) -> None:
        """head() names the offset of the last event appended to its partition."""
        store, log = backend
        agg = str(uuid.uuid4())
        recorded = await store.append(agg, 0, events_for(agg, 0, 2))
        last = recorded[-1].position
        assert last is not None
        head = await log.head()
        assert head.get(last.partition, -1) >= last.offset

    async def test_wait_returns_early_when_an_event_arrives(self, backend: Backend) -> None:
        """A waiting reader wakes up soon after an append, well before its timeout."""
        store, log = backend
        checkpoint = await log.head()
        agg = str(uuid.uuid4())

        async def append_soon() -> None:
            await asyncio.sleep(0.05)
            await store.append(agg, 0, events_for(agg, 0, 1))

        started = time.monotonic()
        writer = asyncio.create_task(append_soon())
        await log.wait(checkpoint, 5.0)
        await writer
        assert time.monotonic() - started < 4.0


def snapshot_of(recorded: list[Envelope], state: dict[str, object], fingerprint: str = "f1") -> Snapshot:
    last = recorded[-1]
    return Snapshot(
        last.aggregate_id, "issue", last.aggregate_version, last.event_id, last.position, fingerprint, state
    )


class TestTailsAndHeads:
    async def test_a_load_after_a_version_returns_only_the_later_events(self, backend: Backend) -> None:
        """load(after_version=n) starts at n + 1, where an append ended: what a snapshot or a cached state needs."""
        store, _ = backend
        agg = str(uuid.uuid4())
        await store.append(agg, 0, events_for(agg, 0, 3))
        await store.append(agg, 3, events_for(agg, 3, 2))
        assert [e.aggregate_version for e in await store.load(agg, 3)] == [4, 5]
        assert await store.load(agg, 5) == []
        assert [e.aggregate_version for e in await store.load(agg, 0)] == [1, 2, 3, 4, 5]

    async def test_the_version_of_an_aggregate_follows_every_writer(
        self, two_stores: tuple[EventStore, EventStore]
    ) -> None:
        """version_of is 0 for an unknown aggregate and sees what another process appended."""
        first, second = two_stores
        agg = str(uuid.uuid4())
        assert await first.version_of(agg) == 0
        await first.append(agg, 0, events_for(agg, 0, 2))
        assert await first.version_of(agg) == 2
        await second.append(agg, 2, events_for(agg, 2, 1))
        assert await first.version_of(agg) == 3
        assert [e.aggregate_version for e in await first.load(agg, 2)] == [3]


class TestSnapshots:
    async def test_a_kept_snapshot_loads_back_in_another_process(
        self, two_stores: tuple[EventStore, EventStore]
    ) -> None:
        """What one write side keeps beside the log, another reads back field for field."""
        first, second = two_stores
        agg = str(uuid.uuid4())
        recorded = await first.append(agg, 0, events_for(agg, 0, 3))
        await first.save_snapshot(snapshot_of(recorded, {"upvoters": ["u1", "u2", "u3"], "status": "reported"}))
        kept = await second.load_snapshot(agg)
        assert kept == snapshot_of(recorded, {"upvoters": ["u1", "u2", "u3"], "status": "reported"})
        assert await first.load_snapshot(str(uuid.uuid4())) is None

    async def test_a_newer_snapshot_replaces_an_older_one_and_never_the_reverse(self, backend: Backend) -> None:
        """Writers that race keep the furthest snapshot."""
        store, _ = backend
        agg = str(uuid.uuid4())
        early = await store.append(agg, 0, events_for(agg, 0, 2))
        await store.save_snapshot(snapshot_of(early, {"n": 2}))
        late = await store.append(agg, 2, events_for(agg, 2, 2))
        await store.save_snapshot(snapshot_of(late, {"n": 4}))
        kept = await store.load_snapshot(agg)
        assert kept is not None
        assert (kept.version, kept.state) == (4, {"n": 4})

    async def test_a_snapshot_naming_an_event_the_log_does_not_hold_is_never_handed_out(self, backend: Backend) -> None:
        """A snapshot is not trusted over the log: its version's event must be the one it names."""
        store, _ = backend
        agg = str(uuid.uuid4())
        recorded = await store.append(agg, 0, events_for(agg, 0, 2))
        wrong = Snapshot(agg, "issue", 2, str(uuid.uuid4()), recorded[-1].position, "f1", {"n": 2})
        await store.save_snapshot(wrong)
        assert await store.load_snapshot(agg) is None


class TestGroupCommit:
    async def test_one_stale_append_never_fails_the_appends_committed_with_it(self, backend: Backend) -> None:
        """Fifty appends at once, one stale: they share commits, 49 land at positions of their own, one conflicts."""
        store, _ = backend
        stale_agg = str(uuid.uuid4())
        await store.append(stale_agg, 0, events_for(stale_agg, 0, 1))
        fresh = [str(uuid.uuid4()) for _ in range(49)]
        results = await asyncio.gather(
            store.append(stale_agg, 0, events_for(stale_agg, 0, 1)),
            *(store.append(a, 0, events_for(a, 0, 2)) for a in fresh),
            return_exceptions=True,
        )
        assert isinstance(results[0], ConcurrencyConflict)
        landed = [r for r in results[1:] if isinstance(r, list)]
        assert len(landed) == 49
        positions = [e.position for batch in landed for e in batch]
        assert len(set(positions)) == 98
        for agg in fresh:
            assert [e.aggregate_version for e in await store.load(agg)] == [1, 2]
        assert [e.aggregate_version for e in await store.load(stale_agg)] == [1]
        assert max(store.group_sizes) > 1  # type: ignore[attr-defined] - both adapters report their groups
