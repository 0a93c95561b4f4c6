"""Which issues duplicate an original, and the upvotes they bring: a cross-aggregate view.

The duplicate's ``IssueMarkedDuplicate`` changes the original's view, so this document is
keyed by the original's id, not by the event's aggregate. The aggregate-version guard of
the other folds cannot apply across aggregates; instead the document is a map
``duplicate_id -> upvotes`` that each event sets (never adds to), so a replay or a
redelivery writes the same value again and changes nothing. A duplicate takes no votes
after it is marked (the domain refuses them), so the carried count stays true.
"""

from __future__ import annotations

from events import types as e
from events.envelope import Envelope
from projectors.ports import Collection, Doc
from projectors.projection import Projection


def original_key(env: Envelope) -> str | None:
    if env.event_type != "IssueMarkedDuplicate":
        return None
    original = env.payload.get("original_id")
    return original if isinstance(original, str) else None


def fold_duplicates(doc: Doc | None, env: Envelope, event: e.DomainEvent) -> Doc | None:
    if not isinstance(event, e.IssueMarkedDuplicate):
        return doc
    current = doc or {"id": event.original_id, "duplicates": {}}
    if current["duplicates"].get(env.aggregate_id) == event.upvotes:
        return doc
    duplicates = {**current["duplicates"], env.aggregate_id: event.upvotes}
    return {"id": event.original_id, "duplicates": duplicates, "upvotes": sum(duplicates.values())}


issue_duplicates = Projection(Collection(name="issue_duplicates"), original_key, fold_duplicates)
