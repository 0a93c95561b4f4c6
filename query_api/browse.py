"""Browse parameters to view-store queries, opaque cursors, and the geo and text search on top.

Every sort is a keyset over immutable-or-monotonic keys ending with ``id``, so a
cursor never repeats or skips an issue that existed when paging began; new issues
land where their keys put them. ``nearest`` orders by (distance, id): distance to a
fixed point never changes, so its pages are just as stable. A cursor carries its
sort and a fingerprint of the filters; it is refused with any other.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal

import orjson

from projectors import feeds, geo, search
from projectors.issue_views import INDEX_ONLY_FIELDS
from projectors.ports import Cond, Doc, Query, ViewStore

Sort = Literal["newest", "oldest", "upvotes", "updated", "nearest"]
ORDER: dict[str, tuple[tuple[str, bool], ...]] = {
    "newest": (("created_at", True), ("id", True)),
    "oldest": (("created_at", False), ("id", False)),
    "upvotes": (("upvotes", True), ("id", True)),
    "updated": (("updated_at", True), ("id", True)),
    "nearest": (("distance_m", False), ("id", False)),  # computed in the query API, never by a store
}
SUMMARY = "issue_summary"
MAX_RADIUS_M = 50_000.0
FIRST_RING_M = 250.0
RING_ROWS = 5000  # the most candidates one ring of a nearest search reads
HIDDEN_FIELDS = INDEX_ONLY_FIELDS


class BadParameter(ValueError):
    """A browse parameter that cannot be understood; ``code`` names it for the problem type."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class BadCursor(BadParameter):
    """A cursor that this API did not make, or made for another sort or other filters."""

    def __init__(self, message: str) -> None:
        super().__init__("bad-cursor", message)


@dataclass(frozen=True, slots=True)
class Near:
    lat: float
    lon: float
    radius_m: float

    def distance(self, doc: Doc) -> float:
        return geo.haversine_m(self.lat, self.lon, doc["lat"], doc["lon"])


def parse_bbox(raw: str) -> geo.Box:
    """``minLon,minLat,maxLon,maxLat`` (GeoJSON order) to a box, or BadParameter."""
    parts = raw.split(",")
    try:
        min_lon, min_lat, max_lon, max_lat = (float(p) for p in parts)
        return geo.Box(min_lat, min_lon, max_lat, max_lon)
    except ValueError:
        raise BadParameter(
            "bad-bbox", "bbox must be minLon,minLat,maxLon,maxLat, longitudes in [-180, 180], latitudes in [-90, 90]"
        ) from None


def parse_near(raw: str, radius_m: float | None) -> Near:
    try:
        lat, lon = (float(p) for p in raw.split(","))
    except ValueError:
        raise BadParameter("bad-near", "near must be lat,lon, e.g. near=51.5074,-0.1278") from None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise BadParameter("bad-near", "near must be a latitude in [-90, 90] and a longitude in [-180, 180]")
    return Near(lat, lon, 1000.0 if radius_m is None else radius_m)


def geo_conditions(box: geo.Box) -> tuple[Cond, ...]:
    """Indexed conditions for a box: the cells covering it (when few enough) and its lat/lon ranges."""
    conds = [
        Cond("lat", "gte", box.min_lat),
        Cond("lat", "lte", box.max_lat),
        Cond("lon", "gte", box.min_lon),
        Cond("lon", "lte", box.max_lon),
    ]
    chosen = geo.best_cover(box)
    # A box that needs the coarsest (~40 km) cells spans a whole city: most issues match, so
    # walking the sort's index and checking lat/lon beats gathering them all to sort them.
    if chosen is not None and chosen[0] > min(geo.PRECISIONS):
        precision, cells = chosen
        conds.insert(0, Cond(geo.field(precision), "in", cells))
    return tuple(conds)


def _intersect(a: geo.Box, b: geo.Box) -> geo.Box | None:
    lo_lat, hi_lat = max(a.min_lat, b.min_lat), min(a.max_lat, b.max_lat)
    lo_lon, hi_lon = max(a.min_lon, b.min_lon), min(a.max_lon, b.max_lon)
    return geo.Box(lo_lat, lo_lon, hi_lat, hi_lon) if lo_lat <= hi_lat and lo_lon <= hi_lon else None


@dataclass(frozen=True, slots=True)
class Browse:
    status: str | None = None
    category: str | None = None
    department: str | None = None
    reporter: str | None = None
    created_after: str | None = None
    created_before: str | None = None
    sort: Sort = "newest"
    cursor: str | None = None
    limit: int = 20
    bbox: geo.Box | None = None
    near: Near | None = None
    q: str | None = None

    def __post_init__(self) -> None:
        if self.sort == "nearest" and self.near is None:
            raise BadParameter("bad-sort", "sort=nearest needs near=lat,lon (and radius_m)")
        if self.q is not None and not search.conditions(self.q):
            raise BadParameter("bad-q", "q must contain at least one letter or digit")

    def fingerprint(self) -> str:
        """What the cursor is bound to: every parameter except the cursor and the page size."""
        key: list[Any] = [self.status, self.category, self.department, self.reporter, self.created_after]
        key += [self.created_before]
        box = self.bbox
        key += [self.sort, box and [box.min_lat, box.min_lon, box.max_lat, box.max_lon], self.q]
        key += [self.near and [self.near.lat, self.near.lon, self.near.radius_m]]
        return hashlib.blake2b(orjson.dumps(key), digest_size=6).hexdigest()

    def cache_key(self) -> str:
        return f"{self.fingerprint()}:{self.limit}"

    def where(self, *, with_geo: bool = True) -> tuple[Cond, ...] | None:
        """The store conditions, or None when the filters cannot match anything (disjoint boxes)."""
        where: list[Cond] = [Cond("hidden", "eq", False)]  # staff-hidden issues are not browsable
        for field, value in (
            ("status", self.status),
            ("category", self.category),
            ("department", self.department),
            ("reporter_id", self.reporter),
        ):
            if value is not None:
                where.append(Cond(field, "in", value.split(",")) if "," in value else Cond(field, "eq", value))
        if self.created_after is not None:
            where.append(Cond("created_at", "gte", self.created_after))
        if self.created_before is not None:
            where.append(Cond("created_at", "lt", self.created_before))
        if self.q is not None:
            where += search.conditions(self.q)
        if not with_geo:
            return tuple(where)
        box = self.bbox
        if self.near is not None:
            circle = geo.around(self.near.lat, self.near.lon, self.near.radius_m)
            box = circle if box is None else _intersect(box, circle)
            if box is None:
                return None
        if box is not None:
            where += geo_conditions(box)
        return tuple(where)

    def query(self) -> Query | None:
        """The store query of a keyset sort (every sort but nearest); None when nothing can match."""
        where = self.where()
        if where is None:
            return None
        after = decode_cursor(self.cursor, self.sort, self.fingerprint()) if self.cursor else None
        # One row more than asked tells whether there is a next page.
        return Query(SUMMARY, where, ORDER[self.sort], after, self.limit + 1)

    def feed(self) -> str | None:
        """The browse feed that may hold this page (projectors/feeds.py): a popular list, nothing narrower."""
        if any(v is not None for v in (self.reporter, self.created_after, self.created_before, self.bbox, self.near)):
            return None
        if self.q is not None:
            return None
        values = (self.status, self.category, self.department)
        chosen = [(f, v) for f, v in zip(feeds.FEED_FILTERS, values, strict=True) if v is not None]
        if not chosen:
            return feeds.feed_id(self.sort) if (self.sort, None) in feeds.FEEDS else None
        (field, value), *others = chosen
        if others or "," in value or (self.sort, field) not in feeds.FEEDS:
            return None
        return feeds.feed_id(self.sort, field, value)

    def from_feed(self, feed: Doc | None) -> tuple[list[Doc], str | None] | None:
        """The page from a feed, exactly as ``fetch`` would give it; None when the feed does not hold it whole."""
        after = decode_cursor(self.cursor, self.sort, self.fingerprint()) if self.cursor else None
        rows = feeds.page(feed, self.sort, after, self.limit + 1)
        return None if rows is None else self._paged(rows)

    def keep(self, doc: Doc) -> bool:
        """The exact filters that no index answers: the circle and, with it, the box."""
        if self.near is not None and self.near.distance(doc) > self.near.radius_m:
            return False
        return self.bbox is None or self.bbox.holds(doc["lat"], doc["lon"])

    async def fetch(self, views: ViewStore) -> tuple[list[Doc], str | None]:
        """One page of public summaries and the cursor of the next page (None on the last one)."""
        if self.sort == "nearest":
            rows = await self._nearest(views)
        else:
            query = self.query()
            rows = [] if query is None else await _merged(views, query, self.keep if self.near else None)
        return self._paged(rows)

    def _paged(self, rows: list[Doc]) -> tuple[list[Doc], str | None]:
        """The public page of ``rows`` (one more than the page when a next page exists) and its next cursor."""
        items = rows[: self.limit]
        more = len(rows) > self.limit
        next_cursor = encode_cursor(items[-1], self.sort, self.fingerprint()) if more and items else None
        return [public(d) for d in items], next_cursor

    async def _nearest(self, views: ViewStore) -> list[Doc]:
        """Issues by distance then id, after the cursor: widen a ring until it holds a full page.

        Every issue within ``r`` lies in the box around the circle of radius ``r``, so once
        that box yields ``limit + 1`` issues within ``r`` past the cursor, they are exactly
        the next ones. A ring too dense to read whole is narrowed instead.
        """
        assert self.near is not None
        near = self.near
        base = self.where(with_geo=False)
        assert base is not None
        after = decode_cursor(self.cursor, self.sort, self.fingerprint()) if self.cursor else None
        past = (float(after[0]), str(after[1])) if after else (-1.0, "")
        want = self.limit + 1
        r = min(near.radius_m, max(FIRST_RING_M, past[0] * 1.5))
        complete_to = -1.0  # radius up to which the candidates are known to be complete
        found: list[Doc] = []
        dense: float | None = None
        for _ in range(48):  # doubling from 250 m passes 50 km in 8 steps; narrowing a dense ring needs a few more
            ring = geo.around(near.lat, near.lon, r)
            box = ring if self.bbox is None else _intersect(ring, self.bbox)
            rows = [] if box is None else await views.find(Query(SUMMARY, base + geo_conditions(box), limit=RING_ROWS))
            if len(rows) >= RING_ROWS and r > 1.0:  # too many to sort in memory: try a smaller ring
                dense = r
                r = max(complete_to, past[0]) + (r - max(complete_to, past[0])) / 2
                continue
            complete_to = r
            found = []
            for doc in rows:
                d = near.distance(doc)
                if d <= r and (d, doc["id"]) > past and self.keep(doc):
                    found.append({**doc, "distance_m": d})
            if len(found) >= want or r >= near.radius_m:
                break
            r = min(near.radius_m, r * 2 if dense is None else (r + dense) / 2)
        found.sort(key=lambda doc: (doc["distance_m"], doc["id"]))
        return found[:want]


async def _merged(views: ViewStore, query: Query, keep: Callable[[Doc], bool] | None) -> list[Doc]:
    """A list filter (``status=a,b,c``) as one index-ordered query per value, merged: no sort of every match."""
    split = next((i for i, c in enumerate(query.where) if c.op == "in" and 1 < len(c.value) <= 8), None)
    if split is None:
        return await _scan(views, query, keep)
    cond = query.where[split]
    parts = [
        replace(query, where=(*query.where[:split], Cond(cond.field, "eq", v), *query.where[split + 1 :]))
        for v in dict.fromkeys(cond.value)
    ]
    pages = await asyncio.gather(*(_scan(views, part, keep) for part in parts))
    descending = query.order_by[0][1]  # every browse order runs one way
    merged = heapq.merge(*pages, key=lambda d: tuple(d[f] for f, _ in query.order_by), reverse=descending)
    return list(itertools.islice(merged, query.limit))


async def _scan(views: ViewStore, query: Query, keep: Callable[[Doc], bool] | None) -> list[Doc]:
    """The query's rows; with an exact filter, keep reading past rejected rows until the page is full."""
    if keep is None:
        return await views.find(query)
    out: list[Doc] = []
    batch_query = replace(query, limit=max(2 * query.limit, 50))
    while len(out) < query.limit:
        batch = await views.find(batch_query)
        out += [d for d in batch if keep(d)]
        if len(batch) < batch_query.limit:
            break
        batch_query = replace(batch_query, after=tuple(batch[-1][f] for f, _ in query.order_by))
    return out[: query.limit]


def public(doc: Doc) -> Doc:
    """A summary as clients see it: no index-only fields; distance rounded to the metre."""
    out = {k: v for k, v in doc.items() if k not in HIDDEN_FIELDS}
    if "distance_m" in out:
        out["distance_m"] = round(out["distance_m"], 1)
    return out


def encode_cursor(last: Doc, sort: str, fingerprint: str) -> str:
    values = [last[field] for field, _ in ORDER[sort]]
    return base64.urlsafe_b64encode(orjson.dumps([sort, fingerprint, *values])).decode().rstrip("=")


def decode_cursor(cursor: str, sort: str, fingerprint: str) -> tuple[Any, ...]:
    try:
        data = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError):
        raise BadCursor("the cursor is not one this API gave out") from None
    if not isinstance(data, list) or len(data) != len(ORDER[sort]) + 2 or data[0] != sort:
        raise BadCursor("the cursor belongs to another sort order; start again without it")
    if data[1] != fingerprint:
        raise BadCursor("the cursor belongs to other filters; start again without it")
    values = tuple(data[2:])
    if not all(isinstance(v, str | int | float) and not isinstance(v, bool) for v in values):
        raise BadCursor("the cursor is not one this API gave out")
    return values
