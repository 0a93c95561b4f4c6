"""Geohash cells and covers: a box query over cells finds exactly what a brute-force distance filter finds."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from projectors import geo

# A city: about 30 km across, well away from the poles and the antimeridian.
CITY = geo.Box(51.28, -0.51, 51.69, 0.33)
LAT = st.floats(CITY.min_lat, CITY.max_lat)
LON = st.floats(CITY.min_lon, CITY.max_lon)
POINTS = st.lists(st.tuples(LAT, LON), min_size=1, max_size=60)


def select(points: list[tuple[float, float]], lat: float, lon: float, radius_m: float) -> set[int]:
    """What the query API does: cells covering the circle's box, the box itself, then exact distance."""
    box = geo.around(lat, lon, radius_m)
    chosen = geo.best_cover(box)
    assert chosen is not None
    precision, cells = chosen
    return {
        i
        for i, (plat, plon) in enumerate(points)
        if geo.cells_of(plat, plon)[geo.field(precision)] in cells
        and box.holds(plat, plon)
        and geo.haversine_m(lat, lon, plat, plon) <= radius_m
    }


class TestEncoding:
    def test_a_known_geohash(self) -> None:
        """The textbook example: 57.64911, 10.40744 is u4pruydqqvj."""
        assert geo.encode(57.64911, 10.40744, 11) == "u4pruydqqvj"

    @given(LAT, LON)
    def test_coarser_cells_are_prefixes_of_finer_ones(self, lat: float, lon: float) -> None:
        cells = geo.cells_of(lat, lon)
        for coarse, fine in zip(geo.PRECISIONS, geo.PRECISIONS[1:], strict=False):
            assert cells[geo.field(fine)].startswith(cells[geo.field(coarse)])


class TestCovers:
    @given(LAT, LAT, LON, LON, st.sampled_from(geo.PRECISIONS), st.data())
    @settings(max_examples=200)
    def test_a_cover_holds_the_cell_of_every_point_of_the_box(
        self, a: float, b: float, c: float, d: float, precision: int, data: st.DataObject
    ) -> None:
        """Points drawn inside the box, edges and corners included, all fall in covering cells."""
        box = geo.Box(min(a, b), min(c, d), max(a, b), max(c, d))
        if geo.cover_count(box, precision) > 400:
            return
        cells = set(geo.cover(box, precision))
        for _ in range(10):
            lat = data.draw(st.one_of(st.floats(box.min_lat, box.max_lat), st.sampled_from([box.min_lat, box.max_lat])))
            lon = data.draw(st.one_of(st.floats(box.min_lon, box.max_lon), st.sampled_from([box.min_lon, box.max_lon])))
            assert geo.encode(lat, lon, precision) in cells

    @given(POINTS, LAT, LON, st.floats(1, 20_000))
    @settings(max_examples=300)
    def test_cells_plus_exact_distance_equal_a_brute_force_radius_filter(
        self, points: list[tuple[float, float]], lat: float, lon: float, radius_m: float
    ) -> None:
        """No point within the radius is lost at a cell edge, and none beyond it is kept."""
        brute = {i for i, (plat, plon) in enumerate(points) if geo.haversine_m(lat, lon, plat, plon) <= radius_m}
        assert select(points, lat, lon, radius_m) == brute

    @given(st.floats(-85, 85), st.floats(-179, 179), st.floats(1, 500_000), st.floats(0, 359.9), st.floats(0, 1))
    @settings(max_examples=300)
    def test_the_box_around_a_circle_holds_the_whole_circle(
        self, lat: float, lon: float, radius_m: float, bearing: float, share: float
    ) -> None:
        """A point at any bearing and any distance up to the radius lies inside the box."""
        import math

        d = share * radius_m / geo.EARTH_RADIUS_M
        p1, l1, th = math.radians(lat), math.radians(lon), math.radians(bearing)
        p2 = math.asin(math.sin(p1) * math.cos(d) + math.cos(p1) * math.sin(d) * math.cos(th))
        l2 = l1 + math.atan2(math.sin(th) * math.sin(d) * math.cos(p1), math.cos(d) - math.sin(p1) * math.sin(p2))
        plat, plon = math.degrees(p2), math.degrees(l2)
        if not -180 <= plon <= 180:
            return  # the city case never wraps around the antimeridian
        assert geo.around(lat, lon, radius_m).holds(plat, plon)
