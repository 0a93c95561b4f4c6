"""The projector role on Kafka: a faust-streaming worker in a consumer group (``snapfix projectors``).

Each worker is given some of the event topic's partitions by the group. It folds the
events of its partitions in batches (``take_events``) through the same
ProjectionRunner.apply as the embedded tailer, so views, checkpoints, dead letters and
caches behave identically in both deployments.

Two rules keep the views exact whatever the group does:

* faust acknowledges a batch only after ``apply`` returned, and ``apply`` never gives up:
  a failing store is retried until it answers, so an offset is never committed ahead of
  the view write;
* on every assignment the worker seeks each of its partitions to the checkpoint stored
  *with the views*, not to the group's committed offset, so a worker killed between its
  view write and the offset commit resumes exactly after what the views hold (and one
  killed before the view write redoes the batch; the folds ignore what they have seen).
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import faust
import structlog
from faust.types import TP

from events.codec import decode_envelope
from events.envelope import Envelope, Position
from projectors.runner import ProjectionRunner
from snapfix import bootstrap, metrics
from snapfix.settings import Settings

log = structlog.get_logger(__name__)

UNDECODABLE = "UndecodableRecord"  # not an event type: the runner dead-letters it with its reason


def envelope_of(value: bytes, key: bytes | None, partition: int, offset: int) -> Envelope:
    """The envelope in a Kafka record; a record that is not one becomes a poison envelope to dead-letter."""
    position = Position(partition, offset)
    try:
        return decode_envelope(value, position)
    except (ValueError, KeyError, TypeError) as error:
        return Envelope(
            event_type=UNDECODABLE,
            schema_version=1,
            aggregate_type="unknown",
            aggregate_id=(key or b"").decode("utf-8", "replace") or "unknown",
            aggregate_version=0,
            payload={"error": f"{type(error).__name__}: {error}", "raw_base64": base64.b64encode(value).decode()},
            position=position,
        )


def broker_url(settings: Settings) -> str:
    if not settings.event_log.startswith("kafka://"):
        raise ValueError("the projector worker needs SNAPFIX_EVENT_LOG=kafka://host:port")
    return settings.event_log


def create_worker_app(settings: Settings) -> faust.App:
    """The faust app; the view store, cache and runner are opened when the worker starts."""
    app = faust.App(
        "snapfix-projectors",
        broker=broker_url(settings),
        web_enabled=False,
        store="memory://",
        topic_partitions=settings.kafka_partitions,
        topic_allow_declare=False,  # the event topic is created by the project with its own settings
        consumer_auto_offset_reset="earliest",
        broker_commit_every=100,
        stream_buffer_maxsize=4 * settings.projector_batch_size,
    )
    topic = app.topic(settings.kafka_topic, key_type=bytes, value_type=bytes, value_serializer="raw",
                      key_serializer="raw", partitions=settings.kafka_partitions)
    state: dict[str, Any] = {}

    @app.on_startup.connect  # type: ignore[misc]
    async def open_views(_app: faust.App, **_: Any) -> None:
        container = await bootstrap.build(settings, write=False, read=True, project=False)
        assert container.views is not None
        runner = ProjectionRunner(bootstrap.MAIN_PROJECTOR, _projections(), None, container.views,
                                  cache=container.cache, view_cache=container.view_cache,
                                  batch_size=settings.projector_batch_size)
        await runner.setup()
        state["container"], state["runner"] = container, runner
        log.info("projector.worker.ready", topic=settings.kafka_topic, checkpoint=runner.checkpoint)

    @app.on_partitions_assigned.connect  # type: ignore[misc]
    async def seek_to_views(app_: faust.App, assigned: set[TP], **_: Any) -> None:
        runner: ProjectionRunner | None = state.get("runner")
        if runner is None:
            return
        stored = await runner.stored_checkpoint()
        for tp in assigned:
            if tp.topic == settings.kafka_topic:
                await app_.consumer.seek(tp, stored.get(tp.partition, -1) + 1)
        log.info("projector.worker.assigned", partitions=sorted(tp.partition for tp in assigned))

    @app.agent(topic)
    async def project(stream: faust.StreamT) -> None:
        async for events in stream.take_events(settings.projector_batch_size, within=0.02):
            batch = [envelope_of(e.message.value, e.message.key, e.message.partition, e.message.offset)
                     for e in events]
            await _apply_until_done(state["runner"], batch)
            _record_lag(app, settings.kafka_topic, state["runner"], batch)

    @app.on_shutdown.connect  # type: ignore[misc]
    async def close_views(_app: faust.App, **_: Any) -> None:
        if "container" in state:
            await bootstrap.close(state["container"])

    return app


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
    app = create_worker_app(settings)
    metrics.serve(settings.metrics_port, settings.host)
    worker = faust.Worker(app, loglevel=settings.log_level.upper(), quiet=True)
    worker.execute_from_commandline()
