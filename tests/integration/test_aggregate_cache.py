"""Commands decide on cached state and snapshots, and the log still decides (command_api/repository.py).

Two ``CommandHandlers`` over two ``SqliteEventLog`` connections to one file are two command-API
processes: each has its own state cache, and neither may answer from it once the other moved on.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from command_api import commands as c
from command_api import kinds
from command_api.domain.actor import Actor
from command_api.domain.errors import InvalidTransition
from command_api.handlers import CommandHandlers, CommandResult
from command_api.repository import Repository
from command_api.security import Passwords
from events.envelope import Metadata
from events.ports import ConcurrencyConflict, Snapshot
from events.sqlite_log import SqliteEventLog

PASSWORDS = Passwords(PasswordHasher(time_cost=1, memory_cost=8, parallelism=1), queue=1000)
STAFF = Actor("staff-1", frozenset({"citizen", "staff"}))
REPORTER = Actor("reporter-1", frozenset({"citizen"}))
META = Metadata(actor_id="tester")


def citizen(i: int) -> Actor:
    return Actor(f"citizen-{i}", frozenset({"citizen"}))


@dataclass
class Process:
    log: SqliteEventLog
    handlers: CommandHandlers

    @property
    def repository(self) -> Repository:
        return self.handlers.repository


@asynccontextmanager
async def processes(path: Path, n: int = 2, snapshot_every: int = 100) -> AsyncIterator[list[Process]]:
    """``n`` command sides over one SQLite log, each with its own state cache."""
    opened = []
    for _ in range(n):
        log = SqliteEventLog(f"sqlite:///{path}")
        await log.open()
        repository = Repository(log, snapshot_every=snapshot_every)
        handlers = CommandHandlers(log, PASSWORDS, lambda: datetime.now(UTC), repository=repository)
        opened.append(Process(log, handlers))
    await opened[0].handlers.seed_catalogue(Actor("system", frozenset({"admin"})), META)
    try:
        yield opened
    finally:
        for process in opened:
            await process.repository.close()
            await process.log.close()


async def report(side: CommandHandlers) -> str:
    cmd = c.ReportIssue(str(uuid.uuid4()), "Pothole", "Deep", "pothole", 51.5, -0.12, None, {})
    return (await side.report_issue(cmd, REPORTER, META)).id


async def versions(log: SqliteEventLog, aggregate_id: str) -> list[int]:
    return [e.aggregate_version for e in await log.load(aggregate_id)]


class TestTheCacheNeverAnswersForTheLog:
    async def test_a_no_op_decided_on_a_stale_cache_is_checked_and_redecided(self, tmp_path: Path) -> None:
        """A caches "upvoted", B withdraws the upvote: A's next upvote appends instead of answering a no-op."""
        async with processes(tmp_path / "events.db") as (a, b):
            issue = await report(a.handlers)
            await a.handlers.issue_command(c.UpvoteIssue(issue), citizen(1), META)
            await b.handlers.issue_command(c.WithdrawUpvote(issue), citizen(1), META)
            again = await a.handlers.issue_command(c.UpvoteIssue(issue), citizen(1), META)
            assert (again.noop, again.version) == (False, 4)
            assert await versions(a.log, issue) == [1, 2, 3, 4]

    async def test_a_refusal_decided_on_a_stale_cache_is_checked_and_redecided(self, tmp_path: Path) -> None:
        """A caches "reported"; B resolves the issue: the reporter's reopen through A is allowed, not refused."""
        async with processes(tmp_path / "events.db") as (a, b):
            issue = await report(a.handlers)
            await a.handlers.issue_command(c.UpvoteIssue(issue), citizen(1), META)  # A now caches version 2
            await b.handlers.issue_command(c.ChangeStatus(issue, "in_progress", None), STAFF, META)
            await b.handlers.issue_command(c.ChangeStatus(issue, "resolved", None), STAFF, META)
            reopened = await a.handlers.issue_command(c.ChangeStatus(issue, "reopened", "still there"), REPORTER, META)
            assert reopened.version == 5

    async def test_an_append_on_a_stale_cache_conflicts_then_decides_on_what_the_log_holds(
        self, tmp_path: Path
    ) -> None:
        """A caches "reported", B acknowledges: A's acknowledge is decided again on the log's state and refused."""
        async with processes(tmp_path / "events.db") as (a, b):
            issue = await report(a.handlers)
            await a.handlers.issue_command(c.UpvoteIssue(issue), citizen(1), META)
            await b.handlers.issue_command(c.ChangeStatus(issue, "acknowledged", None), STAFF, META)
            with pytest.raises(InvalidTransition):
                await a.handlers.issue_command(c.ChangeStatus(issue, "acknowledged", None), STAFF, META)
            assert await versions(a.log, issue) == [1, 2, 3]

    async def test_if_match_is_checked_against_the_log_not_the_cache(self, tmp_path: Path) -> None:
        """A caches version 2 and B moves it to 3: If-Match 3 succeeds on A, If-Match 2 is a conflict."""
        async with processes(tmp_path / "events.db") as (a, b):
            issue = await report(a.handlers)
            await a.handlers.issue_command(c.UpvoteIssue(issue), citizen(1), META)
            await b.handlers.issue_command(c.UpvoteIssue(issue), citizen(2), META)
            edit = c.EditIssue(issue, "Deeper pothole", None, None)
            with pytest.raises(ConcurrencyConflict):
                await a.handlers.issue_command(edit, REPORTER, META, expected_version=2)
            assert (await a.handlers.issue_command(edit, REPORTER, META, expected_version=3)).version == 4


class TestCommandsCostNothingInHistory:
    async def test_commands_on_a_cached_aggregate_read_no_event_from_the_log(self, tmp_path: Path) -> None:
        """Three hundred upvotes on one issue: the process that made them folds nothing from the log."""
        async with processes(tmp_path / "events.db", n=1) as (a,):
            issue = await report(a.handlers)
            folded_before = a.repository.folded_events
            for i in range(300):
                await a.handlers.issue_command(c.UpvoteIssue(issue), citizen(i), META)
            assert a.repository.folded_events == folded_before
            assert len(await versions(a.log, issue)) == 301

    async def test_a_new_process_folds_only_the_events_after_the_last_snapshot(self, tmp_path: Path) -> None:
        """After 250 upvotes with a snapshot every 100 events, another process folds at most 100 to decide."""
        async with processes(tmp_path / "events.db", snapshot_every=100) as (a, b):
            issue = await report(a.handlers)
            for i in range(250):
                await a.handlers.issue_command(c.UpvoteIssue(issue), citizen(i), META)
            await a.repository.close()  # the snapshots written off the command path are in
            result = await b.handlers.issue_command(c.UpvoteIssue(issue), citizen(999), META)
            assert result.version == 252
            assert 0 < b.repository.folded_events <= 100
            already = await b.handlers.issue_command(c.UpvoteIssue(issue), citizen(7), META)
            assert already.noop  # the snapshot's upvoters decided it

    async def test_a_snapshot_of_another_fold_is_discarded_and_rebuilt_from_the_log(self, tmp_path: Path) -> None:
        """A snapshot whose fingerprint is not this code's is never used: the state comes from the log."""
        async with processes(tmp_path / "events.db", n=1) as (a,):
            issue = await report(a.handlers)
            recorded = await a.log.load(issue)
            upvoted_by_all = {"id": issue, "version": 1, "status": "reported", "upvoters": ["citizen-1"]}
            await a.log.save_snapshot(
                Snapshot(issue, "issue", 1, recorded[-1].event_id, recorded[-1].position, "old-fold", upvoted_by_all)
            )
        async with processes(tmp_path / "events.db", n=1) as (fresh,):
            result = await fresh.handlers.issue_command(c.UpvoteIssue(issue), citizen(1), META)
            assert (result.noop, result.version) == (False, 2)

    async def test_snapshots_carry_the_fingerprint_of_the_fold_that_made_them(self, tmp_path: Path) -> None:
        """The kept snapshot names this code's fold, and its state reads back as the aggregate's state."""
        async with processes(tmp_path / "events.db", n=1, snapshot_every=10) as (a,):
            issue = await report(a.handlers)
            for i in range(12):
                await a.handlers.issue_command(c.UpvoteIssue(issue), citizen(i), META)
            await a.repository.close()
            kept = await a.log.load_snapshot(issue)
            assert kept is not None
            assert (kept.version, kept.fingerprint) == (10, kinds.ISSUE.fingerprint)
            state = kinds.ISSUE.adapter.validate_python(dict(kept.state))
            assert state.upvoters == frozenset(f"citizen-{i}" for i in range(9))


# --- one winner per version, whatever the interleaving -----------------------------------------------------

COMMANDS = st.sampled_from(["upvote", "withdraw", "comment", "edit_if_match", "status"])


@contextmanager
def scratch_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield tmp_path_factory.mktemp("interleave") / "events.db"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    plan=st.lists(
        st.tuples(st.integers(0, 2), st.integers(0, 1), COMMANDS, st.integers(0, 5), st.integers(1, 6)),
        min_size=1,
        max_size=40,
    )
)
def test_concurrent_commands_through_group_commit_keep_versions_one_to_n_with_one_winner_each(
    tmp_path_factory: pytest.TempPathFactory, plan: list[tuple[int, int, str, int, int]]
) -> None:
    """Any mix of commands from two processes on three issues, all in flight at once: each issue's versions are
    1..n with no gap or duplicate, every success names a version nobody else got, and If-Match wins at most once."""

    async def run(path: Path) -> None:
        async with processes(path) as sides:
            issues = [await report(sides[0].handlers) for _ in range(3)]

            async def one(issue: int, side: int, kind: str, user: int, expected: int) -> CommandResult:
                h, issue_id = sides[side].handlers, issues[issue]
                if kind == "upvote":
                    return await h.issue_command(c.UpvoteIssue(issue_id), citizen(user), META)
                if kind == "withdraw":
                    return await h.issue_command(c.WithdrawUpvote(issue_id), citizen(user), META)
                if kind == "comment":
                    return await h.issue_command(
                        c.CommentOnIssue(issue_id, str(uuid.uuid4()), "me too"), citizen(user), META
                    )
                if kind == "edit_if_match":
                    edit = c.EditIssue(issue_id, f"Pothole {uuid.uuid4().hex[:6]}", None, None)
                    return await h.issue_command(edit, REPORTER, META, expected_version=expected)
                return await h.issue_command(c.AssignIssue(issue_id, f"dept-{user}"), STAFF, META)

            results = await asyncio.gather(*(one(*step) for step in plan), return_exceptions=True)
            for issue_id in issues:
                stored = await versions(sides[0].log, issue_id)
                assert stored == list(range(1, len(stored) + 1))
            appended = [(issues[s[0]], r.version) for s, r in zip(plan, results, strict=True)
                        if isinstance(r, CommandResult) and not r.noop]  # fmt: skip
            assert len(appended) == len(set(appended))
            for issue_index, issue_id in enumerate(issues):
                for expected in range(1, 7):
                    wins = [r for s, r in zip(plan, results, strict=True)
                            if s[0] == issue_index and s[2] == "edit_if_match" and s[4] == expected
                            and isinstance(r, CommandResult) and not r.noop]  # fmt: skip
                    assert len(wins) <= 1, (issue_id, expected)
            unexpected = [r for r in results if isinstance(r, BaseException)
                          and not isinstance(r, ConcurrencyConflict | InvalidTransition)]  # fmt: skip
            assert not unexpected

    with scratch_file(tmp_path_factory) as path:
        asyncio.run(run(path))
