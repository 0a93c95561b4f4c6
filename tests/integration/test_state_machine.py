"""A hypothesis state machine: random commands by random roles through the real handlers on the embedded store.

After every step the projected views must agree with the aggregates, every refusal must
be one the rules call for, and upvote counts must equal the distinct upvoters.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from command_api import commands as c
from command_api.domain import issue as i
from command_api.domain.actor import ADMIN, CITIZEN, STAFF, Actor
from command_api.domain.errors import DomainError, Forbidden, InvalidTransition
from events.envelope import Metadata
from snapfix import bootstrap
from tests.conftest import embedded_settings

ACTORS = {
    "ada": Actor("ada", frozenset({CITIZEN})),
    "ben": Actor("ben", frozenset({CITIZEN})),
    "sam": Actor("sam", frozenset({CITIZEN, STAFF})),
    "root": Actor("root", frozenset({CITIZEN, ADMIN})),
}
who = st.sampled_from(sorted(ACTORS))


def _reporter_may_reopen(state: i.Issue, cmd: c.ChangeStatus, actor: Actor) -> bool:
    recent = state.resolved_at is not None and datetime.now(UTC) - state.resolved_at <= i.REPORTER_REOPEN_WINDOW
    return cmd.status == i.REOPENED and actor.user_id == state.reporter_id and recent


def _reporter_may_reopen(state: i.Issue, cmd: c.ChangeStatus, actor: Actor) -> bool:
    recent = state.resolved_at is not None and datetime.now(UTC) - state.resolved_at <= i.REPORTER_REOPEN_WINDOW
    return cmd.status == i.REOPENED and actor.user_id == state.reporter_id and recent


class IssueLifecycle(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="snapfix-sm-"))
        self.loop = asyncio.new_event_loop()
        self.c = self.run(bootstrap.build(embedded_settings(self.tmp, process_managers=False), read=True))
        assert self.c.handlers is not None
        self.handlers = self.c.handlers
        self.run(
            self.handlers.define_category(c.DefineCategory("pothole", "P", "", "roads"), ACTORS["root"], Metadata())
        )
        self.issues: list[str] = []
        self.refused = 0

    def run(self, coro):  # type: ignore[no-untyped-def]
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        self.run(bootstrap.close(self.c))
        self.loop.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def command(self, name: str, cmd: c.IssueCommand) -> None:
        """Run a command; a refusal must be one that the rules (checked here, independently) call for."""
        actor = ACTORS[name]
        before = self.run(self.handlers.issue_state(cmd.issue_id))
        try:
            self.run(self.handlers.issue_command(cmd, actor, Metadata(actor_id=actor.user_id)))
        except Forbidden:
            self.refused += 1
            assert not self._allowed(before, cmd, actor), f"{name} was refused {cmd}"
        except InvalidTransition:
            self.refused += 1
            if isinstance(cmd, c.ChangeStatus):
                assert cmd.status not in i.TRANSITIONS[before.status]
        except DomainError:
            self.refused += 1
        else:
            if isinstance(cmd, c.ChangeStatus):
                assert self._allowed(before, cmd, actor)
                assert cmd.status in i.TRANSITIONS[before.status] or before.status == cmd.status

    @staticmethod
    def _allowed(state: i.Issue, cmd: c.IssueCommand, actor: Actor) -> bool:
        if isinstance(cmd, c.ChangeStatus | c.AssignIssue | c.MarkDuplicate | c.ModerateIssue | c.ModerateComment):
            return actor.is_staff or (isinstance(cmd, c.ChangeStatus) and _reporter_may_reopen(state, cmd, actor))
        if isinstance(cmd, c.EditIssue):
            return actor.user_id == state.reporter_id
        return True

    @rule(name=who)
    def report(self, name: str) -> None:
        issue_id = f"issue-{len(self.issues)}"
        cmd = c.ReportIssue(issue_id, "Hole", "Deep", "pothole", 51.5, -0.1)
        self.run(self.handlers.report_issue(cmd, ACTORS[name], Metadata(actor_id=name)))
        self.issues.append(issue_id)

    @precondition(lambda self: self.issues)
    @rule(data=st.data(), name=who, status=st.sampled_from(i.STATUSES))
    def change_status(self, data: st.DataObject, name: str, status: str) -> None:
        self.command(name, c.ChangeStatus(data.draw(st.sampled_from(self.issues)), status, "note"))

    @precondition(lambda self: self.issues)
    @rule(data=st.data(), name=who, up=st.booleans())
    def vote(self, data: st.DataObject, name: str, up: bool) -> None:
        issue_id = data.draw(st.sampled_from(self.issues))
        self.command(name, c.UpvoteIssue(issue_id) if up else c.WithdrawUpvote(issue_id))

    @precondition(lambda self: self.issues)
    @rule(data=st.data(), name=who)
    def comment(self, data: st.DataObject, name: str) -> None:
        issue_id = data.draw(st.sampled_from(self.issues))
        self.command(name, c.CommentOnIssue(issue_id, f"c-{data.draw(st.integers(0, 3))}", "hello"))

    @precondition(lambda self: self.issues)
    @rule(data=st.data(), name=who, hide=st.booleans())
    def moderate(self, data: st.DataObject, name: str, hide: bool) -> None:
        issue_id = data.draw(st.sampled_from(self.issues))
        if data.draw(st.booleans()):
            self.command(name, c.ModerateIssue(issue_id, hide, "reason"))
        else:
            self.command(name, c.ModerateComment(issue_id, f"c-{data.draw(st.integers(0, 3))}", hide, "reason"))

    @precondition(lambda self: len(self.issues) > 1)
    @rule(data=st.data(), name=who)
    def duplicate(self, data: st.DataObject, name: str) -> None:
        dup, original = data.draw(st.permutations(self.issues))[:2]
        self.command(name, c.MarkDuplicate(dup, original))

    @precondition(lambda self: self.issues)
    @rule(data=st.data(), name=who)
    def edit(self, data: st.DataObject, name: str) -> None:
        self.command(
            name,
            c.EditIssue(
                data.draw(st.sampled_from(self.issues)), title=data.draw(st.sampled_from(["Hole", "Big hole"]))
            ),
        )

    @invariant()
    def views_agree_with_aggregates(self) -> None:
        if not self.issues:
            return
        assert self.c.runner is not None
        self.run(self.c.runner.catch_up())
        assert self.c.views is not None
        details = self.run(self.c.views.get_many("issue_detail", self.issues))
        summaries = self.run(self.c.views.get_many("issue_summary", self.issues))
        for issue_id in self.issues:
            state = self.run(self.handlers.issue_state(issue_id))
            detail, summary = details[issue_id], summaries[issue_id]
            assert detail["version"] == summary["version"] == state.version
            assert detail["status"] == summary["status"] == state.status
            assert detail["upvotes"] == summary["upvotes"] == len(state.upvoters)
            assert detail["hidden"] == summary["hidden"] == state.hidden
            assert detail["comments"] == len(state.comments - state.hidden_comments)
            assert detail["title"] == state.title
            assert detail["duplicate_of"] == state.duplicate_of
            hidden_in_view = {cm["id"] for cm in detail["comment_list"] if cm.get("hidden")}
            assert hidden_in_view == set(state.hidden_comments)


IssueLifecycle.TestCase.settings = settings(
    max_examples=25, stateful_step_count=25, deadline=None, suppress_health_check=list(HealthCheck)
)
TestIssueLifecycle = IssueLifecycle.TestCase
