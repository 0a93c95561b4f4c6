"""Photos and thumbnails, served from the blob store."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response

from query_api.deps import Views
from query_api.responses import READ_ERRORS
from snapfix.auth import ContainerDep
from snapfix.http import ProblemError

router = APIRouter(tags=["photos"], responses=READ_ERRORS)
Id = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9-]+$")]


async def _serve(c: ContainerDep, views: Views, issue_id: str, photo_id: str, which: str) -> Response:
    doc = await views.get("issue_detail", issue_id)
    if doc is None or doc.get("hidden"):
        raise ProblemError(404, "not-found", "Not found", f"no issue {issue_id}")
    photo = next((p for p in doc.get("photos", []) if p["id"] == photo_id), None)
    key = photo and photo.get(which)
    if not key:
        missing = "photo" if photo is None else "thumbnail (it is being made; retry shortly)"
        raise ProblemError(404, "not-found", "Not found", f"no {missing} {photo_id} on issue {issue_id}")
    assert c.blobs is not None
    stored = await c.blobs.get(key)
    if stored is None:
        raise ProblemError(404, "not-found", "Not found", f"the {which} of photo {photo_id} is not stored")
    data, content_type = stored
    headers = {"Cache-Control": "public, max-age=31536000, immutable", "X-Content-Type-Options": "nosniff"}
    return Response(data, media_type=content_type, headers=headers)


@router.get("/v1/issues/{issue_id}/photos/{photo_id}", response_class=Response)
async def photo(issue_id: Id, photo_id: Id, c: ContainerDep, views: Views) -> Response:
    """A photo, metadata stripped; photos never change, so clients may cache them for good."""
    return await _serve(c, views, issue_id, photo_id, "blob_key")


@router.get("/v1/issues/{issue_id}/photos/{photo_id}/thumbnail", response_class=Response)
async def thumbnail(issue_id: Id, photo_id: Id, c: ContainerDep, views: Views) -> Response:
    """A small JPEG of the photo, made by the photo worker shortly after the upload."""
    return await _serve(c, views, issue_id, photo_id, "thumbnail_key")
