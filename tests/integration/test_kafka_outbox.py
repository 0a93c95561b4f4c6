"""Write-side consistency on Kafka: the outbox relay, duplicates after a crash, claims across processes.

Each test runs on the real Kafka and FerretDB with its own topic and database. A "process"
is a MongoEventStore of its own (own Mongo client, own producer); a crash is the test-only
fault hook raising at one step of an append.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from command_api import commands as c
from command_api.domain.errors import AlreadyExists
from command_api.handlers import CommandHandlers, CommandResult
from command_api.security import Passwords
from events.envelope import Envelope, Metadata
from events.kafka_log import KafkaEventLog, KafkaPublisher, KafkaTopic
from events.mongo_store import Fault, MongoEventStore
from events.ports import Claim, ConcurrencyConflict
from snapfix.bootstrap import open_event_log
from tests.conftest import embedded_settings
from tests.contract.backends import require_engine
from tests.contract.test_event_log import events_for
from tests.kafka_scratch import KafkaScratch, kafka_scratch

pytestmark = pytest.mark.engines


class Crash(Exception):
    """The simulated death of a command process at one step of an append."""


def crash_at(step: str) -> Fault:
    async def fault(at: str) -> None:
        if at == step:
            raise Crash(step)

    return fault


@pytest.fixture
async def scratch() -> AsyncIterator[KafkaScratch]:
    require_engine("kafka")
    require_engine("mongodb")
    async with kafka_scratch() as made:
        yield made


async def everything(log: KafkaEventLog) -> list[Envelope]:
    """Every record on the topic now, in partition order."""
    head = await log.head()
    checkpoint: dict[int, int] = {}
    seen: list[Envelope] = []
    while any(checkpoint.get(p, -1) < offset for p, offset in head.items()):
        for env in await log.read(checkpoint, 1000):
            assert env.position is not None
            checkpoint[env.position.partition] = env.position.offset
            seen.append(env)
    return seen


def versions_of(events: list[Envelope], aggregate_id: str) -> list[int]:
    return [e.aggregate_version for e in events if e.aggregate_id == aggregate_id]


class TestTheRelay:
    async def test_the_relay_publishes_what_a_crash_left_in_the_outbox_in_version_order(
        self, scratch: KafkaScratch
    ) -> None:
        """Appends that die after their commit are durable; the relay publishes them once, in order."""
        crashing = await scratch.store(faults=crash_at("committed"))
        agg = str(uuid.uuid4())
        with pytest.raises(Crash):
            await crashing.append(agg, 0, events_for(agg, 0, 2))
        with pytest.raises(Crash):
            await crashing.append(agg, 2, events_for(agg, 2, 1))
        relay, log = await scratch.store(relay_grace_s=0), await scratch.log()
        assert [e.aggregate_version for e in await relay.load(agg)] == [1, 2, 3]
        assert await log.head() == {}

        assert await relay.relay_once() == 3
        assert await relay.relay_once() == 0
        published = await everything(log)
        assert versions_of(published, agg) == [1, 2, 3]
        assert [e.event_id for e in published] == [e.event_id for e in await relay.load(agg)]

    async def test_a_crash_after_publishing_repeats_only_the_same_versions(self, scratch: KafkaScratch) -> None:
        """Dying after Kafka's ack but before the outbox is cleared republishes the same (version, event id) pairs."""
        crashing = await scratch.store(faults=crash_at("published"))
        agg = str(uuid.uuid4())
        with pytest.raises(Crash):
            await crashing.append(agg, 0, events_for(agg, 0, 2))
        relay, log = await scratch.store(relay_grace_s=0), await scratch.log()
        assert await relay.relay_once() == 2

        published = [e for e in await everything(log) if e.aggregate_id == agg]
        assert [e.aggregate_version for e in published] == [1, 2, 1, 2]
        assert {(e.aggregate_version, e.event_id) for e in published} == {
            (e.aggregate_version, e.event_id) for e in await relay.load(agg)
        }

    async def test_a_command_kafka_does_not_acknowledge_is_still_accepted_and_relayed(
        self, scratch: KafkaScratch
    ) -> None:
        """With a publisher that cannot deliver, the append succeeds without positions; the relay publishes later."""
        unreachable = KafkaTopic(bootstrap=scratch.topic.bootstrap, name=f"{scratch.topic.name}.missing")
        cut_off = MongoEventStore(scratch.write_store, KafkaPublisher(unreachable, timeout_s=0.3))
        await cut_off.open()
        try:
            agg = str(uuid.uuid4())
            recorded = await cut_off.append(agg, 0, events_for(agg, 0, 2))
        finally:
            await cut_off.close()
        assert [e.position for e in recorded] == [None, None]

        relay, log = await scratch.store(relay_grace_s=0), await scratch.log()
        assert await relay.relay_once() == 2
        assert versions_of(await everything(log), agg) == [1, 2]


class TestClaimsAcrossProcesses:
    async def test_of_50_concurrent_registrations_of_one_email_exactly_one_succeeds(
        self, scratch: KafkaScratch
    ) -> None:
        """Two command sides on separate stores race 50 registrations of one email: one account, 49 refusals."""
        passwords = Passwords(PasswordHasher(time_cost=1, memory_cost=8, parallelism=1), queue=1000)
        sides = [CommandHandlers(await scratch.store(), passwords, lambda: datetime.now(UTC)) for _ in range(2)]
        email = f"race-{uuid.uuid4().hex[:8]}@example.org"

        async def register(i: int) -> CommandResult:
            cmd = c.RegisterUser(email.upper() if i % 3 else email, "correct horse battery", f"Racer {i}")
            return await sides[i % 2].register(cmd, Metadata(correlation_id=f"race-{i}"))

        results = await asyncio.gather(*(register(i) for i in range(50)), return_exceptions=True)
        winners = [r for r in results if isinstance(r, CommandResult)]
        assert len(winners) == 1
        assert all(isinstance(r, AlreadyExists) for r in results if not isinstance(r, CommandResult))
        registered = [e for e in await everything(await scratch.log()) if e.event_type == "UserRegistered"]
        assert [e.aggregate_id for e in registered] == [winners[0].id]

    async def test_a_claim_orphaned_by_a_crash_is_free_once_its_lease_expires(self, scratch: KafkaScratch) -> None:
        """A writer dies between claiming a key and committing: after the lease another append gets the key."""
        crashing = await scratch.store(faults=crash_at("claimed"), claim_lease_s=0.2)
        other = await scratch.store(claim_lease_s=0.2)
        dead, alive, key = str(uuid.uuid4()), str(uuid.uuid4()), f"email:{uuid.uuid4()}"
        with pytest.raises(Crash):
            await crashing.append(dead, 0, events_for(dead, 0, 1), [Claim(key)])
        assert await other.get_claim(key) is None

        await other.append(alive, 0, events_for(alive, 0, 1), [Claim(key)])
        claim = await other.get_claim(key)
        assert claim is not None
        assert claim.aggregate_id == alive

    async def test_a_stalled_writer_is_fenced_and_can_never_land_its_claimed_append(
        self, scratch: KafkaScratch
    ) -> None:
        """A writer paused past its lease loses the key to another, and its late commit is refused."""
        resume = asyncio.Event()

        async def stall(step: str) -> None:
            if step == "claimed":
                await resume.wait()

        slow = await scratch.store(faults=stall, claim_lease_s=0.2)
        fast = await scratch.store(claim_lease_s=0.2)
        late, first, key = str(uuid.uuid4()), str(uuid.uuid4()), f"email:{uuid.uuid4()}"
        stalled = asyncio.create_task(slow.append(late, 0, events_for(late, 0, 1), [Claim(key)]))
        await asyncio.sleep(0.05)

        await fast.append(first, 0, events_for(first, 0, 1), [Claim(key)])
        resume.set()
        with pytest.raises(ConcurrencyConflict):
            await stalled
        claim = await fast.get_claim(key)
        assert claim is not None
        assert claim.aggregate_id == first
        assert await fast.load(late) == []
        assert versions_of(await everything(await scratch.log()), late) == []
        await slow.append(late, 0, events_for(late, 0, 1))  # the fenced slot is skipped, not a dead end
        assert [e.aggregate_version for e in await fast.load(late)] == [1]


class TestWiring:
    async def test_a_kafka_url_opens_the_mongo_store_and_the_kafka_log_over_one_topic(
        self, scratch: KafkaScratch, tmp_path: Path
    ) -> None:
        """open_event_log(kafka://...) gives a store whose appends the log reads back, and closes both."""
        settings = embedded_settings(
            tmp_path,
            event_log=f"kafka://{scratch.topic.bootstrap}",
            kafka_topic=scratch.topic.name,
            write_store=scratch.write_store,
        )
        store, log = await open_event_log(settings)
        try:
            assert isinstance(store, MongoEventStore)
            assert isinstance(log, KafkaEventLog)
            agg = str(uuid.uuid4())
            recorded = await store.append(agg, 0, events_for(agg, 0, 1))
            assert [e.event_id for e in await everything(log)] == [recorded[0].event_id]
        finally:
            await log.close()
