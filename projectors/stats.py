"""Issue statistics kept by the projector: per-issue contributions rolled up into small aggregate documents.

Two views. ``issue_stats`` holds one *contribution* per issue (status, category,
department, geo cells, report time, time to resolve), folded from the issue's
events and guarded by the aggregate version like every issue view. ``stats_totals``
holds a few aggregate documents: ``all`` for the whole city and one per geohash
cell at precisions 4 and 5 (``c4:gcpv``, ``c5:gcpvj``) for box-filtered stats.
Whenever a contribution changes, the runner hands the old and the new
contribution to :func:`roll`, which subtracts one and adds the other.

Idempotent under redelivery on every store: a redelivered event leaves its
contribution unchanged (version guard), so nothing is rolled; and each aggregate
document remembers, per log partition, the last position it counted (``marks``),
so if a store without transactions wrote the aggregates but not the contribution
before a crash, the replayed event is rolled into no aggregate twice. The runner
writes aggregates before contributions for that reason.

Times to resolve go into log-bucketed histograms (bucket ``k`` holds durations in
``(G^(k-1), G^k]`` seconds, G = 1.02): every document stays bounded (< 900 buckets
per category or department, whatever the number of issues), histograms of cells
merge by adding counts, and a median or 90th percentile read from them is within
1 % of the exact value.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import datetime

from events import types as e
from events.envelope import Envelope
from projectors.geo import Box, cover, cover_count, encode
from projectors.ports import Collection, Doc
from projectors.projection import Projection, Rollup, already_applied, by_aggregate, iso, marked

GAMMA = 1.02
OPEN = frozenset({"reported", "acknowledged", "in_progress", "reopened"})
RESOLVED = frozenset({"resolved", "closed"})
ALL = "all"
CELL_PRECISIONS = (5, 4)
MAX_STATS_CELLS = 64

contributions_collection = Collection(name="issue_stats")
totals_collection = Collection(name="stats_totals")


# --- contributions ---------------------------------------------------------------


def fold_contribution(doc: Doc | None, env: Envelope, event: e.DomainEvent) -> Doc | None:
    """What one issue adds to the statistics now."""
    if already_applied(doc, env):
        return doc
    if isinstance(event, e.IssueReported):
        longest = encode(event.lat, event.lon, max(CELL_PRECISIONS))
        new: Doc = {
            "id": env.aggregate_id,
            "status": "reported",
            "category": event.category,
            "department": event.department,
            "cells": [f"c{p}:{longest[:p]}" for p in sorted(CELL_PRECISIONS)],
            "reported_at": iso(env.occurred_at),
            "resolve_s": None,
        }
    elif doc is None:
        return None
    else:
        new = {**doc}
        match event:
            case e.IssueEdited():
                new["category"] = event.category
            case e.IssueAssigned():
                new["department"] = event.department
            case e.IssueStatusChanged():
                new["status"] = event.to_status
                if event.to_status == "resolved":
                    new["resolve_s"] = _seconds_between(doc["reported_at"], env.occurred_at)
                elif event.to_status not in RESOLVED:
                    new["resolve_s"] = None
            case e.IssueMarkedDuplicate():
                new.update(status="duplicate", resolve_s=None)
    new["version"] = env.aggregate_version
    return new


def _seconds_between(start: str, end: datetime) -> float:
    began = datetime.fromisoformat(start.replace("Z", "+00:00"))
    return max(0.0, (end - began).total_seconds())


# --- the roll-up ------------------------------------------------------------------


def totals_keys(old: Doc | None, new: Doc | None) -> list[str]:
    """The aggregate documents a change of contribution touches."""
    keys = {ALL}
    for doc in (old, new):
        if doc is not None:
            keys.update(doc["cells"])
    return sorted(keys)


def bucket(seconds: float) -> int:
    return 0 if seconds <= 1 else math.ceil(math.log(seconds) / math.log(GAMMA))


def bucket_value(k: int) -> float:
    """The bucket's representative duration: within (G-1)/(G+1) < 1 % of anything in it."""
    return 1.0 if k <= 0 else 2 * GAMMA**k / (GAMMA + 1)


def _add(counts: dict[str, int], key: str, n: int) -> None:
    total = counts.get(key, 0) + n
    if total:
        counts[key] = total
    else:
        counts.pop(key, None)


def _nested_add(tables: dict[str, dict[str, int]], outer: str, inner: str, n: int) -> None:
    table = dict(tables.get(outer, {}))
    _add(table, inner, n)
    if table:
        tables[outer] = table
    else:
        tables.pop(outer, None)


def _apply(totals: Doc, contribution: Doc, n: int) -> None:
    for dimension in ("status", "category", "department"):
        _add(totals[dimension], contribution[dimension], n)
    if contribution["status"] in OPEN:
        _add(totals["backlog"], contribution["department"], n)
    if contribution["resolve_s"] is not None and contribution["status"] in RESOLVED:
        k = str(bucket(contribution["resolve_s"]))
        _nested_add(totals["resolve_category"], contribution["category"], k, n)
        _nested_add(totals["resolve_department"], contribution["department"], k, n)


TABLES = ("status", "category", "department", "backlog", "resolve_category", "resolve_department")


def roll(totals: Doc | None, key: str, old: Doc | None, new: Doc | None, env: Envelope) -> Doc | None:
    """The aggregate ``key`` with ``old`` taken out and ``new`` put in, unless it has counted ``env`` already."""
    assert env.position is not None
    partition, offset = str(env.position.partition), env.position.offset
    if totals is not None and totals["marks"].get(partition, -1) >= offset:
        return totals
    doc: Doc = {"id": key, "marks": {}, **{t: {} for t in TABLES}} if totals is None else totals
    marks, version = marked(doc["marks"], env)
    new_doc: Doc = {"id": key, "marks": marks, "version": version}
    new_doc.update({t: {k: (dict(v) if isinstance(v, dict) else v) for k, v in doc[t].items()} for t in TABLES})
    if old is not None and key in totals_keys(old, None):
        _apply(new_doc, old, -1)
    if new is not None and key in totals_keys(None, new):
        _apply(new_doc, new, +1)
    return new_doc


# --- reading ------------------------------------------------------------------------


def keys_for(box: Box | None) -> list[str]:
    """The aggregate documents that answer for a box: the finest cells that stay few, or the whole city."""
    if box is None:
        return [ALL]
    for precision in CELL_PRECISIONS:
        if cover_count(box, precision) <= MAX_STATS_CELLS:
            return [f"c{precision}:{cell}" for cell in cover(box, precision)]
    return [ALL]


def percentile(histogram: Mapping[str, int], q: float) -> float | None:
    """The nearest-rank ``q`` quantile of a bucketed histogram, in seconds (None when empty)."""
    total = sum(histogram.values())
    if total == 0:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    for k in sorted(histogram, key=int):
        seen += histogram[k]
        if seen >= rank:
            return round(bucket_value(int(k)), 1)
    return None  # unreachable: the ranks add up


def merge(docs: Iterable[Doc]) -> Doc:
    """Aggregates of disjoint cells added together."""
    out: Doc = {t: {} for t in TABLES}
    for doc in docs:
        for t in ("status", "category", "department", "backlog"):
            for k, n in doc[t].items():
                _add(out[t], k, n)
        for t in ("resolve_category", "resolve_department"):
            for outer, hist in doc[t].items():
                for k, n in hist.items():
                    _nested_add(out[t], outer, k, n)
    return out


def report(totals: Doc) -> Doc:
    """The public statistics: counts, backlog, and median and p90 time to resolve in seconds."""

    def times(table: Mapping[str, Mapping[str, int]]) -> dict[str, dict[str, float | int | None]]:
        return {
            name: {
                "resolved": sum(hist.values()),
                "median_s": percentile(hist, 0.5),
                "p90_s": percentile(hist, 0.9),
            }
            for name, hist in sorted(table.items())
        }

    return {
        "total": sum(totals["status"].values()),
        "by_status": dict(sorted(totals["status"].items())),
        "by_category": dict(sorted(totals["category"].items())),
        "by_department": dict(sorted(totals["department"].items())),
        "open_backlog_by_department": dict(sorted(totals["backlog"].items())),
        "time_to_resolve_by_category": times(totals["resolve_category"]),
        "time_to_resolve_by_department": times(totals["resolve_department"]),
    }


issue_stats = Projection(
    contributions_collection,
    by_aggregate("issue"),
    fold_contribution,
    rollups=(Rollup(totals_collection, totals_keys, roll),),
)
