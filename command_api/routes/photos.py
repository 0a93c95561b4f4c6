"""Photo uploads: multipart, sniffed, size- and pixel-limited, stripped of metadata."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Response, UploadFile, status

from command_api.deps import Handlers, IdempotencyDep, Meta
from command_api.images import ImageRefused, ImageTooLarge
from command_api.models import CommandAccepted
from command_api.routes.common import COMMAND_ERRORS, PROBLEM, accepted
from command_api.routes.issues import IssueId
from snapfix.auth import CurrentActor
from snapfix.http import ProblemError

router = APIRouter(
    tags=["photos"],
    responses={
        **COMMAND_ERRORS,
        413: {"description": "The photo has too many bytes or pixels", **PROBLEM},
        415: {"description": "The upload is not a JPEG, PNG or WebP image", **PROBLEM},
    },
)


@router.post("/v1/issues/{issue_id}/photos", status_code=status.HTTP_201_CREATED, response_model=CommandAccepted)
async def upload(
    issue_id: IssueId,
    file: Annotated[UploadFile, File(description="a JPEG, PNG or WebP photo")],
    actor: CurrentActor,
    handlers: Handlers,
    meta: Meta,
    idem: IdempotencyDep,
    response: Response,
) -> dict[str, Any]:
    """The reporter or staff add a photo; its bytes, not its declared type, say what it is."""
    limit = handlers.photo_limits.max_bytes
    raw = await file.read(limit + 1)
    try:
        result = await handlers.add_photo(issue_id, raw, actor, meta, idem)
    except ImageTooLarge as e:
        raise ProblemError(413, e.code, "Photo too large", str(e)) from None
    except ImageRefused as e:
        raise ProblemError(415, e.code, "Unsupported image", str(e)) from None
    response.headers["Location"] = f"/v1/issues/{issue_id}"
    return accepted(result, response)
