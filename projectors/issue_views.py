"""The issue views: a summary for browsing and a detail with its timeline. Pure folds."""

from __future__ import annotations

from typing import Any

from events import types as e
from events.envelope import Envelope
from projectors import feeds, geo, search
from projectors.ports import Collection, Doc
from projectors.projection import Projection, Rollup, already_applied, by_aggregate, iso

SUMMARY_FIELDS = (
    "id",
    "title",
    "description",
    "category",
    "status",
    "department",
    "reporter_id",
    "location",
    "address",
    "upvotes",
    "comments",
    "duplicate_of",
    "hidden",
    "created_at",
    "updated_at",
    "version",
)

# The summary's fields that exist for indexes only: browse answers never show them.
INDEX_ONLY_FIELDS = frozenset({"lat", "lon", "terms", *(geo.field(p) for p in geo.PRECISIONS)})
FILTERS = ("status", "category", "department", "reporter_id")
SORTS = (("-created_at", "-id"), ("-updated_at", "-id"), ("-upvotes", "-id"))
# Every documented browse shape has an index (tests/integration/test_query_plans.py checks it):
# each sort alone, each filter with each sort, a geo cell with newest first. Oldest first
# reads the newest-first indexes backwards. Search terms are an array field: a side table
# (SQLite) or a multikey index (MongoDB).
summary_collection = Collection(
    name="issue_summary",
    fields={
        "status": "text",
        "category": "text",
        "department": "text",
        "reporter_id": "text",
        "created_at": "text",
        "updated_at": "text",
        "upvotes": "int",
        "hidden": "int",  # moderated issues leave public browsing
        "lat": "real",
        "lon": "real",
        **{geo.field(p): "text" for p in geo.PRECISIONS},
    },
    arrays=("terms",),
    indexes=(
        *SORTS,
        *((f, *sort) for f in FILTERS for sort in SORTS),
        *((geo.field(p), "-created_at", "-id") for p in geo.PRECISIONS),
    ),
)

detail_collection = Collection(name="issue_detail")


def _timeline_entry(env: Envelope, kind: str, **data: Any) -> dict[str, Any]:
    return {
        "type": kind,
        "at": iso(env.occurred_at),
        "actor_id": env.actor_id,
        "version": env.aggregate_version,
        **data,
    }


def fold_detail(doc: Doc | None, env: Envelope, event: e.DomainEvent) -> Doc | None:
    """The detail document: every field of an issue, its comments and its timeline."""
    if already_applied(doc, env):
        return doc
    if isinstance(event, e.IssueReported):
        new: Doc = {
            "id": env.aggregate_id,
            "title": event.title,
            "description": event.description,
            "category": event.category,
            "status": "reported",
            "department": event.department,
            "reporter_id": event.reporter_id,
            "location": {"lat": event.lat, "lon": event.lon},
            "address": event.address,
            "upvotes": 0,
            "comments": 0,
            "duplicate_of": None,
            "created_at": iso(env.occurred_at),
            "comment_list": [],
            "timeline": [_timeline_entry(env, "reported")],
            "attributes": dict(event.attributes),
            "hidden": False,
            "photos": [],
        }
    elif doc is None:
        return None  # an event for an issue whose report this view never saw: nothing to change
    else:
        new = {**doc}
        match event:
            case e.IssueEdited():
                new.update(title=event.title, description=event.description, category=event.category)
                new["timeline"] = [*doc["timeline"], _timeline_entry(env, "edited")]
            case e.IssueStatusChanged():
                new["status"] = event.to_status
                new["timeline"] = [
                    *doc["timeline"],
                    _timeline_entry(
                        env, "status_changed", from_status=event.from_status, to_status=event.to_status, note=event.note
                    ),
                ]
            case e.IssueAssigned():
                new["department"] = event.department
                new["timeline"] = [*doc["timeline"], _timeline_entry(env, "assigned", department=event.department)]
            case e.IssueCommented():
                comment = {
                    "id": event.comment_id,
                    "author_id": event.author_id,
                    "body": event.body,
                    "by_staff": event.by_staff,
                    "created_at": iso(env.occurred_at),
                }
                new["comment_list"] = [*doc["comment_list"], comment]
                new["comments"] = doc["comments"] + 1
                new["timeline"] = [*doc["timeline"], _timeline_entry(env, "commented", comment_id=event.comment_id)]
            case e.IssueUpvoted():
                new["upvotes"] = doc["upvotes"] + 1
            case e.IssueUpvoteWithdrawn():
                new["upvotes"] = doc["upvotes"] - 1
            case e.IssueMarkedDuplicate():
                new.update(status="duplicate", duplicate_of=event.original_id)
                new["timeline"] = [
                    *doc["timeline"],
                    _timeline_entry(env, "marked_duplicate", original_id=event.original_id),
                ]
            case _:
                _fold_moderation_and_photos(new, doc, env, event)
    new["version"] = env.aggregate_version
    if not isinstance(event, e.IssueSubscribed | e.IssueUnsubscribed):  # following is not a change of the issue
        new["updated_at"] = iso(env.occurred_at)
    return new


def _fold_moderation_and_photos(new: Doc, doc: Doc, env: Envelope, event: e.DomainEvent) -> None:
    """Moderation marks, never removes: the public read hides what is hidden, the view keeps it for unhiding."""
    match event:
        case e.IssueHidden() | e.IssueUnhidden():
            hidden = isinstance(event, e.IssueHidden)
            new["hidden"] = hidden
            kind = "hidden" if hidden else "unhidden"
            new["timeline"] = [*doc["timeline"], _timeline_entry(env, kind, reason=event.reason)]
        case e.IssueCommentHidden() | e.IssueCommentUnhidden():
            hidden = isinstance(event, e.IssueCommentHidden)
            # The domain records a change only when the comment's state really flips, so the count follows.
            new["comments"] = doc["comments"] + (-1 if hidden else 1)
            new["comment_list"] = [
                {**cm, "hidden": hidden} if cm["id"] == event.comment_id else cm for cm in doc["comment_list"]
            ]
        case e.IssuePhotoAdded():
            photo = {
                "id": event.photo_id,
                "content_type": event.content_type,
                "width": event.width,
                "height": event.height,
                "size_bytes": event.size_bytes,
                "blob_key": event.blob_key,
                "thumbnail_key": None,
                "url": f"/v1/issues/{env.aggregate_id}/photos/{event.photo_id}",
                "thumbnail_url": None,
                "added_at": iso(env.occurred_at),
            }
            new["photos"] = [*doc.get("photos", []), photo]
            new["timeline"] = [*doc["timeline"], _timeline_entry(env, "photo_added", photo_id=event.photo_id)]
        case e.IssuePhotoThumbnailed():
            new["photos"] = [
                {**p, "thumbnail_key": event.blob_key, "thumbnail_url": f"{p['url']}/thumbnail"}
                if p["id"] == event.photo_id
                else p
                for p in doc.get("photos", [])
            ]


def fold_summary(doc: Doc | None, env: Envelope, event: e.DomainEvent) -> Doc | None:
    """The browsing document: the detail's scalar fields, flattened lat/lon for range queries."""
    if already_applied(doc, env):
        return doc
    # The summary is the detail without its lists; deriving it keeps the two folds in step.
    detail_like = None if doc is None else {**doc, "comment_list": [], "timeline": []}
    detail = fold_detail(detail_like, env, event)
    if detail is None:
        return None
    summary = {k: detail[k] for k in SUMMARY_FIELDS}
    summary["lat"] = detail["location"]["lat"]
    summary["lon"] = detail["location"]["lon"]
    summary.update(geo.cells_of(summary["lat"], summary["lon"]))
    summary["terms"] = search.terms(
        detail["title"], detail["description"], detail["address"], search.category_words(detail["category"])
    )
    return summary


def roll_feed(feed: Doc | None, key: str, _old: Doc | None, new: Doc | None, env: Envelope) -> Doc | None:
    """A browse feed after an issue's summary changed (projectors/feeds.py); the old summary may be stale."""
    return feeds.fold_feed(feed, key, new, env.aggregate_id, INDEX_ONLY_FIELDS, env=env)


issue_summary = Projection(
    summary_collection,
    by_aggregate("issue"),
    fold_summary,
    rollups=(Rollup(feeds.feed_collection, feeds.feed_keys, roll_feed, origin=feeds.ORIGIN, stored=feeds.stored_feed),),
)
issue_detail = Projection(detail_collection, by_aggregate("issue"), fold_detail)
