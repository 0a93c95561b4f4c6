"""Browse feeds: every page a feed serves is exactly the page the summary view would give."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from events.envelope import Envelope
from projectors import feeds
from projectors.issue_views import INDEX_ONLY_FIELDS, issue_summary
from projectors.ports import Doc
from tests.strategies import deliver as deliver_event
from tests.strategies import histories

SIZE = 3  # small, so that random histories overflow feeds, move their bounds and shrink them
STATUSES = ["reported", "acknowledged", "resolved"]
CATEGORIES = ["pothole", "streetlight"]
DEPARTMENTS = ["roads", "lighting", None]
IDS = [f"i{n}" for n in range(8)]
Feeds = dict[str, Doc]


def brute_force(summaries: dict[str, Doc], key: str) -> list[Doc]:
    """The list a feed stands for, from scratch: its filter over every listed summary, in its order."""
    sort, _, condition = key.partition(":")
    field, _, value = condition.partition("=")
    listed = [
        feeds.entry_of(s, INDEX_ONLY_FIELDS)
        for s in summaries.values()
        if not s["hidden"] and (not condition or s.get(field) == value)
    ]
    return sorted(listed, key=lambda e: feeds.rank(e, sort), reverse=True)


def every_key() -> list[str]:
    values = {"status": STATUSES, "category": CATEGORIES, "department": DEPARTMENTS}
    keys = []
    for sort, field in feeds.FEEDS:
        if field is None:
            keys.append(feeds.feed_id(sort))
        else:
            keys += [feeds.feed_id(sort, field, v) for v in values[field] if v is not None]
    return keys


def assert_pages_exact(state: Feeds, summaries: dict[str, Doc]) -> None:
    """For every feed, page size and cursor: the feed answers the true page, or says it cannot."""
    for key in every_key():
        sort = key.partition(":")[0]
        truth = brute_force(summaries, key)
        feed = state.get(key)
        if feed is not None:
            entries = feeds.entries_of(feed)
            assert entries == truth[: len(entries)], key
        positions: list[Any] = [None, *(feeds.rank(e, sort) for e in truth)]
        for after in positions:
            rest = [e for e in truth if after is None or feeds.rank(e, sort) < after]
            for rows in range(1, SIZE + 2):
                served = feeds.page(feed, sort, after, rows)
                if served is not None:
                    assert served == rest[:rows], (key, after, rows)
        # a feed that never overflowed answers every page
        if feed is not None and feed["bound"] is None:
            assert feeds.page(feed, sort, None, SIZE + 1) == truth


changes = st.lists(
    st.tuples(
        st.sampled_from(IDS),
        st.fixed_dictionaries(
            {
                "status": st.sampled_from(STATUSES),
                "category": st.sampled_from(CATEGORIES),
                "department": st.sampled_from(DEPARTMENTS),
                "upvotes": st.integers(0, 4),
                "hidden": st.booleans(),
                "updated_at": st.sampled_from(["2026-02-01", "2026-02-02", "2026-02-03"]),
            }
        ),
        st.booleans(),  # delivered twice
    ),
    max_size=60,
)


class TestFold:
    @given(changes)
    @settings(max_examples=300, deadline=None)
    def test_a_feed_is_an_exact_prefix_of_its_list_through_any_changes(
        self, steps: list[tuple[str, dict[str, Any], bool]]
    ) -> None:
        summaries: dict[str, Doc] = {}
        state: Feeds = {}
        for issue_id, fields, twice in steps:
            old = summaries.get(issue_id)
            created = old["created_at"] if old else f"2026-01-{IDS.index(issue_id) + 1:02d}"
            new = {"id": issue_id, "created_at": created, "lat": 51.5, "lon": -0.1, "terms": ["hole"], **fields}
            summaries[issue_id] = new
            for _ in range(2 if twice else 1):
                for key in feeds.feed_keys(old, new):
                    folded = feeds.fold_feed(state.get(key), key, new, issue_id, INDEX_ONLY_FIELDS, SIZE)
                    assert folded is not None
                    state[key] = folded
            assert_pages_exact(state, summaries)

    def test_entries_are_public_summaries(self) -> None:
        summary = {"id": "a", "created_at": "t", "upvotes": 0, "hidden": False, "lat": 1.0, "terms": ["x"]}
        feed = feeds.fold_feed(None, "newest", summary, "a", INDEX_ONLY_FIELDS)
        assert feed is not None
        assert feeds.entries_of(feed) == [{"id": "a", "created_at": "t", "upvotes": 0, "hidden": False}]

    def test_an_unchanged_feed_is_returned_as_is(self) -> None:
        """So the runner writes nothing for a change that does not move the feed."""
        summary = {"id": "a", "created_at": "t", "upvotes": 0, "hidden": False}
        feed = feeds.fold_feed(None, "newest", summary, "a", INDEX_ONLY_FIELDS)
        assert feeds.fold_feed(feed, "newest", summary, "a", INDEX_ONLY_FIELDS) is feed

    def test_a_missing_feed_is_an_empty_list(self) -> None:
        """No listed issue ever had the value (say, a status nobody has used yet): nothing to read elsewhere."""
        assert feeds.page(None, "newest", None, 20) == []


def deliver(views: dict[tuple[str, str], Doc], env: Envelope, *, rollups_only: bool = False) -> None:
    deliver_event(issue_summary, views, env, rollups_only=rollups_only)


class TestRollup:
    @given(histories(max_steps=40), st.data())
    @settings(max_examples=100, deadline=None)
    def test_feeds_of_the_projection_survive_redelivery_and_a_crash_between_writes(
        self, log: list[Envelope], data: st.DataObject
    ) -> None:
        """Events delivered again, or replayed after feeds were written but summaries were not, change nothing."""
        views: dict[tuple[str, str], Doc] = {}
        for n, env in enumerate(log):
            crash = data.draw(st.booleans())
            deliver(views, env, rollups_only=crash)
            if crash:  # the replay after the crash: the summary is still the old one
                deliver(views, env)
            if data.draw(st.booleans()):
                deliver(views, data.draw(st.sampled_from(log[: n + 1])))
        summaries = {k[1]: d for k, d in views.items() if k[0] == issue_summary.name}
        for (name, key), feed in views.items():
            if name == feeds.feed_collection.name:
                assert feed["bound"] is None  # three issues never fill a feed
                assert feeds.entries_of(feed) == brute_force(summaries, key)
