"""The operator and analyst commands of ``snapfix``: export and replay, rebuild, status, dead letters, schemas."""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from events.envelope import Position
from ops.context import opened
from ops.progress import progress_bar
from projectors.catalog import BY_NAME
from snapfix.bootstrap import MAIN_PROJECTOR
from snapfix.settings import Settings

dlq = typer.Typer(
    help="Dead letters: events a projector could not apply, parked with their reason.", no_args_is_help=True
)


def _when(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not an ISO 8601 time, e.g. 2026-01-31T12:00:00Z") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _position(value: str | None) -> Position | None:
    if value is None:
        return None
    try:
        return Position.from_token(value if "." in value else f"0.{value}")
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a position: PARTITION.OFFSET, or OFFSET on SQLite") from None


def _echo_json(value: Any) -> None:
    sys.stdout.buffer.write(orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE))
    sys.stdout.flush()


FromPos = Annotated[
    str | None, typer.Option("--from-position", help="first position, inclusive: PARTITION.OFFSET (or OFFSET)")
]
ToPos = Annotated[str | None, typer.Option("--to-position", help="last position, inclusive")]
Since = Annotated[str | None, typer.Option(help="first recording time, ISO 8601 (seeks with the log's position_at)")]
Until = Annotated[str | None, typer.Option(help="last recording time, ISO 8601, inclusive")]
Types = Annotated[list[str], typer.Option("--type", help="only this event type (repeatable)")]
Aggregates = Annotated[list[str], typer.Option("--aggregate", help="only this aggregate id (repeatable)")]
Raw = Annotated[bool, typer.Option("--raw", help="the stored form: no upcasting to the latest schema version")]
Output = Annotated[str | None, typer.Option("--output", "-o", help="a file (default stdout); *.parquet writes Parquet")]
Format = Annotated[str | None, typer.Option("--format", help="jsonl or parquet (default from the file name)")]
Limit = Annotated[int | None, typer.Option(min=1, help="stop after this many events")]
NoProgress = Annotated[bool, typer.Option("--no-progress", help="no progress bar on stderr")]


def register(app: typer.Typer, settings_factory: Any) -> None:
    """Add the commands to the ``snapfix`` app; ``settings_factory`` reads and checks the settings."""

    @app.command("export")
    def export_command(
        from_position: FromPos = None,
        to_position: ToPos = None,
        since: Since = None,
        until: Until = None,
        event_type: Types = [],  # noqa: B006 - typer reads repeatable options from a list default
        aggregate: Aggregates = [],  # noqa: B006
        raw: Raw = False,
        output: Output = None,
        fmt: Format = None,
        limit: Limit = None,
        no_progress: NoProgress = False,
    ) -> None:
        """Write a slice of the event log as JSON Lines (stdout or a file) or Parquet, for pandas and DuckDB.

        Events are upcast to their latest schema version unless --raw. Each record is the
        envelope with `partition` and `offset`; the rate and ETA show on stderr.
        """
        settings = settings_factory()
        _export(
            settings,
            from_position,
            to_position,
            since,
            until,
            event_type,
            aggregate,
            raw,
            output,
            fmt,
            limit,
            not no_progress,
        )

    @app.command("replay")
    def replay_command(
        from_position: FromPos = None,
        to_position: ToPos = None,
        since: Since = None,
        until: Until = None,
        event_type: Types = [],  # noqa: B006
        aggregate: Aggregates = [],  # noqa: B006
        raw: Raw = False,
        events: Annotated[
            bool, typer.Option("--events", help="with one --aggregate: its events, not its state")
        ] = False,
        output: Output = None,
        fmt: Format = None,
        limit: Limit = None,
        no_progress: NoProgress = False,
    ) -> None:
        """Replay the log: with one --aggregate, fold its state as of --until (time travel); otherwise like export.

        `snapfix replay --aggregate <issue id> --until 2026-01-31T12:00:00Z` prints the issue's
        detail as it was then, through the same pure fold the projector uses.
        """
        settings = settings_factory()
        if len(aggregate) == 1 and not events:
            moment = _when(until) or datetime.now(UTC)
            _echo_json(asyncio.run(_state(settings, aggregate[0], moment)))
            return
        _export(
            settings,
            from_position,
            to_position,
            since,
            until,
            event_type,
            aggregate,
            raw,
            output,
            fmt,
            limit,
            not no_progress,
        )

    @app.command("rebuild")
    def rebuild_command(
        view: Annotated[str, typer.Argument(help=f"the view: {', '.join(BY_NAME)}")],
        grace: Annotated[
            float, typer.Option(min=0, help="seconds the old generation keeps serving after the swap")
        ] = 30.0,
        leader: Annotated[str, typer.Option(help="the live projector to catch up with")] = MAIN_PROJECTOR,
        batch_size: Annotated[int, typer.Option(min=1, max=50_000)] = 2000,
        no_progress: NoProgress = False,
    ) -> None:
        """Rebuild a view with no downtime: fold the whole log into a new generation while the live one serves,
        swap the alias atomically once level with the live projector, drop the old generation after --grace.

        Run it again after a crash: it resumes where it stopped. Runs only pure projections, never side effects.

        A shared cache (redis://) has its epoch ended at the swap: nothing cached from the old generation is served.

        With memory:// (another process's cache, out of reach) the live projector ends it within a second.

        If the shared cache stays down through the retries, it exits 1: the swap stands; run it again to end the epoch.
        """
        from ops.rebuild import EpochUnpublished

        if view not in BY_NAME:
            raise typer.BadParameter(f"no view {view!r}; the views are {', '.join(BY_NAME)}")
        try:
            result = asyncio.run(_rebuild(settings_factory(), view, grace, leader, batch_size, not no_progress))
        except EpochUnpublished as error:
            typer.echo(f"snapfix: {error}", err=True)
            raise typer.Exit(1) from None
        typer.echo(
            f"snapfix: {result.view} is live at generation {result.generation} after {result.events} events"
            + (" (resumed)" if result.resumed else "")
            + (f"; generation {result.retired} dropped" if result.dropped else ""),
            err=True,
        )

    @app.command("status")
    def status_command(
        as_json: Annotated[bool, typer.Option("--json", help="JSON, as GET /ops/status")] = False,
    ) -> None:
        """Every projector's position, lag in events and seconds, view generations, open dead letters, last error."""
        rows = asyncio.run(_status(settings_factory()))
        if as_json:
            _echo_json(rows)
            return
        for row in rows:
            gens = ", ".join(f"{v}@{g}" for v, g in row["generations"].items())
            typer.echo(
                f"{row['projector']}: position {row['position'] or '-'}, lag {row['lag_events']} events"
                f" / {row['lag_seconds']}s, dead letters {row['dead_letters_open']}, generations {gens}"
                + (f", last error: {row['last_error']}" if row["last_error"] else "")
            )

    @dlq.command("list")
    def dlq_list(
        status: Annotated[str, typer.Option(help="open, retried, skipped or all")] = "open",
        limit: Annotated[int, typer.Option(min=1)] = 100,
    ) -> None:
        """The dead letters with their reason, position and event, oldest first (JSON)."""
        _echo_json(
            asyncio.run(_dlq(settings_factory(), "list", status=None if status == "all" else status, limit=limit))
        )

    @dlq.command("retry")
    def dlq_retry(letter_id: Annotated[str, typer.Argument(help="the dead letter's id (from dlq list)")]) -> None:
        """Apply a dead letter again through the folds (after a fix): its aggregate is folded from its first event."""
        letter = asyncio.run(_dlq(settings_factory(), "retry", letter_id=letter_id))
        _echo_json(letter)
        if letter["status"] == "open":
            raise typer.Exit(1)

    @dlq.command("skip")
    def dlq_skip(
        letter_id: Annotated[str, typer.Argument(help="the dead letter's id")],
        note: Annotated[str | None, typer.Option(help="why it is safe to skip")] = None,
    ) -> None:
        """Mark a dead letter handled without applying it; the event stays in the log."""
        _echo_json(asyncio.run(_dlq(settings_factory(), "skip", letter_id=letter_id, note=note)))

    @app.command("schemas")
    def schemas_command(
        out: Annotated[Path, typer.Option(help="where the published contract lives")] = Path("schemas"),
        check: Annotated[bool, typer.Option("--check", help="only say whether the files differ (exit 1)")] = False,
    ) -> None:
        """Generate the published contract into schemas/: JSON Schema of every event type and version, the
        envelope, AsyncAPI 3 for the event topics, and OpenAPI of the command and query APIs."""
        from ops.schemas import differences, write

        if check:
            stale = differences(out)
            for name in stale:
                typer.echo(f"snapfix: {out / name} is out of date", err=True)
            raise typer.Exit(1 if stale else 0)
        for name in write(out):
            typer.echo(f"wrote {out / name}", err=True)

    app.add_typer(dlq, name="dlq")


def _export(
    settings: Settings,
    from_position: str | None,
    to_position: str | None,
    since: str | None,
    until: str | None,
    types: list[str],
    aggregates: list[str],
    raw: bool,
    output: str | None,
    fmt: str | None,
    limit: int | None,
    show: bool,
) -> None:
    from ops.export import JsonLinesSink, ParquetSink, Slice

    start, end = _position(from_position), _position(to_position)
    selection = Slice(
        after={start.partition: start.offset - 1} if start else {},
        through={end.partition: end.offset} if end else None,
        since=_when(since),
        until=_when(until),
        event_types=frozenset(types),
        aggregates=frozenset(aggregates),
        limit=limit,
    )
    kind = fmt or ("parquet" if output and output.endswith(".parquet") else "jsonl")
    if kind not in ("jsonl", "parquet"):
        raise typer.BadParameter("--format is jsonl or parquet")
    if kind == "parquet" and output in (None, "-"):
        raise typer.BadParameter("Parquet needs --output FILE")
    stream = sys.stdout.buffer if output in (None, "-") else open(output, "wb")  # noqa: SIM115 - closed below
    try:
        sink = ParquetSink(stream) if kind == "parquet" else JsonLinesSink(stream)
        tally = asyncio.run(_run_export(settings, selection, sink, raw, show))
    finally:
        if stream is not sys.stdout.buffer:
            stream.close()
    typer.echo(
        f"snapfix: {tally.written} events written of {tally.scanned} scanned"
        + (f"; {tally.unreadable} unreadable (written as stored)" if tally.unreadable else ""),
        err=True,
    )


async def _run_export(settings: Settings, selection: Any, sink: Any, raw: bool, show: bool) -> Any:
    from ops.export import export, resolve
    from ops.status import backlog
    from snapfix.bootstrap import open_log_reader

    # The log alone: an export reads no write store (on Kafka, MongoDB need not be reachable).
    event_log = await open_log_reader(settings)
    try:
        resolved = await resolve(event_log, selection)
        head = await event_log.head()
        total = backlog(resolved.through or head, resolved.after)
        with progress_bar("export", total, enabled=show) as advance:
            return await export(event_log, resolved, sink, raw=raw, progress=advance)
    finally:
        await event_log.close()


async def _state(settings: Settings, aggregate_id: str, moment: datetime) -> Any:
    from projectors.time_travel import fold_as_of

    async with opened(settings, views=False) as found:
        assert found.store is not None
        doc = fold_as_of(await found.store.load(aggregate_id), moment)
    if doc is None:
        typer.echo(f"snapfix: no aggregate {aggregate_id} existed at {moment.isoformat()}", err=True)
        raise typer.Exit(1)
    return doc


async def _rebuild(settings: Settings, view: str, grace: float, leader: str, batch_size: int, show: bool) -> Any:
    from ops.rebuild import rebuild
    from snapfix.bootstrap import open_cache

    # A shared cache is given to the rebuild, which ends its epoch right after the swap. An in-process
    # one (memory://) belongs to another process, out of reach: the live projector publishes it there.
    cache = None if settings.cache.startswith("memory:") else await open_cache(settings)
    try:
        async with opened(settings) as found:
            assert found.log is not None
            assert found.views is not None
            with progress_bar(f"rebuild {view}", None, enabled=show) as advance:
                return await rebuild(
                    BY_NAME[view],
                    found.log,
                    found.views,
                    leader=leader,
                    grace_s=grace,
                    batch_size=batch_size,
                    on_total=advance.total,
                    progress=advance,
                    cache=cache,
                )
    finally:
        if cache is not None:
            await cache.close()


async def _status(settings: Settings) -> Any:
    from ops.status import projector_status

    async with opened(settings) as found:
        assert found.views is not None
        return await projector_status(found.views, found.log)


async def _dlq(settings: Settings, action: str, **args: Any) -> Any:
    from ops import dlq as letters

    async with opened(settings, log=action == "retry") as found:
        assert found.views is not None
        try:
            if action == "list":
                return await letters.list_letters(found.views, args["status"], args["limit"])
            if action == "skip":
                return await letters.skip(found.views, args["letter_id"], args["note"])
            assert found.store is not None
            return await letters.retry(found.views, found.store, args["letter_id"])
        except letters.NoSuchDeadLetter:
            typer.echo(f"snapfix: no dead letter {args['letter_id']}", err=True)
            raise typer.Exit(1) from None
