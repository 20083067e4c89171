"""The report's figures, drawn from a run's saved grid (``grid.nc``), its predictions and its
tables. Each ``figure_*`` writes PNG files into ``figs`` and returns their names; each is built
by a private ``_*_figure`` function that returns the :class:`~matplotlib.figure.Figure`, so tests
can read what a figure says, and written by :func:`save`, whose tight box keeps every legend and
label inside the image.

Two tasks are drawn apart. **downscale**: months with GRACE, which every model may use (the test
months with GRACE are ``split_test_scattered``). **gapfill**: months whose GRACE no model sees,
the held-out blocks (``split_test_block``, GRACE withheld) and the months without GRACE
(``split_gap``). Models that need the month's GRACE give NaN there; figures leave them out and
say so.

NaN policy: statistics pair a prediction with its reference where both are finite.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np
import pandas as pd
import xarray as xr

if TYPE_CHECKING:
    from matplotlib.artist import Artist
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.projections.polar import PolarAxes

#: Resolution of the saved PNGs (dots per inch); modest so the self-contained HTML stays small.
DPI = 80
#: Grid step of the land share whose 0.5 contour is drawn as the coastline, degrees.
COAST_RES = 0.125
#: Colours of the gain map: significantly worse, no significant difference, better.
GAIN_COLOURS = ("#d6604d", "#e4e4e4", "#2166ac")

_WITHHELD = "no prediction:\nneeds the month's GRACE\n(withheld)"
_NO_GRACE = "no prediction:\nneeds the month's GRACE\n(none this month)"


# ---- plumbing ----------------------------------------------------------------------------

def _figure(**kwargs) -> Figure:
    """A Figure outside pyplot (no global state, nothing to close)."""
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def save(fig: Figure, path: Path) -> str:
    """Write ``fig`` as a PNG cropped to the box around all its artists; return the file name.

    ``bbox_inches="tight"`` grows the canvas to hold legends and labels placed outside the axes
    (``bbox_to_anchor``), which a layout engine alone does not.
    """
    path = Path(path)
    fig.savefig(path, dpi=DPI, bbox_inches="tight", pad_inches=0.08)
    return path.name


def _split(grid: xr.Dataset, name: str) -> np.ndarray:
    """``split_<name>`` as a boolean month mask; all False when the grid lacks it."""
    key = f"split_{name}"
    if key not in grid:
        return np.zeros(grid.sizes["month"], dtype=bool)
    return grid[key].values.astype(bool)


def _downscale_months(grid: xr.Dataset) -> np.ndarray:
    if "split_test_scattered" in grid:
        return _split(grid, "test_scattered")
    return _split(grid, "test") & grid["has_grace"].values.astype(bool)


def _gapfill_months(grid: xr.Dataset) -> np.ndarray:
    return _split(grid, "test_block") | _split(grid, "gap")


def _res(coord: np.ndarray) -> float:
    return float(abs(coord[1] - coord[0])) if coord.size > 1 else 0.5


@dataclass(frozen=True)
class _MapGrid:
    """Where a grid's cells are drawn: columns in ascending, continuous longitude.

    A run's grid keeps its columns in its own order, running east from the west edge of the
    domain, so a box across the antimeridian (or the globe, which starts where the widest run
    of unused columns ends) has longitudes such as 170.25 … 179.75, −179.75 … −170.25. Every map
    draws through this one layout: the box across the antimeridian is unwrapped to one piece
    (170 … 190, ticks labelled −180 … 180), a domain wider than half the globe is placed on
    −180 … 180, columns it lacks left blank; an ordinary box is drawn as it is.
    """

    lat: np.ndarray  #: drawn row centres, degrees north (the grid's rows)
    lon: np.ndarray  #: drawn column centres, ascending and regular; may pass 180 when unwrapped
    flat: np.ndarray  #: flat index of each land cell (``cell_index``) in the drawn (lat, lon)
    column: np.ndarray  #: drawn column of each of the grid's columns

    @property
    def extent(self) -> tuple[float, float, float, float]:
        """(west, east, south, north) of the drawn cell edges, degrees."""
        hx, hy = _res(self.lon) / 2, _res(self.lat) / 2
        return (float(self.lon.min() - hx), float(self.lon.max() + hx),
                float(self.lat.min() - hy), float(self.lat.max() + hy))

    @property
    def unwrapped(self) -> bool:
        """Whether longitudes pass ±180 (ticks are then labelled in −180 … 180)."""
        west, east = self.extent[:2]
        return east > 180 + 1e-6 or west < -180 - 1e-6

    def field(self, cells: np.ndarray, fill: float = np.nan) -> np.ndarray:
        """``(lat, lon)`` image of per-cell values, ``fill`` where there is no land cell."""
        cells = np.asarray(cells)
        dtype = np.result_type(cells.dtype, np.asarray(fill).dtype)
        out = np.full(self.lat.size * self.lon.size, fill, dtype=dtype)
        out[self.flat] = cells
        return out.reshape(self.lat.size, self.lon.size)


def _map_grid(grid: xr.Dataset) -> _MapGrid:
    """The drawn layout of ``grid`` (see :class:`_MapGrid`); its columns must run east."""
    lat = grid["lat"].values.astype(float)
    lon = grid["lon"].values.astype(float)
    steps = np.mod(np.diff(lon), 360.0)
    res = float(steps[0]) if steps.size else 0.5
    east = lon[0] + np.concatenate([[0.0], np.cumsum(steps)])  # continuous, ascending
    if east[-1] + res / 2 <= 180 + 1e-6 or east[-1] - east[0] + res <= 180 + 1e-6:
        # an ordinary box as it is; one across the antimeridian unwrapped, in one piece
        drawn, column = east, np.arange(lon.size)
    else:  # across the antimeridian and wider than half the globe: a world map, -180 … 180
        first = -180.0 + float(np.mod(lon[0] + 180.0, res))
        drawn = first + res * np.arange(int(round(360.0 / res)))
        wrapped = np.mod(lon - first, 360.0) + first
        column = np.rint((wrapped - first) / res).astype(int)
    rows, cols = np.divmod(grid["cell_index"].values, lon.size)
    return _MapGrid(lat=lat, lon=drawn, flat=rows * drawn.size + column[cols], column=column)


def _map_height(extent: tuple[float, float, float, float], width: float) -> float:
    """Height in inches of a map panel ``width`` inches wide, with room for its title."""
    aspect = (extent[3] - extent[2]) / max(extent[1] - extent[0], 1e-9)
    return min(max(width * aspect, 1.5), 2 * width) + 0.6


def _panel_grid(n: int, width: float, height: float, max_cols: int = 4, **kwargs
                ) -> tuple[Figure, np.ndarray]:
    cols = max(1, min(max_cols, n))
    rows = -(-max(n, 1) // cols)
    fig = _figure(figsize=(width * cols, height * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False, **kwargs)
    for ax in axes.flat[n:]:
        ax.axis("off")
    return fig, axes


def _say(ax: Axes, text: str, **kwargs) -> None:
    """A centred note in a panel that has nothing to draw."""
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=8,
            color="0.25", bbox={"boxstyle": "round", "fc": "white", "ec": "0.7"}, zorder=5,
            **kwargs)


# ---- coastlines ---------------------------------------------------------------------------

@functools.lru_cache(maxsize=64)
def _coast_segments(extent: tuple[float, float, float, float]) -> tuple[np.ndarray, ...]:
    """Coastline polylines ``(n, 2)`` of (lon, lat) over ``extent`` (west, east, south, north);
    longitudes may run past ±180 (an unwrapped map), the land sampled where they wrap to."""
    import contourpy

    from twsbench.core.landmask import land_fraction

    west, east, south, north = extent
    # centres of the 1/8° cells covering the extent and one cell around it (edges on 1/8°)
    lon = np.arange(np.floor(west / COAST_RES) - 1, np.ceil(east / COAST_RES) + 1) * COAST_RES
    lat = np.arange(max(np.floor(south / COAST_RES) - 1, -90 / COAST_RES),
                    min(np.ceil(north / COAST_RES) + 1, 90 / COAST_RES)) * COAST_RES
    lon, lat = lon + COAST_RES / 2, lat + COAST_RES / 2
    if lon.size < 2 or lat.size < 2:
        return ()
    share = land_fraction(lat, lon, COAST_RES)
    lines = contourpy.contour_generator(lon, lat, share,
                                        line_type=contourpy.LineType.Separate).lines(0.5)
    return tuple(np.asarray(line, dtype=float) for line in lines if len(line) > 1)


def coastline(ax: Axes, extent: tuple[float, float, float, float] | list[float]
              ) -> tuple[np.ndarray, ...]:
    """Draw coastlines on a lon/lat map, offline.

    The line is the 0.5 contour of the land share in 1/8° cells, each the mean of 225 pixels of
    the 1-km GLOBE mask shipped in ``global-land-mask`` (``twsbench.core.landmask``, cached on
    disk), so nothing is downloaded. Lines are cached per extent: many panels sample once.

    Parameters
    ----------
    ax
        A map axes in degrees (x longitude, y latitude).
    extent
        (west, east, south, north) in degrees; west < east, either may lie past ±180 for a map
        unwrapped across the antimeridian (e.g. 170 … 190).

    Returns
    -------
    tuple of numpy.ndarray
        The polylines drawn, each ``(n, 2)`` of (lon, lat); empty over open ocean.
    """
    from matplotlib.collections import LineCollection

    key = tuple(round(float(v), 6) for v in extent)
    segments = _coast_segments(key)  # type: ignore[arg-type]
    if segments:
        ax.add_collection(LineCollection(list(segments), colors="0.15", linewidths=0.6,
                                         zorder=3), autolim=False)
    return segments


def _mascon_edges(where: _MapGrid, cell_mascon: np.ndarray) -> np.ndarray:
    """Segments ``(n, 2, 2)`` along the borders between cells of different mascons, drawn
    where ``where`` puts the cells."""
    field = where.field(np.asarray(cell_mascon, dtype=int), fill=-1)
    lat, lon = where.lat, where.lon
    hy, hx = _res(lat) / 2, _res(lon) / 2
    segs = []
    i, j = np.nonzero((field[:, :-1] != field[:, 1:]) & (np.maximum(field[:, :-1],
                                                                    field[:, 1:]) >= 0))
    for a, b in zip(i, j, strict=True):
        x = lon[b] + hx
        segs.append(((x, lat[a] - hy), (x, lat[a] + hy)))
    i, j = np.nonzero((field[:-1] != field[1:]) & (np.maximum(field[:-1], field[1:]) >= 0))
    for a, b in zip(i, j, strict=True):
        y = lat[a] + hy
        segs.append(((lon[b] - hx, y), (lon[b] + hx, y)))
    return np.asarray(segs, dtype=float).reshape(-1, 2, 2)


def _lon_label(x: float, _pos: object = None) -> str:
    """A tick at ``x`` degrees east, labelled in −180 … 180 (180 stays 180)."""
    wrapped = 180.0 - float(np.mod(180.0 - x, 360.0))
    return f"{wrapped:g}".replace("-", "\N{MINUS SIGN}")


def _map_axes(ax: Axes, where: _MapGrid, title: str) -> None:
    """Limits, coastlines and ticks of a map drawn in ``where``'s layout."""
    extent = where.extent
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    ax.set_aspect("equal")
    coastline(ax, extent)
    if where.unwrapped:
        from matplotlib.ticker import FuncFormatter

        ax.xaxis.set_major_formatter(FuncFormatter(_lon_label))
    ax.set_title(title, fontsize=9)
    ax.tick_params(labelsize=7)


def _draw_field(ax: Axes, where: _MapGrid, cells: np.ndarray, **kwargs):
    """Image of per-cell values, each cell at its own longitude and latitude."""
    return ax.imshow(where.field(np.asarray(cells, dtype=float)), origin="lower",
                     extent=where.extent, interpolation="nearest", **kwargs)


# ---- predictions ---------------------------------------------------------------------------

def load_predictions(run: Path) -> dict[str, np.ndarray]:
    """Seed-mean predictions ``(months, cells)`` by model."""
    stacks: dict[str, list[np.ndarray]] = {}
    for path in sorted((run / "predictions").glob("*.nc")):
        model = path.stem.split("__seed")[0]
        with xr.open_dataset(path) as ds:
            stacks.setdefault(model, []).append(ds["twsa"].values)
    return {k: np.mean(v, axis=0) for k, v in stacks.items()}


# ---- maps ----------------------------------------------------------------------------------

def _month_task(grid: xr.Dataset, k: int) -> tuple[str, str]:
    """The task a month belongs to, and why a model that needs GRACE is blank in it."""
    if _split(grid, "gap")[k] or not grid["has_grace"].values[k]:
        return "gapfill, no GRACE", _NO_GRACE
    if _split(grid, "test_block")[k]:
        return "gapfill, GRACE withheld", _WITHHELD
    if _downscale_months(grid)[k]:
        return "downscale", "no prediction\nthis month"
    other = [s for s in ("train", "validation") if _split(grid, s)[k]]
    return f"downscale ({other[0]} month)" if other else "downscale", "no prediction\nthis month"


def _map_months(grid: xr.Dataset, meta: dict) -> list[int]:
    """``[report] map_months`` when set, else the middle month of the downscale test months,
    of the held-out blocks and of the gap."""
    months = grid["month"].values.astype("datetime64[M]")
    chosen = (meta.get("config") or {}).get("report", {}).get("map_months")
    if chosen:
        return [int(np.searchsorted(months, np.datetime64(m, "M"))) for m in chosen
                if np.datetime64(m, "M") in months]
    out = []
    for mask in (_downscale_months(grid), _split(grid, "test_block"), _split(grid, "gap")):
        idx = np.flatnonzero(mask)
        if idx.size:
            out.append(int(idx[idx.size // 2]))
    return out


def _map_figures(grid: xr.Dataset, preds: dict, meta: dict) -> list[tuple[str, Figure]]:
    """``(file name, figure)`` for each map month: the fields, and their errors on the twin."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    months = grid["month"].values.astype("datetime64[M]")
    cm = grid["cell_mascon"].values
    where = _map_grid(grid)
    extent = where.extent
    truth = grid["truth"].values if "truth" in grid else None
    out = []
    for k in _map_months(grid, meta):
        task, reason = _month_task(grid, k)
        panels: list[tuple[str, np.ndarray]] = []
        if truth is not None:
            panels.append(("truth", truth[k]))
        if grid["has_grace"].values[k]:
            withheld = ", withheld from models" if _split(grid, "test_block")[k] else ""
            panels.append((f"GRACE (mascons{withheld})", grid["grace"].values[k][cm]))
        panels += [(m, np.asarray(v[k], dtype=float)) for m, v in preds.items()]
        errors = ([(f"{m} − truth", np.asarray(v[k], dtype=float) - truth[k])
                   for m, v in preds.items()] if truth is not None else [])
        for suffix, group, cmap in (("", panels, "RdBu"), ("_error", errors, "PuOr")):
            if not group:
                continue
            finite = np.concatenate([v[np.isfinite(v)] for _, v in group])
            lim = float(np.percentile(np.abs(finite), 98)) if finite.size else 1.0
            lim = lim if lim > 0 else 1.0
            fig, axes = _panel_grid(len(group), 3.6, _map_height(extent, 3.6))
            for ax, (title, values) in zip(axes.flat, group, strict=False):
                if np.isfinite(values).any():
                    _draw_field(ax, where, values, cmap=cmap, vmin=-lim, vmax=lim)
                else:
                    _say(ax, reason)
                _map_axes(ax, where, title)
            fig.colorbar(ScalarMappable(Normalize(-lim, lim), cmap), ax=axes, shrink=0.8,
                         label="mm")
            what = "TWSA error against the truth" if suffix else "TWSA"
            fig.suptitle(f"{what}, {months[k]} · {task}")
            out.append((f"map_{months[k]}{suffix}.png", fig))
    return out


def figure_maps(run: Path, grid: xr.Dataset, preds: dict, meta: dict, figs: Path) -> list[str]:
    """Maps of one downscale test month and one month of each gapfill kind.

    Parameters
    ----------
    run
        The run folder (unused; kept for the caller's signature).
    grid
        The run's ``grid.nc``.
    preds
        ``{model: (months, cells)}`` in mm, NaN where a model does not predict; a model with
        no prediction in the month gets a panel that says why.
    meta
        The run's ``meta.json``; ``meta["config"]["report"]["map_months"]`` ("YYYY-MM"), when
        set, replaces the middle months of ``test_scattered``, ``test_block`` and ``gap``.
    figs
        Folder to write into.

    Returns
    -------
    list of str
        ``map_<YYYY-MM>.png`` per month and, with a truth, ``map_<YYYY-MM>_error.png``.
    """
    return [save(fig, figs / name) for name, fig in _map_figures(grid, preds, meta)]


# ---- hotspot series ------------------------------------------------------------------------

def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) index of each run of True."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1, strict=True))


def _series_figure(grid: xr.Dataset, preds: dict) -> Figure:
    months = grid["month"].values.astype("datetime64[M]")
    years = 1970 + (months.astype(int) + 0.5) / 12
    ref = grid["truth"].values if "truth" in grid else grid["grace"].values[
        :, grid["cell_mascon"].values]
    rows = np.isfinite(ref).all(axis=1)  # months with a reference everywhere
    yc = years - years[rows].mean()
    r = ref[rows] - ref[rows].mean(0)
    slope = (yc[rows] @ r) / (yc[rows] @ yc[rows])
    detrended = ref - np.outer(yc, slope)
    amp = np.nanstd(detrended, axis=0)
    decline = int(np.nanargmin(slope))
    amp[decline] = -np.inf
    picks = {"strongest decline": decline, "largest variability": int(np.nanargmax(amp))}
    fig = _figure(figsize=(11, 3.0 * len(picks)), layout="constrained")
    axes = fig.subplots(len(picks), 1, squeeze=False, sharex=True)
    lat = np.repeat(grid.lat.values, grid.sizes["lon"])[grid["cell_index"].values]
    lon = np.tile(grid.lon.values, grid.sizes["lat"])[grid["cell_index"].values]
    shades = (("test_block", "#f4a582", "gapfill: GRACE withheld (held-out blocks)"),
              ("gap", "#bababa", "gapfill: no GRACE (gap)"))
    for ax, (label, cell) in zip(axes[:, 0], picks.items(), strict=True):
        for split, colour, name in shades:
            for n, (a, b) in enumerate(_runs(_split(grid, split))):
                ax.axvspan(years[a] - 1 / 24, years[b] + 1 / 24, color=colour, alpha=0.3, lw=0,
                           label=name if n == 0 else None)
        if "truth" in grid:
            ax.plot(years, grid["truth"].values[:, cell], color="k", lw=2, label="truth")
        g = np.where(grid["has_grace"].values.astype(bool),
                     grid["grace"].values[:, grid["cell_mascon"].values[cell]], np.nan)
        ax.plot(years, g, "o", ms=2.5, color="grey", label="GRACE (mascon)")
        for model, values in preds.items():
            ax.plot(years, values[:, cell], lw=0.9, label=model)
        ax.set_title(f"{label}: cell {lat[cell]:.2f}°N {lon[cell]:.2f}°E", fontsize=10)
        ax.set_ylabel("TWSA (mm)")
    axes[-1, 0].set_xlabel("year")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", fontsize=7)
    return fig


def figure_series(grid: xr.Dataset, preds: dict, figs: Path) -> list[str]:
    """Series of two hotspot cells (strongest decline, largest variability) with the truth,
    GRACE and every model; the gapfill months are shaded (held-out blocks and gap apart).
    Returns ``["series_hotspots.png"]``."""
    return [save(_series_figure(grid, preds), figs / "series_hotspots.png")]


# ---- Taylor diagram ------------------------------------------------------------------------

def _taylor_panels(grid: xr.Dataset, withheld: bool | np.ndarray | None
                   ) -> list[tuple[str, np.ndarray, np.ndarray | None]]:
    """(title, month mask, reference ``(months, cells)`` or None) for downscale and gapfill."""
    grace = grid["grace"].values[:, grid["cell_mascon"].values]
    has = grid["has_grace"].values.astype(bool)
    down, gap = _downscale_months(grid), _gapfill_months(grid)
    if "truth" in grid:
        truth = grid["truth"].values
        return [("downscale: test months against the truth", down, truth),
                ("gapfill: held-out blocks and gap against the truth", gap, truth)]
    panels: list[tuple[str, np.ndarray, np.ndarray | None]] = [
        ("downscale: consistency with GRACE\n(an input, not a skill score)", down, grace)]
    if withheld is None or withheld is False:
        panels.append(("gapfill: no reference\n(no truth; GRACE not withheld)", gap, None))
    else:
        mask = _split(grid, "test_block") if withheld is True else np.asarray(withheld, bool)
        panels.append(("gapfill: held-out blocks against\nthe withheld GRACE", mask & has,
                       grace))
    return panels


def _taylor_figure(grid: xr.Dataset, preds: dict, withheld: bool | np.ndarray | None = None
                   ) -> Figure:
    from matplotlib.lines import Line2D

    panels = _taylor_panels(grid, withheld)
    fig = _figure(figsize=(9.5, 4.6), layout="constrained")
    axes = [cast("PolarAxes", fig.add_subplot(1, len(panels), i + 1, projection="polar"))
            for i in range(len(panels))]
    colours = {m: f"C{i % 10}" for i, m in enumerate(preds)}
    markers = {m: "osD^v<>ph8"[(i // 10) % 10] for i, m in enumerate(preds)}
    corr = np.array([0.0, 0.2, 0.4, 0.6, 0.8, 0.9, 0.95, 0.99, 1.0])
    for ax, (title, months, ref) in zip(axes, panels, strict=True):
        ax.set_thetamin(0)
        ax.set_thetamax(90)
        ax.set_thetagrids(np.degrees(np.arccos(corr)), labels=[f"{c:g}" for c in corr],
                          fontsize=7)
        ax.tick_params(labelsize=7)
        ax.set_title(title, fontsize=9, pad=14)
        ax.text(0.5, -0.1, "normalised standard deviation", transform=ax.transAxes,
                ha="center", va="top", fontsize=8)
        ax.text(np.radians(50), 1.18, "correlation", transform=ax.get_xaxis_transform(),
                rotation=-40, ha="center", va="center", fontsize=8)
        if ref is None or not months.any():
            ax.set_rmax(1.5)
            _say(ax, "no reference months" if ref is not None else "no reference")
            continue
        r_ref = ref[months]
        left_out, smax = [], 1.0
        for model, values in preds.items():
            p = np.asarray(values)[months]
            ok = np.isfinite(p) & np.isfinite(r_ref)
            if ok.sum() < 3 or r_ref[ok].std() == 0:
                left_out.append(model)
                continue
            r = np.corrcoef(p[ok], r_ref[ok])[0, 1]
            s = p[ok].std() / r_ref[ok].std()
            smax = max(smax, s)
            ax.plot(np.arccos(np.clip(r, 0, 1)), s, markers[model], color=colours[model],
                    ms=6)
        ax.plot(0, 1, "k*", ms=12, clip_on=False)
        ax.set_rmax(1.1 * max(smax, 1.2))
        if left_out:
            names = [", ".join(left_out[i:i + 3]) for i in range(0, len(left_out), 3)]
            ax.text(0.5, -0.18, "no prediction: " + ",\n".join(names), ha="center", va="top",
                    transform=ax.transAxes, fontsize=7)
    handles = [Line2D([], [], ls="", marker=markers[m], color=colours[m], label=m)
               for m in preds]
    handles.append(Line2D([], [], ls="", marker="*", color="k", ms=10, label="reference"))
    fig.legend(handles=handles, loc="outside right upper", fontsize=7)
    fig.suptitle("Taylor diagrams, pooled over months and cells", fontsize=10)
    return fig


def figure_taylor(grid: xr.Dataset, preds: dict, figs: Path,
                  withheld: bool | np.ndarray | None = None) -> list[str]:
    """Taylor diagrams of the two tasks, side by side, written to ``taylor.png``.

    Parameters
    ----------
    grid
        The run's ``grid.nc``.
    preds
        ``{model: (months, cells)}`` in mm, NaN where a model does not predict.
    figs
        Folder to write into.
    withheld
        Only used without a truth: the months whose GRACE was withheld from every model
        (a boolean month mask, or True for ``split_test_block``). The gapfill panel then
        compares with that GRACE; without it the gapfill panel has no reference.

    Returns
    -------
    list of str
        ``["taylor.png"]``.
    """
    return [save(_taylor_figure(grid, preds, withheld), figs / "taylor.png")]


# ---- leaderboard and speed -----------------------------------------------------------------

def _leaderboard_figure(board: pd.DataFrame, rank: str, task: str) -> Figure:
    rows = board[np.isfinite(board[rank].astype(float))]
    fig = _figure(figsize=(6.5, 0.35 * max(len(rows), 2) + 1.2), layout="constrained")
    ax = fig.add_subplot()
    ax.set_title(f"{task}: {rank}", fontsize=10)
    ax.set_xlabel(rank)
    if rows.empty:
        _say(ax, "no model has a score in this task")
        return fig
    y = np.arange(len(rows))[::-1]
    values = rows[rank].astype(float).values
    ax.barh(y, values, color="#4393c3")
    spread_col = f"{rank}_spread"
    spread = (rows[spread_col].astype(float).values if spread_col in rows
              else np.full(len(rows), np.nan))
    ok = np.isfinite(spread)
    if ok.any():
        ax.errorbar(values[ok], y[ok], xerr=spread[ok], fmt="none", ecolor="k", capsize=3)
    ends = values + np.where(values >= 0, 1, -1) * np.nan_to_num(spread)
    for end, value, yi in zip(ends, values, y, strict=True):
        ax.annotate(f"{value:.3g}", (end, yi), xytext=(4 if value >= 0 else -4, 0),
                    textcoords="offset points", ha="left" if value >= 0 else "right",
                    va="center", fontsize=7)
    ax.set_yticks(y, [str(m) for m in rows.index], fontsize=8)
    ax.axvline(0, color="0.3", lw=0.8)
    ax.margins(x=0.15)
    return fig


def figure_leaderboard(board: pd.DataFrame, rank: str, figs: Path,
                       task: str = "downscale") -> list[str]:
    """Bars of ``board[rank]`` in the board's order, written to ``leaderboard_<task>.png``.

    Parameters
    ----------
    board
        One row per model (index), the column ``rank`` and optionally ``<rank>_spread``
        (drawn as error bars; absent or NaN with one seed). Models whose score is NaN take
        no part in the task and are left out.
    rank
        The column to draw.
    figs
        Folder to write into.
    task
        ``"downscale"`` or ``"gapfill"``; names the file and the title.

    Returns
    -------
    list of str
        ``[f"leaderboard_{task}.png"]``.
    """
    return [save(_leaderboard_figure(board, rank, task), figs / f"leaderboard_{task}.png")]


def _speed_figure(board: pd.DataFrame, rank: str, task: str) -> Figure:
    from matplotlib.ticker import FuncFormatter, NullFormatter

    fig = _figure(figsize=(6.5, 4.2), layout="constrained")
    ax = fig.add_subplot()
    ax.set_title(f"{task}: speed against skill", fontsize=10)
    ax.set_xlabel("fit + predict seconds (mean over seeds)")
    ax.set_ylabel(rank)
    seconds = board["seconds"].astype(float)
    skill = board[rank].astype(float)
    rows = board[np.isfinite(seconds) & (seconds > 0) & np.isfinite(skill)]
    if rows.empty:
        _say(ax, "no model has a score in this task")
        return fig
    x, y = rows["seconds"].astype(float).values, rows[rank].astype(float).values
    spread_col = f"{rank}_spread"
    yerr = rows[spread_col].astype(float).values if spread_col in rows else None
    if yerr is not None and np.isfinite(yerr).any():
        ax.errorbar(x, y, yerr=np.nan_to_num(yerr), fmt="none", ecolor="0.5", capsize=2)
    ax.scatter(x, y, color="#2166ac", zorder=3)
    for model, xi, yi in zip(rows.index, x, y, strict=True):
        ax.annotate(str(model), (xi, yi), xytext=(4, 3), textcoords="offset points",
                    fontsize=7)
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    if np.log10(x.max() / x.min()) < 1:  # under a decade: label 2, 3 and 5 times a power
        ax.xaxis.set_minor_formatter(FuncFormatter(
            lambda v, _: f"{v:g}" if round(v / 10 ** np.floor(np.log10(v))) in (2, 3, 5)
            else ""))
    else:
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.margins(x=0.2, y=0.12)
    return fig


def figure_speed(board: pd.DataFrame, rank: str, figs: Path,
                 task: str = "downscale") -> list[str]:
    """Skill ``board[rank]`` against ``board["seconds"]`` (log axis), written to
    ``speed_skill_<task>.png``.

    ``board`` as for :func:`figure_leaderboard`, with a ``seconds`` column; models whose score
    or time is NaN are left out, ``<rank>_spread`` (when present) gives vertical error bars.
    Returns ``[f"speed_skill_{task}.png"]``.
    """
    return [save(_speed_figure(board, rank, task), figs / f"speed_skill_{task}.png")]


# ---- where a model beats the reference -----------------------------------------------------

def _gain_figure(grid: xr.Dataset, gains: dict[str, np.ndarray], reference: str) -> Figure:
    from matplotlib.collections import LineCollection
    from matplotlib.colors import BoundaryNorm, ListedColormap
    from matplotlib.patches import Patch

    n_mascons = grid.sizes["mascon"] if "mascon" in grid.sizes else int(
        grid["cell_mascon"].values.max()) + 1
    cm = grid["cell_mascon"].values
    cmap = ListedColormap(list(GAIN_COLOURS))
    norm = BoundaryNorm([-1.5, -0.5, 0.5, 1.5], cmap.N)
    where = _map_grid(grid)
    extent = where.extent
    edges = _mascon_edges(where, cm)
    fig, axes = _panel_grid(len(gains), 3.4, _map_height(extent, 3.4))
    for ax, (model, gain) in zip(axes.flat, gains.items(), strict=False):
        gain = np.asarray(gain)
        if gain.shape != (n_mascons,):
            raise ValueError(f"gains[{model!r}]: expected {n_mascons} values (one per mascon "
                             f"of the grid), found shape {gain.shape}")
        if not np.isin(gain, (-1, 0, 1)).all():
            raise ValueError(f"gains[{model!r}]: expected values -1, 0 or +1, found "
                             f"{sorted(set(np.unique(gain).tolist()) - {-1, 0, 1})}")
        _draw_field(ax, where, gain[cm], cmap=cmap, norm=norm)
        if len(edges):
            ax.add_collection(LineCollection(list(edges), colors="white", linewidths=0.5,
                                             zorder=2), autolim=False)
        better, worse = float(np.mean(gain == 1)), float(np.mean(gain == -1))
        _map_axes(ax, where, f"{model}: {better:.0%} better, {worse:.0%} worse")
    labels = (f"worse than {reference}", "no significant difference",
              f"better than {reference}")
    fig.legend(handles=[Patch(fc=c, ec="0.5", label=lab)
                        for c, lab in zip(GAIN_COLOURS[::-1], labels[::-1], strict=True)],
               loc="outside lower center", ncol=3, fontsize=8)
    fig.suptitle(f"Per mascon: significantly better or worse than {reference}", fontsize=10)
    return fig


def figure_gain_map(grid: xr.Dataset, gains: dict[str, np.ndarray], figs: Path,
                    reference: str = "mascon") -> list[str]:
    """Maps of where each model beats ``reference``, written to ``gain_<reference>.png``.

    Parameters
    ----------
    grid
        The run's ``grid.nc``.
    gains
        ``{model: (mascons,) int}``, indexed like ``grid.cell_mascon``: +1 significantly
        better than ``reference`` at that mascon, 0 no significant difference, -1
        significantly worse.
    figs
        Folder to write into.
    reference
        The model compared with, named in the file and the legend.

    Returns
    -------
    list of str
        ``[f"gain_{reference}.png"]``.

    Raises
    ------
    ValueError
        When a gain array has the wrong length or values other than -1, 0, +1.
    """
    return [save(_gain_figure(grid, gains, reference), figs / f"gain_{reference}.png")]


def _reliability_figure(table: pd.DataFrame, levels: tuple[int, ...]) -> Figure:
    tasks = [t for t in ("downscale", "gapfill") if t in set(table["split"])]
    fig = _figure(figsize=(4.2 * max(len(tasks), 1) + 1.6, 4.0), layout="constrained")
    axes = fig.subplots(1, max(len(tasks), 1), squeeze=False)[0]
    nominal = np.array(levels, dtype=float)
    models = list(dict.fromkeys(table["model"]))
    colours = {m: f"C{k % 10}" for k, m in enumerate(models)}  # one colour per model
    handles: dict[str, Line2D] = {}
    for ax, task in zip(axes, tasks or ["downscale"], strict=False):
        ax.plot([0, 100], [0, 100], color="0.5", lw=0.8, ls="--")
        ax.set_xlim(0, 100)
        ax.set_ylim(0, 100)
        ax.set_aspect("equal")
        ax.set_xlabel("nominal central interval (%)")
        ax.set_ylabel("observed coverage (%)")
        ax.set_title(f"{task}: reliability of the 1-σ", fontsize=10)
        sel = table[table["split"] == task]
        if sel.empty:
            _say(ax, "no model takes part")
            continue
        for model, rows in sel.groupby("model", sort=False):
            cov = rows.set_index("metric")["value"]
            y = np.array([cov.get(f"coverage_{lv}", np.nan) for lv in levels]) * 100
            (line,) = ax.plot(nominal, y, marker="o", ms=3, lw=1.2, label=str(model),
                              color=colours[str(model)])
            handles.setdefault(str(model), line)
    if handles:
        order = [m for m in models if m in handles]
        fig.legend([handles[m] for m in order], order, loc="outside right upper", fontsize=7)
    return fig


def figure_reliability(table: pd.DataFrame, figs: Path,
                       levels: tuple[int, ...] = (10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 98)
                       ) -> list[str]:
    """Observed coverage of the central intervals of each model's N(μ, σ²) against their
    nominal level, one panel per task, written to ``reliability.png``.

    Parameters
    ----------
    table
        Rows of ``uncertainty.csv`` (model, split, metric ``coverage_<level>``, value) of one
        world and region.
    figs
        Folder to write into.

    Returns
    -------
    list of str
        ``["reliability.png"]``.
    """
    return [save(_reliability_figure(table, levels), figs / "reliability.png")]


def _timeline_figure(timing: pd.DataFrame) -> Figure:
    from matplotlib.patches import Patch

    workers = list(dict.fromkeys(timing["worker"].astype(str)))
    models = list(dict.fromkeys(timing["model"].astype(str)))
    colours = {m: f"C{k % 10}" for k, m in enumerate(models)}
    fig = _figure(figsize=(9.5, 0.45 * len(workers) + 1.6), layout="constrained")
    ax = fig.add_subplot()
    for row in timing.itertuples():
        y = workers.index(str(row.worker))
        ax.barh(y, row.task_end_s - row.task_start_s, left=row.task_start_s, height=0.7,
                color=colours[str(row.model)], edgecolor="white", linewidth=0.5)
    ax.set_yticks(range(len(workers)), workers, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("seconds from the run's start")
    where = "one process" if workers == ["in-process"] else f"{len(workers)} workers"
    ax.set_title(f"fit + predict + score tasks on {where}", fontsize=10)
    fig.legend(handles=[Patch(color=colours[m], label=m) for m in models],
               loc="outside right upper", fontsize=7)
    return fig


def figure_timeline(timing: pd.DataFrame, figs: Path) -> list[str]:
    """One bar per (world, model, seed) task from its start to its end, a row per worker,
    coloured by model, written to ``timeline.png``.

    Parameters
    ----------
    timing
        ``timing.csv``: ``worker``, ``model``, ``task_start_s`` and ``task_end_s`` (seconds
        from the run's start). A table without them (an older run) draws nothing.
    figs
        Folder to write into.

    Returns
    -------
    list of str
        ``["timeline.png"]``, or ``[]`` without task times.
    """
    if not {"worker", "task_start_s", "task_end_s"} <= set(timing.columns):
        return []
    return [save(_timeline_figure(timing), figs / "timeline.png")]


# ---- verdict map ---------------------------------------------------------------------------

#: The dimensions a verdict map is drawn over, in order of preference for its x and y axes.
MAP_DIMENSIONS = ("submascon_skill", "human_ratio", "submascon_share", "submascon_structure",
                  "realism", "seed")
#: Hatching of a world whose leader's lead over the second is not significant.
NOT_SIGNIFICANT_HATCH = "///"


def map_dimensions(table: pd.DataFrame) -> list[str]:
    """The dimensions along which the worlds of a verdict map differ."""
    return [d for d in MAP_DIMENSIONS
            if d in table and table[d].astype(str).nunique(dropna=False) > 1]


def _dimension_values(table: pd.DataFrame, dim: str) -> list:
    values = list(dict.fromkeys(table[dim].where(table[dim].notna(), None)))
    numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    return ([None] if None in values else []) + (sorted(numbers) if len(numbers) == len(
        [v for v in values if v is not None]) else [v for v in values if v is not None])


def _tick(value: object) -> str:
    return "level's own" if value is None else f"{value:g}" if isinstance(value, float) \
        else str(value)


def _position(values: list, value: float) -> float:
    """Where ``value`` falls on an axis of categories ``values`` (numbers, ascending; a
    level's-own category first), linear between them and beyond the ends."""
    numbers = [v for v in values if v is not None]
    first = values.index(numbers[0])
    if len(numbers) == 1:
        return float(first)
    slots = np.arange(first, first + len(numbers), dtype=float)
    if value <= numbers[0]:
        return float(slots[0] + (value - numbers[0]) / (numbers[1] - numbers[0]))
    if value >= numbers[-1]:
        return float(slots[-1] + (value - numbers[-1]) / (numbers[-1] - numbers[-2]))
    return float(np.interp(value, numbers, slots))


def _draw_point(ax: Axes, point: dict[str, tuple[float, float, float]], x_dim: str,
                y_dim: str | None, xs: list, ys: list) -> None:
    """The located inputs: estimate and interval along the panel's axes, clipped to it."""
    def along(dim: str | None, values: list) -> tuple[float, float, float]:
        if dim is None or dim not in point or not any(v is not None for v in values):
            return 0.0, 0.0, 0.0
        return tuple(_position(values, v) for v in point[dim])  # type: ignore[return-value]

    (x, x_lo, x_hi), (y, y_lo, y_hi) = along(x_dim, xs), along(y_dim, ys)
    clip = lambda v, n: float(np.clip(v, -0.45, n - 0.55))  # noqa: E731
    cx, cy = clip(x, len(xs)), clip(y, len(ys))
    ax.errorbar([cx], [cy], xerr=[[cx - clip(x_lo, len(xs))], [clip(x_hi, len(xs)) - cx]],
                yerr=[[cy - clip(y_lo, len(ys))], [clip(y_hi, len(ys)) - cy]], fmt="o",
                color="black", ms=7, mfc="white", mew=2, capsize=4, lw=1.5, zorder=5)


def _verdict_map_figure(table: pd.DataFrame, task: str, colours: dict[str, str],
                        point: dict[str, tuple[float, float, float]] | None = None) -> Figure:
    from matplotlib.patches import Patch, Rectangle

    rows = table[table["task"] == task]
    dims = map_dimensions(table)
    x_dim = dims[0]
    y_dim = dims[1] if len(dims) > 1 else None
    rest = dims[2:]
    panels = list(dict.fromkeys(tuple(_tick(v) for v in r) for r in
                                rows[rest].itertuples(index=False))) if rest else [()]
    xs = _dimension_values(rows, x_dim)
    ys = _dimension_values(rows, y_dim) if y_dim else [None]
    fig, axes = _panel_grid(len(panels), 1.7 * len(xs) + 1.0, 0.9 * len(ys) + 1.0,
                            max_cols=3)
    for ax, panel in zip(axes.flat, panels, strict=False):
        sel = rows
        for dim, tick in zip(rest, panel, strict=True):
            sel = sel[sel[dim].map(lambda v: _tick(None if pd.isna(v) else v)) == tick]
        for _, r in sel.iterrows():
            xv = None if pd.isna(r[x_dim]) else r[x_dim]
            yv = None if y_dim is None or pd.isna(r[y_dim]) else r[y_dim]
            i, j = xs.index(xv), ys.index(yv)
            significant = bool(r["significant"]) if pd.notna(r.get("significant")) else False
            ax.add_patch(Rectangle((i - 0.5, j - 0.5), 1, 1, facecolor=colours[r["leader"]],
                                   edgecolor="white", lw=1.5,
                                   hatch=None if significant else NOT_SIGNIFICANT_HATCH))
            margin = f"\n+{r['margin']:.2f}" if pd.notna(r.get("margin")) else ""
            if r.get("lead") == "reversed":  # the second's monthly loss is significantly lower
                margin += " (loss: reversed)"
            ax.text(i, j, f"{r['leader']}{margin}", ha="center", va="center", fontsize=7,
                    bbox={"facecolor": "white", "alpha": 0.7, "lw": 0, "pad": 1})
        if point:
            _draw_point(ax, point, x_dim, y_dim, xs, ys)
        ax.set_xlim(-0.5, len(xs) - 0.5)
        ax.set_ylim(-0.5, len(ys) - 0.5)
        ax.set_xticks(range(len(xs)), [_tick(v) for v in xs], fontsize=8)
        ax.set_yticks(range(len(ys)), [_tick(v) for v in ys] if y_dim else [""], fontsize=8)
        ax.set_xlabel(x_dim, fontsize=8)
        if y_dim:
            ax.set_ylabel(y_dim, fontsize=8)
        ax.set_title(", ".join(f"{d} {t}" for d, t in zip(rest, panel, strict=True)),
                     fontsize=9)
    metric = rows["metric"].iloc[0] if len(rows) else ""
    fig.suptitle(f"{task}: the leader in each world\n(+ its margin over the second on {metric})",
                 fontsize=9)
    handles: list[Artist] = [Patch(facecolor=c, label=m) for m, c in colours.items()
                             if m in set(rows["leader"])]
    handles.append(Patch(facecolor="white", edgecolor="0.3", hatch=NOT_SIGNIFICANT_HATCH,
                         label="lead not significant\nor reversed (block\nbootstrap, 95%)"))
    if point:
        from matplotlib.lines import Line2D

        handles.append(Line2D([], [], marker="o", color="black", mfc="white", mew=2, ls="",
                              label="these inputs: estimate\nand interval (inspect --locate)"))
    fig.legend(handles=handles, loc="outside lower center", fontsize=7, frameon=False,
               ncol=min(len(handles), 3))
    return fig


def figure_verdict_map(table: pd.DataFrame, figs: Path,
                       point: dict[str, tuple[float, float, float]] | None = None,
                       name: str = "verdict_map") -> list[str]:
    """For each task, which model leads in each world of a run over several worlds, hatched
    where its lead over the second is not significant, with the margin; written to
    ``verdict_map_<task>.png``. Nothing when the worlds do not differ along any dimension
    of :data:`MAP_DIMENSIONS`.

    Parameters
    ----------
    table
        ``verdict_map.csv`` (:func:`twsbench.scoring.comparisons.verdict_map`).
    figs
        Folder to write into.
    point
        Where a run's inputs sit: ``{axis: (estimate, low, high)}``, drawn on every panel.
    name
        Start of the file names (``<name>_<task>.png``).
    """
    if table.empty or not map_dimensions(table):
        return []
    import matplotlib as mpl

    palette = [mpl.colormaps["tab10"](k) for k in range(10)]
    leaders = sorted(set(table["leader"]))
    colours = {m: mpl.colors.to_hex(palette[k % len(palette)]) for k, m in enumerate(leaders)}
    return [save(_verdict_map_figure(table, task, colours, point), figs / f"{name}_{task}.png")
            for task in dict.fromkeys(table["task"])]
