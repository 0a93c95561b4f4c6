"""The README's commands for real: `snapfix serve` under uvicorn, `snapfix users create`, curl-like HTTP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import FAST_ARGON2
from tests.helpers import PASSWORD
from tests.processes import free_port

SNAPFIX = str(Path(sys.executable).with_name("snapfix"))


@pytest.fixture
def server_env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "SNAPFIX_EVENT_LOG": f"sqlite:///{tmp_path}/events.db",
        "SNAPFIX_VIEW_STORE": f"sqlite:///{tmp_path}/views.db",
        "SNAPFIX_LOG_FORMAT": "json",
        "SNAPFIX_LOG_LEVEL": "debug",
        **{f"SNAPFIX_{k.upper()}": str(v) for k, v in FAST_ARGON2.items()},
    }


@pytest.fixture
def server(server_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    port = free_port()
    log = (tmp_path / "server.log").open("wb")
    proc = subprocess.Popen([SNAPFIX, "serve", "--port", str(port)], env=server_env, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("snapfix serve did not start:\n" + (tmp_path / "server.log").read_text())
            time.sleep(0.1)
        yield base
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def sign_in(base: str, email: str) -> dict[str, str]:
    token = httpx.post(f"{base}/v1/auth/token", data={"username": email, "password": PASSWORD}).json()
    return {"Authorization": f"Bearer {token['access_token']}"}


class TestTheReadmeSession:
    def test_the_walkthrough_works_against_a_real_server(self, server: str, server_env: dict[str, str]) -> None:
        """Register, report, see it listed, staff acknowledge, a neighbour upvotes and comments, history in order."""
        base = server
        assert httpx.get(f"{base}/docs").status_code == 200
        for name in ("ada", "ben"):
            created = httpx.post(
                f"{base}/v1/users",
                json={"email": f"{name}@example.org", "password": PASSWORD, "display_name": name.title()},
            )
            assert created.status_code == 201, created.text
        staff = subprocess.run(
            [SNAPFIX, "users", "create", "--email", "sam@city.example", "--display-name", "Sam", "--role", "staff"],
            env={**server_env, "SNAPFIX_NEW_USER_PASSWORD": PASSWORD},
            capture_output=True,
            text=True,
            check=False,
        )
        assert staff.returncode == 0, staff.stderr
        ada, ben, sam = (sign_in(base, e) for e in ("ada@example.org", "ben@example.org", "sam@city.example"))

        issue = httpx.post(
            f"{base}/v1/issues",
            headers=ada,
            json={
                "title": "Pothole on Main Street",
                "description": "Deep",
                "category": "pothole",
                "location": {"lat": 51.5074, "lon": -0.1278},
            },
        ).json()
        started = time.monotonic()
        while not any(i["id"] == issue["id"] for i in httpx.get(f"{base}/v1/issues").json()["items"]):
            assert time.monotonic() - started < 1.0, "not listed within a second"
            time.sleep(0.01)
        assert httpx.get(f"{base}/v1/issues/{issue['id']}").json()["status"] == "reported"

        ack = httpx.post(f"{base}/v1/issues/{issue['id']}/status", headers=sam, json={"status": "acknowledged"})
        assert ack.status_code == 200, ack.text
        assert httpx.put(f"{base}/v1/issues/{issue['id']}/upvote", headers=ben).status_code == 200
        said = httpx.post(f"{base}/v1/issues/{issue['id']}/comments", headers=ben, json={"body": "Me too"})
        history = httpx.get(
            f"{base}/v1/issues/{issue['id']}/history", headers={"X-Consistency-Token": said.json()["position"]}
        ).json()["items"]
        assert [h["event_type"] for h in history] == [
            "IssueReported",
            "IssueStatusChanged",
            "IssueUpvoted",
            "IssueCommented",
        ]

    def test_logs_are_json_with_correlation_ids_and_no_personal_data(self, server: str, tmp_path: Path) -> None:
        """JSON logs carry the request's correlation id from HTTP to event to projection; no emails or passwords."""
        base = server
        email = "private.person@example.org"
        httpx.post(f"{base}/v1/users", json={"email": email, "password": PASSWORD, "display_name": "P"})
        headers = {**sign_in(base, email), "X-Correlation-ID": "trace-me-123"}
        httpx.post(
            f"{base}/v1/issues",
            headers=headers,
            json={
                "title": "Broken lamp",
                "description": "Dark",
                "category": "streetlight",
                "location": {"lat": 1, "lon": 2},
            },
        )
        time.sleep(0.3)
        text = (tmp_path / "server.log").read_text()
        assert email not in text
        assert PASSWORD not in text
        import json

        lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
        traced = [line for line in lines if line.get("correlation_id") == "trace-me-123"]
        assert {line["event"] for line in traced} >= {"command.appended", "http.request", "projection.applied"}
