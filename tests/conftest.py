"""Shared fixtures: settings in a temporary folder, the app wired like production, and engine checks."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from snapfix.app import create_app
from snapfix.settings import Settings

# Cheap argon2, and room for the bursts of registrations tests make (the 503 past the queue has its own test)
FAST_ARGON2 = {"argon2_time_cost": 1, "argon2_memory_kib": 64, "password_queue": 1000}


def embedded_settings(tmp_path: Path, **overrides: object) -> Settings:
    """Embedded settings under ``tmp_path``; argon2 made cheap so tests can register many users."""
    values: dict[str, object] = {
        "environment": "test",
        "event_log": f"sqlite:///{tmp_path}/events.db",
        "view_store": f"sqlite:///{tmp_path}/views.db",
        "cache": "memory://",
        "projector_idle_poll_ms": 20,
        "blob_store": f"file://{tmp_path}/blobs",
        # Tests sign many users in from one address; the rate-limit tests turn the limits on themselves.
        "rate_limit_ip_writes": 0,
        "rate_limit_user_writes": 0,
        "rate_limit_sign_ins": 0,
        **FAST_ARGON2,
        **overrides,
    }
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return embedded_settings(tmp_path)


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    """The one-process app with its lifespan (projector included) running."""
    application = create_app(settings, "all")
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client over the app, in process."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://snapfix.test") as http:
        yield http


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")
