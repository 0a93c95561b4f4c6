"""The Grafana dashboard in ops/grafana queries only metrics that some SnapFix role exports."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY

import query_api.caching
import snapfix.http
import snapfix.metrics

DASHBOARD = Path(__file__).parents[2] / "ops" / "grafana" / "snapfix.json"
EXPORTERS = (snapfix.metrics, snapfix.http, query_api.caching)  # importing them registers their metrics
METRIC = re.compile(r"\bsnapfix_[a-z0-9_]+")
SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created")}


def exported() -> set[str]:
    """Every series name the registry can serve: counters with _total, histograms with _bucket, _sum, _count."""
    names = set()
    for family in REGISTRY.collect():
        names.add(family.name)
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ()))
    return names


def queried(dashboard: dict[str, Any]) -> dict[str, set[str]]:
    """The metric names each panel's queries use, by panel title."""
    out: dict[str, set[str]] = {}
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            out.setdefault(panel["title"], set()).update(METRIC.findall(target["expr"]))
    return out


class TestDashboard:
    def test_the_dashboard_is_json_with_a_prometheus_datasource_variable(self) -> None:
        """The file parses, and every panel reads from the datasource the variable selects."""
        dashboard = json.loads(DASHBOARD.read_text())
        variables = {v["name"]: v for v in dashboard["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource"
        assert variables["datasource"]["query"] == "prometheus"
        for panel in dashboard["panels"]:
            if panel["type"] != "row":
                assert panel["datasource"]["uid"] == "${datasource}", panel["title"]

    def test_every_metric_a_panel_queries_is_exported(self) -> None:
        """A panel that queries a metric nobody exports fails here, naming the panel."""
        dashboard = json.loads(DASHBOARD.read_text())
        names = exported()
        missing = {title: used - names for title, used in queried(dashboard).items() if used - names}
        assert not missing

    def test_the_dashboard_covers_the_issue_s_signals(self) -> None:
        """Requests, errors, durations, appended events, projector throughput and lag, dead letters, cache hits."""
        used = set().union(*queried(json.loads(DASHBOARD.read_text())).values())
        assert {
            "snapfix_http_requests_total",
            "snapfix_http_request_duration_seconds_bucket",
            "snapfix_events_appended_total",
            "snapfix_projector_events_total",
            "snapfix_projector_lag_events",
            "snapfix_projector_lag_seconds",
            "snapfix_dead_letters_total",
            "snapfix_cache_lookups_total",
        } <= used

    def test_a_panel_querying_an_unknown_metric_is_caught(self) -> None:
        """The check above is not vacuous: a made-up metric is reported as missing."""
        panel = {"title": "bogus", "targets": [{"expr": "rate(snapfix_nobody_exports_this_total[5m])"}]}
        assert queried({"panels": [panel]})["bogus"] - exported() == {"snapfix_nobody_exports_this_total"}
