"""Read responses: JSON bytes with an ETag, 304 on If-None-Match, Cache-Control, freshness header."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
from fastapi import Request, Response

PROBLEM: dict[str, Any] = {"content": {"application/problem+json": {}}}
READ_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "Malformed parameter, cursor or consistency token", **PROBLEM},
    404: {"description": "No such resource", **PROBLEM},
    422: {"description": "Invalid query parameters", **PROBLEM},
    503: {"description": "The view store is unavailable; retry after the given delay", **PROBLEM},
}


# A scope key the fast paths (query_api/fast_detail.py) set on a miss: the route need not look the response up again
FAST_PATH_MISSED = "snapfix.fast_detail_missed"


def etag_of(raw: bytes) -> str:
    return '"' + hashlib.blake2b(raw, digest_size=8).hexdigest() + '"'


def etag_matches(etag: str, if_none_match: str | None) -> bool:
    """Whether an If-None-Match header names this ETag (the fast path of query_api/fast_detail.py shares it)."""
    return if_none_match is not None and etag in {t.strip() for t in if_none_match.split(",")}


def json_bytes(
    raw: bytes,
    request: Request,
    *,
    freshness: str | None = None,
    cache_control: str = "no-cache",
    etag: str | None = None,
) -> Response:
    """A JSON answer that honours If-None-Match; ``etag`` when the caller already has it (a cached response)."""
    etag = etag or etag_of(raw)
    headers = {"ETag": etag, "Cache-Control": cache_control}
    if freshness is not None:
        headers["X-Consistency"] = freshness
    if etag_matches(etag, request.headers.get("if-none-match")):
        return Response(status_code=304, headers=headers)
    return Response(raw, media_type="application/json", headers=headers)


def json_value(value: Any, request: Request, **kwargs: Any) -> Response:
    return json_bytes(orjson.dumps(value), request, **kwargs)
