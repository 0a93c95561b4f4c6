"""One immutable class per event type and schema version: facts, named in the past tense.

A class's ``schema_version`` is the version it writes; older stored versions are
brought up to it by the upcasters in :mod:`events.upcasting`.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field


class DomainEvent(BaseModel):
    """Base of every event payload."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    aggregate_type: ClassVar[str]
    schema_version: ClassVar[int] = 1

    @classmethod
    def event_type(cls) -> str:
        return cls.__name__


# --- users -------------------------------------------------------------------


class UserEvent(DomainEvent):
    aggregate_type: ClassVar[str] = "user"


class UserRegistered(UserEvent):
    email: str
    display_name: str
    password_hash: str
    roles: tuple[str, ...] = ("citizen",)


class UserProfileChanged(UserEvent):
    display_name: str


class UserRoleGranted(UserEvent):
    role: str


class UserRoleRevoked(UserEvent):
    role: str


class UserPasswordRehashed(UserEvent):
    """The password was hashed again at sign-in because the server's argon2 parameters changed."""

    password_hash: str


# --- the service catalogue ---------------------------------------------------


class CatalogueEvent(DomainEvent):
    aggregate_type: ClassVar[str] = "catalogue"


class CategoryAttribute(BaseModel):
    """An extra question a category asks of a report (like an Open311 service definition attribute)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    code: str
    datatype: str  # string, text, number, boolean, datetime, singlevaluelist, multivaluelist
    description: str = ""
    required: bool = False
    values: tuple[str, ...] = ()  # the allowed values of a list attribute


class CategoryDefined(CatalogueEvent):
    """v2 added ``attributes``; v1 payloads are upcast with none."""

    schema_version: ClassVar[int] = 2

    code: str
    name: str
    description: str
    department: str
    attributes: tuple[CategoryAttribute, ...] = ()


class CategoryRetired(CatalogueEvent):
    """The category takes no new reports; issues already filed under it keep it."""

    code: str


# --- issues ------------------------------------------------------------------


class IssueEvent(DomainEvent):
    aggregate_type: ClassVar[str] = "issue"


class IssueReported(IssueEvent):
    reporter_id: str
    title: str
    description: str
    category: str
    department: str
    lat: float
    lon: float
    address: str | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)  # answers to the category's extra questions


class IssueEdited(IssueEvent):
    title: str
    description: str
    category: str


class IssueStatusChanged(IssueEvent):
    from_status: str
    to_status: str
    note: str | None = None


class IssueAssigned(IssueEvent):
    department: str


class IssueCommented(IssueEvent):
    comment_id: str
    author_id: str
    body: str
    by_staff: bool = False


class IssueUpvoted(IssueEvent):
    user_id: str


class IssueUpvoteWithdrawn(IssueEvent):
    user_id: str


class IssueSubscribed(IssueEvent):
    user_id: str


class IssueUnsubscribed(IssueEvent):
    user_id: str


class IssueMarkedDuplicate(IssueEvent):
    original_id: str
    from_status: str
    upvotes: int = 0  # the duplicate's upvotes when marked: they count towards the original from then on


class IssueHidden(IssueEvent):
    """Staff hid the issue from public views; it stays in the log and its history."""

    reason: str


class IssueUnhidden(IssueEvent):
    reason: str


class IssueCommentHidden(IssueEvent):
    comment_id: str
    reason: str


class IssueCommentUnhidden(IssueEvent):
    comment_id: str
    reason: str


class IssuePhotoAdded(IssueEvent):
    """A sanitised photo (re-encoded, metadata stripped) now sits in the blob store under ``blob_key``."""

    photo_id: str
    blob_key: str
    content_type: str
    width: int
    height: int
    size_bytes: int
    uploaded_by: str


class IssuePhotoThumbnailed(IssueEvent):
    """The photo worker made a thumbnail of a photo."""

    photo_id: str
    blob_key: str
    width: int
    height: int


# --- sign-in sessions (refresh-token families) ------------------------------


class SessionEvent(DomainEvent):
    aggregate_type: ClassVar[str] = "session"


class SessionStarted(SessionEvent):
    """A sign-in: the first refresh token of a new family. Token ids (jti), never tokens, are stored."""

    user_id: str
    token_id: str


class SessionRefreshed(SessionEvent):
    """The family's current refresh token was traded for ``token_id``; the old one is spent."""

    previous_token_id: str
    token_id: str


class SessionRevoked(SessionEvent):
    """The family is dead: signed out, or a spent refresh token was presented again (reuse)."""

    reason: str


# --- notifications -----------------------------------------------------------


class NotificationEvent(DomainEvent):
    aggregate_type: ClassVar[str] = "notification"


class NotificationEmailed(NotificationEvent):
    """The notifier sent this notification's email: recorded first, so it is sent at most once."""

    user_id: str
    issue_id: str


EVENT_CLASSES: tuple[type[DomainEvent], ...] = (
    UserRegistered,
    UserProfileChanged,
    UserRoleGranted,
    UserRoleRevoked,
    UserPasswordRehashed,
    CategoryDefined,
    CategoryRetired,
    IssueReported,
    IssueEdited,
    IssueStatusChanged,
    IssueAssigned,
    IssueCommented,
    IssueUpvoted,
    IssueUpvoteWithdrawn,
    IssueSubscribed,
    IssueUnsubscribed,
    IssueMarkedDuplicate,
    IssueHidden,
    IssueUnhidden,
    IssueCommentHidden,
    IssueCommentUnhidden,
    IssuePhotoAdded,
    IssuePhotoThumbnailed,
    SessionStarted,
    SessionRefreshed,
    SessionRevoked,
    NotificationEmailed,
)

REGISTRY: dict[str, type[DomainEvent]] = {cls.event_type(): cls for cls in EVENT_CLASSES}


class UnknownEventType(LookupError):
    """The log holds an event type this code does not know."""


def event_class(event_type: str) -> type[DomainEvent]:
    try:
        return REGISTRY[event_type]
    except KeyError:
        raise UnknownEventType(event_type) from None


def payload_of(event: DomainEvent) -> dict[str, Any]:
    """The stored form of an event payload (JSON-ready)."""
    return event.model_dump(mode="json")
