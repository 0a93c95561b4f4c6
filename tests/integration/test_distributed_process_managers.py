"""The process managers in the distributed deployment, end to end over real role processes.

Thumbnails and notifications come from the photo worker and the notifier, which follow the
log with their own checkpoints. On Kafka they run in ``snapfix projectors`` (there is no
all-in-one process), with photos in GridFS so the command API and the worker share them:
this test proves a photo uploaded to one process gets its thumbnail from another, and a
staff status change reaches a follower's notifications and inbox once.
"""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from PIL import Image
from pymongo import AsyncMongoClient

from events.kafka_log import KafkaTopic, delete_topic
from tests.conftest import FAST_ARGON2
from tests.contract.backends import require_engine
from tests.helpers import PASSWORD
from tests.processes import SNAPFIX, Role, free_port, running

pytestmark = pytest.mark.engines
MONGO = "mongodb://127.0.0.1:27017"
DATABASES = ("WRITE_STORE", "VIEW_STORE", "BLOB_STORE")


class Inbox:
    """An aiosmtpd handler that keeps every message the projector role sends."""

    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: ARG002 - aiosmtpd's hook signature
        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))
        return "250 OK"


@pytest.fixture
def inbox() -> Iterator[tuple[Inbox, int]]:
    handler, port = Inbox(), free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


@pytest.fixture
def env(inbox: tuple[Inbox, int]) -> Iterator[dict[str, str]]:
    """A topic, a consumer group and three databases of this test's own, dropped afterwards."""
    for engine in ("kafka", "mongodb", "redis"):
        require_engine(engine)
    tag = uuid.uuid4().hex[:10]
    values = {k: str(v) for k, v in FAST_ARGON2.items()} | {
        "environment": "test",
        "log_format": "json",
        "metrics_port": "0",
        "event_log": "kafka://127.0.0.1:9092",
        "kafka_topic": f"snapfix.test.{tag}",
        "kafka_partitions": "3",
        "projector_group": f"snapfix-test-{tag}",
        "write_store": f"{MONGO}/sfw_{tag}",
        "view_store": f"{MONGO}/sfv_{tag}",
        "blob_store": f"{MONGO}/sfb_{tag}",
        "cache": "redis://127.0.0.1:6379/0",
        "smtp_url": f"smtp://127.0.0.1:{inbox[1]}",
        "projector_idle_poll_ms": "50",
    }
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SNAPFIX_")}
    environ.update({f"SNAPFIX_{k.upper()}": v for k, v in values.items()})
    yield environ
    asyncio.run(_drop(environ))


async def _drop(env: dict[str, str]) -> None:
    await delete_topic(KafkaTopic("127.0.0.1:9092", name=env["SNAPFIX_KAFKA_TOPIC"]))
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(MONGO)
    for name in DATABASES:
        await client.drop_database(env[f"SNAPFIX_{name}"].rsplit("/", 1)[1])
    await client.close()


def jpeg(size: tuple[int, int] = (640, 480)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (40, 120, 200)).save(out, "JPEG")
    return out.getvalue()


def eventually(probe: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    """Poll until the probe gives something truthy: the process managers act in another process."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := probe():
            return found
        time.sleep(0.1)
    raise AssertionError(f"{what} did not happen within {timeout}s")


def sign_up(w: httpx.Client, name: str) -> dict[str, str]:
    email = f"{name}@example.org"
    created = w.post("/v1/users", json={"email": email, "password": PASSWORD, "display_name": name.title()})
    assert created.status_code == 201, created.text
    return sign_in(w, email)


def sign_in(w: httpx.Client, email: str) -> dict[str, str]:
    token = w.post("/v1/auth/token", data={"username": email, "password": PASSWORD})
    assert token.status_code == 200, token.text
    return {"Authorization": f"Bearer {token.json()['access_token']}"}


def staff(w: httpx.Client, env: dict[str, str]) -> dict[str, str]:
    made = subprocess.run(
        [SNAPFIX, "users", "create", "--email", "sam@city.example", "--display-name", "Sam", "--role", "staff"],
        env={**env, "SNAPFIX_NEW_USER_PASSWORD": PASSWORD},
        capture_output=True,
        text=True,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    return sign_in(w, "sam@city.example")


def test_thumbnails_and_notifications_come_from_the_projector_role(
    env: dict[str, str], inbox: tuple[Inbox, int], tmp_path: Path
) -> None:
    command = Role("command-api", env, tmp_path / "command.log", free_port())
    query = Role("query-api", env, tmp_path / "query.log", free_port())
    worker = Role("projectors", env, tmp_path / "projectors.log")
    with running(command, query, worker), httpx.Client(base_url=command.url, timeout=30) as w:
        r = httpx.Client(base_url=query.url, timeout=30)
        ada, ben, sam = sign_up(w, "ada"), sign_up(w, "ben"), staff(w, env)
        body = {
            "title": "Pothole on Main Street",
            "description": "Deep enough to lose a wheel in.",
            "category": "pothole",
            "location": {"lat": 51.5074, "lon": -0.1278},
        }
        reported = w.post("/v1/issues", json=body, headers=ada)
        assert reported.status_code == 201, reported.text
        issue = reported.json()["id"]

        uploaded = w.post(f"/v1/issues/{issue}/photos", files={"file": ("hole.jpg", jpeg(), "image/jpeg")}, headers=ada)
        assert uploaded.status_code == 201, uploaded.text

        def photo() -> dict[str, Any] | None:
            response = r.get(f"/v1/issues/{issue}")
            photos = response.json().get("photos") if response.status_code == 200 else None
            return photos[0] if photos else None

        url = eventually(photo, "the photo in the issue view")["url"]
        served = r.get(url)
        assert served.status_code == 200
        assert served.headers["content-type"] == "image/jpeg"

        def thumbnail() -> httpx.Response | None:
            response = r.get(f"{url}/thumbnail")
            return response if response.status_code == 200 else None

        thumb = eventually(thumbnail, "the thumbnail (photo worker in snapfix projectors, blobs in GridFS)")
        assert max(Image.open(io.BytesIO(thumb.content)).size) <= 320

        followed = w.put(f"/v1/issues/{issue}/subscription", headers=ben)
        assert followed.status_code in (200, 201), followed.text
        changed = w.post(f"/v1/issues/{issue}/status", json={"status": "acknowledged", "note": "Crew"}, headers=sam)
        assert changed.status_code in (200, 201), changed.text

        def notified(user: dict[str, str]) -> Callable[[], list[dict[str, Any]]]:
            return lambda: r.get("/v1/users/me/notifications", headers=user).json()["items"]

        [for_ben] = eventually(notified(ben), "ben's notification")
        assert for_ben["issue_id"] == issue
        assert for_ben["kind"] == "status_changed"
        assert for_ben["to_status"] == "acknowledged"
        eventually(notified(ada), "the reporter's notification")
        assert r.get("/v1/users/me/notifications", headers=sam).json()["items"] == []  # not a follower

        messages = inbox[0].messages
        eventually(lambda: len(messages) >= 2, "the emails")
        time.sleep(1.0)  # a second send would come within the managers' next polls
        assert sorted(str(m["To"]) for m in messages) == ["ada@example.org", "ben@example.org"]

        # A restarted worker resumes from the managers' checkpoints (Kafka offsets): nothing again.
        worker.stop()
        worker.start()
        log = tmp_path / "projectors.log"
        started = '"process_manager": "photo-worker", "event": "process_manager.started"'
        eventually(lambda: log.read_text().count(started) >= 2, "the restart")
        time.sleep(2.0)
        assert len(messages) == 2
        history = r.get(f"/v1/issues/{issue}/history").json()["items"]
        assert [h["event_type"] for h in history].count("IssuePhotoThumbnailed") == 1
        r.close()
