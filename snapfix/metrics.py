"""The Prometheus metrics of the write side and the projectors, and the small helpers that move them.

HTTP metrics live with the middleware (``snapfix/http.py``) and cache hits and misses
with the query side's caches (``query_api/caching.py``). Every role serves these on
``/metrics``; a role without an HTTP server (the projector worker) calls ``serve``.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Concatenate, ParamSpec, TypeVar

import structlog
from prometheus_client import Counter, Gauge, Histogram, start_http_server

from command_api.domain.errors import DomainError
from events.envelope import Envelope
from events.ports import ClaimTaken, ConcurrencyConflict

log = structlog.get_logger(__name__)

EVENTS_APPENDED = Counter(
    "snapfix_events_appended", "Events the command side appended to the log, by event type", ["event_type"]
)
COMMANDS = Counter(
    "snapfix_commands",
    "Commands handled, by command and outcome (ok, noop, replayed, conflict, refused, error)",
    ["command", "outcome"],
)
PROJECTOR_EVENTS = Counter(
    "snapfix_projector_events", "Events a projector folded and committed (dead letters included)", ["projector"]
)
PROJECTOR_BATCH_DURATION = Histogram(
    "snapfix_projector_batch_duration_seconds",
    "Time to fold and commit one batch, cache refresh included",
    ["projector"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
PROJECTOR_LAG_EVENTS = Gauge(
    "snapfix_projector_lag_events",
    "Events in the log after the projector's checkpoint, after its last batch",
    ["projector"],
)
PROJECTOR_LAG_SECONDS = Gauge(
    "snapfix_projector_lag_seconds",
    "Age of the newest event of the projector's last batch while events are waiting; 0 when caught up",
    ["projector"],
)
DEAD_LETTERS = Counter(
    "snapfix_dead_letters", "Poison events a projector parked as dead letters and went past", ["projector"]
)

P = ParamSpec("P")
R = TypeVar("R")
H = TypeVar("H")


def events_appended(recorded: Iterable[Envelope]) -> None:
    """Count events the log has just recorded."""
    for envelope in recorded:
        EVENTS_APPENDED.labels(envelope.event_type).inc()


def _order_name(method: str, args: tuple[Any, ...]) -> str:
    """The command's class name when the first argument is a command, else the method's name as an order."""
    if args and type(args[0]).__module__ == "command_api.commands":
        return type(args[0]).__name__
    return "".join(part.capitalize() for part in method.split("_"))


def _failure(error: Exception) -> str:
    from command_api.handlers import IdempotencyMismatch  # the handlers import this module

    if isinstance(error, ConcurrencyConflict):
        return "conflict"
    if isinstance(error, DomainError | ClaimTaken | IdempotencyMismatch):
        return "refused"
    return "error"


def _success(result: object) -> str:
    if getattr(result, "replayed", False):
        return "replayed"
    return "noop" if getattr(result, "noop", False) else "ok"


def counted(
    method: Callable[Concatenate[H, P], Awaitable[R]],
) -> Callable[Concatenate[H, P], Awaitable[R]]:
    """Count a command handler's outcomes in ``snapfix_commands_total``."""

    @functools.wraps(method)
    async def wrapper(self: H, *args: P.args, **kwargs: P.kwargs) -> R:
        command = _order_name(method.__name__, args)
        try:
            result = await method(self, *args, **kwargs)
        except Exception as error:
            COMMANDS.labels(command, _failure(error)).inc()
            raise
        COMMANDS.labels(command, _success(result)).inc()
        return result

    return wrapper


def batch_applied(projector: str, events: int, dead_letters: int, seconds: float) -> None:
    """Record a batch a projector has committed."""
    PROJECTOR_EVENTS.labels(projector).inc(events)
    PROJECTOR_BATCH_DURATION.labels(projector).observe(seconds)
    if dead_letters:
        DEAD_LETTERS.labels(projector).inc(dead_letters)


def backlog(head: Mapping[int, int], checkpoint: Mapping[int, int]) -> int:
    """Events after a checkpoint, given the newest offset of each partition."""
    return sum(max(0, offset - checkpoint.get(partition, -1)) for partition, offset in head.items())


def set_lag(projector: str, events: int, batch: Iterable[Envelope]) -> None:
    """Set the lag gauges: ``events`` still waiting, and the age of the newest event just applied if any wait."""
    PROJECTOR_LAG_EVENTS.labels(projector).set(events)
    newest = max((e.occurred_at for e in batch), default=None)
    seconds = (datetime.now(UTC) - newest).total_seconds() if events and newest is not None else 0.0
    PROJECTOR_LAG_SECONDS.labels(projector).set(max(0.0, seconds))


def serve(port: int, host: str) -> None:
    """Serve ``/metrics`` on its own port, for a role without an HTTP server; port 0 turns it off.

    A port already taken (two workers on one host) costs the metrics, never the worker: it says so and goes on.
    """
    if not port:
        return
    try:
        start_http_server(port, addr=host)
    except OSError as error:
        log.warning("metrics.unavailable", host=host, port=port, reason=str(error))
        return
    log.info("metrics.serving", host=host, port=port)
