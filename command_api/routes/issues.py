"""Reporting issues and everything done to them afterwards."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Path, Response, status

from command_api import commands as c
from command_api.deps import ExpectedVersion, Handlers, IdempotencyDep, Meta
from command_api.models import (
    AssignmentBody,
    CommandAccepted,
    CommentBody,
    DuplicateBody,
    EditBody,
    ModerationBody,
    ReportBody,
    StatusBody,
)
from command_api.routes.common import COMMAND_ERRORS, accepted
from snapfix.auth import CurrentActor

router = APIRouter(tags=["issues"], responses=COMMAND_ERRORS)
IssueId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9-]+$")]


@router.post("/v1/issues", status_code=status.HTTP_201_CREATED, response_model=CommandAccepted)
async def report(
    body: ReportBody, actor: CurrentActor, handlers: Handlers, meta: Meta, idem: IdempotencyDep, response: Response
) -> dict[str, Any]:
    """Report a problem at a place; `Location` points at the new issue."""
    cmd = c.ReportIssue(
        str(uuid.uuid4()),
        body.title,
        body.description,
        body.category,
        body.location.lat,
        body.location.lon,
        body.address,
        body.attributes,
    )
    result = await handlers.report_issue(cmd, actor, meta, idem)
    response.headers["Location"] = f"/v1/issues/{result.id}"
    return accepted(result, response)


@router.patch("/v1/issues/{issue_id}", response_model=CommandAccepted)
async def edit(
    issue_id: IssueId,
    body: EditBody,
    actor: CurrentActor,
    handlers: Handlers,
    meta: Meta,
    version: ExpectedVersion,
    idem: IdempotencyDep,
    response: Response,
) -> dict[str, Any]:
    """The reporter edits title, description or category; send `If-Match` to refuse a stale edit."""
    cmd = c.EditIssue(issue_id, body.title, body.description, body.category)
    return accepted(await handlers.issue_command(cmd, actor, meta, version, idem), response)


@router.post("/v1/issues/{issue_id}/status", response_model=CommandAccepted)
async def change_status(
    issue_id: IssueId,
    body: StatusBody,
    actor: CurrentActor,
    handlers: Handlers,
    meta: Meta,
    version: ExpectedVersion,
    idem: IdempotencyDep,
    response: Response,
) -> dict[str, Any]:
    """Staff move an issue through its lifecycle; its reporter may reopen it within 30 days of resolution."""
    cmd = c.ChangeStatus(issue_id, body.status, body.note)
    return accepted(await handlers.issue_command(cmd, actor, meta, version, idem), response)


@router.post("/v1/issues/{issue_id}/assignment", response_model=CommandAccepted)
async def assign(
    issue_id: IssueId,
    body: AssignmentBody,
    actor: CurrentActor,
    handlers: Handlers,
    meta: Meta,
    version: ExpectedVersion,
    idem: IdempotencyDep,
    response: Response,
) -> dict[str, Any]:
    """Staff hand an issue to a department."""
    cmd = c.AssignIssue(issue_id, body.department)
    return accepted(await handlers.issue_command(cmd, actor, meta, version, idem), response)


@router.post("/v1/issues/{issue_id}/comments", status_code=status.HTTP_201_CREATED, response_model=CommandAccepted)
async def comment(
    issue_id: IssueId,
    body: CommentBody,
    actor: CurrentActor,
    handlers: Handlers,
    meta: Meta,
    idem: IdempotencyDep,
    response: Response,
) -> dict[str, Any]:
    """Anyone signed in may comment."""
    cmd = c.CommentOnIssue(issue_id, str(uuid.uuid4()), body.body)
    return accepted(await handlers.issue_command(cmd, actor, meta, None, idem), response)


@router.put("/v1/issues/{issue_id}/upvote", response_model=CommandAccepted)
async def upvote(
    issue_id: IssueId, actor: CurrentActor, handlers: Handlers, meta: Meta, response: Response
) -> dict[str, Any]:
    """One upvote per user: doing it twice changes nothing."""
    return accepted(await handlers.issue_command(c.UpvoteIssue(issue_id), actor, meta), response)


@router.delete("/v1/issues/{issue_id}/upvote", response_model=CommandAccepted)
async def withdraw_upvote(
    issue_id: IssueId, actor: CurrentActor, handlers: Handlers, meta: Meta, response: Response
) -> dict[str, Any]:
    """Take your upvote back (a no-op if you had none)."""
    return accepted(await handlers.issue_command(c.WithdrawUpvote(issue_id), actor, meta), response)


@router.put("/v1/issues/{issue_id}/subscription", response_model=CommandAccepted)
async def subscribe(
    issue_id: IssueId, actor: CurrentActor, handlers: Handlers, meta: Meta, response: Response
) -> dict[str, Any]:
    """Follow an issue's status changes."""
    return accepted(await handlers.issue_command(c.SubscribeToIssue(issue_id), actor, meta), response)


@router.delete("/v1/issues/{issue_id}/subscription", response_model=CommandAccepted)
async def unsubscribe(
    issue_id: IssueId, actor: CurrentActor, handlers: Handlers, meta: Meta, response: Response
) -> dict[str, Any]:
    """Stop following an issue."""
    return accepted(await handlers.issue_command(c.UnsubscribeFromIssue(issue_id), actor, meta), response)


@router.post("/v1/issues/{issue_id}/duplicate-of", response_model=CommandAccepted)
async def mark_duplicate(
    issue_id: IssueId,
    body: DuplicateBody,
    actor: CurrentActor,
    handlers: Handlers,
    meta: Meta,
    version: ExpectedVersion,
    idem: IdempotencyDep,
    response: Response,
) -> dict[str, Any]:
    """Staff mark an issue as a duplicate of an earlier one."""
    cmd = c.MarkDuplicate(issue_id, body.issue_id)
    return accepted(await handlers.issue_command(cmd, actor, meta, version, idem), response)


@router.post("/v1/issues/{issue_id}/moderation", response_model=CommandAccepted)
async def moderate_issue(
    issue_id: IssueId,
    body: ModerationBody,
    actor: CurrentActor,
    handlers: Handlers,
    meta: Meta,
    version: ExpectedVersion,
    idem: IdempotencyDep,
    response: Response,
) -> dict[str, Any]:
    """Staff hide an issue from public views (or bring it back), with a reason; the log keeps everything."""
    cmd = c.ModerateIssue(issue_id, body.action == "hide", body.reason)
    return accepted(await handlers.issue_command(cmd, actor, meta, version, idem), response)


@router.post("/v1/issues/{issue_id}/comments/{comment_id}/moderation", response_model=CommandAccepted)
async def moderate_comment(
    issue_id: IssueId,
    comment_id: IssueId,
    body: ModerationBody,
    actor: CurrentActor,
    handlers: Handlers,
    meta: Meta,
    idem: IdempotencyDep,
    response: Response,
) -> dict[str, Any]:
    """Staff hide one comment from public views (or bring it back), with a reason."""
    cmd = c.ModerateComment(issue_id, comment_id, body.action == "hide", body.reason)
    return accepted(await handlers.issue_command(cmd, actor, meta, None, idem), response)
