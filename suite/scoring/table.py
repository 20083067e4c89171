"""The long scores table: every score of one prediction, by split and region.

The splits are the two tasks' test months (``downscale``; ``gapfill`` and its parts
``gapfill_withheld`` and ``gapfill_nograce``, see :mod:`twsbench.core.splits`) and the months models
learn from (``train``, ``validation``), where agreement with GRACE is consistency, not skill.

A score's name says what it compares: ``<metric>_mascon_grace`` (mascon means ``A ŷ`` against
GRACE, mascon-area weights: in ``gapfill`` months the GRACE withheld from every model, in all
other months GRACE the models were given), ``<metric>_fine_truth`` (cells against the twin's
truth, cell-area weights), ``nse_submascon_truth`` (the NSE of the sub-mascon deviations
``D ŷ`` against ``D y``: what downscaling adds), ``trend_error_hotspot_truth`` (RMS error of
the sub-mascon trend at hotspot cells, whose truth trend departs from their mascon's by more
than ``[ranking] hotspot_trend`` mm/yr over the whole period), ``r_submascon_<source>``
(per-month spatial correlation of ``D ŷ`` with ``D`` of WaterGAP, ERA5 storage or the truth)
and ``conservation_residual`` (mean ``|A ŷ − g|``, mm). Scores against a truth exist only when
one is given.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from twsbench.core import kernels
from twsbench.core.config import Ranking
from twsbench.core.splits import TASK_SPLITS
from twsbench.prepare.grids import Grids
from twsbench.scoring.metrics import METRICS, shared_work, trend_per_unit

COLUMNS = ("run_id", "model", "seed", "split", "region", "metric", "value", "higher_is_better")
SPLITS = ("train", "validation", *TASK_SPLITS)
HOTSPOT_TREND = Ranking.hotspot_trend  # mm/yr, the default of [ranking] hotspot_trend
MONTHLY_COLUMNS = ("model", "seed", "month", "split", "metric", "value")


@dataclass(frozen=True)
class Score:
    name: str
    metric: str
    kind: str  # mascon_grace | fine_truth | submascon | conservation


def _scores() -> list[Score]:
    out = []
    for metric, label in (("rmse", "rmse"), ("bias", "bias"), ("pearson_r", "r"),
                          ("nse", "nse"), ("variance_kept", "variance_kept")):
        out.append(Score(f"{label}_mascon_grace", metric, "mascon_grace"))
    out.append(Score("conservation_residual", "conservation_residual", "conservation"))
    out.append(Score("conservation_residual_max", "conservation_residual_max", "conservation"))
    for metric, label in (("nse", "nse"), ("nse_mean", "nse_mean"), ("kge", "kge"),
                          ("kge_r", "kge_r"), ("kge_alpha", "kge_alpha"),
                          ("kge_beta_std", "kge_beta_std"), ("rmse", "rmse"),
                          ("pearson_r", "r"), ("trend_error", "trend_error"),
                          ("annual_amplitude_error", "annual_amplitude_error"),
                          ("annual_phase_error", "annual_phase_error")):
        out.append(Score(f"{label}_fine_truth", metric, "fine_truth"))
    out.append(Score("submascon_variance_ratio_truth", "submascon_variance_ratio", "submascon"))
    out.append(Score("nse_submascon_truth", "submascon_nse", "submascon"))
    out.append(Score("trend_error_hotspot_truth", "submascon_trend_error", "hotspot"))
    return out


SCORES = _scores()
SOURCES = {"wghm": "wghm", "era5": "era5_storage"}


def higher_is_better(name: str) -> bool | None:
    """Direction of a score name in the table."""
    if name.startswith("r_submascon_"):
        return True
    for s in SCORES:
        if s.name == name:
            return METRICS.get(s.metric).higher_is_better
    raise KeyError(name)


def regions(grids: Grids) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Region name -> (cell mask, mascon mask): the domain, 15° latitude bands, and mascons
    below and above the median land area. A region keeps whole mascons (by centroid)."""
    m = grids.mascons
    clat, _ = m.centroids(grids.cell_lat, grids.cell_lon)
    out = {"domain": (np.ones(grids.n_cells, bool), np.ones(m.n_mascons, bool))}
    for south in range(-90, 90, 15):
        sel = (clat >= south) & (clat < south + 15)
        if sel.sum() >= 5 and not sel.all():
            tag = lambda v: f"{abs(v)}{'S' if v < 0 else 'N'}"  # noqa: E731
            out[f"lat_{tag(south)}_{tag(south + 15)}"] = (sel[m.cell_mascon], sel)
    area = m.area()
    if m.n_mascons >= 10:
        small = area < np.median(area)
        out["mascons_small"] = (small[m.cell_mascon], small)
        out["mascons_large"] = (~small[m.cell_mascon], ~small)
    return out


@dataclass(frozen=True)
class _Region:
    """A region's own cells, mascons, rows of ``A`` and weights (a region holds whole
    mascons, so its ``A`` rows are complete); the domain uses the full arrays."""

    name: str
    cells: np.ndarray | None  # cell indices; None for the whole domain
    mascons: np.ndarray | None
    A: object
    cell_mascon: np.ndarray
    cell_area: np.ndarray
    mascon_area: np.ndarray

    @classmethod
    def of(cls, grids: Grids, name: str, cell_mask: np.ndarray,
           mascon_mask: np.ndarray) -> _Region:
        m, area = grids.mascons, grids.mascons.area()
        if cell_mask.all():
            return cls(name, None, None, m.A, m.cell_mascon, grids.cell_area, area)
        ci, mi = np.flatnonzero(cell_mask), np.flatnonzero(mascon_mask)
        return cls(name, ci, mi, m.A[mi][:, ci], np.searchsorted(mi, m.cell_mascon[ci]),
                   grids.cell_area[ci], area[mi])

    def cells_of(self, x: np.ndarray | None) -> np.ndarray | None:
        return x if x is None or self.cells is None else x[:, self.cells]

    def mascons_of(self, x: np.ndarray) -> np.ndarray:
        return x if self.mascons is None else x[:, self.mascons]


def hotspots(grids: Grids, truth: np.ndarray, threshold: float = HOTSPOT_TREND
             ) -> np.ndarray:
    """Boolean per cell: the truth's trend over every month departs from its mascon's
    (area-weighted) by more than ``threshold`` mm/yr."""
    m = grids.mascons
    trend = trend_per_unit(truth, grids.months)
    ok = np.isfinite(trend)
    trend = np.where(ok, trend, 0.0)
    mean = kernels.apply_A(m.A, trend[None])[0]
    return ok & (np.abs(trend - mean[m.cell_mascon]) > threshold)


def score_prediction(grids: Grids, cells: np.ndarray, truth: np.ndarray | None,
                     model: str, seed: int, run_id: str, grace: np.ndarray | None = None,
                     hotspot_trend: float = HOTSPOT_TREND
                     ) -> tuple[list[tuple], list[tuple]]:
    """Rows of the scores table and of the monthly table for one prediction.

    ``cells`` and ``truth`` are ``(months, cells)`` over all of ``grids.months``; ``grace``
    is the GRACE to compare with, ``(months, mascons)`` (default ``grids.grace``; a run passes
    the reference of :meth:`twsbench.prepare.grids.Grids.withhold`, which includes the withheld
    months).
    """
    m = grids.mascons
    grace = grids.grace if grace is None else grace
    pred_m = kernels.apply_A(m.A, np.nan_to_num(cells, nan=np.nan))
    rows: list[tuple] = []
    views = [_Region.of(grids, name, *masks) for name, masks in regions(grids).items()]
    hot = hotspots(grids, truth, hotspot_trend) if truth is not None else None
    for split in SPLITS:
        months = grids.splits.get(split)
        if months is None or not months.any():
            continue
        years, month_axis = _years(grids.months[months]), grids.months[months]
        split_cells, p_all, g_all = cells[months], pred_m[months], grace[months]
        split_truth = truth[months] if truth is not None else None
        split_fields = {label: grids.fields[field][months] for label, field in SOURCES.items()}
        for view in views:
            with shared_work():  # the scores below share deviations, harmonics, moments
                values = _view_scores(view, split_cells, split_truth, p_all, g_all,
                                      split_fields, years, month_axis, hot)
            for name, value in values.items():
                rows.append((run_id, model, seed, split, view.name, name, float(value),
                             higher_is_better(name)))
    return rows, monthly_rows(grids, cells, pred_m, truth, model, seed, grace)


def _view_scores(view: _Region, split_cells: np.ndarray, split_truth: np.ndarray | None,
                 p_all: np.ndarray, g_all: np.ndarray, split_fields: dict[str, np.ndarray],
                 years: np.ndarray, month_axis: np.ndarray, hot: np.ndarray | None
                 ) -> dict[str, float]:
    """Every score of one split's prediction over one region."""
    A, cm, wc, wm = view.A, view.cell_mascon, view.cell_area, view.mascon_area
    c, t = view.cells_of(split_cells), view.cells_of(split_truth)
    p, g = view.mascons_of(p_all), view.mascons_of(g_all)
    values: dict[str, float] = {}
    for s in SCORES:
        metric = METRICS.get(s.metric)
        if s.kind == "mascon_grace":
            values[s.name] = metric(p, g, wm)
        elif s.kind == "conservation":
            values[s.name] = metric(c, g, A, wm)
        elif t is not None and s.kind == "fine_truth":
            if s.metric == "trend_error":
                values[s.name] = metric(c, t, years, wc)
            elif s.metric.startswith("annual_"):
                values[s.name] = metric(c, t, month_axis, wc)
            else:
                values[s.name] = metric(c, t, wc)
        elif t is not None and s.kind == "submascon":
            values[s.name] = metric(c, t, A, cm, wc)
        elif t is not None and hot is not None and s.kind == "hotspot":
            hot_cells = hot if view.cells is None else hot[view.cells]
            values[s.name] = metric(c, t, A, cm, years, wc * hot_cells)
    corr = METRICS.get("mean_spatial_correlation")
    for label, field in split_fields.items():
        values[f"r_submascon_{label}"] = corr(c, view.cells_of(field), A, cm, wc)
    if t is not None:
        values["r_submascon_truth"] = corr(c, t, A, cm, wc)
    return values


def _monthly_mse(err2: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Area-weighted mean of squared errors per month over the finite entries; NaN for a
    month with none."""
    ok = np.isfinite(err2)
    total = (ok * w).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, (np.where(ok, err2, 0.0) * w).sum(1) / total, np.nan)


def monthly_rows(grids: Grids, cells: np.ndarray, pred_m: np.ndarray, truth: np.ndarray | None,
                 model: str, seed: int, grace: np.ndarray | None = None) -> list[tuple]:
    """Per-month errors (area-weighted mean squared errors, mm²) for the block bootstrap:
    ``mse_mascon_grace`` (against ``grace``), and with a truth ``mse_fine_truth`` and
    ``mse_submascon_truth`` (of ``D ŷ`` against ``D y``)."""
    grace = grids.grace if grace is None else grace
    split_of = np.full(grids.months.size, "", dtype=object)
    for split in ("train", "validation", "downscale", "gapfill"):
        split_of[grids.splits[split]] = split
    series = {"mse_mascon_grace": _monthly_mse((pred_m - grace) ** 2, grids.mascons.area())}
    if truth is not None:
        m = grids.mascons
        w = grids.cell_area
        series["mse_fine_truth"] = _monthly_mse((cells - truth) ** 2, w)
        covered = np.isfinite(cells).all(1)
        dev = np.full_like(cells, np.nan)
        dev[covered] = (kernels.deviation(m.A, m.cell_mascon, cells[covered])
                        - kernels.deviation(m.A, m.cell_mascon, truth[covered]))
        series["mse_submascon_truth"] = _monthly_mse(dev**2, w)
    out = []
    for name, values in series.items():
        for k, month in enumerate(grids.months.astype(str)):
            out.append((model, seed, month, split_of[k], name, float(values[k])))
    return out


def _years(months: np.ndarray) -> np.ndarray:
    return 1970.0 + (months.astype("datetime64[M]").astype(int) + 0.5) / 12.0
