"""Decisions added by the complete domain: moderation, photos, duplicates' votes, catalogue attributes, sessions."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from command_api import commands as c
from command_api.domain import catalogue as cat
from command_api.domain import issue as i
from command_api.domain import session as s
from command_api.domain.actor import ADMIN, CITIZEN, STAFF, Actor
from command_api.domain.errors import Forbidden, Invalid, InvalidTransition, NotFound
from events import types as e
from events.upcasting import upcast

NOW = datetime(2026, 6, 1, tzinfo=UTC)
REPORTER = Actor("reporter", frozenset({CITIZEN}))
OTHER = Actor("other", frozenset({CITIZEN}))
STAFFER = Actor("staff-1", frozenset({CITIZEN, STAFF}))
ADMINISTRATOR = Actor("admin-1", frozenset({CITIZEN, ADMIN}))


def issue(**changes: object) -> i.Issue:
    base = i.Issue(id="issue-1", version=3, reporter_id="reporter", status=i.REPORTED, comments=frozenset({"c1"}))
    return replace(base, **changes)  # type: ignore[arg-type]


def photo(photo_id: str = "p1") -> c.AddPhoto:
    return c.AddPhoto("issue-1", photo_id, f"photos/issue-1/{photo_id}.jpg", "image/jpeg", 10, 10, 100)


class TestModeration:
    def test_staff_hide_and_unhide_an_issue_with_a_reason(self) -> None:
        """Hiding records the reason; hiding twice changes nothing; unhiding brings it back."""
        [hidden] = i.decide(issue(), c.ModerateIssue("issue-1", True, "abusive"), STAFFER, NOW)
        assert hidden == e.IssueHidden(reason="abusive")
        assert i.decide(issue(hidden=True), c.ModerateIssue("issue-1", True, "again"), STAFFER, NOW) == []
        [shown] = i.decide(issue(hidden=True), c.ModerateIssue("issue-1", False, "appeal upheld"), ADMINISTRATOR, NOW)
        assert shown == e.IssueUnhidden(reason="appeal upheld")

    def test_citizens_including_the_reporter_cannot_moderate(self) -> None:
        for actor in (REPORTER, OTHER):
            with pytest.raises(Forbidden):
                i.decide(issue(), c.ModerateIssue("issue-1", True, "mine"), actor, NOW)
            with pytest.raises(Forbidden):
                i.decide(issue(), c.ModerateComment("issue-1", "c1", True, "mine"), actor, NOW)

    def test_a_reason_is_required(self) -> None:
        with pytest.raises(Invalid):
            i.decide(issue(), c.ModerateIssue("issue-1", True, "  "), STAFFER, NOW)

    def test_only_existing_comments_are_moderated(self) -> None:
        """Hiding a comment the issue never had is a 404, not a silent no-op."""
        [hidden] = i.decide(issue(), c.ModerateComment("issue-1", "c1", True, "spam"), STAFFER, NOW)
        assert hidden == e.IssueCommentHidden(comment_id="c1", reason="spam")
        with pytest.raises(NotFound):
            i.decide(issue(), c.ModerateComment("issue-1", "nope", True, "spam"), STAFFER, NOW)
        hidden_state = issue(hidden_comments=frozenset({"c1"}))
        assert i.decide(hidden_state, c.ModerateComment("issue-1", "c1", True, "spam"), STAFFER, NOW) == []


class TestPhotos:
    def test_the_reporter_and_staff_add_photos_others_may_not(self) -> None:
        assert i.decide(issue(), photo(), REPORTER, NOW)[0].uploaded_by == "reporter"  # type: ignore[attr-defined]
        assert i.decide(issue(), photo(), STAFFER, NOW)
        with pytest.raises(Forbidden):
            i.decide(issue(), photo(), OTHER, NOW)

    def test_an_issue_holds_a_bounded_number_of_photos(self) -> None:
        full = issue(photos=frozenset(f"p{n}" for n in range(i.MAX_PHOTOS)))
        with pytest.raises(Invalid):
            i.decide(full, photo("one-more"), REPORTER, NOW)

    def test_a_thumbnail_is_recorded_once_per_photo(self) -> None:
        """The worker's command is idempotent, so a redelivered photo yields no second event."""
        cmd = c.RecordThumbnail("issue-1", "p1", "thumbs/p1.jpg", 5, 5)
        [event] = i.decide(issue(photos=frozenset({"p1"})), cmd, STAFFER, NOW)
        assert isinstance(event, e.IssuePhotoThumbnailed)
        done = issue(photos=frozenset({"p1"}), thumbnailed=frozenset({"p1"}))
        assert i.decide(done, cmd, STAFFER, NOW) == []
        with pytest.raises(NotFound):
            i.decide(issue(), cmd, STAFFER, NOW)
        with pytest.raises(Forbidden):
            i.decide(issue(photos=frozenset({"p1"})), cmd, REPORTER, NOW)


class TestDuplicates:
    def test_marking_carries_the_upvotes_that_count_towards_the_original(self) -> None:
        voted = issue(upvoters=frozenset({"a", "b"}))
        [event] = i.decide(voted, c.MarkDuplicate("issue-1", "issue-0"), STAFFER, NOW)
        assert event == e.IssueMarkedDuplicate(original_id="issue-0", from_status=i.REPORTED, upvotes=2)

    def test_a_duplicate_takes_no_more_votes(self) -> None:
        """Votes go to the original, so the count carried at marking time stays true."""
        dup = issue(status=i.DUPLICATE, duplicate_of="issue-0", upvoters=frozenset({"other"}))
        for cmd in (c.UpvoteIssue("issue-1"), c.WithdrawUpvote("issue-1")):
            with pytest.raises(InvalidTransition):
                i.decide(dup, cmd, OTHER, NOW)


STREETLIGHT = cat.Category(
    "streetlight",
    "Streetlight",
    "",
    "lighting",
    (
        c.CategoryAttributeSpec("pole", "string", required=True),
        c.CategoryAttributeSpec("fault", "singlevaluelist", values=("out", "flickering")),
        c.CategoryAttributeSpec("height_m", "number"),
        c.CategoryAttributeSpec("lit", "boolean"),
        c.CategoryAttributeSpec("seen", "datetime"),
        c.CategoryAttributeSpec("tags", "multivaluelist", values=("a", "b")),
    ),
)


class TestCatalogue:
    def test_admins_define_categories_with_typed_attributes(self) -> None:
        cmd = c.DefineCategory("streetlight", "Streetlight", "", "lighting", STREETLIGHT.attributes)
        [event] = cat.define(cat.Catalogue(), cmd, ADMINISTRATOR)
        state = cat.evolve(cat.Catalogue(), event, NOW)
        assert state.get("streetlight") == STREETLIGHT
        assert cat.define(state, cmd, ADMINISTRATOR) == []
        with pytest.raises(Forbidden):
            cat.define(cat.Catalogue(), cmd, STAFFER)

    @pytest.mark.parametrize(
        "spec",
        [
            c.CategoryAttributeSpec("x", "colour"),
            c.CategoryAttributeSpec("x", "singlevaluelist"),
            c.CategoryAttributeSpec("x", "string", values=("a",)),
        ],
    )
    def test_malformed_attribute_definitions_are_refused(self, spec: c.CategoryAttributeSpec) -> None:
        with pytest.raises(Invalid):
            cat.define(cat.Catalogue(), c.DefineCategory("x", "X", "", "d", (spec,)), ADMINISTRATOR)

    def test_a_retired_category_takes_no_new_reports(self) -> None:
        state = cat.evolve(cat.Catalogue(), e.CategoryDefined(code="x", name="X", description="", department="d"), NOW)
        [retired] = cat.retire(state, c.RetireCategory("x"), ADMINISTRATOR)
        state = cat.evolve(state, retired, NOW)
        with pytest.raises(Invalid):
            state.department_of("x")
        assert cat.retire(state, c.RetireCategory("x"), ADMINISTRATOR) == []

    def test_well_typed_answers_pass(self) -> None:
        answers = {
            "pole": "L-12",
            "fault": "out",
            "height_m": 6.5,
            "lit": False,
            "seen": "2026-01-01T10:00:00",
            "tags": ["a"],
        }
        assert cat.check_answers(STREETLIGHT, answers) == answers

    @pytest.mark.parametrize(
        "answers",
        [
            {},
            {"pole": 12},
            {"pole": "p", "fault": "melted"},
            {"pole": "p", "height_m": True},
            {"pole": "p", "height_m": "six"},
            {"pole": "p", "lit": "yes"},
            {"pole": "p", "seen": "yesterday"},
            {"pole": "p", "tags": ["a", "a"]},
            {"pole": "p", "tags": [{"a": 1}]},
            {"pole": "p", "colour": "red"},
        ],
    )
    def test_ill_typed_unknown_or_missing_answers_are_refused(self, answers: dict) -> None:
        with pytest.raises(Invalid):
            cat.check_answers(STREETLIGHT, answers)

    @given(
        st.dictionaries(
            st.sampled_from(["pole", "fault", "height_m", "lit", "seen", "tags", "x"]),
            st.from_type(object) | st.lists(st.text(max_size=3)) | st.floats(),
        )
    )
    def test_any_answers_are_accepted_or_refused_never_crash(self, answers: dict) -> None:
        """Whatever JSON-ish a client sends, the check answers Invalid or a dict: never an unexpected error."""
        try:
            checked = cat.check_answers(STREETLIGHT, answers)
        except Invalid:
            return
        assert set(checked) <= set(answers)

    def test_a_version_1_category_upcasts_with_no_attributes(self) -> None:
        """CategoryDefined v1 events in old logs stay readable."""
        v1 = {"code": "x", "name": "X", "description": "", "department": "d"}
        assert e.CategoryDefined.model_validate(upcast("CategoryDefined", 1, v1)).attributes == ()


class TestSessions:
    STARTED = s.Session(id="session-f", version=1, user_id="ada", current_token_id="t1")

    def test_the_current_token_rotates(self) -> None:
        [event] = s.rotate(self.STARTED, c.RotateRefreshToken("session-f", "ada", "t1", "t2"))
        assert event == e.SessionRefreshed(previous_token_id="t1", token_id="t2")

    def test_a_spent_token_revokes_the_family(self) -> None:
        rotated = s.evolve(self.STARTED, e.SessionRefreshed(previous_token_id="t1", token_id="t2"), NOW)
        [event] = s.rotate(rotated, c.RotateRefreshToken("session-f", "ada", "t1", "t3"))
        assert isinstance(event, e.SessionRevoked)
        revoked = s.evolve(rotated, event, NOW)
        with pytest.raises(Forbidden):
            s.rotate(revoked, c.RotateRefreshToken("session-f", "ada", "t2", "t4"))

    def test_nobody_rotates_or_ends_another_users_session(self) -> None:
        with pytest.raises(Forbidden):
            s.rotate(self.STARTED, c.RotateRefreshToken("session-f", "ben", "t1", "t2"))
        with pytest.raises(Forbidden):
            s.end(self.STARTED, c.EndSession("session-f", "ben"))

    def test_signing_out_twice_records_once(self) -> None:
        [event] = s.end(self.STARTED, c.EndSession("session-f", "ada"))
        assert s.end(s.evolve(self.STARTED, event, NOW), c.EndSession("session-f", "ada")) == []
