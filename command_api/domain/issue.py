"""The Issue aggregate: its lifecycle rules, and the fold that rebuilds its state from events."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from command_api import commands as c
from command_api.domain.actor import Actor
from command_api.domain.errors import Forbidden, Invalid, InvalidTransition, NotFound
from events import types as e

REPORTED, ACKNOWLEDGED, IN_PROGRESS, RESOLVED, CLOSED, REOPENED, REJECTED, DUPLICATE = (
    "reported",
    "acknowledged",
    "in_progress",
    "resolved",
    "closed",
    "reopened",
    "rejected",
    "duplicate",
)
STATUSES = (REPORTED, ACKNOWLEDGED, IN_PROGRESS, RESOLVED, CLOSED, REOPENED, REJECTED, DUPLICATE)
OPEN_STATUSES = frozenset({REPORTED, ACKNOWLEDGED, IN_PROGRESS, REOPENED})

# Where staff may move an issue from each status. "duplicate" goes through MarkDuplicate.
TRANSITIONS: dict[str, frozenset[str]] = {
    REPORTED: frozenset({ACKNOWLEDGED, IN_PROGRESS, REJECTED}),
    ACKNOWLEDGED: frozenset({IN_PROGRESS, RESOLVED, REJECTED}),
    IN_PROGRESS: frozenset({RESOLVED, REJECTED}),
    RESOLVED: frozenset({CLOSED, REOPENED}),
    CLOSED: frozenset({REOPENED}),
    REOPENED: frozenset({ACKNOWLEDGED, IN_PROGRESS, RESOLVED, REJECTED}),
    REJECTED: frozenset(),
    DUPLICATE: frozenset(),
}
REPORTER_REOPEN_WINDOW = timedelta(days=30)
MAX_PHOTOS = 10


@dataclass(frozen=True, slots=True)
class Issue:
    """What the aggregate must remember to decide; not a read model."""

    id: str
    version: int = 0
    reporter_id: str = ""
    status: str = ""
    title: str = ""
    description: str = ""
    category: str = ""
    department: str = ""
    resolved_at: datetime | None = None
    upvoters: frozenset[str] = frozenset()
    subscribers: frozenset[str] = frozenset()
    duplicate_of: str | None = None
    hidden: bool = False
    comments: frozenset[str] = frozenset()
    hidden_comments: frozenset[str] = frozenset()
    photos: frozenset[str] = frozenset()
    thumbnailed: frozenset[str] = frozenset()

    @property
    def exists(self) -> bool:
        return self.version > 0


# --- the fold -------------------------------------------------------------------


def evolve(state: Issue, event: e.DomainEvent, occurred_at: datetime) -> Issue:
    """The state after one event; the version is advanced by the caller."""
    match event:
        case e.IssueReported():
            return replace(
                state,
                reporter_id=event.reporter_id,
                status=REPORTED,
                title=event.title,
                description=event.description,
                category=event.category,
                department=event.department,
                subscribers=frozenset({event.reporter_id}),
            )
        case e.IssueEdited():
            return replace(state, title=event.title, description=event.description, category=event.category)
        case e.IssueStatusChanged():
            resolved_at = occurred_at if event.to_status == RESOLVED else state.resolved_at
            return replace(state, status=event.to_status, resolved_at=resolved_at)
        case e.IssueAssigned():
            return replace(state, department=event.department)
        case e.IssueUpvoted():
            return replace(state, upvoters=state.upvoters | {event.user_id})
        case e.IssueUpvoteWithdrawn():
            return replace(state, upvoters=state.upvoters - {event.user_id})
        case e.IssueSubscribed():
            return replace(state, subscribers=state.subscribers | {event.user_id})
        case e.IssueUnsubscribed():
            return replace(state, subscribers=state.subscribers - {event.user_id})
        case e.IssueMarkedDuplicate():
            return replace(state, status=DUPLICATE, duplicate_of=event.original_id)
        case e.IssueCommented():
            return replace(state, comments=state.comments | {event.comment_id})
        case e.IssueHidden() | e.IssueUnhidden():
            return replace(state, hidden=isinstance(event, e.IssueHidden))
        case e.IssueCommentHidden():
            return replace(state, hidden_comments=state.hidden_comments | {event.comment_id})
        case e.IssueCommentUnhidden():
            return replace(state, hidden_comments=state.hidden_comments - {event.comment_id})
        case e.IssuePhotoAdded():
            return replace(state, photos=state.photos | {event.photo_id})
        case e.IssuePhotoThumbnailed():
            return replace(state, thumbnailed=state.thumbnailed | {event.photo_id})
        case _:
            return state


# --- decisions ------------------------------------------------------------------


def report(cmd: c.ReportIssue, actor: Actor, department: str) -> list[e.DomainEvent]:
    return [
        e.IssueReported(
            reporter_id=actor.user_id,
            title=cmd.title,
            description=cmd.description,
            category=cmd.category,
            department=department,
            lat=cmd.lat,
            lon=cmd.lon,
            address=cmd.address,
            attributes=dict(cmd.attributes),
        )
    ]


def decide(state: Issue, cmd: c.IssueCommand, actor: Actor, now: datetime) -> list[e.DomainEvent]:
    """The events a command on an existing issue produces; raises a DomainError to refuse it."""
    if not state.exists:
        raise NotFound(f"issue {state.id} does not exist")
    match cmd:
        case c.EditIssue():
            return _edit(state, cmd, actor)
        case c.ChangeStatus():
            return _change_status(state, cmd, actor, now)
        case c.AssignIssue():
            _require_staff(actor, "assign issues")
            if cmd.department == state.department:
                return []
            return [e.IssueAssigned(department=cmd.department)]
        case c.CommentOnIssue():
            if cmd.comment_id in state.comments:  # a retried command: the comment is already there
                return []
            return [
                e.IssueCommented(
                    comment_id=cmd.comment_id, author_id=actor.user_id, body=cmd.body, by_staff=actor.is_staff
                )
            ]
        case c.UpvoteIssue() | c.WithdrawUpvote() if state.status == DUPLICATE:
            raise InvalidTransition(f"this issue duplicates {state.duplicate_of}: upvote the original instead")
        case c.UpvoteIssue():
            if actor.user_id in state.upvoters:
                return []
            return [e.IssueUpvoted(user_id=actor.user_id)]
        case c.WithdrawUpvote():
            if actor.user_id not in state.upvoters:
                return []
            return [e.IssueUpvoteWithdrawn(user_id=actor.user_id)]
        case c.SubscribeToIssue():
            if actor.user_id in state.subscribers:
                return []
            return [e.IssueSubscribed(user_id=actor.user_id)]
        case c.UnsubscribeFromIssue():
            if actor.user_id not in state.subscribers:
                return []
            return [e.IssueUnsubscribed(user_id=actor.user_id)]
        case c.MarkDuplicate():
            return _mark_duplicate(state, cmd, actor)
        case c.ModerateIssue() | c.ModerateComment():
            return _moderate(state, cmd, actor)
        case c.AddPhoto():
            return _add_photo(state, cmd, actor)
        case c.RecordThumbnail():
            return _record_thumbnail(state, cmd, actor)
    raise TypeError(f"not an issue command: {cmd!r}")


def _require_staff(actor: Actor, what: str) -> None:
    if not actor.is_staff:
        raise Forbidden(f"only staff may {what}")


def _edit(state: Issue, cmd: c.EditIssue, actor: Actor) -> list[e.DomainEvent]:
    if actor.user_id != state.reporter_id:
        raise Forbidden("only the reporter may edit an issue")
    if state.status not in OPEN_STATUSES:
        raise InvalidTransition(f"an issue that is {state.status} can no longer be edited")
    edited = e.IssueEdited(
        title=cmd.title if cmd.title is not None else state.title,
        description=cmd.description if cmd.description is not None else state.description,
        category=cmd.category if cmd.category is not None else state.category,
    )
    if (edited.title, edited.description, edited.category) == (state.title, state.description, state.category):
        return []
    return [edited]


def _change_status(state: Issue, cmd: c.ChangeStatus, actor: Actor, now: datetime) -> list[e.DomainEvent]:
    if cmd.status == DUPLICATE:
        raise Invalid("mark duplicates through /duplicate-of, which names the original issue")
    if cmd.status not in STATUSES:
        raise Invalid(f"unknown status {cmd.status!r}")
    if not actor.is_staff:
        reporter_reopens = actor.user_id == state.reporter_id and cmd.status == REOPENED
        if not reporter_reopens:
            raise Forbidden("only staff may change an issue's status; the reporter may reopen it")
        if state.resolved_at is None or now - state.resolved_at > REPORTER_REOPEN_WINDOW:
            raise Forbidden("the reporter may reopen an issue only within 30 days of its resolution")
    if cmd.status not in TRANSITIONS[state.status]:
        raise InvalidTransition(f"an issue cannot go from {state.status} to {cmd.status}")
    return [e.IssueStatusChanged(from_status=state.status, to_status=cmd.status, note=cmd.note)]


def _mark_duplicate(state: Issue, cmd: c.MarkDuplicate, actor: Actor) -> list[e.DomainEvent]:
    _require_staff(actor, "mark duplicates")
    if cmd.original_id == state.id:
        raise Invalid("an issue cannot be a duplicate of itself")
    if state.status not in OPEN_STATUSES:
        raise InvalidTransition(f"an issue that is {state.status} cannot be marked duplicate")
    return [e.IssueMarkedDuplicate(original_id=cmd.original_id, from_status=state.status, upvotes=len(state.upvoters))]


def _moderate(state: Issue, cmd: c.ModerateIssue | c.ModerateComment, actor: Actor) -> list[e.DomainEvent]:
    """Hiding is reversible and never deletes: the log keeps what was said, the public views stop showing it."""
    _require_staff(actor, "moderate")
    if not cmd.reason.strip():
        raise Invalid("say why: moderation needs a reason")
    if isinstance(cmd, c.ModerateIssue):
        if cmd.hidden == state.hidden:
            return []
        return [e.IssueHidden(reason=cmd.reason) if cmd.hidden else e.IssueUnhidden(reason=cmd.reason)]
    if cmd.comment_id not in state.comments:
        raise NotFound(f"issue {state.id} has no comment {cmd.comment_id}")
    if cmd.hidden == (cmd.comment_id in state.hidden_comments):
        return []
    if cmd.hidden:
        return [e.IssueCommentHidden(comment_id=cmd.comment_id, reason=cmd.reason)]
    return [e.IssueCommentUnhidden(comment_id=cmd.comment_id, reason=cmd.reason)]


def _add_photo(state: Issue, cmd: c.AddPhoto, actor: Actor) -> list[e.DomainEvent]:
    if actor.user_id != state.reporter_id and not actor.is_staff:
        raise Forbidden("only the reporter or staff may add photos")
    if cmd.photo_id in state.photos:
        return []
    if len(state.photos) >= MAX_PHOTOS:
        raise Invalid(f"an issue holds at most {MAX_PHOTOS} photos")
    return [
        e.IssuePhotoAdded(
            photo_id=cmd.photo_id,
            blob_key=cmd.blob_key,
            content_type=cmd.content_type,
            width=cmd.width,
            height=cmd.height,
            size_bytes=cmd.size_bytes,
            uploaded_by=actor.user_id,
        )
    ]


def _record_thumbnail(state: Issue, cmd: c.RecordThumbnail, actor: Actor) -> list[e.DomainEvent]:
    """The photo worker's command: idempotent, so a redelivered photo never yields a second thumbnail event."""
    _require_staff(actor, "record thumbnails")
    if cmd.photo_id not in state.photos:
        raise NotFound(f"issue {state.id} has no photo {cmd.photo_id}")
    if cmd.photo_id in state.thumbnailed:
        return []
    return [e.IssuePhotoThumbnailed(photo_id=cmd.photo_id, blob_key=cmd.blob_key, width=cmd.width, height=cmd.height)]
