"""Every projection the system runs, in one place."""

from __future__ import annotations

from projectors.duplicate_views import issue_duplicates
from projectors.issue_views import issue_detail, issue_summary
from projectors.other_views import categories, issue_history, user_profile
from projectors.projection import Projection
from projectors.stats import issue_stats

ALL: tuple[Projection, ...] = (
    issue_summary,
    issue_detail,
    issue_history,
    user_profile,
    categories,
    issue_stats,
    issue_duplicates,
)
BY_NAME: dict[str, Projection] = {p.name: p for p in ALL}
