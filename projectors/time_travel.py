"""An aggregate's view document as of a moment: its events up to then, through the same pure fold.

The CLI folds events read from the log; the query API, which never reads the log, folds
the ``issue_history`` documents (each holds its event's payload) the same way.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from events.envelope import Envelope
from events.upcasting import decode
from projectors.catalog import BY_NAME
from projectors.ports import Doc
from projectors.projection import Projection, iso

STATE_VIEW = {"issue": "issue_detail", "user": "user_profile"}


def state_view(aggregate_type: str) -> Projection:
    """The view that holds an aggregate's whole state."""
    return BY_NAME[STATE_VIEW.get(aggregate_type, "issue_detail")]


def fold_as_of(envelopes: Iterable[Envelope], until: datetime, projection: Projection | None = None) -> Doc | None:
    """Fold an aggregate's events (in version order) recorded at or before ``until``."""
    doc: Doc | None = None
    for env in envelopes:
        if env.occurred_at > until:
            break
        view = projection or state_view(env.aggregate_type)
        doc = view.fold(doc, env, decode(env))
    return doc


def envelope_of_history(entry: Doc) -> Envelope:
    """The envelope an ``issue_history`` document was folded from (its payload as the view stored it)."""
    return Envelope(
        event_type=entry["event_type"],
        schema_version=entry["schema_version"],
        aggregate_type="issue",
        aggregate_id=entry["aggregate_id"],
        aggregate_version=entry["version"],
        payload=entry["data"],
        occurred_at=datetime.fromisoformat(entry["occurred_at"].replace("Z", "+00:00")),
        event_id=entry["event_id"],
        actor_id=entry.get("actor_id"),
        correlation_id=entry.get("correlation_id"),
    )


def issue_as_of(history: Iterable[Doc], until: datetime) -> Doc | None:
    """The issue detail as of ``until``, from its history documents in version order."""
    stamp = iso(until)
    envelopes = [envelope_of_history(h) for h in history if h["occurred_at"] <= stamp]
    return fold_as_of(envelopes, until, BY_NAME["issue_detail"])
