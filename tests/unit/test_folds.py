"""The projections' folds are pure, deterministic and idempotent."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from command_api.aggregates import fold as fold_aggregate
from command_api.domain import issue as i
from events.envelope import Envelope
from events.upcasting import decode
from projectors.catalog import ALL
from projectors.ports import Doc
from projectors.projection import Projection
from tests.strategies import ISSUES, histories

Views = dict[tuple[str, str], Doc]


def apply(views: Views, projection: Projection, env: Envelope) -> None:
    doc_id = projection.key(env)
    if doc_id is None:
        return
    new = projection.fold(views.get((projection.name, doc_id)), env, decode(env))
    if new is not None:
        views[(projection.name, doc_id)] = new


def project(log: list[Envelope], twice: bool = False) -> Views:
    views: Views = {}
    for env in log:
        for projection in ALL:
            apply(views, projection, env)
            if twice:
                apply(views, projection, env)
    return views


class TestFoldProperties:
    @given(histories())
    @settings(max_examples=150, deadline=None)
    def test_applying_every_event_twice_changes_nothing(self, log: list[Envelope]) -> None:
        """At-least-once delivery is harmless: duplicates leave every view as a single delivery would."""
        assert project(log, twice=True) == project(log)

    @given(histories(), st.data())
    @settings(max_examples=100, deadline=None)
    def test_redelivering_an_old_event_later_changes_nothing(self, log: list[Envelope], data: st.DataObject) -> None:
        """A stale redelivery after newer events (a consumer restart) is ignored."""
        views = project(log)
        stale = data.draw(st.sampled_from(log))
        again = dict(views)
        for projection in ALL:
            apply(again, projection, stale)
        assert again == views

    @given(histories())
    @settings(max_examples=100, deadline=None)
    def test_views_agree_with_the_aggregate_they_describe(self, log: list[Envelope]) -> None:
        """Status, version and upvotes in both issue views equal the aggregate's state; upvotes count voters."""
        views = project(log)
        for issue_id in ISSUES:
            stream = [e for e in log if e.aggregate_id == issue_id]
            if not stream:
                assert ("issue_summary", issue_id) not in views
                continue
            state = fold_aggregate(i.Issue(id=issue_id), i.evolve, stream).state
            for name in ("issue_summary", "issue_detail"):
                doc = views[(name, issue_id)]
                assert (doc["status"], doc["version"], doc["upvotes"]) == (
                    state.status,
                    state.version,
                    len(state.upvoters),
                )
                assert doc["department"] == state.department

    @given(histories())
    @settings(max_examples=50, deadline=None)
    def test_the_history_view_holds_each_issue_event_once_in_order(self, log: list[Envelope]) -> None:
        views = project(log)
        for issue_id in ISSUES:
            versions = sorted(
                d["version"]
                for (name, _), d in views.items()
                if name == "issue_history" and d["aggregate_id"] == issue_id
            )
            assert versions == list(range(1, len(versions) + 1))
            assert len(versions) == sum(1 for e in log if e.aggregate_id == issue_id)

    @given(histories())
    @settings(max_examples=50, deadline=None)
    def test_no_view_ever_holds_a_password_hash(self, log: list[Envelope]) -> None:
        """The password hash in UserRegistered never reaches a read model."""
        assert "hash" not in repr([d for (name, _), d in project(log).items() if name == "user_profile"])
        assert all("password_hash" not in d for d in project(log).values())
