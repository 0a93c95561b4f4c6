"""Decisions of the Issue aggregate: who may do what, and which transitions the lifecycle allows."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from command_api import commands as c
from command_api.domain import issue as i
from command_api.domain.actor import ADMIN, CITIZEN, STAFF, Actor
from command_api.domain.errors import Forbidden, Invalid, InvalidTransition, NotFound
from events import types as e

NOW = datetime(2026, 6, 1, tzinfo=UTC)
REPORTER = Actor("reporter", frozenset({CITIZEN}))
OTHER = Actor("other", frozenset({CITIZEN}))
STAFFER = Actor("staff-1", frozenset({CITIZEN, STAFF}))
ADMINISTRATOR = Actor("admin-1", frozenset({CITIZEN, ADMIN}))


def reported(**changes: object) -> i.Issue:
    base = i.Issue(
        id="issue-1",
        version=1,
        reporter_id="reporter",
        status=i.REPORTED,
        title="Hole",
        description="Deep",
        category="pothole",
        department="roads",
        subscribers=frozenset({"reporter"}),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


class TestReport:
    def test_reporting_records_the_reporter_place_and_department(self) -> None:
        """A report becomes one IssueReported carrying who, where and which department handles it."""
        cmd = c.ReportIssue("issue-1", "Hole", "Deep", "pothole", 51.5, -0.1, "1 Main St")
        [event] = i.report(cmd, REPORTER, "roads")
        assert event == e.IssueReported(
            reporter_id="reporter",
            title="Hole",
            description="Deep",
            category="pothole",
            department="roads",
            lat=51.5,
            lon=-0.1,
            address="1 Main St",
        )


class TestEdit:
    def test_the_reporter_edits_an_open_issue(self) -> None:
        """Fields not given keep their value."""
        [event] = i.decide(reported(), c.EditIssue("issue-1", title="Bigger hole"), REPORTER, NOW)
        assert event == e.IssueEdited(title="Bigger hole", description="Deep", category="pothole")

    def test_nobody_else_edits_it_not_even_staff(self) -> None:
        """Editing another user's report is forbidden."""
        for actor in (OTHER, STAFFER, ADMINISTRATOR):
            with pytest.raises(Forbidden):
                i.decide(reported(), c.EditIssue("issue-1", title="Mine now"), actor, NOW)

    def test_an_edit_that_changes_nothing_records_nothing(self) -> None:
        """Idempotent edits produce no event."""
        assert i.decide(reported(), c.EditIssue("issue-1", title="Hole"), REPORTER, NOW) == []

    def test_a_closed_issue_cannot_be_edited(self) -> None:
        with pytest.raises(InvalidTransition):
            i.decide(reported(status=i.CLOSED), c.EditIssue("issue-1", title="Late"), REPORTER, NOW)


class TestLifecycle:
    @pytest.mark.parametrize(("start", "target"), [(s, t) for s, ts in i.TRANSITIONS.items() for t in sorted(ts)])
    def test_staff_make_every_allowed_transition(self, start: str, target: str) -> None:
        """Each transition of the table is one IssueStatusChanged from the current status."""
        [event] = i.decide(reported(status=start), c.ChangeStatus("issue-1", target, "note"), STAFFER, NOW)
        assert event == e.IssueStatusChanged(from_status=start, to_status=target, note="note")

    @pytest.mark.parametrize(
        ("start", "target"),
        [(s, t) for s in i.STATUSES for t in i.STATUSES if t not in i.TRANSITIONS[s] and t != i.DUPLICATE],
    )
    def test_every_other_transition_is_refused(self, start: str, target: str) -> None:
        """Anything outside the table is an InvalidTransition, even for admins."""
        with pytest.raises(InvalidTransition):
            i.decide(reported(status=start), c.ChangeStatus("issue-1", target), ADMINISTRATOR, NOW)

    def test_citizens_cannot_move_issues(self) -> None:
        for actor in (REPORTER, OTHER):
            with pytest.raises(Forbidden):
                i.decide(reported(), c.ChangeStatus("issue-1", i.ACKNOWLEDGED), actor, NOW)

    def test_the_reporter_may_reopen_within_thirty_days_of_resolution(self) -> None:
        """Reopening by the reporter is allowed on day 30 and refused on day 31."""
        resolved = reported(status=i.RESOLVED, resolved_at=NOW - timedelta(days=30))
        [event] = i.decide(resolved, c.ChangeStatus("issue-1", i.REOPENED), REPORTER, NOW)
        assert event.to_status == i.REOPENED  # type: ignore[attr-defined]
        too_late = reported(status=i.RESOLVED, resolved_at=NOW - timedelta(days=31))
        with pytest.raises(Forbidden):
            i.decide(too_late, c.ChangeStatus("issue-1", i.REOPENED), REPORTER, NOW)

    def test_another_citizen_may_not_reopen(self) -> None:
        resolved = reported(status=i.RESOLVED, resolved_at=NOW)
        with pytest.raises(Forbidden):
            i.decide(resolved, c.ChangeStatus("issue-1", i.REOPENED), OTHER, NOW)

    def test_duplicate_is_not_a_plain_status_change(self) -> None:
        """Duplicates must name their original, so the status route refuses them."""
        with pytest.raises(Invalid):
            i.decide(reported(), c.ChangeStatus("issue-1", i.DUPLICATE), STAFFER, NOW)

    def test_unknown_statuses_are_invalid(self) -> None:
        with pytest.raises(Invalid):
            i.decide(reported(), c.ChangeStatus("issue-1", "fixed-ish"), STAFFER, NOW)

    def test_a_missing_issue_is_not_found(self) -> None:
        with pytest.raises(NotFound):
            i.decide(i.Issue(id="ghost"), c.ChangeStatus("ghost", i.ACKNOWLEDGED), STAFFER, NOW)


class TestUpvotesAndSubscriptions:
    def test_one_upvote_per_user(self) -> None:
        """The first upvote is recorded, the second is a no-op; withdrawing twice likewise."""
        [event] = i.decide(reported(), c.UpvoteIssue("issue-1"), OTHER, NOW)
        assert event == e.IssueUpvoted(user_id="other")
        upvoted = reported(upvoters=frozenset({"other"}))
        assert i.decide(upvoted, c.UpvoteIssue("issue-1"), OTHER, NOW) == []
        assert i.decide(upvoted, c.WithdrawUpvote("issue-1"), OTHER, NOW) == [e.IssueUpvoteWithdrawn(user_id="other")]
        assert i.decide(reported(), c.WithdrawUpvote("issue-1"), OTHER, NOW) == []

    def test_the_reporter_follows_their_issue_from_the_start(self) -> None:
        """Subscribing twice changes nothing; the reporter is subscribed by reporting."""
        assert i.decide(reported(), c.SubscribeToIssue("issue-1"), REPORTER, NOW) == []
        assert i.decide(reported(), c.SubscribeToIssue("issue-1"), OTHER, NOW) == [e.IssueSubscribed(user_id="other")]
        assert i.decide(reported(), c.UnsubscribeFromIssue("issue-1"), OTHER, NOW) == []


class TestStaffOnlyCommands:
    def test_assignment_is_for_staff(self) -> None:
        with pytest.raises(Forbidden):
            i.decide(reported(), c.AssignIssue("issue-1", "parks"), REPORTER, NOW)
        assert i.decide(reported(), c.AssignIssue("issue-1", "parks"), STAFFER, NOW) == [
            e.IssueAssigned(department="parks")
        ]
        assert i.decide(reported(), c.AssignIssue("issue-1", "roads"), STAFFER, NOW) == []

    def test_duplicates_are_marked_by_staff_and_never_of_themselves(self) -> None:
        with pytest.raises(Forbidden):
            i.decide(reported(), c.MarkDuplicate("issue-1", "issue-0"), REPORTER, NOW)
        with pytest.raises(Invalid):
            i.decide(reported(), c.MarkDuplicate("issue-1", "issue-1"), STAFFER, NOW)
        [event] = i.decide(reported(), c.MarkDuplicate("issue-1", "issue-0"), STAFFER, NOW)
        assert event == e.IssueMarkedDuplicate(original_id="issue-0", from_status=i.REPORTED)
        with pytest.raises(InvalidTransition):
            i.decide(reported(status=i.RESOLVED), c.MarkDuplicate("issue-1", "issue-0"), STAFFER, NOW)

    def test_staff_comments_are_marked_as_such(self) -> None:
        [by_staff] = i.decide(reported(), c.CommentOnIssue("issue-1", "c1", "On it"), STAFFER, NOW)
        [by_citizen] = i.decide(reported(), c.CommentOnIssue("issue-1", "c2", "Thanks"), OTHER, NOW)
        assert by_staff.by_staff is True  # type: ignore[attr-defined]
        assert by_citizen.by_staff is False  # type: ignore[attr-defined]


class TestFold:
    def test_the_fold_tracks_status_resolution_time_and_voters(self) -> None:
        """evolve applies each event to the state the decisions read."""
        state = i.evolve(
            i.Issue(id="x"),
            e.IssueReported(
                reporter_id="r", title="t", description="d", category="pothole", department="roads", lat=0, lon=0
            ),
            NOW,
        )
        state = i.evolve(state, e.IssueStatusChanged(from_status="reported", to_status="acknowledged"), NOW)
        state = i.evolve(state, e.IssueStatusChanged(from_status="acknowledged", to_status="resolved"), NOW)
        state = i.evolve(state, e.IssueUpvoted(user_id="u"), NOW)
        assert (state.status, state.resolved_at, state.upvoters, state.subscribers) == (
            i.RESOLVED,
            NOW,
            frozenset({"u"}),
            frozenset({"r"}),
        )
