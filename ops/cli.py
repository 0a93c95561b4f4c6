"""``snapfix``: run the roles, manage users, and look after projections."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
import uvicorn

from command_api import commands as c
from command_api.domain.actor import ROLES, SYSTEM
from command_api.domain.errors import DomainError
from events.envelope import Metadata
from ops import operator_cli, write_store
from snapfix import bootstrap
from snapfix.logs import configure_logging
from snapfix.settings import Settings

if TYPE_CHECKING:
    from snapfix.app import Role as AppRole

app = typer.Typer(
    help="SnapFix: an event-sourced civic issue-reporting backend. Settings come from SNAPFIX_* variables.",
    no_args_is_help=True,
    add_completion=False,
)
users = typer.Typer(
    help="Create users and manage their roles (for bootstrapping staff and admins).", no_args_is_help=True
)
app.add_typer(users, name="users")


def _settings() -> Settings:
    try:
        settings = Settings()
    except ValueError as e:
        typer.echo(f"snapfix: bad settings: {e}", err=True)
        raise typer.Exit(2) from None
    configure_logging(settings)
    return settings


def _serve(role: AppRole, host: str | None, port: int | None, workers: int) -> None:
    settings = _settings()
    from snapfix.app import create_app

    if workers > 1 and settings.embedded and role == "all":
        typer.echo("snapfix: the embedded default runs its projector in-process; use one worker", err=True)
        raise typer.Exit(2)
    typer.echo(
        f"snapfix: {role} on http://{host or settings.host}:{port or settings.port} (Swagger UI at /docs)", err=True
    )
    uvicorn.run(
        create_app(settings, role),
        host=host or settings.host,
        port=port or settings.port,  # type: ignore[arg-type]
        log_level=settings.log_level,
        access_log=False,
        workers=1,
    )


HostOpt = Annotated[str | None, typer.Option(help="interface to bind (default SNAPFIX_HOST, 127.0.0.1)")]
PortOpt = Annotated[int | None, typer.Option(help="port (default SNAPFIX_PORT, 8000)")]


@app.command()
def serve(host: HostOpt = None, port: PortOpt = None) -> None:
    """Run everything in one process: command API, query API and the projector (the embedded default)."""
    _serve("all", host, port, 1)


@app.command("command-api")
def command_api(host: HostOpt = None, port: PortOpt = None) -> None:
    """Run the write API alone (run as many as you like behind a load balancer)."""
    _serve("command", host, port, 1)


@app.command("query-api")
def query_api(host: HostOpt = None, port: PortOpt = None) -> None:
    """Run the read API alone (run as many as you like; it never writes to the log)."""
    _serve("query", host, port, 1)


@app.command()
def projectors() -> None:
    """Run a projector worker: embedded, it tails the SQLite log; on Kafka, it joins the consumer group.

    With SNAPFIX_PROCESS_MANAGERS=true (the default) it also runs the photo worker and the
    notifier; with several workers, set it to false on all but one.
    """
    settings = _settings()
    if settings.embedded:
        asyncio.run(_tail(settings))
        return
    from projectors.kafka_worker import run_worker

    run_worker(settings)


async def _tail(settings: Settings) -> None:
    import signal

    from snapfix import loop_lag, metrics

    # The process managers command (thumbnails, email claims): they need the write side.
    container = await bootstrap.build(settings, write=settings.process_managers, read=False, project=True)
    assert container.runner is not None
    metrics.serve(settings.metrics_port, settings.host)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loop_lag.settle_heap()
    try:
        await asyncio.gather(
            container.runner.run_forever(stop),
            *(m.run_forever(stop) for m in container.process_managers),
            loop_lag.monitor(stop),
            loop_lag.full_collections(stop),
        )
    finally:
        await bootstrap.close(container)


@users.command("create")
def users_create(
    email: Annotated[str, typer.Option(help="the sign-in email")],
    display_name: Annotated[str, typer.Option("--display-name", help="the public name")],
    role: Annotated[list[str], typer.Option(help=f"a role to give, repeatable: {', '.join(ROLES)}")] = [],  # noqa: B006
    password: Annotated[
        str,
        typer.Option(
            prompt=True,
            hide_input=True,
            confirmation_prompt=True,
            envvar="SNAPFIX_NEW_USER_PASSWORD",
            help="asked for when not given (or SNAPFIX_NEW_USER_PASSWORD)",
        ),
    ] = "",
) -> None:
    """Register a user directly in the event log, e.g. the first staff member or admin."""
    from command_api.models import RegisterBody

    try:
        body = RegisterBody(email=email, password=password, display_name=display_name)
    except ValueError as e:
        typer.echo(f"snapfix: {e}", err=True)
        raise typer.Exit(2) from None
    settings = _settings()

    async def run() -> str:
        container = await bootstrap.build(settings, write=True, read=False, project=False)
        try:
            assert container.handlers is not None
            result = await container.handlers.register(
                c.RegisterUser(body.email, body.password, body.display_name, tuple(role)),
                Metadata(actor_id=SYSTEM.user_id),
            )
            return result.id
        finally:
            await bootstrap.close(container)

    try:
        user_id = asyncio.run(run())
    except DomainError as e:
        typer.echo(f"snapfix: {e}", err=True)
        raise typer.Exit(1) from None
    typer.echo(user_id)


operator_cli.register(app, _settings)
write_store.register(app, _settings)


@app.command()
def capacity(
    rps: Annotated[float, typer.Option(help="requests per second to carry")] = 50_000,
    users: Annotated[int, typer.Option(help="concurrent users")] = 100_000,
    p99_ms: Annotated[float, typer.Option("--p99-ms", help="p99 latency each process must hold")] = 100,
    results: Annotated[Path | None, typer.Option(help="results file (default bench/results.json)")] = None,
) -> None:
    """Size the fleet for a target load from the per-core figures bench/run measured (bench/results.json)."""
    from ops.capacity import RESULTS, run

    try:
        typer.echo(run(rps, users, p99_ms, results or RESULTS))
    except (FileNotFoundError, ValueError) as e:
        typer.echo(f"snapfix: {e}", err=True)
        raise typer.Exit(1) from None


@app.command()
def seed(
    issues: Annotated[int, typer.Option(min=0, help="issues to report")] = 1000,
    users: Annotated[int, typer.Option(min=1, help="residents (2 % of them staff)")] = 100,
    random_seed: Annotated[int, typer.Option("--seed", help="same seed, same city")] = 42,
    project: Annotated[bool, typer.Option(help="build the views now with the projector")] = True,
) -> None:
    """Fill the event log with a realistic city (users, issues, upvotes, status histories) for demos and benches."""
    from command_api.security import Argon2Parameters, Passwords
    from ops.seed import SEED_PASSWORD, Plan, write

    settings = _settings()

    async def run() -> tuple[int, int]:
        container = await bootstrap.build(settings, write=True, read=project, project=project)
        try:
            assert container.store is not None
            parameters = Argon2Parameters(
                settings.argon2_time_cost, settings.argon2_memory_kib, settings.argon2_parallelism
            )
            password_hash = await Passwords(parameters=parameters).hash(SEED_PASSWORD)
            with typer.progressbar(length=issues + users, label="seeding", file=sys.stderr) as bar:
                written = await write(container.store, Plan(issues, users, random_seed), password_hash, bar.update)
            applied = await container.runner.catch_up() if container.runner is not None else 0
            return written, applied
        finally:
            await bootstrap.close(container)

    written, applied = asyncio.run(run())
    typer.echo(f"snapfix: wrote {written} events; projected {applied}", err=True)


def _change_role(email: str, role: str, grant: bool) -> None:
    """Grant or revoke through the same command handlers the API uses, acting as the system."""
    settings = _settings()

    async def run() -> int:
        container = await bootstrap.build(settings, write=True, read=False, project=False)
        try:
            assert container.handlers is not None
            user = await container.handlers.user_by_email(email)
            if user is None:
                raise DomainError(f"no user with the email {email}")
            meta = Metadata(actor_id=SYSTEM.user_id)
            if grant:
                result = await container.handlers.grant_role(c.GrantRole(user.id, role), SYSTEM, meta)
            else:
                result = await container.handlers.revoke_role(c.RevokeRole(user.id, role), SYSTEM, meta)
            return result.version
        finally:
            await bootstrap.close(container)

    try:
        version = asyncio.run(run())
    except DomainError as e:
        typer.echo(f"snapfix: {e}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{email}: {'granted' if grant else 'revoked'} {role} (user version {version})")


RoleArg = Annotated[str, typer.Argument(help=f"one of {', '.join(ROLES)}")]
EmailOpt = Annotated[str, typer.Option(help="the user's sign-in email")]


@users.command("grant")
def users_grant(role: RoleArg, email: EmailOpt) -> None:
    """Give a user a role, e.g. `snapfix users grant admin --email root@city.example`."""
    _change_role(email, role, grant=True)


@users.command("revoke")
def users_revoke(role: RoleArg, email: EmailOpt) -> None:
    """Take a role away (every user keeps citizen)."""
    _change_role(email, role, grant=False)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
