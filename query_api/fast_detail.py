"""The fast path of a cached issue detail: stored bytes sent before FastAPI, its middleware and routing.

Only ``GET /v1/issues/{id}`` with no query string and no ``X-Consistency-Token`` is
looked up here; everything else, and every miss (or a cache that is down), goes on to the
app, whose route builds, caches and answers. A hit answers exactly what the route would:
the same body, ``ETag``, ``Cache-Control`` and content type, or a 304 on a matching
``If-None-Match``. It does the correlation middleware's part itself (snapfix/http.py): the
``x-correlation-id`` header, the request metrics under the route's name, the log line.
"""

from __future__ import annotations

import re
import time
from typing import Any

from starlette.types import Scope, Send

from query_api.caching import METRICS
from query_api.responses import etag_matches
from snapfix.cache import ViewCache
from snapfix.http import correlation_id_of, record_request, request_logger

FAST_PATH_MISSED = "snapfix.fast_detail_missed"  # a scope key: the route need not look the response up again
DETAIL_PATH = re.compile(r"/v1/issues/([A-Za-z0-9-]{1,64})")  # the route's IssueId constraints
DETAIL_ROUTE = "/v1/issues/{issue_id}"  # the metrics' route label, as the router names it
CACHE_CONTROL = b"public, max-age=1"  # as query_api/routes/issues.py DETAIL_CACHE_CONTROL


class FastDetail:
    """Answers cached public issue details of one app; ``answer`` says whether it did."""

    def __init__(self, state: Any) -> None:
        """``state`` is the app's state: its container (and view cache) appear once the lifespan built them."""
        self._state = state
        self._tracked: ViewCache | None = None
        self._log: Any = None

    async def answer(self, scope: Scope, send: Send) -> bool:
        """Send the stored response of a cached detail and return True; False to let the app answer."""
        if scope["type"] != "http" or scope["method"] != "GET" or scope["query_string"]:
            return False
        match = DETAIL_PATH.fullmatch(scope["path"])
        cache = self._view_cache() if match else None
        if match is None or cache is None:
            return False
        started = time.perf_counter()
        if_none_match = None
        for name, value in scope["headers"]:
            if name == b"x-consistency-token":  # the route waits for the views first
                return False
            if name == b"if-none-match":
                if_none_match = value.decode("latin-1")
        hit = await cache.details.get(match.group(1))
        if hit is None:
            scope[FAST_PATH_MISSED] = True
            return False
        correlation_id = correlation_id_of(scope)
        headers = [(b"etag", hit.etag), (b"cache-control", CACHE_CONTROL)]
        if if_none_match is not None and etag_matches(hit.etag.decode("latin-1"), if_none_match):
            status, body = 304, b""
        else:
            status, body = 200, hit.body
            headers += [(b"content-length", str(len(body)).encode()), (b"content-type", b"application/json")]
        headers.append((b"x-correlation-id", correlation_id.encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        if self._log is None:
            self._log = request_logger()
        record_request(self._log, "GET", DETAIL_ROUTE, status, started, correlation_id=correlation_id)
        return True

    def _view_cache(self) -> ViewCache | None:
        """The running app's view cache (None before its lifespan built it, or in a role without reads)."""
        cache: ViewCache | None = getattr(getattr(self._state, "container", None), "view_cache", None)
        if cache is not None and cache is not self._tracked:  # its hits count in snapfix_cache_lookups_total
            METRICS.track(cache.stats, "views")
            self._tracked = cache
        return cache
