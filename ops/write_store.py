"""``snapfix write-store rebuild``: rebuild the command side's write store from the Kafka log.

Why (issue 4, docs/adr/0001-write-side-consistency-on-kafka.md): the write store the command
API decides against is a projection of the log, so an operator who loses it, or doubts it, can
derive it again from the topic. The rebuild writes what the log implies:

- one commit document per event, in the slot ``<aggregate>/<version - 1>/0``. The log does not
  record which events were appended together, so the original append boundaries (and fences)
  cannot be recovered; a commit per event yields the same stream, the same versions and
  therefore the same decisions (a stale expected version conflicts, the next one appends).
  Every commit is marked published with the position Kafka gave the event, and the outbox is
  left empty: everything rebuilt is already in the log.
- one email claim per registration (``email:<address>#0``), pointing at the registration's
  commit, so a registered email stays taken.

Idempotency keys cannot be rebuilt: they are not in the log. After a rebuild a retried request
with an old ``Idempotency-Key`` is decided afresh (a registration retry is still refused by its
email claim; other retries may apply twice).

The pure part, ``documents_from_log``, turns envelopes into documents with no I/O, so it is
unit-tested; ``rebuild`` reads the topic and writes the database.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any

import typer

from command_api.domain.user import normalise_email
from events import types as t
from events.envelope import UNDECODABLE, Envelope
from events.ports import EventLogError
from ops.progress import progress_bar

if TYPE_CHECKING:  # the distributed drivers load only when the command runs: `snapfix serve` has none
    from events.kafka_log import KafkaEventLog, KafkaTopic

Doc = dict[str, Any]
REGISTERED = t.UserRegistered.event_type()
READ_BATCH = 2000
WRITE_BATCH = 500

IDEMPOTENCY_NOTE = (
    "Idempotency keys are NOT rebuilt: they are not in the log, so a request retried with a key used "
    "before the rebuild is decided afresh."
)


class RebuildError(Exception):
    """The log cannot be turned into a write store (a gap, a conflicting duplicate, an unreadable record)."""


@dataclass
class WriteStoreDocuments:
    """What the log implies for the write store, ready to insert."""

    commits: list[Doc] = field(default_factory=list)
    claims: list[Doc] = field(default_factory=list)
    aggregates: int = 0
    duplicates: int = 0  # exact repeats on the topic (a writer crashed between publish and ack)


def documents_from_log(events: Iterable[Envelope]) -> WriteStoreDocuments:
    """Commit and claim documents for ``events`` (every record of the topic, any order); no I/O.

    Exact duplicates (same aggregate, version and event id) are kept once, at their first
    position in the order given. Two different events at one version, a gap in an aggregate's
    versions, or a record that could not be decoded make the log unfit for deciding: RebuildError
    rather than a write store that would decide differently from the one that wrote the log.
    """
    streams: dict[str, dict[int, Envelope]] = {}
    out = WriteStoreDocuments()
    for event in events:
        if event.event_type == UNDECODABLE:
            raise RebuildError(f"unreadable record at {_where(event)}: {event.payload.get('error')}")
        stream = streams.setdefault(event.aggregate_id, {})
        seen = stream.get(event.aggregate_version)
        if seen is None:
            stream[event.aggregate_version] = event
        elif seen.event_id == event.event_id:
            out.duplicates += 1
        else:
            raise RebuildError(
                f"{event.aggregate_id} v{event.aggregate_version}: two different events "
                f"({seen.event_id} at {_where(seen)}, {event.event_id} at {_where(event)})"
            )
    registered: dict[str, Doc] = {}
    for aggregate_id, stream in streams.items():
        versions = sorted(stream)
        if versions != list(range(1, len(versions) + 1)):
            missing = sorted(set(range(1, versions[-1] + 1)) - set(versions))
            raise RebuildError(f"{aggregate_id}: versions missing from the log: {missing[:10]}")
        for version in versions:
            event = stream[version]
            commit = _commit_doc(event)
            out.commits.append(commit)
            if event.event_type == REGISTERED:
                claim = _email_claim(event, commit)
                first = registered.get(claim["key"])
                if first is None or event.occurred_at < first["at"]:
                    registered[claim["key"]] = claim  # the invariant says one; keep the earliest if not
    out.claims = sorted(registered.values(), key=lambda c: c["_id"])
    out.aggregates = len(streams)
    return out


def _where(event: Envelope) -> str:
    return event.position.token() if event.position else "?"


def _commit_doc(event: Envelope) -> Doc:
    """A published commit of one event, in the exact format MongoEventStore writes (its own to_doc)."""
    from events.mongo_store import _Commit, slot_id

    after = event.aggregate_version - 1
    commit = _Commit(slot_id(event.aggregate_id, after, 0), event.aggregate_id, after, event.event_id, (event,))
    doc = commit.to_doc()
    doc["published"] = True
    doc["positions"] = [event.position.token()] if event.position else []
    doc["at"] = event.occurred_at
    if not doc["positions"]:
        raise RebuildError(f"{event.aggregate_id} v{event.aggregate_version} has no position in the log")
    return doc


def _email_claim(event: Envelope, commit: Doc) -> Doc:
    """Generation 0 of the email's claim, held because its commit (the registration) is in the stream."""
    key = f"email:{normalise_email(str(event.payload['email']))}"
    return {
        "_id": f"{key}#0",
        "key": key,
        "gen": 0,
        "commit_id": commit["_id"],
        "append_id": commit["append_id"],
        "aggregate_id": event.aggregate_id,
        "after": commit["after"],
        "version": commit["last"],
        "data": {},
        "at": event.occurred_at,
    }


# --- I/O -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RebuildReport:
    events: int
    commits: int
    claims: int
    aggregates: int
    duplicates: int


async def read_all(kafka_log: KafkaEventLog, advance: Callable[[int], None] = lambda _: None) -> list[Envelope]:
    """Every record from an empty checkpoint to the head as it was when the read began."""
    head = await kafka_log.head()
    checkpoint: dict[int, int] = {}
    seen: list[Envelope] = []
    while any(checkpoint.get(p, -1) < offset for p, offset in head.items()):
        batch = await kafka_log.read(checkpoint, READ_BATCH)
        for event in batch:
            assert event.position is not None
            checkpoint[event.position.partition] = event.position.offset
            if event.position.offset <= head.get(event.position.partition, -1):
                seen.append(event)
        advance(len(batch))
    return seen


async def rebuild(topic: KafkaTopic, write_store: str, *, force: bool = False, show: bool = True) -> RebuildReport:
    """Read the whole topic and write the documents it implies into an empty write-store database.

    A non-empty database is refused (it may be the live one) unless ``force``, which drops it
    first. Run it with the command APIs stopped: appends during the rebuild are not in it.
    """
    from pymongo import AsyncMongoClient
    from pymongo.errors import ConfigurationError, PyMongoError

    from events.kafka_log import KafkaEventLog

    client: AsyncMongoClient[Doc] = AsyncMongoClient(write_store, tz_aware=True, serverSelectionTimeoutMS=5000)
    kafka_log = KafkaEventLog(topic)
    try:
        try:
            db = client.get_default_database()
        except ConfigurationError as e:
            raise ValueError(f"the write store URL must name a database: {write_store!r}") from e
        existing = await db.list_collection_names()
        if existing and not force:
            raise RebuildError(f"database {db.name} is not empty ({', '.join(sorted(existing))}); --force drops it")
        if existing:
            await client.drop_database(db.name)
        await kafka_log.open()
        total = sum(offset + 1 for offset in (await kafka_log.head()).values())
        with progress_bar("reading the log", total, enabled=show) as bar:
            events = await read_all(kafka_log, bar)
        documents = documents_from_log(events)
        with progress_bar("writing the store", len(documents.commits) + len(documents.claims), enabled=show) as bar:
            for collection, docs in ((db["commits"], documents.commits), (db["claims"], documents.claims)):
                for start in range(0, len(docs), WRITE_BATCH):
                    chunk = docs[start : start + WRITE_BATCH]
                    await collection.insert_many(chunk)
                    bar(len(chunk))
    except PyMongoError as e:
        raise EventLogError(f"writing the write store failed: {e}") from e
    finally:
        await kafka_log.close()
        await client.close()
    return RebuildReport(
        len(events), len(documents.commits), len(documents.claims), documents.aggregates, documents.duplicates
    )


# --- the command --------------------------------------------------------------------------------


def register(app: typer.Typer, settings_factory: Any) -> None:
    """Add ``snapfix write-store`` to the app; ``settings_factory`` reads and checks the settings."""
    write_store_app = typer.Typer(
        help="The command side's write store (kafka:// deployments): rebuild it from the log.", no_args_is_help=True
    )

    @write_store_app.command("rebuild")
    def rebuild_command(
        force: Annotated[bool, typer.Option("--force", help="drop a non-empty write-store database first")] = False,
        no_progress: Annotated[bool, typer.Option("--no-progress", help="no progress bar on stderr")] = False,
    ) -> None:
        """Rebuild SNAPFIX_WRITE_STORE from the whole SNAPFIX_EVENT_LOG topic: one published commit per
        event and the email claims of registrations, so command APIs decide exactly as before.

        Refuses a non-empty database unless --force. Stop the command APIs first.

        Idempotency keys are NOT rebuilt (they are not in the log): a retry with an old key is decided afresh.
        """
        settings = settings_factory()
        if not settings.event_log.startswith("kafka:"):
            typer.echo("snapfix: the write store exists only with a kafka:// SNAPFIX_EVENT_LOG", err=True)
            raise typer.Exit(2)
        from snapfix.bootstrap import kafka_topic

        topic = kafka_topic(settings)
        try:
            report = asyncio.run(rebuild(topic, settings.write_store, force=force, show=not no_progress))
        except (RebuildError, EventLogError, ValueError) as e:
            typer.echo(f"snapfix: write-store rebuild refused: {e}", err=True)
            raise typer.Exit(1) from None
        typer.echo(
            f"snapfix: rebuilt {report.commits} commits of {report.aggregates} aggregates and "
            f"{report.claims} email claims from {report.events} records ({report.duplicates} duplicates); "
            + IDEMPOTENCY_NOTE,
            err=True,
        )

    app.add_typer(write_store_app, name="write-store")
