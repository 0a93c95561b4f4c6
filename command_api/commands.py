"""Commands: orders given to the domain, immutable and already validated in shape by the API."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class RegisterUser:
    email: str
    password: str
    display_name: str
    roles: tuple[str, ...] = ("citizen",)


@dataclass(frozen=True, slots=True)
class ChangeProfile:
    user_id: str
    display_name: str


@dataclass(frozen=True, slots=True)
class GrantRole:
    user_id: str
    role: str


@dataclass(frozen=True, slots=True)
class RevokeRole:
    user_id: str
    role: str


@dataclass(frozen=True, slots=True)
class ReportIssue:
    issue_id: str
    title: str
    description: str
    category: str
    lat: float
    lon: float
    address: str | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EditIssue:
    issue_id: str
    title: str | None = None
    description: str | None = None
    category: str | None = None


@dataclass(frozen=True, slots=True)
class ChangeStatus:
    issue_id: str
    status: str
    note: str | None = None


@dataclass(frozen=True, slots=True)
class AssignIssue:
    issue_id: str
    department: str


@dataclass(frozen=True, slots=True)
class CommentOnIssue:
    issue_id: str
    comment_id: str
    body: str


@dataclass(frozen=True, slots=True)
class UpvoteIssue:
    issue_id: str


@dataclass(frozen=True, slots=True)
class WithdrawUpvote:
    issue_id: str


@dataclass(frozen=True, slots=True)
class SubscribeToIssue:
    issue_id: str


@dataclass(frozen=True, slots=True)
class UnsubscribeFromIssue:
    issue_id: str


@dataclass(frozen=True, slots=True)
class MarkDuplicate:
    issue_id: str
    original_id: str


@dataclass(frozen=True, slots=True)
class ModerateIssue:
    """Staff hide (``hidden=True``) or unhide an issue, always saying why."""

    issue_id: str
    hidden: bool
    reason: str


@dataclass(frozen=True, slots=True)
class ModerateComment:
    issue_id: str
    comment_id: str
    hidden: bool
    reason: str


@dataclass(frozen=True, slots=True)
class AddPhoto:
    """Record a photo already sanitised and stored under ``blob_key``."""

    issue_id: str
    photo_id: str
    blob_key: str
    content_type: str
    width: int
    height: int
    size_bytes: int


@dataclass(frozen=True, slots=True)
class RecordThumbnail:
    issue_id: str
    photo_id: str
    blob_key: str
    width: int
    height: int


@dataclass(frozen=True, slots=True)
class DefineCategory:
    code: str
    name: str
    description: str
    department: str
    attributes: tuple[CategoryAttributeSpec, ...] = ()


@dataclass(frozen=True, slots=True)
class CategoryAttributeSpec:
    code: str
    datatype: str
    description: str = ""
    required: bool = False
    values: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RetireCategory:
    code: str


@dataclass(frozen=True, slots=True)
class StartSession:
    """Sign-in succeeded: open a refresh-token family whose first token is ``token_id``."""

    session_id: str
    user_id: str
    token_id: str


@dataclass(frozen=True, slots=True)
class RotateRefreshToken:
    """Trade the presented refresh token (``presented_token_id``) for ``new_token_id``."""

    session_id: str
    user_id: str
    presented_token_id: str
    new_token_id: str


@dataclass(frozen=True, slots=True)
class EndSession:
    session_id: str
    user_id: str


IssueCommand = (
    EditIssue
    | ChangeStatus
    | AssignIssue
    | CommentOnIssue
    | UpvoteIssue
    | WithdrawUpvote
    | SubscribeToIssue
    | UnsubscribeFromIssue
    | MarkDuplicate
    | ModerateIssue
    | ModerateComment
    | AddPhoto
    | RecordThumbnail
)
