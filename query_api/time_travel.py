"""``GET /v1/issues/{id}?as_of=``: the issue as it was, folded from its history view (never from the log)."""

from __future__ import annotations

from datetime import datetime

from projectors.ports import Cond, Doc, Query, ViewStore
from projectors.time_travel import issue_as_of

PAGE = 500


async def detail_as_of(views: ViewStore, issue_id: str, stamp: str) -> Doc | None:
    """The detail document as of ``stamp`` (the views' fixed-width UTC form), or None if it did not exist yet."""
    history: list[Doc] = []
    while True:
        after = history[-1]["version"] if history else 0
        where = (Cond("aggregate_id", "eq", issue_id), Cond("version", "gt", after))
        page = await views.find(Query("issue_history", where, (("version", False),), None, PAGE))
        history += [h for h in page if h["occurred_at"] <= stamp]
        if len(page) < PAGE or (page and page[-1]["occurred_at"] > stamp):
            break
    return issue_as_of(history, datetime.fromisoformat(stamp.replace("Z", "+00:00")))
