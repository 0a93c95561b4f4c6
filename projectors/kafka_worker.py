"""The projector role on Kafka: a faust-streaming worker in a consumer group (``snapfix projectors``).

Each worker is given some of the event topic's partitions by the group. It folds the
events of its partitions in batches (``take_events``) through the same
ProjectionRunner.apply as the embedded tailer, so views, checkpoints, dead letters and
caches behave identically in both deployments.

Two facts keep the views exact whatever the group does:

* faust acknowledges a batch only after ``apply`` returned (``take_events`` acks in its
  ``finally``), and ``apply`` never gives up: a failing store is retried until it answers,
  so an offset is never committed ahead of the view write;
* a worker killed after its view write but before the offset commit gets the batch again
  (so does the worker that takes over its partitions): the folds ignore events whose
  version a document has already seen, so applying them twice changes nothing.

(Seeking to the views' own checkpoint on assignment would skip that re-application, but
aiokafka's fetcher crashes when a partition is sought while it holds buffered records.)

A timer runs the runner's epoch check between batches too: a swap that a rebuild could not
publish reaches the caches within about ``EPOCH_CHECK_S`` even when no event arrives.
"""

from __future__ import annotations

import asyncio
from typing import Any

import faust
import structlog
from faust.types import TP

from events.envelope import Envelope
from events.kafka_log import ensure_topic, record_to_envelope
from projectors.runner import EPOCH_CHECK_S, ProjectionRunner
from snapfix import bootstrap, loop_lag, metrics
from snapfix.settings import Settings

log = structlog.get_logger(__name__)


def broker_urls(settings: Settings) -> list[str]:
    """faust wants one URL per broker; our setting is ``kafka://host:port[,host:port...]``."""
    if not settings.event_log.startswith("kafka://"):
        raise ValueError("the projector worker needs SNAPFIX_EVENT_LOG=kafka://host:port")
    hosts = settings.event_log.removeprefix("kafka://").split("/")[0]
    return [f"kafka://{host}" for host in hosts.split(",") if host]


class _Views:
    """The view store, cache and runner, opened once on first use (faust has no async start-up hook)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._runner: ProjectionRunner | None = None
        self._lock = asyncio.Lock()

    @property
    def opened(self) -> ProjectionRunner | None:
        """The runner once the agent has opened it, else None (nothing is opened on its behalf)."""
        return self._runner

    async def runner(self) -> ProjectionRunner:
        async with self._lock:
            if self._runner is None:
                settings = self._settings
                container = await bootstrap.build(settings, write=False, read=True, project=False)
                assert container.views is not None
                self._runner = ProjectionRunner(
                    bootstrap.MAIN_PROJECTOR,
                    _projections(),
                    None,
                    container.views,
                    cache=container.cache,
                    view_cache=container.view_cache,
                    batch_size=settings.projector_batch_size,
                )
                await self._runner.setup()
                log.info("projector.worker.ready", topic=settings.kafka_topic, checkpoint=self._runner.checkpoint)
            return self._runner


def create_worker_app(settings: Settings) -> faust.App:
    """The faust app; the view store, cache and runner are opened when the worker starts."""
    app = faust.App(
        settings.projector_group,
        broker=broker_urls(settings),
        web_enabled=False,
        store="memory://",
        topic_partitions=settings.kafka_partitions,
        topic_allow_declare=False,  # the event topic is created by the project with its own settings
        consumer_auto_offset_reset="earliest",
        broker_commit_every=100,
        stream_buffer_maxsize=4 * settings.projector_batch_size,
    )
    topic = app.topic(
        settings.kafka_topic,
        key_type=bytes,
        value_type=bytes,
        value_serializer="raw",
        key_serializer="raw",
        partitions=settings.kafka_partitions,
    )
    views = _Views(settings)

    @app.on_partitions_assigned.connect  # type: ignore[misc,arg-type]
    async def assigned(_app: faust.App, assigned: set[TP], **_: Any) -> None:
        log.info("projector.worker.assigned", partitions=sorted(tp.partition for tp in assigned))

    # Twice per EPOCH_CHECK_S: the runner publishes on its own clock, so a tick a hair early would
    # otherwise skip a whole period. The other ticks only read the epoch.
    @app.timer(EPOCH_CHECK_S / 2)
    async def epoch_check() -> None:
        await check_epoch(views.opened)

    if settings.process_managers:

        @app.task
        async def process_managers() -> None:
            await run_process_managers(settings)

    @app.agent(topic)
    async def project(stream: faust.StreamT) -> None:
        runner = await views.runner()
        async for events in stream.take_events(settings.projector_batch_size, within=0.02):  # type: ignore[attr-defined]
            batch = [record_to_envelope(e.message) for e in events]
            await _apply_until_done(runner, batch)
            _record_lag(app, settings.kafka_topic, runner, batch)

    return app


async def run_process_managers(settings: Settings) -> None:
    """The photo worker and the notifier beside the faust agent, until the worker stops (which cancels this).

    They are not partition-bound: each reads every partition through its own
    ``KafkaEventLog`` from its own checkpoint in the view store, so a rebalance of the
    group does not move them. Every worker started with SNAPFIX_PROCESS_MANAGERS=true runs
    a set; their side effects are idempotent (one thumbnail event, one email claim on the
    event store), so a second set is wasted work, not a duplicate email.
    """
    delay = 1.0
    while True:  # a store still starting must not take the faust worker (and the views) down with it
        try:
            container = await bootstrap.build_process_managers(settings)
            break
        except Exception as error:  # noqa: BLE001 - retried until the stores answer, and said so
            log.warning("projector.worker.process_managers_retry", reason=f"{type(error).__name__}: {error}")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(m.run_forever(stop), name=m.name) for m in container.process_managers]
    tasks.append(asyncio.create_task(loop_lag.monitor(stop), name="loop-lag"))
    tasks.append(asyncio.create_task(loop_lag.full_collections(stop), name="full-collections"))
    loop_lag.settle_heap()
    log.info("projector.worker.process_managers", names=[m.name for m in container.process_managers])
    try:
        await asyncio.gather(*tasks)
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await bootstrap.close(container)


async def check_epoch(runner: ProjectionRunner | None) -> None:
    """The runner's epoch check, between batches: publishes a swap that no batch would bring to the caches.

    Never fatal (the next tick tries again): the runner logs a cache that is down itself, and
    anything else (a view store that does not answer) is logged here.
    """
    if runner is None:  # not opened yet: its setup publishes the epoch
        return
    try:
        await runner.check_epoch()  # it publishes when EPOCH_CHECK_S has passed
    except Exception as error:  # noqa: BLE001 - logged; the worker and its batches go on
        log.warning("projector.epoch_check_failed", projector=runner.name, reason=f"{type(error).__name__}: {error}")


async def _apply_until_done(runner: ProjectionRunner, batch: list[Envelope]) -> None:
    """Never give a batch up: an offset committed past an unapplied event would lose it."""
    delay = 0.2
    while True:
        try:
            await runner.apply(batch)
            return
        except Exception as error:  # noqa: BLE001 - retry whatever the store says, and say so
            runner.last_error = f"{type(error).__name__}: {error}"
            log.warning("projector.retry", reason=runner.last_error, events=len(batch))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


def _record_lag(app: faust.App, topic: str, runner: ProjectionRunner, batch: list[Envelope]) -> None:
    """Lag over this worker's partitions, from the consumer's highwater marks (the next offset to be written)."""
    waiting = 0
    for tp in app.consumer.assignment():
        highwater = app.consumer.highwater(tp) if tp.topic == topic else None
        if highwater is not None:
            waiting += max(0, highwater - 1 - runner.checkpoint.get(tp.partition, -1))
    metrics.set_lag(runner.name, waiting, batch)


def _projections() -> tuple:
    from projectors.catalog import ALL

    return ALL


def run_worker(settings: Settings) -> None:
    """Run one worker until it is stopped (SIGINT/SIGTERM)."""
    # faust does not create an agent's source topic: make sure the log exists, with its own settings.
    asyncio.run(ensure_topic(bootstrap.kafka_topic(settings)))
    app = create_worker_app(settings)
    metrics.serve(settings.metrics_port, settings.host)
    worker = faust.Worker(app, loglevel=settings.log_level.upper(), quiet=True)
    worker.execute_from_commandline()
