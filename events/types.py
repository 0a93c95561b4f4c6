"""One immutable class per event type and schema version: facts, named in the past tense.

A class's ``schema_version`` is the version it writes; older stored versions are
brought up to it by the upcasters in :mod:`events.upcasting`.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict


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


# --- the service catalogue ---------------------------------------------------


class CatalogueEvent(DomainEvent):
    aggregate_type: ClassVar[str] = "catalogue"


class CategoryDefined(CatalogueEvent):
    code: str
    name: str
    description: str
    department: str


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


EVENT_CLASSES: tuple[type[DomainEvent], ...] = (
    UserRegistered,
    UserProfileChanged,
    UserRoleGranted,
    UserRoleRevoked,
    CategoryDefined,
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
