"""Issue 4 with real processes: command APIs racing over HTTP, and a command API SIGKILLed mid-append.

* Two ``snapfix command-api`` processes share one log (a Kafka topic and a FerretDB write store,
  or one embedded SQLite file) and receive hundreds of concurrent upvotes, comments and
  ``If-Match`` edits on a few issues. Reading the log back: every issue holds versions 1..n
  with no gap and no duplicate, every 2xx answer's (id, version) is its request's event and
  appears exactly once, and no refused request left anything behind.
* A command API armed with ``SNAPFIX_FAULT_KILL_AT`` (test-only) SIGKILLs itself at one step of
  an append; a normal command API started afterwards relays what was committed. The log and
  the views then hold every 2xx answer, the killed command once if it was committed (as
  exact duplicates at most in the topic), and not at all if it died before its commit.

Every request carries its own ``X-Correlation-ID``, which the events it causes record: that is
how an event is traced back to the answer its request got.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import uuid
from collections import Counter, defaultdict
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient

from events.envelope import Envelope
from events.kafka_log import KafkaEventLog, KafkaTopic, delete_topic
from events.ports import EventLog
from events.sqlite_log import SqliteEventLog
from projectors.catalog import ALL
from projectors.issue_views import issue_detail
from projectors.mongo_views import MongoViewStore
from projectors.other_views import issue_history
from projectors.runner import ProjectionRunner
from snapfix.bootstrap import kill_fault
from snapfix.settings import Settings
from tests.conftest import FAST_ARGON2
from tests.contract.backends import require_engine
from tests.helpers import PASSWORD
from tests.processes import Role, free_port

MONGO = "mongodb://127.0.0.1:27017"
KAFKA = "127.0.0.1:9092"
ISSUES = 3
USERS = 50  # user 0 reports and edits; the others upvote and comment
COMMENTS_PER_ISSUE = 40
EDITORS_PER_ISSUE = 4  # optimistic clients: If-Match the version they know, on 409 take the current one
EDITS_PER_EDITOR = 10
DECISIVE_EDITS = 20  # concurrent edits of one issue, all with the same If-Match
CONCURRENCY = 64  # requests in flight at once, over both processes
STEPS = ("claimed", "committed", "published")


def base_env(**values: str) -> dict[str, str]:
    """A test process's environment: no inherited SNAPFIX_*, cheap argon2, no rate limits."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SNAPFIX_")}
    env.update({f"SNAPFIX_{k.upper()}": str(v) for k, v in FAST_ARGON2.items()})
    env.update(
        SNAPFIX_ENVIRONMENT="test",
        SNAPFIX_LOG_FORMAT="json",
        SNAPFIX_METRICS_PORT="0",
        SNAPFIX_RATE_LIMIT_IP_WRITES="0",
        SNAPFIX_RATE_LIMIT_USER_WRITES="0",
        SNAPFIX_RATE_LIMIT_SIGN_INS="0",
    )
    env.update({f"SNAPFIX_{k.upper()}": v for k, v in values.items()})
    return env


@pytest.fixture
def kafka_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A unique topic, write store and view store on the real engines; all removed afterwards."""
    require_engine("kafka")
    require_engine("mongodb")
    tag = uuid.uuid4().hex[:10]
    env = base_env(
        event_log=f"kafka://{KAFKA}",
        kafka_topic=f"snapfix.test.{tag}",
        kafka_partitions="3",
        write_store=f"{MONGO}/sfw_{tag}",
        view_store=f"{MONGO}/sfv_{tag}",
        blob_store=f"file://{tmp_path}/blobs",
        cache="memory://",
    )
    yield env
    asyncio.run(_drop(env))


async def _drop(env: dict[str, str]) -> None:
    await delete_topic(KafkaTopic(KAFKA, name=env["SNAPFIX_KAFKA_TOPIC"]))
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(MONGO)
    try:
        for url in (env["SNAPFIX_WRITE_STORE"], env["SNAPFIX_VIEW_STORE"]):
            await client.drop_database(url.rsplit("/", 1)[1])
    finally:
        await client.close()


@pytest.fixture
def sqlite_env(tmp_path: Path) -> dict[str, str]:
    return base_env(
        event_log=f"sqlite:///{tmp_path}/events.db",
        view_store=f"sqlite:///{tmp_path}/views.db",
        blob_store=f"file://{tmp_path}/blobs",
        cache="memory://",
    )


def command_api(env: dict[str, str], log: Path, **values: str) -> Role:
    return Role("command-api", {**env, **{f"SNAPFIX_{k.upper()}": v for k, v in values.items()}}, log, free_port())


# --- talking to command APIs --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Answer:
    """One command request and what it got back; ``mark`` is what its event would carry."""

    correlation_id: str
    kind: str  # "report", "upvote", "comment" or "edit"
    issue: str | None
    mark: str  # the upvoter's id, the comment's body or the new title
    status: int
    body: dict[str, Any]

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def decided(self) -> tuple[str, int]:
        return self.body["id"], self.body["version"]


class Clients:
    """One HTTP client per command-API process; request ``i`` goes to process ``i % n``."""

    def __init__(self, urls: list[str]) -> None:
        limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
        self.http = [httpx.AsyncClient(base_url=url, timeout=120, limits=limits) for url in urls]
        self.gate = asyncio.Semaphore(CONCURRENCY)
        self.sent = 0

    async def aclose(self) -> None:
        for client in self.http:
            await client.aclose()

    async def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        client = self.http[self.sent % len(self.http)]
        self.sent += 1
        async with self.gate:
            return await client.request(method, path, **kwargs)

    async def user(self, name: str) -> tuple[str, dict[str, str]]:
        """Register and sign in: the user's id and Authorization header."""
        email = f"{name}@example.org"
        made = await self.call("POST", "/v1/users", json={"email": email, "password": PASSWORD, "display_name": name})
        assert made.status_code == 201, made.text
        token = await self.call("POST", "/v1/auth/token", data={"username": email, "password": PASSWORD})
        assert token.status_code == 200, token.text
        return made.json()["id"], {"Authorization": f"Bearer {token.json()['access_token']}"}

    async def command(
        self,
        kind: str,
        issue: str | None,
        mark: str,
        method: str,
        path: str,
        headers: dict[str, str],
        body: dict[str, Any] | None = None,
    ) -> Answer:
        correlation_id = f"{kind}-{uuid.uuid4().hex}"
        response = await self.call(method, path, headers={**headers, "X-Correlation-ID": correlation_id}, json=body)
        return Answer(correlation_id, kind, issue, mark, response.status_code, response.json())

    async def report(self, who: dict[str, str], n: int) -> Answer:
        title = f"Problem number {n}"
        body = {
            "title": title,
            "description": f"Seen on day {n}",
            "category": "pothole",
            "location": {"lat": 51.5 + n / 100, "lon": -0.12},
        }
        answer = await self.command("report", None, title, "POST", "/v1/issues", who, body)
        assert answer.status == 201, answer.body
        return answer

    async def upvote(self, who: dict[str, str], user_id: str, issue: str) -> Answer:
        return await self.command("upvote", issue, user_id, "PUT", f"/v1/issues/{issue}/upvote", who)

    async def comment(self, who: dict[str, str], issue: str, text: str) -> Answer:
        return await self.command("comment", issue, text, "POST", f"/v1/issues/{issue}/comments", who, {"body": text})

    async def edit(self, who: dict[str, str], issue: str, title: str, if_match: int) -> Answer:
        headers = {**who, "If-Match": f'"{if_match}"'}
        return await self.command("edit", issue, title, "PATCH", f"/v1/issues/{issue}", headers, {"title": title})

    async def editor(self, who: dict[str, str], issue: str, name: str) -> list[Answer]:
        """An optimistic client: edit at the version it last saw; a 409 tells it the current one."""
        known, answers = 1, []
        for n in range(EDITS_PER_EDITOR):
            answer = await self.edit(who, issue, f"Title {name}.{n} of {issue[:8]}", known)
            answers.append(answer)
            if answer.ok:
                known = answer.decided[1]
            elif answer.status == 409 and answer.body.get("current_version") is not None:
                known = answer.body["current_version"]
        return answers


# --- reading the log back -----------------------------------------------------------------


async def read_all(log: EventLog) -> list[Envelope]:
    """Every record in the log now, duplicates included, in each partition's order."""
    head = await log.head()
    checkpoint: dict[int, int] = {}
    seen: list[Envelope] = []
    while any(checkpoint.get(p, -1) < offset for p, offset in head.items()):
        batch = await log.read(checkpoint, 1000)
        assert batch, f"the log stopped short of its head {head} at {checkpoint}"
        for env in batch:
            assert env.position is not None
            checkpoint[env.position.partition] = max(checkpoint.get(env.position.partition, -1), env.position.offset)
            seen.append(env)
    return seen


async def read_kafka(env: dict[str, str]) -> list[Envelope]:
    log = KafkaEventLog(KafkaTopic(KAFKA, name=env["SNAPFIX_KAFKA_TOPIC"]))
    await log.open()
    try:
        return await read_all(log)
    finally:
        await log.close()


async def read_sqlite(env: dict[str, str]) -> list[Envelope]:
    log = SqliteEventLog(env["SNAPFIX_EVENT_LOG"])
    await log.open()
    try:
        return await read_all(log)
    finally:
        await log.close()


Streams = dict[str, dict[int, Envelope]]


def streams(records: list[Envelope]) -> Streams:
    """Each aggregate's events by version, checking the log's own invariant on the way.

    A crash may leave the same (aggregate, version, event id) twice; two different events
    at one version, or a version missing below the head, break the invariant.
    """
    by_aggregate: Streams = defaultdict(dict)
    for record in records:
        known = by_aggregate[record.aggregate_id].get(record.aggregate_version)
        if known is not None:
            assert known.event_id == record.event_id, (
                f"{record.aggregate_id} v{record.aggregate_version} holds two events: "
                f"{known.event_type} {known.event_id} and {record.event_type} {record.event_id}"
            )
            assert known.payload == record.payload, "a repeated event id must repeat the same event"
            continue
        by_aggregate[record.aggregate_id][record.aggregate_version] = record
    for aggregate_id, versions in by_aggregate.items():
        assert sorted(versions) == list(range(1, len(versions) + 1)), f"{aggregate_id}: gap in {sorted(versions)}"
    return by_aggregate


def mark_of(event: Envelope) -> str | None:
    """What an answer's ``mark`` is, read from the event its command caused."""
    field = {"IssueReported": "title", "IssueUpvoted": "user_id", "IssueCommented": "body", "IssueEdited": "title"}
    name = field.get(event.event_type)
    return None if name is None else str(event.payload[name])


def check_answers(log: Streams, answers: list[Answer]) -> None:
    """Every 2xx is its own request's event, once, at the version it answered; no refusal left a trace."""
    caused: dict[str, list[Envelope]] = defaultdict(list)
    for versions in log.values():
        for event in versions.values():
            if event.correlation_id is not None:
                caused[event.correlation_id].append(event)
    for answer in answers:
        events = caused.get(answer.correlation_id, [])
        if answer.ok:
            assert len(events) == 1, f"{answer} caused {len(events)} events"
            (event,) = events
            assert (event.aggregate_id, event.aggregate_version) == answer.decided
            assert mark_of(event) == answer.mark
        else:
            assert events == [], f"refused {answer} left {events}"
    refused_marks = {(a.issue, a.kind, a.mark) for a in answers if not a.ok}
    kinds = {"IssueUpvoted": "upvote", "IssueCommented": "comment", "IssueEdited": "edit"}
    for aggregate_id, versions in log.items():
        for event in versions.values():
            assert (aggregate_id, kinds.get(event.event_type), mark_of(event)) not in refused_marks, event


# --- the race -----------------------------------------------------------------------------


@dataclass
class RaceResult:
    issues: list[str]
    answers: list[Answer]
    decisive: dict[str, list[Answer]]  # per issue: the concurrent edits that all sent the same If-Match


async def race(urls: list[str]) -> RaceResult:
    """Users, issues, then a storm of mixed commands split over every process, then a decisive If-Match race."""
    clients = Clients(urls)
    try:
        people = await asyncio.gather(*(clients.user(f"racer{i}-{uuid.uuid4().hex[:6]}") for i in range(USERS)))
        reporter = people[0][1]
        reports = await asyncio.gather(*(clients.report(reporter, n) for n in range(ISSUES)))
        issues = [r.body["id"] for r in reports]
        rng = random.Random(4)  # a reproducible order
        storm: list[Coroutine[Any, Any, Answer | list[Answer]]] = []
        for issue in issues:
            storm += [clients.upvote(who, user_id, issue) for user_id, who in people[1:]]
            storm += [
                clients.comment(rng.choice(people[1:])[1], issue, f"comment {n} on {issue[:8]}")
                for n in range(COMMENTS_PER_ISSUE)
            ]
            storm += [clients.editor(reporter, issue, str(n)) for n in range(EDITORS_PER_ISSUE)]
        rng.shuffle(storm)
        answers: list[Answer] = []
        for got in await asyncio.gather(*storm):
            answers += got if isinstance(got, list) else [got]
        heads = {
            issue: max(a.decided[1] for a in [*reports, *answers] if a.ok and a.decided[0] == issue) for issue in issues
        }
        decisive: dict[str, list[Answer]] = {}
        for issue in issues:
            decisive[issue] = list(
                await asyncio.gather(
                    *(
                        clients.edit(reporter, issue, f"Decisive {n} of {issue[:8]}", heads[issue])
                        for n in range(DECISIVE_EDITS)
                    )
                )
            )
        return RaceResult(issues, [*reports, *answers], decisive)
    finally:
        await clients.aclose()


def check_race(result: RaceResult, records: list[Envelope]) -> None:
    log = streams(records)
    everything = [*result.answers, *(a for edits in result.decisive.values() for a in edits)]
    statuses = Counter((a.kind, a.status) for a in everything)
    assert {status for _, status in statuses} <= {200, 201, 409}, statuses
    assert statuses[("edit", 409)] > 0, "the storm must contain stale edits"
    for accepted in (("upvote", 200), ("comment", 201), ("edit", 200)):
        assert statuses[accepted] > 0, statuses
    check_answers(log, everything)
    for issue in result.issues:
        answered = sorted(a.decided[1] for a in everything if a.ok and a.decided[0] == issue)
        assert answered == list(range(1, len(log[issue]) + 1)), "every version of the issue is some 2xx answer's"
        winners = [a for a in result.decisive[issue] if a.ok]
        assert len(winners) == 1, f"{len(winners)} of {DECISIVE_EDITS} edits won If-Match on {issue}"
        assert winners[0].decided[1] == len(log[issue])


class TestRaceOverHttp:
    @pytest.mark.parametrize("log", [pytest.param("kafka", marks=pytest.mark.engines), "sqlite"])
    def test_two_command_apis_give_each_version_to_exactly_one_command(
        self, log: str, request: pytest.FixtureRequest, tmp_path: Path
    ) -> None:
        """Hundreds of concurrent commands over two processes sharing one log (a Kafka topic and its write
        store, or one SQLite file): versions 1..n, each a 2xx answer's, refusals absent."""
        env: dict[str, str] = request.getfixturevalue(f"{log}_env")
        first = command_api(env, tmp_path / "command-1.log").start()
        second = command_api(env, tmp_path / "command-2.log")
        try:
            second.start()
            result = asyncio.run(race([first.url, second.url]))
        finally:
            second.stop()
            first.stop()
        check_race(result, asyncio.run(read_kafka(env) if log == "kafka" else read_sqlite(env)))


# --- SIGKILL at each step of an append ----------------------------------------------------


async def outbox_size(env: dict[str, str]) -> int:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(env["SNAPFIX_WRITE_STORE"])
    try:
        return await client.get_default_database()["outbox"].count_documents({})
    finally:
        await client.close()


async def wait_for_empty_outbox(env: dict[str, str], bound_s: float = 60.0) -> None:
    """Until the relay has published and cleared everything (a bound, not a timing claim)."""
    left = await outbox_size(env)
    for _ in range(int(bound_s / 0.2)):
        if not left:
            return
        await asyncio.sleep(0.2)
        left = await outbox_size(env)
    assert left == 0, f"the relay left {left} outbox entries"


async def project(env: dict[str, str], issue: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Fold the whole topic into the views, as a projector worker does; the issue's detail and history."""
    log = KafkaEventLog(KafkaTopic(KAFKA, name=env["SNAPFIX_KAFKA_TOPIC"]))
    await log.open()
    views = MongoViewStore(env["SNAPFIX_VIEW_STORE"])
    try:
        runner = ProjectionRunner("main", ALL, log, views)
        await runner.setup()
        head = await log.head()
        while any(runner.checkpoint.get(p, -1) < o for p, o in head.items()):
            if not await runner.run_once():
                await log.wait(runner.checkpoint, 0.5)
        detail = await views.get(issue_detail.name, issue)
        assert detail is not None
        history = []
        for version in range(1, detail["version"] + 2):
            doc = await views.get(issue_history.name, f"{issue}:{version:010d}")
            if doc is not None:
                history.append(doc)
        return detail, history
    finally:
        await views.close()
        await log.close()


@dataclass
class Before:
    """What a healthy command API promised before the crash."""

    issue: str
    answers: list[Answer]
    reporter: dict[str, str]
    voter: tuple[str, dict[str, str]]


async def before_the_crash(url: str) -> Before:
    clients = Clients([url])
    try:
        (_, reporter), voter = await asyncio.gather(clients.user("reporter"), clients.user("voter"))
        report = await clients.report(reporter, 0)
        issue = report.body["id"]
        answers = [report]
        for n in range(3):
            answers.append(await clients.comment(voter[1], issue, f"before {n}"))
        answers.append(await clients.upvote(voter[1], voter[0], issue))
        assert all(a.ok for a in answers), answers
        return Before(issue, answers, reporter, voter)
    finally:
        await clients.aclose()


async def one_comment(url: str, who: dict[str, str], issue: str, text: str) -> Answer:
    clients = Clients([url])
    try:
        return await clients.comment(who, issue, text)
    finally:
        await clients.aclose()


async def one_command(url: str, who: dict[str, str], issue: str, text: str, correlation_id: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        return await client.post(
            f"/v1/issues/{issue}/comments", headers={**who, "X-Correlation-ID": correlation_id}, json={"body": text}
        )


class TestKilledCommandApi:
    pytestmark = pytest.mark.engines

    @pytest.mark.parametrize("step", STEPS)
    def test_a_command_api_killed_at_each_step_loses_no_2xx_and_publishes_a_commit_once(
        self, step: str, kafka_env: dict[str, str], tmp_path: Path
    ) -> None:
        """SIGKILL at claimed/committed/published, then a normal command API relays: the promises hold.

        Before the commit insert the command is gone; after it the command is in the log once
        per version (the topic may hold an exact duplicate after "published") and in the views once;
        every earlier 2xx is there, and the next command follows without a gap.
        """
        healthy = command_api(kafka_env, tmp_path / "healthy.log").start()
        try:
            before = asyncio.run(before_the_crash(healthy.url))
        finally:
            healthy.stop()
        head = max(a.decided[1] for a in before.answers)

        armed = command_api(kafka_env, tmp_path / "armed.log", fault_kill_at=step).start()
        try:
            with pytest.raises(httpx.TransportError):
                asyncio.run(one_command(armed.url, before.voter[1], before.issue, f"killed at {step}", "crashed"))
            assert armed.proc is not None
            assert armed.proc.wait(timeout=30) == -signal.SIGKILL
        finally:
            armed.kill()

        relaying = command_api(kafka_env, tmp_path / "relaying.log").start()
        try:
            asyncio.run(wait_for_empty_outbox(kafka_env))
            relayed = asyncio.run(read_kafka(kafka_env))  # the relay's work alone, before any new command
            after = asyncio.run(one_comment(relaying.url, before.voter[1], before.issue, "after the restart"))
        finally:
            relaying.stop()
        assert after.ok, after.body

        landed = step != "claimed"
        copies = [r for r in relayed if r.correlation_id == "crashed"]
        # Never acknowledged by Kafka: the relay publishes it; acknowledged but not marked: it publishes it again.
        assert len(copies) == {"claimed": 0, "committed": 1, "published": 2}[step]
        assert len({r.event_id for r in copies}) == int(landed)
        if landed:
            assert copies[0].aggregate_version == head + 1
            assert copies[0].payload["body"] == f"killed at {step}"
        check_answers(streams(relayed), before.answers)

        records = asyncio.run(read_kafka(kafka_env))
        log = streams(records)
        check_answers(log, [*before.answers, after])
        assert [r for r in records if r.correlation_id == "crashed"] == copies
        assert after.decided == (before.issue, head + 1 + int(landed))
        assert sorted(log[before.issue]) == list(range(1, after.decided[1] + 1))

        detail, history = asyncio.run(project(kafka_env, before.issue))
        bodies = [f"before {n}" for n in range(3)] + ([f"killed at {step}"] if landed else []) + ["after the restart"]
        assert detail["version"] == after.decided[1]
        assert [c["body"] for c in detail["comment_list"]] == bodies
        assert detail["comments"] == len(bodies)
        assert detail["upvotes"] == 1
        assert [(h["version"], h["event_id"]) for h in history] == [
            (v, e.event_id) for v, e in sorted(log[before.issue].items())
        ]


class TestFaultHookIsTestOnly:
    def test_the_kill_setting_is_refused_outside_the_test_environment(self) -> None:
        """SNAPFIX_FAULT_KILL_AT cannot arm a development or production process; unset, no hook is built."""
        for environment in ("development", "production"):
            armed = {"environment": environment, "fault_kill_at": "claimed", "jwt_secret": "x" * 40}
            with pytest.raises(ValueError, match="test-only"):
                Settings.model_validate(armed)
        assert kill_fault(Settings.model_validate({"environment": "test"})) is None
        assert kill_fault(Settings.model_validate({"environment": "test", "fault_kill_at": "published"})) is not None
