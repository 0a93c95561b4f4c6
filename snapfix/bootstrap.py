"""The one place where adapters are chosen from settings and wired together, when a process starts."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from command_api.handlers import CommandHandlers, PhotoLimits
from command_api.repository import Repository
from command_api.security import Argon2Parameters, Passwords
from events.ports import EventLog, EventStore
from projectors.catalog import ALL
from projectors.ports import Collection, ViewStore
from projectors.runner import DEAD_LETTERS, ProjectionRunner
from snapfix.blobs import BlobStore, FilesystemBlobStore, blob_store_path
from snapfix.cache import Cache, CacheStats, MemoryCache, ViewCache
from snapfix.settings import Settings
from snapfix.tokens import Tokens

if TYPE_CHECKING:  # the Kafka driver loads only when a kafka:// log is configured
    from events.kafka_log import KafkaTopic

MAIN_PROJECTOR = "main"


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class SharedAnswer:
    """The last answer of a costly read and when it was made, and the lock that lets one caller make it."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    body: Any = None
    at: float = 0.0


@dataclass
class Container:
    """Everything a role needs, built once per process; tests build it with their own settings."""

    settings: Settings
    store: EventStore | None = None
    # the write side's store, asked only whether an aggregate exists: a read of an id the log holds
    # but the views do not show yet waits for them instead of answering 404 (query_api/consistency.py)
    existence: EventStore | None = None
    log: EventLog | None = None
    views: ViewStore | None = None
    cache: Cache | None = None
    view_cache: ViewCache | None = None
    handlers: CommandHandlers | None = None
    tokens: Tokens | None = None
    runner: ProjectionRunner | None = None
    blobs: BlobStore | None = None
    process_managers: list[Any] = field(default_factory=list)  # photo worker, notifier: run beside the runner
    clock: Callable[[], datetime] = utc_now
    cache_stats: CacheStats = field(default_factory=CacheStats)
    closers: list[Callable[[], object]] = field(default_factory=list)
    status_answers: SharedAnswer = field(default_factory=SharedAnswer)  # GET /ops/status without a log


def kafka_topic(settings: Settings) -> KafkaTopic:
    """The event topic the settings name, with the settings' partitions, replication and retention."""
    from events.kafka_log import KafkaTopic

    return KafkaTopic.from_url(
        settings.event_log,
        name=settings.kafka_topic,
        partitions=settings.kafka_partitions,
        replication_factor=settings.kafka_replication_factor,
        retention_ms=settings.kafka_retention_ms,
    )


async def open_event_log(settings: Settings) -> tuple[EventStore, EventLog]:
    if settings.event_log.startswith("sqlite:"):
        from events.sqlite_log import SqliteEventLog

        sqlite_log = SqliteEventLog(settings.event_log)
        await sqlite_log.open()
        return sqlite_log, sqlite_log
    if settings.event_log.startswith("kafka:"):
        from events.kafka_log import KafkaEventLog, KafkaPublisher
        from events.mongo_store import MongoEventStore

        topic = kafka_topic(settings)
        kafka_log = KafkaEventLog(topic)
        await kafka_log.open()
        publisher = KafkaPublisher(topic, timeout_s=settings.kafka_publish_timeout_ms / 1000)
        store = MongoEventStore(settings.write_store, publisher, faults=kill_fault(settings))
        await store.open()
        kafka_log.close_also(store.close)  # build() registers only the log's close
        return store, kafka_log
    raise ValueError(
        f"unsupported SNAPFIX_EVENT_LOG {settings.event_log!r}; expected sqlite:///path or kafka://host:port"
    )


def kill_fault(settings: Settings) -> Callable[[str], Awaitable[None]] | None:
    """Tests only: a fault hook that SIGKILLs this process at the step SNAPFIX_FAULT_KILL_AT names."""
    step = settings.fault_kill_at
    if step is None or settings.environment != "test":
        return None

    async def kill(at: str) -> None:
        if at == step:
            os.kill(os.getpid(), signal.SIGKILL)

    return kill


async def open_log_reader(settings: Settings) -> EventLog:
    """The log alone, for a role that only reads it (GET /ops/status on a query API): no write store."""
    if settings.event_log.startswith("kafka:"):
        from events.kafka_log import KafkaEventLog

        reader = KafkaEventLog(kafka_topic(settings))
        await reader.open()
        return reader
    _, sqlite_log = await open_event_log(settings)
    return sqlite_log


async def open_store_reader(settings: Settings) -> EventStore:
    """The write side's store for a role that only asks it whether an aggregate exists (no producer)."""
    if settings.event_log.startswith("kafka:"):
        from events.mongo_store import MongoEventStore

        reader = MongoEventStore(settings.write_store, None)
        await reader.open()
        return reader
    store, _ = await open_event_log(settings)
    return store


async def open_view_store(settings: Settings) -> ViewStore:
    if settings.view_store.startswith("sqlite:"):
        from projectors.sqlite_views import SqliteViewStore

        return SqliteViewStore(settings.view_store)
    if settings.view_store.startswith(("mongodb:", "mongodb+srv:")):
        from projectors.mongo_views import MongoViewStore

        return MongoViewStore(settings.view_store)
    raise ValueError(
        f"unsupported SNAPFIX_VIEW_STORE {settings.view_store!r}; expected sqlite:///path or mongodb://host:port/db"
    )


async def open_cache(settings: Settings) -> Cache:
    if settings.cache.startswith("memory:"):
        return MemoryCache(capacity=settings.cache_capacity)
    if settings.cache.startswith(("redis:", "rediss:")):
        from snapfix.redis_cache import RedisCache

        return RedisCache(settings.cache, prefix=settings.cache_prefix)
    raise ValueError(f"unsupported SNAPFIX_CACHE {settings.cache!r}; expected memory:// or redis://host:port/db")


def open_blob_store(settings: Settings) -> BlobStore:
    """Photos and thumbnails: a folder when embedded; GridFS when roles run on different hosts."""
    if settings.blob_store.startswith(("mongodb:", "mongodb+srv:")):
        from snapfix.gridfs_blobs import GridFsBlobStore

        return GridFsBlobStore(settings.blob_store)
    return FilesystemBlobStore(blob_store_path(settings.blob_store))


async def build(settings: Settings, *, write: bool = True, read: bool = True, project: bool = True) -> Container:
    """Open the adapters a role needs: ``write`` for the command API, ``read`` for queries, ``project``."""
    c = Container(settings=settings)
    c.tokens = Tokens(settings)
    c.blobs = open_blob_store(settings)
    c.closers.append(c.blobs.close)
    if write or project:
        c.store, c.log = await open_event_log(settings)
        c.closers.append(c.log.close)
    if write:
        assert c.store is not None
        passwords = Passwords(
            parameters=Argon2Parameters(
                settings.argon2_time_cost, settings.argon2_memory_kib, settings.argon2_parallelism
            ),
            workers=settings.password_workers,
            queue=settings.password_queue,
            pool=settings.password_pool,
            cpus=settings.password_cpus,
        )
        c.closers.append(passwords.close)
        repository = Repository(c.store, capacity=settings.aggregate_cache_size, snapshot_every=settings.snapshot_every)
        c.closers.append(repository.close)  # after the log's close in the list: closers run in reverse
        c.handlers = CommandHandlers(
            c.store,
            passwords,
            c.clock,
            settings.command_retries,
            blobs=c.blobs,
            photo_limits=PhotoLimits(settings.photo_max_bytes, settings.photo_max_pixels),
            repository=repository,
            read_max_age_s=settings.aggregate_read_max_age_ms / 1000,
        )
    if read:
        c.existence = c.store if c.store is not None else await open_store_reader(settings)
        if c.store is None:
            c.closers.append(c.existence.close)
    if read or project:
        c.views = await open_view_store(settings)
        # dead_letters too: GET /ops/status reads them in every role that has views, not only where a runner runs
        await c.views.setup(
            [col for p in ALL for col in p.collections] + list(process_manager_collections()) + [DEAD_LETTERS]
        )
        c.closers.append(c.views.close)
        c.cache = await open_cache(settings)
        c.closers.append(c.cache.close)
        c.view_cache = ViewCache(c.cache, settings.cache_ttl_s, c.cache_stats)
    if project:
        assert c.log is not None
        assert c.views is not None
        c.runner = ProjectionRunner(
            MAIN_PROJECTOR,
            ALL,
            c.log,
            c.views,
            cache=c.cache,
            view_cache=c.view_cache,
            batch_size=settings.projector_batch_size,
            idle_poll_s=settings.projector_idle_poll_ms / 1000,
        )
        await c.runner.setup()
        if settings.process_managers:
            await _build_process_managers(c)
    return c


def process_manager_collections() -> tuple[Collection, ...]:
    """The views the process managers keep: a query API in its own process reads them without running them."""
    from projectors.notifications import FOLLOWERS, NOTIFICATIONS

    return (FOLLOWERS, NOTIFICATIONS)


async def build_process_managers(settings: Settings) -> Container:
    """The projector role's process managers, with the write side the photo worker and the notifier command.

    No projection runner: on Kafka the faust worker folds the views; the managers follow
    the log with their own checkpoints (so one set of them, see SNAPFIX_PROCESS_MANAGERS).
    """
    c = await build(settings, write=True, read=True, project=False)
    await _build_process_managers(c)
    return c


async def _manager_log(c: Container) -> EventLog:
    """A log reader of its own for one process manager.

    ``KafkaEventLog`` has one consumer that seeks whenever a caller's checkpoint differs
    from its cursor: managers sharing it would throw away each other's fetched records.
    SQLite reads are plain queries, so the shared log is fine there.
    """
    assert c.log is not None
    if not c.settings.event_log.startswith("kafka:"):
        return c.log
    from events.kafka_log import KafkaEventLog

    own = KafkaEventLog(kafka_topic(c.settings))
    await own.open()
    c.closers.append(own.close)
    return own


async def _build_process_managers(c: Container) -> None:
    """The photo worker (needs the command side) and the notification worker (emails only with SNAPFIX_SMTP_URL)."""
    from projectors.notifications import NotificationWorker, Notifier
    from projectors.photo_worker import PhotoWorker
    from snapfix.mail import SmtpMailer

    assert c.log is not None
    assert c.views is not None
    poll = {"idle_poll_s": c.settings.projector_idle_poll_ms / 1000}
    notifier = None
    if c.handlers is not None and c.settings.smtp_url:
        notifier = Notifier(c.handlers, SmtpMailer(c.settings.smtp_url, c.settings.mail_from), c.views)
    c.process_managers.append(NotificationWorker(await _manager_log(c), c.views, notifier, **poll))
    if c.handlers is not None and c.blobs is not None:
        photos = PhotoWorker(await _manager_log(c), c.views, c.blobs, c.handlers, c.settings.photo_max_pixels, **poll)
        c.process_managers.append(photos)
    for manager in c.process_managers:
        await manager.setup()


async def close(c: Container) -> None:
    for closer in reversed(c.closers):
        result = closer()
        if hasattr(result, "__await__"):
            await result  # type: ignore[misc]
