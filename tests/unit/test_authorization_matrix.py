"""Every command by every role: who may do what, including a citizen acting on another user's data."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from command_api import commands as c
from command_api.domain import catalogue as cat
from command_api.domain import issue as i
from command_api.domain import session as s
from command_api.domain import user as u
from command_api.domain.actor import ADMIN, CITIZEN, STAFF, Actor
from command_api.domain.errors import Forbidden

NOW = datetime(2026, 6, 1, tzinfo=UTC)
OWNER = Actor("owner", frozenset({CITIZEN}))  # reported the issue, owns the profile and the session
OTHER = Actor("other", frozenset({CITIZEN}))  # a citizen acting on someone else's data
STAFFER = Actor("staff", frozenset({CITIZEN, STAFF}))
ADMINISTRATOR = Actor("admin", frozenset({CITIZEN, ADMIN}))
ROLES = {"owner": OWNER, "other": OTHER, "staff": STAFFER, "admin": ADMINISTRATOR}

ISSUE = i.Issue(
    id="issue-1",
    version=4,
    reporter_id="owner",
    status=i.RESOLVED,
    resolved_at=NOW - timedelta(days=1),
    comments=frozenset({"c1"}),
    photos=frozenset({"p1"}),
    subscribers=frozenset({"owner"}),
)
OPEN_ISSUE = replace(ISSUE, status=i.ACKNOWLEDGED, resolved_at=None)
USER = u.User(id="owner", version=1, email="o@x.org", display_name="Owner", roles=frozenset({CITIZEN}))
SESSION = s.Session(id="session-f", version=1, user_id="owner", current_token_id="t1")
CATALOGUE = cat.evolve(
    cat.Catalogue(), cat.define(cat.Catalogue(), c.DefineCategory("x", "X", "", "d"), ADMINISTRATOR)[0], NOW
)


def issue_cmd(state: i.Issue, cmd: c.IssueCommand) -> Callable[[Actor], object]:
    return lambda actor: i.decide(state, cmd, actor, NOW)


EVERYONE = {"owner", "other", "staff", "admin"}
STAFF_ONLY = {"staff", "admin"}
# command -> (how to run it as an actor, who may)
MATRIX: dict[str, tuple[Callable[[Actor], object], set[str]]] = {
    "edit issue": (issue_cmd(OPEN_ISSUE, c.EditIssue("issue-1", title="New")), {"owner"}),
    "change status": (issue_cmd(OPEN_ISSUE, c.ChangeStatus("issue-1", i.IN_PROGRESS)), STAFF_ONLY),
    "reopen (reporter, within 30 days)": (
        issue_cmd(ISSUE, c.ChangeStatus("issue-1", i.REOPENED)),
        {"owner"} | STAFF_ONLY,
    ),
    "assign": (issue_cmd(OPEN_ISSUE, c.AssignIssue("issue-1", "parks")), STAFF_ONLY),
    "comment": (issue_cmd(OPEN_ISSUE, c.CommentOnIssue("issue-1", "c2", "hi")), EVERYONE),
    "upvote": (issue_cmd(OPEN_ISSUE, c.UpvoteIssue("issue-1")), EVERYONE),
    "withdraw upvote": (issue_cmd(OPEN_ISSUE, c.WithdrawUpvote("issue-1")), EVERYONE),
    "subscribe": (issue_cmd(OPEN_ISSUE, c.SubscribeToIssue("issue-1")), EVERYONE),
    "unsubscribe": (issue_cmd(OPEN_ISSUE, c.UnsubscribeFromIssue("issue-1")), EVERYONE),
    "mark duplicate": (issue_cmd(OPEN_ISSUE, c.MarkDuplicate("issue-1", "issue-0")), STAFF_ONLY),
    "hide issue": (issue_cmd(OPEN_ISSUE, c.ModerateIssue("issue-1", True, "why")), STAFF_ONLY),
    "hide comment": (issue_cmd(OPEN_ISSUE, c.ModerateComment("issue-1", "c1", True, "why")), STAFF_ONLY),
    "add photo": (
        issue_cmd(OPEN_ISSUE, c.AddPhoto("issue-1", "p2", "k", "image/jpeg", 1, 1, 1)),
        {"owner"} | STAFF_ONLY,
    ),
    "record thumbnail": (issue_cmd(OPEN_ISSUE, c.RecordThumbnail("issue-1", "p1", "k", 1, 1)), STAFF_ONLY),
    "report issue": (lambda a: i.report(c.ReportIssue("n", "T", "D", "x", 0, 0), a, "d"), EVERYONE),
    "change profile": (lambda a: u.change_profile(USER, c.ChangeProfile("owner", "New"), a), {"owner", "admin"}),
    "grant role": (lambda a: u.grant_role(USER, c.GrantRole("owner", STAFF), a), {"admin"}),
    "revoke role": (
        lambda a: u.revoke_role(replace(USER, roles=frozenset({CITIZEN, STAFF})), c.RevokeRole("owner", STAFF), a),
        {"admin"},
    ),
    "define category": (lambda a: cat.define(CATALOGUE, c.DefineCategory("y", "Y", "", "d"), a), {"admin"}),
    "retire category": (lambda a: cat.retire(CATALOGUE, c.RetireCategory("x"), a), {"admin"}),
    "refresh session": (
        lambda a: s.rotate(SESSION, c.RotateRefreshToken("session-f", a.user_id, "t1", "t2")),
        {"owner"},
    ),
    "sign out": (lambda a: s.end(SESSION, c.EndSession("session-f", a.user_id)), {"owner"}),
}


@pytest.mark.parametrize("role", sorted(ROLES))
@pytest.mark.parametrize("command", sorted(MATRIX))
def test_every_command_is_allowed_exactly_to_its_roles(command: str, role: str) -> None:
    """Allowed roles get a decision (events or a no-op); everyone else gets Forbidden."""
    run, allowed = MATRIX[command]
    if role in allowed:
        assert isinstance(run(ROLES[role]), list)
    else:
        with pytest.raises(Forbidden):
            run(ROLES[role])


def test_the_reporter_may_not_reopen_after_30_days() -> None:
    late = replace(ISSUE, resolved_at=NOW - timedelta(days=31))
    with pytest.raises(Forbidden):
        i.decide(late, c.ChangeStatus("issue-1", i.REOPENED), OWNER, NOW)
