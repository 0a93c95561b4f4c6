"""The write API as a FastAPI application (``snapfix command-api``), and its error mapping."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request

from command_api.handlers import IdempotencyMismatch
from command_api.routes import catalogue, issues, photos, users
from command_api.security import PasswordsBusy
from events.ports import ConcurrencyConflict, EventLogError
from snapfix.http import ProblemResponse, problem

router = APIRouter()
router.include_router(users.router)
router.include_router(issues.router)
router.include_router(photos.router)
router.include_router(catalogue.router)


def install_command_errors(app: FastAPI) -> None:
    @app.exception_handler(ConcurrencyConflict)
    async def _conflict(_: Request, exc: ConcurrencyConflict) -> ProblemResponse:
        return problem(
            409,
            "version-conflict",
            "Version conflict",
            f"the issue is at version {exc.actual}, not {exc.expected}: read it again and retry"
            if exc.actual is not None
            else "someone else changed it first: read it again and retry",
            current_version=exc.actual,
        )

    @app.exception_handler(IdempotencyMismatch)
    async def _idem(_: Request, exc: IdempotencyMismatch) -> ProblemResponse:
        return problem(422, "idempotency-key-reused", "Idempotency-Key reused", str(exc))

    @app.exception_handler(PasswordsBusy)
    async def _busy(_: Request, exc: PasswordsBusy) -> ProblemResponse:
        return problem(
            503, "busy", "Too many sign-ins at once", str(exc), headers={"Retry-After": str(exc.retry_after_s)}
        )

    @app.exception_handler(EventLogError)
    async def _log_down(_: Request, exc: EventLogError) -> ProblemResponse:  # noqa: ARG001
        return problem(
            503,
            "log-unavailable",
            "Event log unavailable",
            "the command may not have been recorded: retry with the same Idempotency-Key",
            headers={"Retry-After": "1"},
        )
