"""A throwaway distributed event log for tests: a unique Kafka topic and write-store database, removed after."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from pymongo import AsyncMongoClient

from events.kafka_log import KafkaEventLog, KafkaPublisher, KafkaTopic, delete_topic, ensure_topic
from events.mongo_store import MongoEventStore

KAFKA = "127.0.0.1:9092"
MONGO = "mongodb://127.0.0.1:27017"


@dataclass
class KafkaScratch:
    """One topic and one write-store database; any number of stores and logs over them, like processes."""

    topic: KafkaTopic
    database: str
    opened: list[MongoEventStore | KafkaEventLog] = field(default_factory=list)

    @property
    def write_store(self) -> str:
        return f"{MONGO}/{self.database}"

    async def store(self, **options: Any) -> MongoEventStore:
        """A write side of its own (own Mongo client, own producer), as another command-API process has."""
        store = MongoEventStore(self.write_store, KafkaPublisher(self.topic, timeout_s=5.0), **options)
        await store.open()
        self.opened.append(store)
        return store

    async def log(self) -> KafkaEventLog:
        kafka_log = KafkaEventLog(self.topic)
        await kafka_log.open()
        self.opened.append(kafka_log)
        return kafka_log


@asynccontextmanager
async def kafka_scratch(partitions: int = 3) -> AsyncIterator[KafkaScratch]:
    """Create the topic and database names, yield, then close everything and delete both."""
    suffix = uuid.uuid4().hex[:12]
    topic = KafkaTopic(bootstrap=KAFKA, name=f"snapfix.test.{suffix}", partitions=partitions)
    await ensure_topic(topic)
    scratch = KafkaScratch(topic, f"snapfix_test_{suffix}")
    try:
        yield scratch
    finally:
        for opened in reversed(scratch.opened):
            await opened.close()
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(MONGO)
        await client.drop_database(scratch.database)
        await client.close()
        await delete_topic(topic)
