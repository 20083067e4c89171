"""The report's figures as a reader sees them: files written, nothing clipped, blank panels that
say why, the gain map's shares, offline coastlines.

Fixture chain: a small grid dataset like a run's ``grid.nc`` (real land over the Bay of Bengal,
3° mascons, 100 months with every split, a truth) -> three fake models' predictions -> a
leaderboard table.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib
import matplotlib.image
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from matplotlib.figure import Figure
from matplotlib.legend import Legend
from matplotlib.text import Text

from twsbench.core.landmask import land_mask
from twsbench.report import figures

matplotlib.use("Agg")

N_MONTHS = 100
TEST_BLOCK = slice(72, 83)  # 11 held-out months
GAP = slice(88, 100)  # no GRACE at all
SCATTERED = np.arange(5, 60, 10)  # downscale test months among the training years


# ---- fixtures --------------------------------------------------------------------------------

def make_grid(truth: bool = True) -> xr.Dataset:
    """A ``grid.nc``-like dataset: 0.5° land cells of 18–27°N, 78–93°E in 3° mascons."""
    lat = np.arange(18.25, 27.0, 0.5)
    lon = np.arange(78.25, 93.0, 0.5)
    land = land_mask(lat, lon).ravel()
    cell_index = np.flatnonzero(land)
    la = np.repeat(lat, lon.size)[cell_index]
    lo = np.tile(lon, lat.size)[cell_index]
    block = (np.floor((la - 18) / 3) * 100 + np.floor((lo - 78) / 3)).astype(int)
    ids, cell_mascon = np.unique(block, return_inverse=True)
    months = np.arange(np.datetime64("2002-04"), np.datetime64("2002-04") + N_MONTHS)
    n = N_MONTHS
    split = {k: np.zeros(n, bool) for k in ("train", "validation", "test", "test_block",
                                            "test_scattered", "gap")}
    split["test_block"][TEST_BLOCK] = True
    split["gap"][GAP] = True
    split["test_scattered"][SCATTERED] = True
    split["validation"][60:72] = True
    split["train"][:60] = True
    split["train"][SCATTERED] = False
    split["train"][83:88] = True
    split["test"] = split["test_block"] | split["test_scattered"]
    has_grace = ~split["gap"]
    rng = np.random.default_rng(0)
    t = np.arange(n)[:, None]
    signal = (80 * np.sin(2 * np.pi * t / 12 + lo / 10) - (la > 24) * 1.5 * t
              + rng.normal(0, 10, (n, la.size)))
    grace = np.stack([signal[:, cell_mascon == m].mean(1) for m in range(ids.size)], axis=1)
    grace[~has_grace] = np.nan
    ds = xr.Dataset(
        {"cell_index": ("cell", cell_index), "cell_mascon": ("cell", cell_mascon),
         "cell_area": ("cell", np.cos(np.radians(la))),
         "has_grace": ("month", has_grace.astype("i1")),
         "grace": (("month", "mascon"), grace.astype(np.float32)),
         **{f"split_{k}": ("month", v.astype("i1")) for k, v in split.items()}},
        coords={"lat": lat, "lon": lon, "month": months.astype("datetime64[ns]")})
    if truth:
        ds["truth"] = (("month", "cell"), signal.astype(np.float32))
    return ds


def make_preds(grid: xr.Dataset) -> dict[str, np.ndarray]:
    """``good`` and ``biased`` predict every month; ``needs_grace`` only where a model may use
    the month's GRACE (NaN in the gap and the held-out blocks)."""
    rng = np.random.default_rng(1)
    truth = grid["truth"].values if "truth" in grid else grid["grace"].values[
        :, grid["cell_mascon"].values]
    needs = grid["grace"].values[:, grid["cell_mascon"].values].astype(float)
    needs[grid["split_test_block"].values.astype(bool)] = np.nan
    return {"good": np.nan_to_num(truth) + rng.normal(0, 8, truth.shape),
            "needs_grace": needs, "biased": 0.7 * np.nan_to_num(truth) + 5.0}


def make_board(spread: bool = True, nan: bool = False) -> pd.DataFrame:
    board = pd.DataFrame({"nse": [0.91, 0.85, 0.6], "seconds": [12.0, 0.4, 3.0]},
                         index=pd.Index(["good", "needs_grace", "biased"], name="model"))
    if spread:
        board["nse_spread"] = [0.01, np.nan, 0.03]
    if nan:
        board.loc["needs_grace", "nse"] = np.nan
    return board


@pytest.fixture(scope="module")
def grid() -> xr.Dataset:
    return make_grid()


@pytest.fixture(scope="module")
def preds(grid) -> dict[str, np.ndarray]:
    return make_preds(grid)


def gains_for(grid: xr.Dataset) -> dict[str, np.ndarray]:
    n = grid.sizes["mascon"]
    rng = np.random.default_rng(2)
    return {"good": np.where(np.arange(n) < n // 2, 1, 0),
            "needs_grace": rng.choice([-1, 0, 1], n),
            "biased": -np.ones(n, int)}


# ---- the clipping check ----------------------------------------------------------------------

@dataclass
class Drawn:
    """What one draw of a figure put on its canvas, in the canvas's pixels."""

    width: float
    height: float
    boxes: list[tuple[str, object]] = field(default_factory=list)  # (description, Bbox)


@contextlib.contextmanager
def drawn_into_files() -> Iterator[dict[str, Drawn]]:
    """Record, for each file a figure is saved to inside the block, the bounding box of every
    text (titles, labels, tick labels, annotations) and legend drawn into it.

    ``savefig`` may draw a figure more than once (a tight box is measured on a draw); the last
    draw is the one written, and its coordinates are the saved image's pixels, since
    ``bbox_inches`` moves the figure's origin to the corner of the saved box.
    """
    passes: list[Drawn] = []
    out: dict[str, Drawn] = {}
    fig_draw, text_draw, legend_draw, savefig = (Figure.draw, Text.draw, Legend.draw,
                                                 Figure.savefig)

    def on_figure(self, renderer):
        passes.append(Drawn(*renderer.get_canvas_width_height()))
        return fig_draw(self, renderer)

    def on_text(self, renderer):
        result = text_draw(self, renderer)
        if passes and self.get_visible() and self.get_text().strip():
            passes[-1].boxes.append((f"text {self.get_text()!r}",
                                     self.get_window_extent(renderer)))
        return result

    def on_legend(self, renderer):
        result = legend_draw(self, renderer)
        if passes and self.get_visible():
            passes[-1].boxes.append(("legend", self.get_window_extent(renderer)))
        return result

    def on_save(self, fname, *args, **kwargs):
        passes.clear()
        result = savefig(self, fname, *args, **kwargs)
        out[str(fname)] = passes[-1]
        return result

    Figure.draw, Text.draw, Legend.draw, Figure.savefig = (on_figure, on_text, on_legend,
                                                          on_save)
    try:
        yield out
    finally:
        Figure.draw, Text.draw, Legend.draw, Figure.savefig = (fig_draw, text_draw,
                                                              legend_draw, savefig)


def assert_inside_canvas(drawn: dict[str, Drawn], tol: float = 1.0) -> None:
    """Every recorded box lies inside its saved image (whose size is read from the file)."""
    assert drawn, "no figure was saved"
    problems = []
    for path, d in drawn.items():
        height, width = matplotlib.image.imread(path).shape[:2]
        assert abs(width - d.width) <= 1 and abs(height - d.height) <= 1, (
            f"{path}: the last draw was {d.width}x{d.height} px, the file {width}x{height}")
        for what, box in d.boxes:
            if (box.x0 < -tol or box.y0 < -tol or box.x1 > width + tol  # type: ignore[attr-defined]
                    or box.y1 > height + tol):  # type: ignore[attr-defined]
                problems.append(f"{Path(path).name}: {what} at {box} outside {width}x{height}")
    assert not problems, "clipped:\n" + "\n".join(problems)


def test_clip_check_catches_a_legend_outside_the_canvas(tmp_path):
    # the layout of the old Taylor diagram: a legend anchored outside, tight_layout, plain save
    fig = Figure(figsize=(6, 5))
    ax = fig.add_subplot(projection="polar")
    ax.set_thetamax(90)
    for i in range(6):
        ax.plot(0.3 * i, 1, "o", label=f"model_{i}")
    ax.legend(fontsize=7, loc="upper right", bbox_to_anchor=(1.45, 1.0))
    fig.tight_layout()
    with drawn_into_files() as drawn:
        fig.savefig(tmp_path / "clipped.png", dpi=80)
    with pytest.raises(AssertionError, match="legend"):
        assert_inside_canvas(drawn)
    with drawn_into_files() as drawn:
        figures.save(fig, tmp_path / "kept.png")
    assert_inside_canvas(drawn)


# ---- every figure --------------------------------------------------------------------------

def test_every_figure_writes_its_files_unclipped(tmp_path, grid, preds):
    meta = {"config": {"report": {"map_months": []}}}
    with drawn_into_files() as drawn:
        names = figures.figure_maps(tmp_path, grid, preds, meta, tmp_path)
        names += figures.figure_series(grid, preds, tmp_path)
        names += figures.figure_taylor(grid, preds, tmp_path)
        names += figures.figure_gain_map(grid, gains_for(grid), tmp_path)
        for task, board in (("downscale", make_board()), ("gapfill", make_board(False, True))):
            names += figures.figure_leaderboard(board, "nse", tmp_path, task=task)
            names += figures.figure_speed(board, "nse", tmp_path, task=task)
    months = grid["month"].values.astype("datetime64[M]")
    expected = {"series_hotspots.png", "taylor.png", "gain_mascon.png",
                "leaderboard_downscale.png", "leaderboard_gapfill.png",
                "speed_skill_downscale.png", "speed_skill_gapfill.png"}
    for k in (SCATTERED[SCATTERED.size // 2], 77, 94):  # middle of each map split
        expected |= {f"map_{months[k]}.png", f"map_{months[k]}_error.png"}
    assert set(names) == expected
    assert all((tmp_path / n).stat().st_size > 1000 for n in names)
    assert len(drawn) == len(names)
    assert_inside_canvas(drawn)


def _texts(fig: Figure) -> list[str]:
    return [" ".join(t.get_text().split()) for t in fig.findobj(Text) if t.get_text()]


def test_map_panels_without_data_say_why(grid, preds):
    maps = dict(figures._map_figures(grid, preds, {"config": {"report": {"map_months": []}}}))
    months = grid["month"].values.astype("datetime64[M]")
    down, block, gap = (months[k] for k in (SCATTERED[SCATTERED.size // 2], 77, 94))

    def panel_says(name: str, model: str) -> list[str]:
        ax = next(a for a in maps[name].axes if a.get_title().startswith(model))
        return [" ".join(t.get_text().split()) for t in ax.texts]

    assert panel_says(f"map_{block}.png", "needs_grace") == [
        "no prediction: needs the month's GRACE (withheld)"]
    assert panel_says(f"map_{block}_error.png", "needs_grace") == [
        "no prediction: needs the month's GRACE (withheld)"]
    assert panel_says(f"map_{gap}.png", "needs_grace") == [
        "no prediction: needs the month's GRACE (none this month)"]
    assert panel_says(f"map_{down}.png", "needs_grace") == []  # has data: an image, no note
    assert panel_says(f"map_{block}.png", "good") == []
    assert maps[f"map_{down}.png"]._suptitle.get_text().endswith("· downscale")
    assert maps[f"map_{block}.png"]._suptitle.get_text().endswith("gapfill, GRACE withheld")
    assert maps[f"map_{gap}.png"]._suptitle.get_text().endswith("gapfill, no GRACE")
    # the GRACE panel is absent without GRACE and marked when it was withheld
    assert not any("GRACE (mascons)" in t for t in _texts(maps[f"map_{gap}.png"]))
    assert "GRACE (mascons, withheld from models)" in _texts(maps[f"map_{block}.png"])


def test_map_months_from_the_config(grid, preds):
    meta = {"config": {"report": {"map_months": ["2003-01", "2099-01"]}}}
    maps = figures._map_figures(grid, preds, meta)
    assert [name for name, _ in maps] == ["map_2003-01.png", "map_2003-01_error.png"]
    assert maps[0][1]._suptitle.get_text().endswith("downscale (train month)")


def test_taylor_has_a_panel_per_task(grid, preds):
    fig = figures._taylor_figure(grid, preds)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0].startswith("downscale") and titles[1].startswith("gapfill")
    # the model that needs GRACE is in the downscale panel and named as absent in gapfill
    assert len(fig.axes[0].lines) == len(preds) + 1  # models + the reference star
    assert len(fig.axes[1].lines) == len(preds)
    assert ["no prediction: needs_grace"] == [t.get_text() for t in fig.axes[1].texts
                                              if t.get_text().startswith("no prediction")]


def test_taylor_without_truth_says_what_it_compares(tmp_path):
    grid = make_grid(truth=False)
    preds = make_preds(grid)
    plain = figures._taylor_figure(grid, preds)
    assert "consistency with GRACE" in plain.axes[0].get_title()
    assert "no reference" in " ".join(_texts(plain))
    withheld = figures._taylor_figure(grid, preds, withheld=True)
    assert "withheld GRACE" in withheld.axes[1].get_title()
    assert len(withheld.axes[1].lines) == len(preds)  # good, biased and the star
    assert figures.figure_taylor(grid, preds, tmp_path,
                                 withheld=grid["split_test_block"].values.astype(bool)) == [
        "taylor.png"]


def test_leaderboard_and_speed_leave_out_what_takes_no_part():
    board = make_board(spread=False, nan=True)
    bars = figures._leaderboard_figure(board, "nse", "gapfill")
    ticks = bars.axes[0].get_yticklabels()
    labels = [t.get_text() for t in sorted(ticks, key=lambda t: -t.get_position()[1])]
    assert labels == ["good", "biased"]  # the board's order, top down, NaN left out
    speed = figures._speed_figure(board, "nse", "gapfill")
    assert sorted(t.get_text() for t in speed.axes[0].texts) == ["biased", "good"]
    empty = board.assign(nse=np.nan)
    assert "no model has a score in this task" in _texts(
        figures._leaderboard_figure(empty, "nse", "gapfill"))


def test_gain_map_titles_give_the_shares(grid):
    gains = gains_for(grid)
    fig = figures._gain_figure(grid, gains, "mascon")
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert len(titles) == len(gains)
    for title, (model, g) in zip(titles, gains.items(), strict=True):
        better, worse = re.fullmatch(rf"{model}: (\d+)% better, (\d+)% worse", title).groups()
        assert int(better) == round(100 * np.mean(g == 1))
        assert int(worse) == round(100 * np.mean(g == -1))
    n = grid.sizes["mascon"]
    assert titles[0].startswith(f"good: {round(100 * (n // 2) / n)}% better")
    assert titles[2] == "biased: 0% better, 100% worse"
    legend = " ".join(_texts(fig))
    assert "better than mascon" in legend and "worse than mascon" in legend
    with pytest.raises(ValueError, match="one per mascon"):
        figures._gain_figure(grid, {"x": np.zeros(3, int)}, "mascon")


def test_coastline_over_land_and_ocean():
    fig = Figure()
    ax = fig.add_subplot()
    asia = figures.coastline(ax, (60.0, 100.0, 5.0, 40.0))
    assert len(asia) > 5 and sum(len(s) for s in asia) > 500
    lon, lat = np.concatenate(asia).T
    assert lon.min() > 59 and lon.max() < 101 and lat.min() > 4 and lat.max() < 41
    assert len(ax.collections) == 1
    assert figures.coastline(ax, (80.0, 90.0, -15.0, -10.0)) == ()  # open Indian Ocean
    assert figures.coastline(ax, [60, 100, 5, 40]) is asia  # cached per extent


def test_series_shade_the_gapfill_months(grid, preds):
    fig = figures._series_figure(grid, preds)
    (legend,) = fig.legends
    names = [t.get_text() for t in legend.get_texts()]
    assert names[:2] == ["gapfill: GRACE withheld (held-out blocks)", "gapfill: no GRACE (gap)"]
    assert {"truth", "GRACE (mascon)", *preds} <= set(names)
    years = 1970 + (grid["month"].values.astype("datetime64[M]").astype(int) + 0.5) / 12
    spans = sorted((p.get_x(), p.get_x() + p.get_width()) for p in fig.axes[0].patches)
    np.testing.assert_allclose(spans, [(years[72] - 1 / 24, years[82] + 1 / 24),
                                       (years[88] - 1 / 24, years[99] + 1 / 24)])
