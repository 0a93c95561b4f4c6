"""Issue 6 on the distributed deployment: the query API when its view store or its cache goes away.

A command API, a projector worker (Kafka) and a query API run as real processes. The views live
on a private FerretDB process (over the shared PostgreSQL) and the caches on a private
redis-server, both on ports of their own, so a test can SIGKILL them and start them again
without disturbing anyone else using the shared engines. Proven here:

* FerretDB killed (SIGKILL) or hung (SIGSTOP): a cached detail and a cached browse page still
  answer 200 with the same bodies; uncached reads (an evicted detail, a history, an unseen
  browse page) answer 503 ``application/problem+json`` with ``Retry-After``, within a bound far
  below the driver's 30 s server selection; ``/readyz`` names the view store as down, within the
  same bound. FerretDB started again on the same port, or resumed: the same reads answer 200 by
  themselves, from the same query API process.
* Redis killed: details and browse pages stay correct, uncached (``snapfix_cache_lookups_total``
  counts misses, no hits), and a change written meanwhile through the command API and the
  projector shows as soon as the projector applied it. Redis started again (empty): hits grow.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from pymongo import MongoClient
from pymongo.errors import PyMongoError

from tests.conftest import in_ci
from tests.contract.backends import require_engine
from tests.helpers import PASSWORD
from tests.integration.test_distributed import MONGO, _drop, base_env
from tests.processes import Role, free_port, running

pytestmark = pytest.mark.engines
ROOT = Path(__file__).resolve().parents[2]
FERRETDB = ROOT / ".engines" / "bin" / "ferretdb"
POSTGRES_PORT = 5433
PG_URL = f"postgres://ferretdb@127.0.0.1:{POSTGRES_PORT}/ferretdb"  # as ops/engines.sh runs FerretDB
DOWN_BOUND_S = 3.0  # "within a second" with room for a busy 2-core machine; the driver alone would wait 30 s
LOOKUPS = re.compile(r'^snapfix_cache_lookups_total\{cache="(\w+)",result="(\w+)"\} ([0-9.e+]+)$', re.M)


# --- private engine processes -------------------------------------------------------------------


class Engine:
    """One engine process of this test alone, on a fixed port, that the test may kill and start again."""

    def __init__(self, name: str, args: list[str], port: int, log: Path, ready: Callable[[int], bool]) -> None:
        self.name, self.args, self.port, self.log_path, self._ready = name, args, port, log, ready
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> Engine:
        """Start it and wait until it answers a real request in its own protocol."""
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.args, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while not self._ready(self.port):
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited:\n{self.log_path.read_text()[-4000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} not ready in {timeout}s:\n{self.log_path.read_text()[-4000:]}")
            time.sleep(0.1)
        return self

    def kill(self) -> None:
        """SIGKILL: the engine vanishes mid-conversation, as a crashed server does."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def pause(self) -> None:
        """SIGSTOP: the engine hangs with its connections open, as an overloaded or partitioned server does."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGCONT)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def _redis_ready(port: int) -> bool:
    try:
        return bool(redis.Redis(port=port, socket_timeout=1, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def _mongo_ready(port: int) -> bool:
    client: MongoClient[dict[str, Any]] = MongoClient(
        f"mongodb://127.0.0.1:{port}", serverSelectionTimeoutMS=1000, connectTimeoutMS=1000
    )
    try:
        client.admin.command("ping")
        return True
    except PyMongoError:
        return False
    finally:
        client.close()


def private_redis(tmp: Path) -> Engine:
    """A redis-server with the flags ops/engines.sh uses: no persistence, so a restart starts empty."""
    port = free_port()
    folder = tmp / "redis"
    folder.mkdir(parents=True, exist_ok=True)
    args = ["redis-server", "--save", "", "--appendonly", "no", "--port", str(port)]
    args += ["--bind", "127.0.0.1", "--dir", str(folder), "--daemonize", "no"]
    return Engine("redis-server", args, port, tmp / "redis.log", _redis_ready)


def private_ferretdb(tmp: Path) -> Engine:
    """A second FerretDB on the shared PostgreSQL: its databases are schemas there, so a unique name isolates."""
    port = free_port()
    args = [str(FERRETDB), "--listen-addr", f"127.0.0.1:{port}", "--handler", "postgresql"]
    args += ["--postgresql-url", PG_URL]
    return Engine("ferretdb", args, port, tmp / "ferretdb.log", _mongo_ready)


def require_private_engines() -> None:
    """The shared engines, and what a private FerretDB and Redis need: skip locally, fail in CI."""
    for engine in ("kafka", "mongodb", "redis"):
        require_engine(engine)
    with socket.socket() as s:
        s.settimeout(0.5)
        postgres_up = s.connect_ex(("127.0.0.1", POSTGRES_PORT)) == 0
    missing = [
        what
        for what, there in (
            (f"PostgreSQL on 127.0.0.1:{POSTGRES_PORT}", postgres_up),
            (str(FERRETDB), FERRETDB.exists()),
            ("redis-server", shutil.which("redis-server") is not None),
        )
        if not there
    ]
    if missing:
        message = f"missing {', '.join(missing)}: start the engines with ops/engines.sh start"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)


# --- the deployment -----------------------------------------------------------------------------


@dataclass
class Stack:
    ferretdb: Engine
    cache: Engine
    command: Role
    query: Role
    worker: Role
    reads: httpx.Client
    writes: httpx.Client


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    """Command API + projector worker on Kafka, query API; views and caches on the private engines."""
    require_private_engines()
    tag = uuid.uuid4().hex[:10]
    ferretdb, cache = private_ferretdb(tmp_path), private_redis(tmp_path)
    env = base_env(
        event_log="kafka://127.0.0.1:9092",
        kafka_topic=f"snapfix.test.{tag}",
        kafka_partitions="1",
        projector_group=f"snapfix-test-{tag}",
        write_store=f"{MONGO}/sfw_{tag}",
        view_store=f"mongodb://127.0.0.1:{ferretdb.port}/sfv_{tag}",
        cache=f"redis://127.0.0.1:{cache.port}/0",
        blob_store=f"file://{tmp_path}/blobs",
        process_managers="false",
    )
    command = Role("command-api", env, tmp_path / "command.log", free_port())
    query = Role("query-api", env, tmp_path / "query.log", free_port())
    worker = Role("projectors", env, tmp_path / "projectors.log")
    try:
        ferretdb.start()
        cache.start()
        with (
            running(command, query, worker),
            httpx.Client(base_url=query.url, timeout=30) as reads,
            httpx.Client(base_url=command.url, timeout=30) as writes,
        ):
            yield Stack(ferretdb, cache, command, query, worker, reads, writes)
    finally:
        try:
            drop_private_views(ferretdb, f"sfv_{tag}")
        finally:
            ferretdb.kill()
            cache.kill()
            asyncio.run(_drop({**env, "SNAPFIX_VIEW_STORE": f"{MONGO}/sfv_{tag}"}))


def drop_private_views(ferretdb: Engine, database: str) -> None:
    """Drop the views through the private FerretDB: another FerretDB does not know a database it did not make."""
    if ferretdb.proc is None:
        return  # it never started
    if ferretdb.running:
        ferretdb.resume()  # in case the test left it SIGSTOPped
    else:
        ferretdb.start()
    client: MongoClient[dict[str, Any]] = MongoClient(
        f"mongodb://127.0.0.1:{ferretdb.port}", serverSelectionTimeoutMS=10_000
    )
    try:
        client.drop_database(database)
    finally:
        client.close()


def sign_up(s: Stack, name: str) -> dict[str, str]:
    email = f"{name}@example.org"
    made = s.writes.post("/v1/users", json={"email": email, "password": PASSWORD, "display_name": name.title()})
    assert made.status_code == 201, made.text
    token = s.writes.post("/v1/auth/token", data={"username": email, "password": PASSWORD})
    assert token.status_code == 200, token.text
    return {"Authorization": f"Bearer {token.json()['access_token']}"}


def report(s: Stack, who: dict[str, str], n: int) -> str:
    made = s.writes.post(
        "/v1/issues",
        headers=who,
        json={
            "title": f"Problem number {n}",
            "description": f"Seen on day {n}",
            "category": "pothole",
            "location": {"lat": 51.5 + n / 100, "lon": -0.12},
            "address": f"{n} High Street",
        },
    )
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


def eventually(s: Stack, path: str, done: Callable[[httpx.Response], bool], timeout: float = 60.0) -> httpx.Response:
    """Poll the query API until ``done`` holds (the projector applies writes asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        response = s.reads.get(path)
        if done(response):
            return response
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} never got there: {response.status_code} {response.text[:500]}")
        time.sleep(0.1)


def city(s: Stack) -> tuple[dict[str, str], list[str]]:
    """A reporter and three issues, visible through the query API."""
    ada = sign_up(s, "ada")
    issues = [report(s, ada, n) for n in range(3)]
    for issue in issues:
        eventually(s, f"/v1/issues/{issue}", lambda r: r.status_code == 200)
    eventually(s, "/v1/issues?limit=3", lambda r: r.status_code == 200 and len(r.json()["items"]) == 3)
    return ada, issues


def timed_get(s: Stack, path: str) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = s.reads.get(path)
    return response, time.monotonic() - started


def lookups(s: Stack) -> dict[tuple[str, str], float]:
    """``snapfix_cache_lookups_total`` of the query API, by (cache, result)."""
    text = s.reads.get("/metrics").text
    return {(cache, result): float(n) for cache, result, n in LOOKUPS.findall(text)}


# --- the view store down ------------------------------------------------------------------------


class TestViewStoreDown:
    @pytest.mark.parametrize("failure", ["killed", "hung"])
    def test_cached_reads_are_served_the_rest_are_quick_503s_and_it_recovers_by_itself(
        self, stack: Stack, failure: str
    ) -> None:
        """FerretDB killed or hung: cache hits answer, misses are 503 + Retry-After in a bound; it heals by itself."""
        s = stack
        _, (cached, evicted, _) = city(s)
        detail = s.reads.get(f"/v1/issues/{cached}")
        page = s.reads.get("/v1/issues?limit=3")
        before_evicted = s.reads.get(f"/v1/issues/{evicted}")
        history = s.reads.get(f"/v1/issues/{cached}/history")
        assert [r.status_code for r in (detail, page, before_evicted, history)] == [200] * 4
        assert s.reads.get("/readyz").json()["checks"] == {"view_store": "ok", "cache": "ok"}
        # The projector writes every detail through to the cache, and the read above cached its public
        # response (snapfix/detail_cache.py); forget both, as their expiry would.
        forgotten = redis.Redis(port=s.cache.port).delete(
            f"view:issue_detail:{evicted}", f"public:issue_detail:{evicted}"
        )
        assert forgotten == 2
        query_pid = s.query.proc.pid if s.query.proc else None

        if failure == "killed":
            s.ferretdb.kill()
        else:
            s.ferretdb.pause()

        for path, expected in ((f"/v1/issues/{cached}", detail), ("/v1/issues?limit=3", page)):
            served, elapsed = timed_get(s, path)
            assert served.status_code == 200, (path, served.text)
            assert served.json() == expected.json(), path
            assert elapsed < DOWN_BOUND_S, (path, elapsed)
        uncached = (f"/v1/issues/{evicted}", f"/v1/issues/{cached}/history", "/v1/issues?limit=2&sort=oldest")
        for path in uncached:
            down, elapsed = timed_get(s, path)
            assert down.status_code == 503, (path, down.text)
            assert down.headers["content-type"].startswith("application/problem+json"), path
            assert down.headers["retry-after"] == "1", path
            assert down.json()["type"] == "/problems/views-unavailable"
            assert down.json()["status"] == 503
            assert elapsed < DOWN_BOUND_S, (path, elapsed)
        ready, elapsed = timed_get(s, "/readyz")
        assert elapsed < DOWN_BOUND_S, elapsed
        assert ready.status_code == 503
        assert ready.json()["checks"]["view_store"].startswith("down")
        assert ready.json()["checks"]["cache"] == "ok"

        if failure == "killed":
            s.ferretdb.start()  # same port, same PostgreSQL: the views are all still there
        else:
            s.ferretdb.resume()

        back = eventually(s, f"/v1/issues/{evicted}", lambda r: r.status_code == 200, timeout=30)
        assert back.json() == before_evicted.json()
        assert s.reads.get(f"/v1/issues/{cached}/history").json() == history.json()
        assert s.reads.get("/v1/issues?limit=2&sort=oldest").status_code == 200
        assert eventually(s, "/readyz", lambda r: r.status_code == 200, timeout=30).json()["status"] == "ready"
        assert s.query.proc is not None
        assert s.query.proc.poll() is None, "the query API recovered without a restart"
        assert s.query.proc.pid == query_pid


# --- the cache down -----------------------------------------------------------------------------


class TestCacheDown:
    def test_reads_stay_correct_uncached_and_caching_resumes(self, stack: Stack) -> None:
        """SIGKILLed Redis: same answers from the views, misses only, a new write shows; restarted: hits again."""
        s = stack
        ada, (issue, *_) = city(s)
        paths = (f"/v1/issues/{issue}", "/v1/issues?limit=3")
        warm = {path: s.reads.get(path) for path in paths}
        again = {path: s.reads.get(path) for path in paths}
        assert all(again[p].status_code == 200 and again[p].json() == warm[p].json() for p in paths)
        counted = lookups(s)
        assert counted[("views", "hit")] >= 2, counted
        assert counted[("browse", "hit")] >= 1, counted

        s.cache.kill()

        for path in paths:
            uncached = s.reads.get(path)
            assert uncached.status_code == 200, (path, uncached.text)
            assert uncached.json() == warm[path].json(), path
        during = lookups(s)
        assert during[("views", "hit")] == counted[("views", "hit")], during
        assert during[("browse", "hit")] == counted[("browse", "hit")], during
        assert during[("views", "miss")] > counted[("views", "miss")], during
        assert during[("browse", "miss")] > counted[("browse", "miss")], during
        # A change made while Redis is down: command API -> Kafka -> projector -> views -> query API.
        edited = s.writes.patch(f"/v1/issues/{issue}", headers=ada, json={"title": "Edited without a cache"})
        assert edited.status_code == 200, edited.text
        shown = eventually(
            s, paths[0], lambda r: r.status_code == 200 and r.json()["title"] == "Edited without a cache"
        )
        assert shown.json()["version"] == edited.json()["version"]
        listed = s.reads.get(paths[1]).json()["items"]
        assert [item["title"] for item in listed if item["id"] == issue] == ["Edited without a cache"]
        still = lookups(s)
        assert still[("views", "hit")] == counted[("views", "hit")], still
        assert still[("browse", "hit")] == counted[("browse", "hit")], still
        assert s.reads.get("/readyz").json()["checks"]["cache"].startswith("down")

        s.cache.start()

        deadline = time.monotonic() + 30
        while True:
            answers = [s.reads.get(path) for path in paths]
            assert [a.status_code for a in answers] == [200, 200]
            assert answers[0].json()["title"] == "Edited without a cache"
            assert [i["title"] for i in answers[1].json()["items"] if i["id"] == issue] == ["Edited without a cache"]
            now = lookups(s)
            if now[("views", "hit")] > still[("views", "hit")] and now[("browse", "hit")] > still[("browse", "hit")]:
                break
            assert time.monotonic() < deadline, f"no cache hits after Redis came back: {lookups(s)}"
            time.sleep(0.1)
        assert s.reads.get("/readyz").json()["checks"]["cache"] == "ok"
