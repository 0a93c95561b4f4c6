"""The fast path of a cached issue detail: stored bytes sent before FastAPI routing and dependencies.

Only ``GET /v1/issues/{id}`` with no query string and no ``X-Consistency-Token`` is
looked up here; everything else, and every miss (or a cache that is down), goes on to the
route, which builds, caches and answers. A hit answers exactly what the route would: the
same body, ``ETag``, ``Cache-Control`` and content type, or a 304 on a matching
``If-None-Match``. It sits inside the correlation and limits middlewares, so the
correlation id, the log line and the request metrics are the same; it names the route in
the scope for the metrics' ``route`` label.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send

from query_api.caching import METRICS
from query_api.responses import etag_matches
from snapfix.cache import ViewCache

FAST_PATH_MISSED = "snapfix.fast_detail_missed"  # a scope key: the route need not look the response up again
DETAIL_PATH = re.compile(r"/v1/issues/([A-Za-z0-9-]{1,64})")  # the route's IssueId constraints
CACHE_CONTROL = b"public, max-age=1"  # as query_api/routes/issues.py DETAIL_CACHE_CONTROL


@dataclass(frozen=True, slots=True)
class RouteName:
    """What the correlation middleware reads from ``scope["route"]`` for the metrics label."""

    path: str


DETAIL_ROUTE = RouteName("/v1/issues/{issue_id}")


class FastDetail:
    """Pure-ASGI layer answering cached public issue details; any other request passes through untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._tracked: ViewCache | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET" or scope["query_string"]:
            await self.app(scope, receive, send)
            return
        match = DETAIL_PATH.fullmatch(scope["path"])
        cache = self._view_cache(scope) if match else None
        if match is None or cache is None:
            await self.app(scope, receive, send)
            return
        if_none_match = None
        for name, value in scope["headers"]:
            if name == b"x-consistency-token":  # the route waits for the views first
                await self.app(scope, receive, send)
                return
            if name == b"if-none-match":
                if_none_match = value.decode("latin-1")
        hit = await cache.details.get(match.group(1))
        if hit is None:
            scope[FAST_PATH_MISSED] = True
            await self.app(scope, receive, send)
            return
        scope["route"] = DETAIL_ROUTE
        headers = [(b"etag", hit.etag), (b"cache-control", CACHE_CONTROL)]
        if etag_matches(hit.etag.decode("latin-1"), if_none_match):
            await send({"type": "http.response.start", "status": 304, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
        headers += [(b"content-length", str(len(hit.body)).encode()), (b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": hit.body})

    def _view_cache(self, scope: Scope) -> ViewCache | None:
        """The running app's view cache (None before its lifespan built it, or in a role without reads)."""
        container = getattr(scope["app"].state, "container", None)
        cache: ViewCache | None = getattr(container, "view_cache", None)
        if cache is not None and cache is not self._tracked:  # its hits count in snapfix_cache_lookups_total
            METRICS.track(cache.stats, "views")
            self._tracked = cache
        return cache
