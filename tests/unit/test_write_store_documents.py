"""``documents_from_log``: the pure half of ``snapfix write-store rebuild`` (events in, documents out)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from events.envelope import Envelope, Position
from events.kafka_log import UNDECODABLE
from ops.write_store import RebuildError, documents_from_log


def event(aggregate_id: str, version: int, offset: int, kind: str = "IssueUpvoted", **payload: str) -> Envelope:
    return Envelope(
        event_type=kind,
        schema_version=1,
        aggregate_type="issue",
        aggregate_id=aggregate_id,
        aggregate_version=version,
        payload=payload or {"user_id": f"u{version}"},
        position=Position(0, offset),
    )


def test_one_published_commit_per_event_chained_from_version_zero() -> None:
    """Append boundaries are not in the log: a commit per event gives the same stream and versions."""
    log = [event("a", 2, 5), event("b", 1, 3), event("a", 1, 1)]
    docs = documents_from_log(log)
    assert [d["_id"] for d in docs.commits if d["aggregate_id"] == "a"] == ["a/0/0", "a/1/0"]
    first = docs.commits[0]
    assert (first["kind"], first["after"], first["last"], first["published"]) == ("commit", 0, 1, True)
    assert first["positions"] == ["0.1"]
    assert first["append_id"] == log[2].event_id
    assert docs.aggregates == 2
    assert docs.claims == []


def test_exact_duplicates_are_written_once_at_their_first_position() -> None:
    original = event("a", 1, 1)
    docs = documents_from_log([original, original.at(Position(0, 9))])
    assert len(docs.commits) == 1
    assert docs.duplicates == 1
    assert docs.commits[0]["positions"] == ["0.1"]


def test_two_different_events_at_one_version_are_refused() -> None:
    with pytest.raises(RebuildError, match="two different events"):
        documents_from_log([event("a", 1, 1), event("a", 1, 2)])


def test_a_gap_in_versions_is_refused() -> None:
    with pytest.raises(RebuildError, match=r"missing.*\[2\]"):
        documents_from_log([event("a", 1, 1), event("a", 3, 2)])


def test_an_undecodable_record_is_refused() -> None:
    with pytest.raises(RebuildError, match="unreadable"):
        documents_from_log([replace(event("a", 1, 1), event_type=UNDECODABLE, payload={"error": "bad json"})])


def test_a_registration_holds_its_email_through_a_claim_on_its_commit() -> None:
    registered = event("u1", 1, 4, kind="UserRegistered", email="Ada@Example.org")
    docs = documents_from_log([registered, event("u1", 2, 5, kind="UserRoleGranted", role="staff")])
    [claim] = docs.claims
    assert claim["_id"] == "email:ada@example.org#0"
    assert claim["key"] == "email:ada@example.org"
    assert (claim["commit_id"], claim["append_id"], claim["version"]) == ("u1/0/0", registered.event_id, 1)
    assert claim["aggregate_id"] == "u1"
    assert claim["data"] == {}
