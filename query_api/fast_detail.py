"""The fast paths of the hottest reads: cached bytes sent before FastAPI, its middleware and routing.

Two reads make half of the original design's mix, and each is one cache lookup when it hits:

- ``GET /v1/issues/{id}`` (no query string): the stored public response of the detail;
- ``GET /v1/users/me`` with a valid access token: the cached profile document;
- ``GET /v1/issues`` of a popular list's first page (``status``, ``category`` or ``department``
  alone, sorted newest, by upvotes or updated, ``limit``): its browse feed, by the route's own
  ``feed_page``, so the page is the route's by construction.

Anything else, anything with an ``X-Consistency-Token``, a token that does not check, and every
miss (or a cache that is down) goes on to the app, whose route builds, caches and answers. A hit
answers exactly what the route would: the same body, ``ETag``, ``Cache-Control`` and content
type, or a 304 on a matching ``If-None-Match``. It does the correlation middleware's part itself
(snapfix/http.py): the ``x-correlation-id`` header, the request metrics under the route's name,
the log line. Going through FastAPI's dependency resolution and both middlewares costs such a
hit more than three times its own work (py-spy of the mix: 30 % of the server's time was
FastAPI resolving dependencies, 24 % routing and middleware).
"""

from __future__ import annotations

import re
import time
from typing import Any

from starlette.types import Scope, Send

from projectors.ports import ViewStoreError
from query_api.browse import Browse
from query_api.caching import METRICS
from query_api.deps import VIEW_TIMEOUT_S, pages_of
from query_api.resilience import BoundedViews
from query_api.responses import FAST_PATH_MISSED, etag_matches, etag_of
from query_api.routes.issues import feed_page
from snapfix.cache import ViewCache
from snapfix.http import ProblemError, correlation_id_of, record_request, request_logger
from snapfix.tokens import InvalidToken, Tokens

DETAIL_PATH = re.compile(r"/v1/issues/([A-Za-z0-9-]{1,64})")  # the route's IssueId constraints
DETAIL_ROUTE = "/v1/issues/{issue_id}"  # the metrics' route label, as the router names it
CACHE_CONTROL = b"public, max-age=1"  # as query_api/routes/issues.py DETAIL_CACHE_CONTROL
ME_PATH = "/v1/users/me"
BROWSE_PATH = "/v1/issues"
BROWSE_CACHE_CONTROL = b"public, max-age=2"  # as query_api/routes/issues.py ``browse``
# The query strings of a feed's first page: these parameters once each, one plain value per filter
BROWSE_FILTERS = ("status", "category", "department")
PLAIN_VALUE = re.compile(r"[A-Za-z0-9_-]{1,200}")
FEED_SORTS = frozenset({"newest", "upvotes", "updated"})


def simple_browse(query_string: bytes, max_page: int) -> Browse | None:
    """The browse parameters of a query string that only names a popular list's first page, else None.

    Anything else (another parameter, a repeated one, a comma list, a cursor, a value the route
    would refuse) is None: the route parses it and answers, errors included.
    """
    seen: dict[str, str] = {}
    for pair in query_string.decode("latin-1").split("&"):
        name, _, value = pair.partition("=")
        if name in seen or not PLAIN_VALUE.fullmatch(value):
            return None
        seen[name] = value
    limit = seen.pop("limit", "20")
    sort = seen.pop("sort", "newest")
    if not limit.isdigit() or not 1 <= int(limit) <= 100 or sort not in FEED_SORTS or set(seen) - set(BROWSE_FILTERS):
        return None
    return Browse(**seen, sort=sort, limit=min(int(limit), max_page))  # type: ignore[arg-type]


ME_CACHE_CONTROL = b"private, no-cache"  # as query_api/routes/users.py ``me``


class FastDetail:
    """Answers cached public issue details and own profiles of one app; ``answer`` says whether it did."""

    def __init__(self, state: Any) -> None:
        """``state`` is the app's state: its container (and view cache) appear once the lifespan built them."""
        self._state = state
        self._tracked: ViewCache | None = None
        self._log: Any = None

    async def answer(self, scope: Scope, send: Send) -> bool:
        """Send the cached answer of a detail, a profile or a feed page and return True; False: the app answers."""
        if scope["type"] != "http" or scope["method"] != "GET":
            return False
        path = scope["path"]
        if path == BROWSE_PATH:
            return await self._browse(scope, send)
        if scope["query_string"]:
            return False
        match = DETAIL_PATH.fullmatch(path) if path != ME_PATH else None
        if match is None and path != ME_PATH:
            return False
        cache = self._view_cache()
        if cache is None:
            return False
        started = time.perf_counter()
        if_none_match = authorization = None
        for name, value in scope["headers"]:
            if name == b"x-consistency-token":  # the route waits for the views first
                return False
            if name == b"if-none-match":
                if_none_match = value.decode("latin-1")
            elif name == b"authorization":
                authorization = value.decode("latin-1")
        if match is not None:
            hit = await cache.details.get(match.group(1))
            if hit is None:
                scope[FAST_PATH_MISSED] = True
                return False
            body, etag, control, route = hit.body, hit.etag, CACHE_CONTROL, DETAIL_ROUTE
        else:
            profile = await self._own_profile(cache, authorization)
            if profile is None:
                return False
            body, etag, control, route = profile, etag_of(profile).encode(), ME_CACHE_CONTROL, ME_PATH
        await self._send(scope, send, body, etag, control, if_none_match, route, started)
        return True

    async def _browse(self, scope: Scope, send: Send) -> bool:
        """A first page of a popular list, from its feed; False (the route answers) for anything else or a miss."""
        container = getattr(self._state, "container", None)
        if container is None or container.views is None or self._view_cache() is None:
            return False
        started = time.perf_counter()
        if_none_match = None
        for name, value in scope["headers"]:
            if name == b"x-consistency-token":
                return False
            if name == b"if-none-match":
                if_none_match = value.decode("latin-1")
        params = simple_browse(scope["query_string"], container.settings.max_page_size)
        if params is None:
            return False
        views = BoundedViews(container.views, VIEW_TIMEOUT_S)
        try:
            raw = await feed_page(params, views, pages_of(self._state, container), cached=True)
        except (ViewStoreError, ProblemError):  # the route answers it, with its errors
            return False
        if raw is None:
            return False
        await self._send(scope, send, raw, etag_of(raw).encode(), BROWSE_CACHE_CONTROL, if_none_match, BROWSE_PATH,
                         started)  # fmt: skip
        return True

    async def _own_profile(self, cache: ViewCache, authorization: str | None) -> bytes | None:
        """The signed-in user's cached profile; None when the token does not check or the profile is not cached."""
        tokens: Tokens | None = getattr(getattr(self._state, "container", None), "tokens", None)
        scheme, _, token = (authorization or "").partition(" ")
        if tokens is None or scheme.lower() != "bearer" or not token:
            return None
        try:
            actor = tokens.check(token, "access")
        except InvalidToken:  # the route answers the 401
            return None
        return await cache.cached("user_profile", actor.user_id)

    async def _send(
        self,
        scope: Scope,
        send: Send,
        body: bytes,
        etag: bytes,
        control: bytes,
        if_none_match: str | None,
        route: str,
        started: float,
    ) -> None:
        correlation_id = correlation_id_of(scope)
        headers = [(b"etag", etag), (b"cache-control", control)]
        if if_none_match is not None and etag_matches(etag.decode("latin-1"), if_none_match):
            status, body = 304, b""
        else:
            status = 200
            headers += [(b"content-length", str(len(body)).encode()), (b"content-type", b"application/json")]
        headers.append((b"x-correlation-id", correlation_id.encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        if self._log is None:
            self._log = request_logger()
        record_request(self._log, "GET", route, status, started, correlation_id=correlation_id)

    def _view_cache(self) -> ViewCache | None:
        """The running app's view cache (None before its lifespan built it, or in a role without reads)."""
        cache: ViewCache | None = getattr(getattr(self._state, "container", None), "view_cache", None)
        if cache is not None and cache is not self._tracked:  # its hits count in snapfix_cache_lookups_total
            METRICS.track(cache.stats, "views")
            self._tracked = cache
        return cache
