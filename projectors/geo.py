"""Geo without geo operators: geohash cells, covers of a box, and exact great-circle distance.

The summary view stores an issue's geohash at a few precisions as plain indexed
fields (``gh4`` … ``gh7``). A box query becomes ``ghN in [cells covering the box]``
plus lat/lon range conditions, which every store can answer from an index; a
radius query is the box around the circle plus an exact haversine filter in the
query API. The city case is assumed antimeridian-free: a box never wraps past ±180°.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

BASE32 = "0123456789bcdefghjkmnpqrstuvwxyz"
PRECISIONS = (4, 5, 6, 7)  # ~39 km, ~4.9 km, ~1.2 km, ~153 m cells
MAX_CELLS = 32  # the most cells one query lists
EARTH_RADIUS_M = 6_371_008.8  # the mean radius (IUGG)


def field(precision: int) -> str:
    return f"gh{precision}"


def encode(lat: float, lon: float, precision: int) -> str:
    """The geohash of a point; a point on a cell edge belongs to the cell above/east of it."""
    lat_lo, lat_hi, lon_lo, lon_hi = -90.0, 90.0, -180.0, 180.0
    out: list[str] = []
    bits = 0
    value = 0
    even = True
    while len(out) < precision:
        if even:
            mid = (lon_lo + lon_hi) / 2
            bit = lon >= mid
            lon_lo, lon_hi = (mid, lon_hi) if bit else (lon_lo, mid)
        else:
            mid = (lat_lo + lat_hi) / 2
            bit = lat >= mid
            lat_lo, lat_hi = (mid, lat_hi) if bit else (lat_lo, mid)
        value = value * 2 + int(bit)
        even = not even
        bits += 1
        if bits == 5:
            out.append(BASE32[value])
            bits = value = 0
    return "".join(out)


def cells_of(lat: float, lon: float) -> dict[str, str]:
    """The view fields of a point: its geohash at each stored precision."""
    longest = encode(lat, lon, max(PRECISIONS))
    return {field(p): longest[:p] for p in PRECISIONS}


def cell_size(precision: int) -> tuple[float, float]:
    """(degrees of latitude, degrees of longitude) of a cell at ``precision``."""
    bits = 5 * precision
    lon_bits = (bits + 1) // 2
    lat_bits = bits // 2
    return 180.0 / 2**lat_bits, 360.0 / 2**lon_bits


@dataclass(frozen=True, slots=True)
class Box:
    """A lat/lon box, edges included. ``min_lon <= max_lon``: boxes never cross the antimeridian."""

    min_lat: float
    min_lon: float
    max_lat: float
    max_lon: float

    def __post_init__(self) -> None:
        if not (-90 <= self.min_lat <= self.max_lat <= 90 and -180 <= self.min_lon <= self.max_lon <= 180):
            raise ValueError("a box needs -90 <= minLat <= maxLat <= 90 and -180 <= minLon <= maxLon <= 180")

    def holds(self, lat: float, lon: float) -> bool:
        return self.min_lat <= lat <= self.max_lat and self.min_lon <= lon <= self.max_lon


def _steps(lo: float, hi: float, size: float, origin: float) -> range:
    """Grid steps from lo to hi; a hair of slack so float rounding at a cell edge never loses a cell."""
    return range(math.floor((lo - origin) / size - 1e-9), math.floor((hi - origin) / size + 1e-9) + 1)


def cover(box: Box, precision: int) -> list[str]:
    """Every cell at ``precision`` that a point of the box can fall in (sorted)."""
    dlat, dlon = cell_size(precision)
    cells = set()
    for i in _steps(box.min_lat, box.max_lat, dlat, -90.0):
        lat = min(-90.0 + (i + 0.5) * dlat, 90.0 - dlat / 2)
        for j in _steps(box.min_lon, box.max_lon, dlon, -180.0):
            lon = min(-180.0 + (j + 0.5) * dlon, 180.0 - dlon / 2)
            cells.add(encode(lat, lon, precision))
    return sorted(cells)


def cover_count(box: Box, precision: int) -> int:
    dlat, dlon = cell_size(precision)
    return len(_steps(box.min_lat, box.max_lat, dlat, -90.0)) * len(_steps(box.min_lon, box.max_lon, dlon, -180.0))


def best_cover(box: Box, max_cells: int = MAX_CELLS) -> tuple[int, list[str]] | None:
    """The finest stored precision whose cover has at most ``max_cells`` cells; None if even the coarsest has more."""
    for precision in sorted(PRECISIONS, reverse=True):
        if cover_count(box, precision) <= max_cells:
            return precision, cover(box, precision)
    return None


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def around(lat: float, lon: float, radius_m: float) -> Box:
    """A box holding every point within ``radius_m`` of (lat, lon), clamped to the map (no wrap-around)."""
    angle = radius_m / EARTH_RADIUS_M
    dlat = math.degrees(angle) * 1.000001
    coslat = math.cos(math.radians(lat))
    if lat + dlat >= 90 or lat - dlat <= -90 or math.sin(angle) >= coslat:
        dlon = 180.0  # the circle reaches a pole: every longitude
    else:
        dlon = math.degrees(math.asin(math.sin(angle) / coslat)) * 1.000001
    return Box(max(-90.0, lat - dlat), max(-180.0, lon - dlon), min(90.0, lat + dlat), min(180.0, lon + dlon))
