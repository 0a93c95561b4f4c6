"""The distributed deployment for real: separate role processes over Kafka, FerretDB and Redis.

* One command script, run over HTTP against the command API → Kafka → projector worker →
  MongoDB → query API (with Redis), gives the same views as the embedded deployment.
* A projector worker killed with SIGKILL in the middle of a 10,000-event backlog, then
  started again, ends with views identical to a clean replay (compared by digest).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from pymongo import AsyncMongoClient

from events.envelope import Envelope
from events.kafka_log import KafkaEventLog, KafkaPublisher, KafkaTopic, delete_topic, ensure_topic
from projectors.catalog import ALL
from projectors.ports import Query, ViewStore
from projectors.runner import ProjectionRunner
from projectors.sqlite_views import SqliteViewStore
from tests.conftest import FAST_ARGON2
from tests.contract.backends import require_engine
from tests.helpers import PASSWORD
from tests.processes import SNAPFIX, Role, free_port, running

pytestmark = pytest.mark.engines
MONGO = "mongodb://127.0.0.1:27017"
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
VOLATILE_KEYS = {"created_at", "updated_at", "occurred_at", "at", "recorded_at", "correlation_id", "position"}


@pytest.fixture
def engines() -> None:
    for engine in ("kafka", "mongodb", "redis"):
        require_engine(engine)


def base_env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SNAPFIX_")}
    env.update({f"SNAPFIX_{k.upper()}": str(v) for k, v in FAST_ARGON2.items()})
    env.update(SNAPFIX_ENVIRONMENT="test", SNAPFIX_LOG_FORMAT="json", SNAPFIX_METRICS_PORT="0")
    env.update({f"SNAPFIX_{k.upper()}": v for k, v in values.items()})
    return env


@pytest.fixture
def distributed_env(engines: None) -> Iterator[dict[str, str]]:
    tag = uuid.uuid4().hex[:10]
    env = base_env(
        event_log="kafka://127.0.0.1:9092",
        kafka_topic=f"snapfix.test.{tag}",
        kafka_partitions="3",
        projector_group=f"snapfix-test-{tag}",
        write_store=f"{MONGO}/sfw_{tag}",
        view_store=f"{MONGO}/sfv_{tag}",
        cache="redis://127.0.0.1:6379/0",
    )
    yield env
    asyncio.run(_drop(env))


async def _drop(env: dict[str, str]) -> None:
    topic = KafkaTopic("127.0.0.1:9092", name=env["SNAPFIX_KAFKA_TOPIC"])
    await delete_topic(topic)
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(MONGO)
    for url in (env["SNAPFIX_WRITE_STORE"], env["SNAPFIX_VIEW_STORE"]):
        await client.drop_database(url.rsplit("/", 1)[1])
    await client.close()


# --- one command script, two deployments ----------------------------------------------------


class Script:
    """The same story told to any deployment: writes to one URL, reads from another."""

    def __init__(self, writes: str, reads: str, env: dict[str, str]) -> None:
        self.w, self.r, self.env = (
            httpx.Client(base_url=writes, timeout=30),
            httpx.Client(base_url=reads, timeout=30),
            env,
        )
        self.names: dict[str, str] = {}
        self.versions: dict[str, int] = {}

    def _user(self, name: str) -> dict[str, str]:
        email = f"{name}@example.org"
        created = self.w.post("/v1/users", json={"email": email, "password": PASSWORD, "display_name": name.title()})
        assert created.status_code == 201, created.text
        self.names[created.json()["id"]] = f"user:{name}"
        return self._sign_in(email)

    def _sign_in(self, email: str) -> dict[str, str]:
        token = self.w.post("/v1/auth/token", data={"username": email, "password": PASSWORD})
        assert token.status_code == 200, token.text
        return {"Authorization": f"Bearer {token.json()['access_token']}"}

    def _staff(self, name: str) -> dict[str, str]:
        made = subprocess.run(
            [
                SNAPFIX,
                "users",
                "create",
                "--email",
                f"{name}@city.example",
                "--display-name",
                name.title(),
                "--role",
                "staff",
            ],
            env={**self.env, "SNAPFIX_NEW_USER_PASSWORD": PASSWORD},
            capture_output=True,
            text=True,
            check=False,
        )
        assert made.returncode == 0, made.stderr
        self.names[made.stdout.strip().splitlines()[-1]] = f"user:{name}"
        return self._sign_in(f"{name}@city.example")

    def _do(self, method: str, path: str, who: dict[str, str], body: dict | None = None) -> dict:
        response = self.w.request(method, path, headers=who, json=body)
        assert response.status_code in (200, 201), f"{method} {path}: {response.text}"
        answer = response.json()
        self.versions[answer["id"]] = answer["version"]
        return answer

    def run(self) -> list[str]:
        ada, ben, sam = self._user("ada"), self._user("ben"), self._staff("sam")
        issues = []
        for n, category in enumerate(("pothole", "streetlight", "garbage")):
            made = self._do(
                "POST",
                "/v1/issues",
                ada,
                {
                    "title": f"Problem number {n}",
                    "description": f"Seen on day {n}",
                    "category": category,
                    "location": {"lat": 51.5 + n / 100, "lon": -0.12 - n / 100},
                    "address": f"{n} High Street",
                },
            )
            self.names[made["id"]] = f"issue:{n}"
            issues.append(made["id"])
        first, second, third = issues
        self._do("POST", f"/v1/issues/{first}/status", sam, {"status": "acknowledged", "note": "Crew booked"})
        self._do("POST", f"/v1/issues/{second}/status", sam, {"status": "in_progress"})
        self._do("POST", f"/v1/issues/{third}/assignment", sam, {"department": "parks"})
        self._do("PUT", f"/v1/issues/{first}/upvote", ben)
        self._do("PUT", f"/v1/issues/{second}/upvote", ben)
        self._do("PUT", f"/v1/issues/{first}/upvote", ben)  # idempotent: no new version
        self._do("POST", f"/v1/issues/{first}/comments", ben, {"body": "Nearly fell in"})
        self._do("PATCH", f"/v1/issues/{third}", ada, {"title": "Overflowing bins"})
        self._do("PATCH", "/v1/users/me", ben, {"display_name": "Benjamin"})
        return issues

    def views(self, issues: list[str]) -> dict[str, Any]:
        """What the query API shows once every write is applied, with ids and times normalised."""
        seen: dict[str, Any] = {}
        for issue in issues:
            seen[self.names[issue]] = self._eventually(f"/v1/issues/{issue}", self.versions[issue])
            seen[self.names[issue] + ":history"] = self._eventually(
                f"/v1/issues/{issue}/history", self.versions[issue], lambda body: len(body["items"])
            )
        seen["list"] = self.r.get("/v1/issues?sort=oldest").json()
        seen["stats"] = self.r.get("/v1/stats").json() if self.r.get("/v1/stats").status_code == 200 else None
        return normalise(seen, self.names)

    def _eventually(
        self,
        path: str,
        version: int,
        version_of: Callable[[Any], int] = lambda body: body.get("version"),
        timeout: float = 30.0,
    ) -> Any:
        """Poll until the view shows ``version`` (views in other partitions may trail a command's token)."""
        deadline = time.monotonic() + timeout
        while True:
            response = self.r.get(path)
            if response.status_code == 200 and version_of(response.json()) == version:
                return response.json()
            if time.monotonic() > deadline:
                raise AssertionError(f"{path} did not reach version {version}: {response.text[:500]}")
            time.sleep(0.05)


def normalise(value: Any, names: dict[str, str]) -> Any:
    """Replace ids by the script's names and drop times, so two deployments can be compared."""
    if isinstance(value, dict):
        return {k: normalise(v, names) for k, v in sorted(value.items()) if k not in VOLATILE_KEYS}
    if isinstance(value, list):
        return [normalise(v, names) for v in value]
    if isinstance(value, str):
        if value in names:
            return names[value]
        return "<uuid>" if UUID.match(value) else value
    return value


def run_embedded(tmp_path: Path) -> dict[str, Any]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    env = base_env(
        event_log=f"sqlite:///{tmp_path}/events.db", view_store=f"sqlite:///{tmp_path}/views.db", cache="memory://"
    )
    server = Role("serve", env, tmp_path / "serve.log", free_port())
    with running(server):
        script = Script(server.url, server.url, env)
        return script.views(script.run())


def run_distributed(env: dict[str, str], tmp_path: Path) -> dict[str, Any]:
    command = Role("command-api", env, tmp_path / "command.log", free_port())
    query = Role("query-api", env, tmp_path / "query.log", free_port())
    worker = Role("projectors", env, tmp_path / "projectors.log")
    with running(command, query, worker):
        script = Script(command.url, query.url, env)
        return script.views(script.run())


class TestSameViewsEitherWay:
    def test_the_distributed_deployment_shows_what_the_embedded_one_shows(
        self, distributed_env: dict[str, str], tmp_path: Path
    ) -> None:
        """HTTP → command API → Kafka → faust worker → MongoDB → query API + Redis equals the one-process run."""
        embedded = run_embedded(tmp_path / "embedded")
        distributed = run_distributed(distributed_env, tmp_path)
        assert distributed["issue:0"]["status"] == "acknowledged"
        assert distributed["issue:0"]["upvotes"] == 1
        assert distributed == embedded


# --- a worker killed mid-backlog --------------------------------------------------------------

BACKLOG = 10_000


def backlog(n_events: int) -> list[Envelope]:
    """Valid issue histories: a report, status moves, upvotes and comments, five events per issue."""
    events: list[Envelope] = []
    for i in range(n_events // 5):
        issue = f"issue-{i:05d}"
        payloads = [
            (
                "IssueReported",
                {
                    "reporter_id": f"user-{i % 97}",
                    "title": f"Problem {i}",
                    "description": "d",
                    "category": "pothole",
                    "department": "roads",
                    "lat": 51.5,
                    "lon": -0.12,
                },
            ),
            ("IssueUpvoted", {"user_id": f"user-{(i + 1) % 97}"}),
            ("IssueStatusChanged", {"from_status": "reported", "to_status": "acknowledged", "note": None}),
            (
                "IssueCommented",
                {"comment_id": f"c-{i}", "author_id": f"user-{(i + 2) % 97}", "body": "soon", "by_staff": False},
            ),
            ("IssueUpvoted", {"user_id": f"user-{(i + 3) % 97}"}),
        ]
        for version, (kind, payload) in enumerate(payloads, start=1):
            events.append(
                Envelope(
                    event_type=kind,
                    schema_version=1,
                    aggregate_type="issue",
                    aggregate_id=issue,
                    aggregate_version=version,
                    payload=payload,
                )
            )
    return events


async def publish_backlog(topic: KafkaTopic, events: list[Envelope]) -> dict[int, int]:
    await ensure_topic(topic)
    publisher = KafkaPublisher(topic, timeout_s=60)
    await publisher.start()
    head: dict[int, int] = {}
    try:
        for start in range(0, len(events), 1000):
            for position in await publisher.publish(events[start : start + 1000]):
                head[position.partition] = max(head.get(position.partition, -1), position.offset)
    finally:
        await publisher.stop()
    return head


async def digest(store: ViewStore) -> str:
    """One hash of every document of every view, in id order."""
    h = hashlib.sha256()
    for projection in ALL:
        for doc in await store.find(Query(projection.name, order_by=(("id", False),), limit=10_000_000)):
            h.update(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS))
    return h.hexdigest()


async def clean_replay(topic: KafkaTopic, head: dict[int, int], folder: Path) -> str:
    log = KafkaEventLog(topic)
    await log.open()
    store = SqliteViewStore(f"sqlite:///{folder}/clean.db")
    runner = ProjectionRunner("main", ALL, log, store, batch_size=2000)
    await runner.setup()
    while any(runner.checkpoint.get(p, -1) < o for p, o in head.items()):
        if not await runner.run_once():
            await log.wait(runner.checkpoint, 0.5)
    result = await digest(store)
    await store.close()
    await log.close()
    return result


async def worker_checkpoint(env: dict[str, str]) -> dict[int, int]:
    from projectors.mongo_views import MongoViewStore

    store = MongoViewStore(env["SNAPFIX_VIEW_STORE"])
    try:
        return await store.checkpoint("main")
    finally:
        await store.close()


async def worker_digest(env: dict[str, str]) -> str:
    from projectors.mongo_views import MongoViewStore

    store = MongoViewStore(env["SNAPFIX_VIEW_STORE"])
    await store.setup([p.collection for p in ALL])
    try:
        return await digest(store)
    finally:
        await store.close()


def applied(checkpoint: dict[int, int]) -> int:
    return sum(offset + 1 for offset in checkpoint.values())


class TestKilledWorker:
    def test_a_worker_killed_mid_backlog_converges_to_a_clean_replay(
        self, distributed_env: dict[str, str], tmp_path: Path
    ) -> None:
        """SIGKILL part-way through 10,000 events, restart: the views' digest equals a clean replay's."""
        env = {**distributed_env, "SNAPFIX_CACHE": "memory://", "SNAPFIX_PROJECTOR_BATCH_SIZE": "250"}
        topic = KafkaTopic("127.0.0.1:9092", name=env["SNAPFIX_KAFKA_TOPIC"], partitions=3)
        head = asyncio.run(publish_backlog(topic, backlog(BACKLOG)))
        assert applied(head) == BACKLOG

        first = Role("projectors", env, tmp_path / "worker-1.log").start()
        try:
            deadline = time.monotonic() + 300
            while applied(asyncio.run(worker_checkpoint(env))) < BACKLOG // 5:
                assert time.monotonic() < deadline, (tmp_path / "worker-1.log").read_text()[-3000:]
                time.sleep(0.2)
        finally:
            first.kill()
        at_kill = applied(asyncio.run(worker_checkpoint(env)))
        assert BACKLOG // 5 <= at_kill < BACKLOG, "the kill must land in the middle of the backlog"

        second = Role("projectors", env, tmp_path / "worker-2.log").start()
        try:
            deadline = time.monotonic() + 600
            while applied(asyncio.run(worker_checkpoint(env))) < BACKLOG:
                assert time.monotonic() < deadline, (tmp_path / "worker-2.log").read_text()[-3000:]
                time.sleep(0.5)
        finally:
            second.stop()
        assert asyncio.run(worker_digest(env)) == asyncio.run(clean_replay(topic, head, tmp_path))


# --- read your own creation across roles ------------------------------------------------------


class TestReadYourCreationAcrossRoles:
    def test_following_a_201_to_the_query_api_never_meets_a_404(
        self, distributed_env: dict[str, str], tmp_path: Path
    ) -> None:
        """Reports to the command API, each followed at once to its Location at the query API: all 200.

        So is /v1/users/me right after registering; an id nobody created is still a 404.
        """
        command = Role("command-api", distributed_env, tmp_path / "command.log", free_port())
        query = Role("query-api", distributed_env, tmp_path / "query.log", free_port())
        worker = Role("projectors", distributed_env, tmp_path / "projectors.log")
        with running(command, query, worker), httpx.Client(timeout=30) as http:
            email = f"ada-{uuid.uuid4().hex[:8]}@example.org"
            created = http.post(f"{command.url}/v1/users", json={"email": email, "password": PASSWORD,
                                                                   "display_name": "Ada"})  # fmt: skip
            assert created.status_code == 201, created.text
            token = http.post(f"{command.url}/v1/auth/token", data={"username": email, "password": PASSWORD})
            who = {"Authorization": f"Bearer {token.json()['access_token']}"}
            me = http.get(f"{query.url}/v1/users/me", headers=who)
            assert me.status_code == 200, me.text
            statuses = []
            for n in range(20):
                body = {"title": f"Problem {n}", "description": "d", "category": "pothole",
                        "location": {"lat": 51.5, "lon": -0.12}}  # fmt: skip
                made = http.post(f"{command.url}/v1/issues", json=body, headers=who)
                assert made.status_code == 201, made.text
                statuses.append(http.get(query.url + made.headers["Location"]).status_code)
            assert statuses == [200] * 20
            assert http.get(f"{query.url}/v1/issues/{uuid.uuid4()}").status_code == 404
