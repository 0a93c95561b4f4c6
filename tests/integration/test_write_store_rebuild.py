"""``snapfix write-store rebuild`` on the real engines: a store rebuilt from the log decides as the original did.

Commands run through CommandHandlers on a MongoEventStore (fresh topic and database); the
write store is rebuilt from the topic into a second database, and a store over it must load
the same streams, refuse a stale append, accept the next version and keep emails taken.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from argon2 import PasswordHasher
from pymongo import AsyncMongoClient

from command_api import commands as c
from command_api.domain.actor import SYSTEM
from command_api.domain.errors import AlreadyExists
from command_api.handlers import CommandHandlers
from command_api.security import Passwords
from events.envelope import Metadata
from events.kafka_log import KafkaPublisher
from events.mongo_store import MongoEventStore
from events.ports import ConcurrencyConflict
from ops.write_store import RebuildError, rebuild
from tests.contract.backends import require_engine
from tests.contract.test_event_log import events_for
from tests.kafka_scratch import MONGO, KafkaScratch, kafka_scratch

pytestmark = pytest.mark.engines


@pytest.fixture
async def scratch() -> AsyncIterator[KafkaScratch]:
    require_engine("kafka")
    require_engine("mongodb")
    async with kafka_scratch() as made:
        yield made


@pytest.fixture
async def second_database() -> AsyncIterator[str]:
    """The URL of an empty database to rebuild into, dropped after the test."""
    name = f"snapfix_rebuilt_{uuid.uuid4().hex[:12]}"
    yield f"{MONGO}/{name}"
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(MONGO)
    await client.drop_database(name)
    await client.close()


async def test_a_store_rebuilt_from_the_log_decides_exactly_as_before(
    scratch: KafkaScratch, second_database: str
) -> None:
    passwords = Passwords(PasswordHasher(time_cost=1, memory_cost=8, parallelism=1), queue=1000)
    original = await scratch.store()
    handlers = CommandHandlers(original, passwords, lambda: datetime.now(UTC))
    meta = Metadata(actor_id="tester")
    emails = [f"rebuild-{i}-{uuid.uuid4().hex[:6]}@example.org" for i in range(3)]
    users = [
        (await handlers.register(c.RegisterUser(e, "correct horse battery", f"User {e}"), meta)).id for e in emails
    ]
    await handlers.change_profile(c.ChangeProfile(users[0], "Renamed"), SYSTEM, meta)
    await handlers.grant_role(c.GrantRole(users[0], "staff"), SYSTEM, meta)
    await handlers.seed_catalogue(SYSTEM, meta)
    batch_agg = str(uuid.uuid4())
    await original.append(batch_agg, 0, events_for(batch_agg, 0, 3))  # one commit of three events
    await original.append(batch_agg, 3, events_for(batch_agg, 3, 2))
    duplicate = (await original.load(users[1]))[0]
    republisher = KafkaPublisher(scratch.topic)
    await republisher.start()
    try:
        await republisher.publish([duplicate])  # what a writer crashing before its ack leaves behind
    finally:
        await republisher.stop()

    report = await rebuild(scratch.topic, second_database, show=False)
    assert report.duplicates == 1
    assert report.claims == 3
    with pytest.raises(RebuildError, match="not empty"):
        await rebuild(scratch.topic, second_database, show=False)
    report = await rebuild(scratch.topic, second_database, force=True, show=False)
    assert report.commits == report.events - 1

    witness = await scratch.store()  # a fresh process over the original database: no cache
    rebuilt = MongoEventStore(second_database, KafkaPublisher(scratch.topic))
    await rebuilt.open()
    try:
        aggregates = [*users, batch_agg, *{e["aggregate_id"] for e in await _commits(second_database)}]
        for aggregate_id in aggregates:
            assert await rebuilt.load(aggregate_id) == await witness.load(aggregate_id), aggregate_id
        assert [e.aggregate_version for e in await rebuilt.load(batch_agg)] == [1, 2, 3, 4, 5]

        with pytest.raises(ConcurrencyConflict):
            await rebuilt.append(batch_agg, 4, events_for(batch_agg, 4, 1))
        [appended] = await rebuilt.append(batch_agg, 5, events_for(batch_agg, 5, 1))
        assert appended.aggregate_version == 6
        assert appended.position is not None

        rebuilt_handlers = CommandHandlers(rebuilt, passwords, lambda: datetime.now(UTC))
        with pytest.raises(AlreadyExists):
            await rebuilt_handlers.register(c.RegisterUser(emails[1].upper(), "another password", "Impostor"), meta)
        found = await rebuilt_handlers.user_by_email(emails[0])
        assert found is not None
        assert found.id == users[0]
        assert found.display_name == "Renamed"
        fresh = await rebuilt_handlers.register(c.RegisterUser("new-" + emails[2], "correct horse", "New"), meta)
        assert fresh.version == 1
    finally:
        await rebuilt.close()


async def _commits(url: str) -> list[dict[str, object]]:
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(url)
    try:
        return await client.get_default_database()["commits"].find({}, {"aggregate_id": 1}).to_list(None)
    finally:
        await client.close()
