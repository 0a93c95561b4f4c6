"""The statistics roll-up: exact counts, bounded histograms, idempotent under redelivery."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from events.envelope import Envelope
from projectors import stats
from projectors.ports import Doc
from tests.strategies import deliver as deliver_event
from tests.strategies import histories

Views = dict[tuple[str, str], Doc]


def deliver(views: Views, env: Envelope) -> None:
    deliver_event(stats.issue_stats, views, env)


def brute_force(contributions: list[Doc]) -> Doc:
    """The aggregate computed from scratch from the final contributions."""
    totals: Doc = {t: {} for t in stats.TABLES}
    for c in contributions:
        stats._apply(totals, c, +1)
    return totals


def tables(doc: Doc) -> Doc:
    return {t: doc[t] for t in stats.TABLES}


class TestRollup:
    @given(histories(max_steps=60), st.data())
    @settings(max_examples=150, deadline=None)
    def test_rolled_totals_equal_a_recount_even_with_redeliveries(
        self, log: list[Envelope], data: st.DataObject
    ) -> None:
        """Delivering events again (right away or later) leaves the totals equal to counting the final state."""
        views: Views = {}
        for env in log:
            deliver(views, env)
            if data.draw(st.booleans()):
                deliver(views, data.draw(st.sampled_from(log[: log.index(env) + 1])))
        contributions = [d for (name, _), d in views.items() if name == "issue_stats"]
        expected = tables(brute_force(contributions))
        if contributions:
            assert tables(views[("stats_totals", "all")]) == expected
            for precision in (4, 5):
                cells = {c for d in contributions for c in d["cells"] if c.startswith(f"c{precision}:")}
                merged = stats.merge(views[("stats_totals", cell)] for cell in cells)
                assert merged == expected

    @given(histories(max_steps=30))
    @settings(max_examples=50, deadline=None)
    def test_an_aggregate_that_counted_an_event_ignores_it_when_a_contribution_is_replayed(
        self, log: list[Envelope]
    ) -> None:
        """The mark per partition protects an aggregate written before its contribution (no transactions)."""
        views: Views = {}
        for env in log:
            deliver(views, env)
        before = dict(views)
        # forget the contributions but keep the aggregates, as after a crash between the two writes
        for key in [k for k in views if k[0] == "issue_stats"]:
            del views[key]
        for env in log:
            deliver(views, env)
        assert {k: v for k, v in views.items() if k[0] == "stats_totals"} == {
            k: v for k, v in before.items() if k[0] == "stats_totals"
        }


class TestPercentiles:
    @given(st.lists(st.floats(1, 3e7), min_size=1, max_size=300), st.sampled_from([0.5, 0.9]))
    def test_a_percentile_from_buckets_is_within_one_percent_of_the_exact_one(
        self, values: list[float], q: float
    ) -> None:
        histogram: dict[str, int] = {}
        for v in values:
            k = str(stats.bucket(v))
            histogram[k] = histogram.get(k, 0) + 1
        exact = sorted(values)[max(1, math.ceil(q * len(values))) - 1]
        found = stats.percentile(histogram, q)
        assert found is not None
        assert abs(found - exact) <= 0.0101 * exact + 0.1

    def test_histograms_stay_bounded(self) -> None:
        """A year of distinct durations needs under 900 buckets."""
        assert len({stats.bucket(s) for s in range(1, 366 * 86400, 997)}) < 900
