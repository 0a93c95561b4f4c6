"""Small helpers the HTTP tests share: sign up, sign in, report, read your own write."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from fastapi import FastAPI

from command_api import commands as c
from command_api.domain.actor import SYSTEM
from events.envelope import Metadata

PASSWORD = "correct horse battery staple"


async def sign_up(http: httpx.AsyncClient, name: str = "Ada", email: str | None = None) -> dict[str, str]:
    """Register and sign in a citizen; returns the auth header, the user id and the email."""
    email = email or f"{name.lower()}-{uuid.uuid4().hex[:8]}@example.org"
    created = await http.post("/v1/users", json={"email": email, "password": PASSWORD, "display_name": name})
    assert created.status_code == 201, created.text
    headers = await sign_in(http, email)
    return {**headers, "user_id": created.json()["id"], "email": email}


async def sign_in(http: httpx.AsyncClient, email: str, password: str = PASSWORD) -> dict[str, str]:
    token = await http.post("/v1/auth/token", data={"username": email, "password": password})
    assert token.status_code == 200, token.text
    return {"Authorization": f"Bearer {token.json()['access_token']}"}


def auth(user: dict[str, str]) -> dict[str, str]:
    return {"Authorization": user["Authorization"]}


async def report(http: httpx.AsyncClient, user: dict[str, str], **fields: Any) -> dict[str, Any]:
    body = {
        "title": "Pothole on Main Street",
        "description": "Deep enough to lose a wheel in.",
        "category": "pothole",
        "location": {"lat": 51.5074, "lon": -0.1278},
        **fields,
    }
    response = await http.post("/v1/issues", json=body, headers=auth(user))
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def fresh(position: str | None) -> dict[str, str]:
    """The header that makes a read wait for a command's position."""
    return {"X-Consistency-Token": position} if position else {}


async def make_user(app: FastAPI, http: httpx.AsyncClient, name: str, *roles: str) -> dict[str, str]:
    """Create a user with roles the way `snapfix users create` does, then sign in over HTTP."""
    email = f"{name.lower()}-{uuid.uuid4().hex[:8]}@example.org"
    handlers = app.state.container.handlers
    result = await handlers.register(c.RegisterUser(email, PASSWORD, name, roles), Metadata(actor_id=SYSTEM.user_id))
    headers = await sign_in(http, email)
    return {**headers, "user_id": result.id, "email": email}
