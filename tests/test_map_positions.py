"""Maps put every cell at its own longitude and latitude, on the globe and across the
antimeridian too.

A run's ``grid.nc`` keeps the grid's columns in its own order, running east from the domain's
west edge: a box across the antimeridian has ``lon`` 170.25 … 179.75, −179.75 … −170.25, the
globe starts where the widest run of unused columns ends (−23.75 … 179.75, −179.75 … −24.25),
so ``lon`` is not ascending. Each case marks ONE cell and reads, from the drawn Figure's
artists (the images' data and extent, the mascon edges, the coastlines, the tick labels), where
it went.
"""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest
import xarray as xr
from matplotlib.collections import LineCollection
from matplotlib.image import AxesImage

from twsbench.report import figures

matplotlib.use("Agg")

RES = 0.5
H = RES / 2


def east_from(first: float, n: int) -> np.ndarray:
    """``n`` 0.5° column centres running east from ``first``, in −180 … 180 (wrapping)."""
    return (first + RES * np.arange(n) + 180.0) % 360.0 - 180.0


#: (lat centres, lon centres in the grid's column order, the marked cell's (lat, lon))
DOMAINS = {
    # across the antimeridian: Chukotka and the Bering Strait, land on both sides of 180°
    "antimeridian": (np.arange(60.25, 70.0, RES), east_from(170.25, 40), (65.25, -175.25)),
    # the globe, starting east of the Atlantic's gap
    "global": (np.arange(40.25, 46.0, RES), east_from(-23.75, 720), (46.0 - H - RES, 100.25)),
    # the globe of the real runs: the unused Atlantic columns −35 … −24 left out
    "global_gap": (np.arange(40.25, 46.0, RES), east_from(-23.75, 698), (41.25, -40.25)),
    # an ordinary box (Bay of Bengal), drawn as before
    "ordinary": (np.arange(18.25, 27.0, RES), east_from(78.25, 30), (22.75, 90.25)),
}


def marked_grid(name: str) -> xr.Dataset:
    """A ``grid.nc``-like dataset, every cell land, one month; the marked cell alone is 1 (its
    own mascon 1), every other cell 0 (mascon 0)."""
    lat, lon, (mlat, mlon) = DOMAINS[name]
    cell_index = np.arange(lat.size * lon.size)
    marked = int(np.flatnonzero(np.isclose(lat, mlat))[0] * lon.size
                 + np.flatnonzero(np.isclose(lon, mlon))[0])
    cells = np.zeros(cell_index.size, np.float32)
    cells[marked] = 1.0
    cell_mascon = (cells > 0).astype(int)
    return xr.Dataset(
        {"cell_index": ("cell", cell_index), "cell_mascon": ("cell", cell_mascon),
         "cell_area": ("cell", np.ones(cell_index.size)),
         "has_grace": ("month", np.ones(1, "i1")),
         "grace": (("month", "mascon"), np.array([[0.0, 1.0]], np.float32)),
         "split_test_scattered": ("month", np.ones(1, "i1")),
         "truth": (("month", "cell"), cells[None])},
        coords={"lat": lat, "lon": lon,
                "month": np.array(["2002-04"], "datetime64[M]").astype("datetime64[ns]")})


def lon_gap(a: float, b: float) -> float:
    """Degrees between two longitudes, either maybe unwrapped past ±180."""
    return abs((a - b + 180.0) % 360.0 - 180.0)


def drawn_at(image: AxesImage) -> tuple[float, float]:
    """(lon, lat) of the centre of the one cell of ``image`` that holds the maximum."""
    data = np.ma.filled(np.ma.masked_invalid(np.asarray(image.get_array(), float)), np.nan)
    rows, cols = np.nonzero(data == np.nanmax(data))
    assert rows.size == 1, f"expected one marked cell in the image, found {rows.size}"
    i, j = int(rows[0]), int(cols[0])
    if image.origin == "upper":
        i = data.shape[0] - 1 - i
    left, right, bottom, top = image.get_extent()
    return (left + (j + 0.5) * (right - left) / data.shape[1],
            bottom + (i + 0.5) * (top - bottom) / data.shape[0])


def assert_marked_in_place(ax, image: AxesImage, mlat: float, mlon: float) -> None:
    x, y = drawn_at(image)
    assert lon_gap(x, mlon) <= H + 1e-9 and abs(y - mlat) <= H + 1e-9, (
        f"the cell at {mlat}°N {mlon}°E is drawn at {y}°N {x}°E")
    x0, x1 = ax.get_xlim()
    assert x0 < x < x1, f"the marked cell at x={x} lies outside the map's {x0} … {x1}"


def expected_span(name: str) -> tuple[float, float]:
    lat, lon, _ = DOMAINS[name]
    if name.startswith("global"):
        return -180.0, 180.0
    return float(lon[0] - H), float(lon[0] - H + lon.size * RES)  # one piece, unwrapped


def coast_lines(ax) -> list[np.ndarray]:
    return [seg for c in ax.collections if isinstance(c, LineCollection)
            and np.allclose(c.get_colors()[0][:3], 0.15) for seg in c.get_segments()]


@pytest.mark.parametrize("name", list(DOMAINS))
def test_maps_draw_the_marked_cell_at_its_own_place(name):
    grid = marked_grid(name)
    _, _, (mlat, mlon) = DOMAINS[name]
    preds = {"model": 2 * grid["truth"].values}  # its error, model − truth, marks it too
    maps = figures._map_figures(grid, preds, {"config": {"report": {"map_months": ["2002-04"]}}})
    assert [n for n, _ in maps] == ["map_2002-04.png", "map_2002-04_error.png"]
    west, east = expected_span(name)
    drawn = 0
    for _, fig in maps:
        for ax in fig.axes:
            for image in ax.images:
                assert_marked_in_place(ax, image, mlat, mlon)
                assert image.get_extent()[:2] == pytest.approx((west, east))
                assert ax.get_xlim() == pytest.approx((west, east))
                drawn += 1
    assert drawn == 4  # truth, GRACE, model; the model's error

    gain = figures._gain_figure(grid, {"model": np.array([0, 1])}, "mascon")
    (ax,) = [a for a in gain.axes if a.images]
    assert_marked_in_place(ax, ax.images[0], mlat, mlon)
    # the mascon edges: the marked cell, its own mascon, is outlined where it is drawn
    (edges,) = [c for c in ax.collections if isinstance(c, LineCollection)
                and np.allclose(c.get_colors()[0][:3], 1.0)]
    x, y = drawn_at(ax.images[0])
    mids = {(round(float(s[:, 0].mean()), 6), round(float(s[:, 1].mean()), 6))
            for s in edges.get_segments()}
    assert {(round(x + dx, 6), round(y + dy, 6))
            for dx, dy in ((-H, 0), (H, 0), (0, -H), (0, H))} <= mids


def test_maps_across_the_antimeridian_draw_coastlines_and_ticks_in_one_piece():
    grid = marked_grid("antimeridian")
    fig = figures._gain_figure(grid, {"model": np.array([0, 1])}, "mascon")
    (ax,) = [a for a in fig.axes if a.images]
    west, east = ax.get_xlim()
    assert (west, east) == pytest.approx((170.0, 190.0))
    lines = coast_lines(ax)
    assert lines, "no coastline drawn across the antimeridian"
    lon, lat = np.concatenate(lines).T
    # Chukotka west of 180° and its tip east of it, both in the unwrapped range
    assert lon.min() < 179 and lon.max() > 181 and lon.min() > west - 1 and lon.max() < east + 1
    assert lat.min() > 59 and lat.max() < 71
    label = ax.xaxis.get_major_formatter()
    assert [label(v, 0) for v in (172.5, 180.0, 185.0)] == ["172.5", "180", "\N{MINUS SIGN}175"]


def test_global_maps_draw_coastlines_around_the_globe():
    fig = figures._gain_figure(marked_grid("global_gap"), {"model": np.array([0, 1])},
                               "mascon")
    (ax,) = [a for a in fig.axes if a.images]
    lon, lat = np.concatenate(coast_lines(ax)).T
    # from Oregon's coast to Hokkaido's, whatever the grid's first column
    assert lon.min() < -123 and lon.max() > 141 and lon.min() > -181 and lon.max() < 181
    assert lat.min() > 39 and lat.max() < 47
