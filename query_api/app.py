"""The read API's routes gathered (``snapfix query-api`` serves them with the operations routes)."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request

from projectors.ports import ViewStoreError
from query_api.routes import issues, notifications, photos, stats, users
from snapfix.http import ProblemResponse, problem

router = APIRouter()
router.include_router(issues.router)
router.include_router(users.router)
router.include_router(stats.router)
router.include_router(photos.router)
router.include_router(notifications.router)


def install_query_errors(app: FastAPI) -> None:
    @app.exception_handler(ViewStoreError)
    async def _store_down(_: Request, exc: ViewStoreError) -> ProblemResponse:  # noqa: ARG001
        return problem(
            503,
            "views-unavailable",
            "Views unavailable",
            "the read store is not answering; retry shortly",
            headers={"Retry-After": "1"},
        )
