"""Password hashing never blocks the API: a bounded pool that answers 503 when full, and rehash on sign-in."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from fastapi import FastAPI

from command_api.security import Argon2Parameters, Passwords, PasswordsBusy
from events.sqlite_log import SqliteEventLog
from snapfix.app import create_app
from tests.conftest import embedded_settings
from tests.helpers import PASSWORD, sign_up

CHEAP = Argon2Parameters(time_cost=1, memory_kib=64)


@asynccontextmanager
async def serve(settings_path: Path, **overrides: object) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    application = create_app(embedded_settings(settings_path, **overrides), "all")
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://snapfix.test", timeout=30) as http:
            yield application, http


class TestTheBoundedPool:
    async def test_a_full_pool_refuses_at_once_instead_of_queueing_without_bound(self) -> None:
        """One worker, no queue: of three hashes at once, one runs and two are refused with PasswordsBusy."""
        passwords = Passwords(parameters=Argon2Parameters(time_cost=2, memory_kib=8 * 1024), workers=1, queue=0)
        results = await asyncio.gather(*(passwords.hash("pw") for _ in range(3)), return_exceptions=True)
        assert sum(isinstance(r, str) for r in results) == 1
        assert sum(isinstance(r, PasswordsBusy) for r in results) == 2
        assert await passwords.verify(next(r for r in results if isinstance(r, str)), "pw")  # free again
        passwords.close()

    async def test_a_process_pool_hashes_and_verifies(self) -> None:
        """The process pool (hashing on cores of its own) gives hashes the thread pool verifies."""
        in_processes = Passwords(parameters=CHEAP, pool="process", cpus=[0])
        in_threads = Passwords(parameters=CHEAP)
        digest = await in_processes.hash("correct horse")
        assert await in_threads.verify(digest, "correct horse")
        assert not await in_processes.verify(digest, "wrong horse")
        in_processes.close()
        in_threads.close()

    async def test_sign_ins_past_the_queue_get_a_503_problem_with_retry_after(self, tmp_path: Path) -> None:
        """Six sign-ins at once with one worker and one waiting place: some 200, the rest 503 with Retry-After."""
        busy = {"password_workers": 1, "password_queue": 1, "argon2_time_cost": 2, "argon2_memory_kib": 8 * 1024}
        async with serve(tmp_path, **busy) as (_, http):
            user = await sign_up(http)
            form = {"username": user["email"], "password": PASSWORD}
            answers = await asyncio.gather(*(http.post("/v1/auth/token", data=form) for _ in range(6)))
            codes = sorted(a.status_code for a in answers)
            assert 200 in codes
            assert 503 in codes
            refused = next(a for a in answers if a.status_code == 503)
            assert refused.headers["Retry-After"] == "1"
            assert refused.headers["content-type"] == "application/problem+json"
            assert refused.json()["type"] == "/problems/busy"


class TestRehashOnSignIn:
    async def test_a_hash_made_with_old_parameters_is_renewed_once_at_sign_in(self, tmp_path: Path) -> None:
        """Register under cheap parameters, sign in under new ones: one UserPasswordRehashed, and sign-in works."""
        async with serve(tmp_path) as (_, http):
            user = await sign_up(http)
        async with serve(tmp_path, argon2_time_cost=2, argon2_memory_kib=128) as (_, http):
            for _ in range(2):
                signed = await http.post("/v1/auth/token", data={"username": user["email"], "password": PASSWORD})
                assert signed.status_code == 200
        log = SqliteEventLog(f"sqlite:///{tmp_path}/events.db")
        events = await log.load(user["user_id"])
        await log.close()
        assert [e.event_type for e in events] == ["UserRegistered", "UserPasswordRehashed"]
        assert "m=128,t=2" in events[1].payload["password_hash"]


class TestLoopLag:
    async def test_the_event_loop_lag_histogram_is_served_on_metrics(self, tmp_path: Path) -> None:
        """/metrics carries snapfix_event_loop_lag_seconds, sampled while the app runs."""
        async with serve(tmp_path) as (_, http):
            await asyncio.sleep(0.2)
            metrics = (await http.get("/metrics")).text
            lines = metrics.splitlines()
            count = next(line for line in lines if line.startswith("snapfix_event_loop_lag_seconds_count"))
            assert float(count.split()[-1]) > 0
