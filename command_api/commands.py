"""Commands: orders given to the domain, immutable and already validated in shape by the API."""

from __future__ import annotations

from dataclasses import dataclass


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
class DefineCategory:
    code: str
    name: str
    description: str
    department: str


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
)
