"""City statistics, read from the aggregates the projector keeps (no scan of issues at read time)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from projectors import stats
from query_api.browse import BadParameter, parse_bbox
from query_api.deps import Consistent, Views
from query_api.responses import READ_ERRORS, json_value
from snapfix.http import ProblemError

router = APIRouter(tags=["stats"], responses=READ_ERRORS)


@router.get("/v1/stats")
async def city_stats(
    request: Request,
    views: Views,
    freshness: Consistent,
    bbox: Annotated[
        str | None,
        Query(
            max_length=120,
            pattern=r"^[0-9eE.,+\-]+$",
            description="minLon,minLat,maxLon,maxLat: statistics of the geo cells covering this box",
        ),
    ] = None,
) -> Response:
    """Counts by status, category and department; open backlog per department; median and p90 time to resolve.

    Times are in seconds (within 1 %). With `bbox`, the figures cover the geohash cells
    that cover the box (about 5 km cells, or 40 km for large boxes), listed in `cells`.
    """
    try:
        box = None if bbox is None else parse_bbox(bbox)
    except BadParameter as e:
        raise ProblemError(400, e.code, "Bad parameter", str(e)) from None
    keys = stats.keys_for(box)
    found = await views.get_many(stats.totals_collection.name, keys)
    body = stats.report(stats.merge(found[k] for k in keys if k in found))
    if box is not None:
        body["cells"] = [k.split(":", 1)[1] for k in keys] if keys != [stats.ALL] else None
    return json_value(body, request, freshness=freshness, cache_control="public, max-age=30")
