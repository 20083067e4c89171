"""How the inputs relate to GRACE (and, in a twin, to the truth), measured from the files.

The statistics a real study can also compute (WaterGAP against GRACE at mascon scale, by
climate zone) are printed beside their published values, so a twin world can be checked
against reality; the ones only a twin has (sub-mascon agreement with the truth, GRACE's
actual error against its stated σ) say how much the inputs know of the answer.

Everything here reads the written files through the suite's readers, never a twin's memory.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from twsbench.core import landmask
from twsbench.core import months as mo
from twsbench.core.config import Axes
from twsbench.core.mascons import Mascons, mascons_on_grid
from twsbench.inputs import read_era5, read_grace, read_truth, read_wghm
from twsbench.scoring import metrics
from twsbench.twin.world import ZONE_NAMES, climate_zone

#: Published values of the statistics observable on real files: (what, value, source).
#: The README's "Realism levels" table cites the same sources.
PUBLISHED = {
    "nse": ("no basin median reached; models 'do not compare well with GRACE even in basins "
            "within the same climate zone'", "Bibi et al. 2024, HESS 28:1725, abstract"),
    "r": ("not quantified in the sources reached", "-"),
    "amp_ratio": ("> 1 in most boreal basins, < 1 in tropical, arid and temperate ones",
                  "Bibi et al. 2024, HESS 28:1725, abstract"),
    "phase_diff": ("-2 to -3 months cold (the model leads), +1 temperate and arid, "
                   "about 0 tropical", "Bibi et al. 2024, HESS 28:1725, abstract"),
    "trend_diff": ("large declining and rising trends greatly underestimated",
                   "Scanlon et al. 2018, PNAS 115:E1080, abstract"),
    "beats_climatology": ("62 % of 189 basins (water-budget storage change, not a model)",
                          "Lehmann et al. 2022, HESS 26:35, abstract"),
    "wghm_ds_error": ("17-28 mm (5 global models, triple collocation)",
                      "van Dijk et al. 2014, HESS 18:2955, abstract"),
    "grace_ds_error": ("11-12 mm (4 GRACE products, triple collocation)",
                       "van Dijk et al. 2014, HESS 18:2955, abstract"),
}

#: Column order of the per-mascon table.
MASCON_STATS = ("r", "nse", "amp_ratio", "phase_diff", "trend_diff", "beats_climatology")
#: How each is summarised over mascons: medians, except the share beating GRACE's climatology
#: (a mean of 0/1).
_HOW = {k: "mean" if k == "beats_climatology" else "median" for k in MASCON_STATS}


@dataclass
class Calibration:
    """Per-mascon statistics of WaterGAP against GRACE and, with a truth, the twin's own."""

    per_mascon: pd.DataFrame  # zone, r, nse, amp_ratio, phase_diff, trend_diff
    twin: dict[str, float] = field(default_factory=dict)
    #: statistics of the inputs alone that inform the twin's axes (:data:`INPUT_LABELS`)
    inputs: dict[str, float] = field(default_factory=dict)

    def by_zone(self) -> pd.DataFrame:
        """Medians by climate zone and over all mascons, with the number of mascons."""
        table = self.per_mascon.groupby("zone")[list(MASCON_STATS)].agg(_HOW)
        table = table.reindex([z for z in ZONE_NAMES if z in table.index])
        table.loc["all"] = self.per_mascon[list(MASCON_STATS)].agg(_HOW)
        counts = self.per_mascon["zone"].value_counts()
        table.insert(0, "mascons", [int(counts.get(z, len(self.per_mascon)))
                                    for z in table.index])
        return table

    def summary(self) -> dict[str, float]:
        """The headline numbers: medians over all mascons and the twin-only statistics."""
        med = self.per_mascon[list(MASCON_STATS)].agg(_HOW)
        return {f"wghm_grace_{k}": float(med[k]) for k in MASCON_STATS} | self.twin


def _on_cells(da, lat: np.ndarray, lon: np.ndarray, flat: np.ndarray,
              months: np.ndarray) -> np.ndarray:
    """``(months, cells)`` values of ``da`` at the 0.5° cells (nearest point)."""
    sub = da.sel(time=months.astype("datetime64[ns]")).sel(lat=lat, lon=lon, method="nearest")
    return np.asarray(sub.values, dtype=np.float64).reshape(months.size, -1)[:, flat]


def _anomaly(x: np.ndarray, months: np.ndarray) -> np.ndarray:
    base = (months >= mo.BASELINE[0]) & (months <= mo.BASELINE[1])
    with warnings.catch_warnings():  # cells without data (ERA5's sea) stay NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        return x - np.nanmean(x[base] if base.any() else x, axis=0)


def _lag1(x: np.ndarray, months: np.ndarray) -> np.ndarray:
    """Lag-1 autocorrelation of each column over pairs of consecutive months."""
    step = np.diff(months.astype("datetime64[M]").astype(int)) == 1
    a, b = x[:-1][step], x[1:][step]
    a = a - a.mean(axis=0)
    b = b - b.mean(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (a * b).sum(axis=0) / np.sqrt((a * a).sum(axis=0) * (b * b).sum(axis=0))


def measure(grace: str | Path, wghm: str | Path, era5: Sequence[str | Path],
            truth: str | Path | None = None) -> Calibration:
    """Calibration statistics from real-format files (a twin's or real ones).

    Parameters
    ----------
    grace, wghm, era5
        The JPL mascon file, the WaterGAP file and the ERA5 file(s).
    truth
        A twin's ``truth.nc``: adds the statistics only a twin has.
    """
    g = read_grace(grace)
    w = read_wghm(wghm)
    e = read_era5(list(era5))
    t = read_truth(truth) if truth is not None else None
    if t is not None:
        g = g.sel(lat=t["lat"], lon=t["lon"])
    lat, lon = g["lat"].values, g["lon"].values
    months = g["time"].values.astype("datetime64[M]")
    months = months[months >= np.datetime64("2002-04", "M")]
    lwe = g["lwe_thickness"].sel(time=months.astype("datetime64[ns]")).values
    mask = (landmask.land_mask(lat, lon) & g["land_mask"].values
            & np.isfinite(lwe).all(axis=0))
    w_all = w.sel(lat=lat, lon=lon, method="nearest")
    mask &= np.isfinite(w_all.isel(time=-1).values)
    if t is not None:
        mask &= np.isfinite(t.isel(time=-1).values)
    mascons, flat = mascons_on_grid(g["mascon_id"].values, mask, lat)
    cells = lambda a: a.reshape(a.shape[0], -1)[:, flat]  # noqa: E731

    # WaterGAP's anomaly against the baseline, then the GRACE months
    w_months = w["time"].values.astype("datetime64[M]")
    w_months = w_months[w_months >= min(months[0], mo.BASELINE[0])]  # not a century of it
    w_cells = _anomaly(_on_cells(w, lat, lon, flat, w_months), w_months)
    w_cells = w_cells[np.isin(w_months, months)]
    g_m = mascons.mean(cells(lwe).T).T  # (months, mascons)
    w_m = mascons.mean(w_cells.T).T

    per = _versus(w_m, g_m, months)
    lat2 = np.repeat(lat, lon.size)[flat]
    lon2 = np.tile(lon, lat.size)[flat]
    clat, clon = mascons.centroids(lat2, lon2)
    t2m = e["t2m"].mean("time").sel(lat=_points(clat), lon=_points(clon), method="nearest")
    amp_g = metrics.annual_harmonic(g_m, months).amplitude
    zone = climate_zone(np.abs(clat), np.asarray(t2m.values, dtype=np.float64), amp_g)
    per.insert(0, "zone", [ZONE_NAMES[z] for z in zone])
    per.index = pd.Index(mascons.ids, name="mascon")
    e_cells = _anomaly(_on_cells(e["storage"], lat, lon, flat, months), months)
    out = Calibration(per_mascon=per, inputs=_inputs_only(
        mascons, lat2, lon2, clat, clon, np.unique(lon2).size >= 719, months, g_m, w_cells,
        e_cells))
    if t is not None:
        out.twin = _twin_only(mascons, flat, lat, lon, months, g_m, w_cells, e_cells, t,
                              g["uncertainty"].sel(time=months.astype("datetime64[ns]")).values)
    return out


def _cell_r(x: np.ndarray, y: np.ndarray, weights: np.ndarray) -> float:
    """Area-weighted median over cells of the correlation over months (NaN cells left out)."""
    return metrics.weighted_median(metrics.kge_per_unit(x, y)["r"], weights)


def _inputs_only(mascons: Mascons, lat2: np.ndarray, lon2: np.ndarray, clat: np.ndarray,
                 clon: np.ndarray, wrap: bool, months: np.ndarray, g_m: np.ndarray,
                 w_cells: np.ndarray, era5: np.ndarray) -> dict[str, float]:
    """What the inputs alone say about the twin's axes: how WaterGAP's, ERA5 storage's and
    interpolated GRACE's departures below the mascon scale agree, WaterGAP's own sub-mascon
    share, seasonal share and trends, and how WaterGAP's mascon trends follow GRACE's."""
    from twsbench.downscaling.interpolation import centroid_weights

    weights = mascons.weights
    dev = lambda x: mascons.deviation(x.T).T  # noqa: E731
    d_w, d_e = dev(w_cells), dev(np.nan_to_num(era5))
    d_g = dev((centroid_weights(clat, clon, lat2, lon2, mascons.cell_mascon, wrap) @ g_m.T).T)
    years = months.astype("datetime64[M]")
    trend_w = metrics.trend_per_unit(mascons.mean(w_cells.T).T, years)
    trend_g = metrics.trend_per_unit(g_m, years)
    tg = trend_g - trend_g.mean()
    sub_trend = metrics.trend_per_unit(d_w, years)
    return {
        "wghm_era5_submascon_r": _cell_r(d_w, d_e, weights),
        "wghm_grace_submascon_r": _cell_r(d_w, d_g, weights),
        "era5_grace_submascon_r": _cell_r(d_e, d_g, weights),
        "wghm_submascon_share": float((weights * d_w.var(axis=0)).sum()
                                      / (weights * w_cells.var(axis=0)).sum()),
        "wghm_submascon_seasonal": _seasonal_share(d_w, months, weights),
        "wghm_submascon_trend_rms": float(np.sqrt((weights * sub_trend**2).sum()
                                                  / weights.sum())),
        "wghm_grace_trend_slope": float((tg * (trend_w - trend_w.mean())).sum()
                                        / max(float((tg * tg).sum()), 1e-12)),
    }


def _points(values: np.ndarray):
    import xarray as xr

    return xr.DataArray(values, dims="points")


def _versus(model: np.ndarray, grace: np.ndarray, months: np.ndarray) -> pd.DataFrame:
    """Per-mascon r, NSE, annual amplitude ratio, phase difference and trend difference."""
    kge = metrics.kge_per_unit(model, grace)
    hm, hg = metrics.annual_harmonic(model, months), metrics.annual_harmonic(grace, months)
    phase = np.mod(hm.phase - hg.phase + 6.0, 12.0) - 6.0  # + : the model peaks later
    years = months.astype("datetime64[M]")
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = hm.amplitude / hg.amplitude
    # skill over GRACE's own monthly climatology (the cyclostationary NSE of Lehmann 2022)
    moy = years.astype(int) % 12
    clim = np.stack([np.nanmean(grace[moy == k], axis=0) for k in range(12)])[moy]
    with np.errstate(invalid="ignore", divide="ignore"):
        cyclo = 1.0 - ((model - grace) ** 2).sum(axis=0) / ((grace - clim) ** 2).sum(axis=0)
    return pd.DataFrame({"r": kge["r"], "nse": metrics.nse_per_unit(model, grace),
                         "amp_ratio": ratio, "phase_diff": phase,
                         "trend_diff": metrics.trend_per_unit(model, years)
                         - metrics.trend_per_unit(grace, years),
                         "beats_climatology": (cyclo > 0).astype(float)})


def _twin_only(mascons: Mascons, flat: np.ndarray, lat: np.ndarray, lon: np.ndarray,
               months: np.ndarray, g_m: np.ndarray, w_cells: np.ndarray, era5: np.ndarray, t,
               sigma: np.ndarray) -> dict[str, float]:
    truth = _on_cells(t, lat, lon, flat, months)
    cell_area = mascons.weights
    t_m = mascons.mean(truth.T).T
    err = g_m - t_m
    sig = mascons.mean(sigma.reshape(months.size, -1)[:, flat].T).T
    d_truth = mascons.deviation(truth.T).T
    wm = lambda v: metrics.weighted_median(v, cell_area)  # noqa: E731
    step = np.diff(months.astype("datetime64[M]").astype(int)) == 1
    ds_err = lambda x: np.sqrt(((np.diff(x, axis=0) - np.diff(t_m, axis=0))[step] ** 2  # noqa: E731
                                ).mean(axis=0))
    w_m = mascons.mean(w_cells.T).T
    years = months.astype("datetime64[M]")
    d_wghm = mascons.deviation(w_cells.T).T
    slope, hot_r, n_hot = _hotspot_slope(metrics.trend_per_unit(d_wghm, years),
                                         metrics.trend_per_unit(d_truth, years))
    return {
        "wghm_ds_error": float(np.median(ds_err(w_m))),
        "grace_ds_error": float(np.median(ds_err(g_m))),
        "wghm_submascon_r": _cell_r(d_wghm, d_truth, cell_area),
        "era5_submascon_r": _cell_r(mascons.deviation(era5.T).T, d_truth, cell_area),
        "truth_submascon_share": float((cell_area * d_truth.var(axis=0)).sum()
                                       / (cell_area * truth.var(axis=0)).sum()),
        "truth_submascon_seasonal": _seasonal_share(d_truth, months, cell_area),
        "wghm_hotspot_slope": slope,
        "wghm_hotspot_r": hot_r,
        "hotspot_cells": float(n_hot),
        "grace_error_over_sigma": float(np.median(
            np.sqrt((err**2).mean(axis=0)) / np.sqrt((sig**2).mean(axis=0)))),
        "grace_error_lag1": float(np.median(_lag1(err - err.mean(axis=0), months))),
        "wghm_cell_nse": wm(metrics.nse_per_unit(w_cells, truth)),
        "mascon_cell_nse": wm(metrics.nse_per_unit(mascons.spread(g_m.T).T, truth)),
    }


#: Hotspot cells: the truth's sub-mascon trend beyond this (mm/yr), as the leaderboard's
#: default ``[ranking] hotspot_trend``.
HOTSPOT_TREND = 5.0


def _hotspot_slope(model_trend: np.ndarray, truth_trend: np.ndarray
                   ) -> tuple[float, float, int]:
    """Least-squares slope of the model's sub-mascon trend on the truth's, and their
    correlation, over the cells whose truth trend departs beyond :data:`HOTSPOT_TREND`."""
    hot = np.abs(truth_trend) > HOTSPOT_TREND
    if hot.sum() < 3:
        return float("nan"), float("nan"), int(hot.sum())
    x, y = truth_trend[hot], model_trend[hot]
    slope = float(((x - x.mean()) * (y - y.mean())).sum() / ((x - x.mean()) ** 2).sum())
    return slope, float(np.corrcoef(x, y)[0, 1]), int(hot.sum())


def _seasonal_share(departures: np.ndarray, months: np.ndarray, weights: np.ndarray) -> float:
    """Share of the departures' variance (area-weighted over cells) in their mean seasonal
    cycle, each cell's linear trend removed first (the depletion and glacier trends would
    otherwise dominate it). The monthly climatology of ``n`` years also holds ``1/n`` of the
    non-seasonal variance; that part is taken out."""
    moy = months.astype("datetime64[M]").astype(int) % 12
    t = months.astype("datetime64[M]").astype(float)
    t = t - t.mean()
    x = departures - departures.mean(axis=0)
    x = x - np.outer(t, (t @ x) / (t @ t))
    clim = np.stack([x[moy == k].mean(axis=0) for k in range(12)])
    counts = np.bincount(moy, minlength=12)
    v_clim = (weights * clim[moy].var(axis=0)).sum()
    v_total = (weights * x.var(axis=0)).sum()
    per_year = 1.0 / np.mean(counts)  # expected climatology variance of white noise, per unit
    return float(np.clip((v_clim - per_year * v_total) / ((1.0 - per_year) * v_total), 0, 1))


#: The statistic that measures each twin axis from the written files, and how.
AXIS_MEASURES = {
    "submascon_skill": ("wghm_submascon_r", "WaterGAP sub-mascon r with the truth, cell median"),
    "submascon_share": ("truth_submascon_share", "truth's variance below the mascon scale"),
    "human_ratio": ("wghm_hotspot_slope", "slope of WaterGAP's sub-mascon trend on the truth's "
                    "at hotspot cells (displaced footprints and glaciers lower it)"),
    "submascon_structure": ("truth_submascon_seasonal", "share of the truth's sub-mascon "
                            "variance in its monthly climatology"),
}


def axis_rows(cal: Calibration, axes: Axes) -> list[list[str]]:
    """One row per axis set in ``axes``: its name, target, measured value and how it is
    measured."""
    out = []
    for key, (stat, how) in AXIS_MEASURES.items():
        target = getattr(axes, key)
        if target is not None:
            out.append([key, f"{target:g}", f"{cal.twin.get(stat, float('nan')):.3f}", how])
    return out


#: Labels of the statistics of the inputs alone that inform the twin's axes.
INPUT_LABELS = {
    "wghm_era5_submascon_r": "WaterGAP sub-mascon r with ERA5 storage's (cell median)",
    "wghm_grace_submascon_r": "WaterGAP sub-mascon r with interpolated GRACE's (cell median)",
    "era5_grace_submascon_r": "ERA5 storage sub-mascon r with interpolated GRACE's",
    "wghm_submascon_share": "WaterGAP's own variance below mascon scale (share)",
    "wghm_submascon_seasonal": "share of it in WaterGAP's seasonal cycle",
    "wghm_submascon_trend_rms": "WaterGAP's sub-mascon trend, area RMS (mm/yr)",
    "wghm_grace_trend_slope": "WaterGAP's mascon trend on GRACE's (slope over mascons)",
}

#: Labels of the twin-only statistics.
TWIN_LABELS = {
    "wghm_ds_error": "WaterGAP error of monthly storage change, mascon median (mm)",
    "grace_ds_error": "GRACE error of monthly storage change, mascon median (mm)",
    "wghm_submascon_r": "WaterGAP sub-mascon r with the truth (cell median)",
    "era5_submascon_r": "ERA5 storage sub-mascon r with the truth (cell median)",
    "truth_submascon_share": "truth's variance below mascon scale (share)",
    "truth_submascon_seasonal": "share of it in the truth's seasonal cycle",
    "wghm_hotspot_slope": "WaterGAP sub-mascon trend on the truth's at hotspots (slope)",
    "wghm_hotspot_r": "WaterGAP sub-mascon trend with the truth's at hotspots (r)",
    "hotspot_cells": "hotspot cells (truth sub-mascon trend beyond 5 mm/yr)",
    "grace_error_over_sigma": "GRACE actual error / stated σ (mascon median)",
    "grace_error_lag1": "GRACE error lag-1 autocorrelation (mascon median)",
    "wghm_cell_nse": "raw WaterGAP anomaly, cell NSE vs truth (median)",
    "mascon_cell_nse": "GRACE mascon product, cell NSE vs truth (median)",
}

#: Labels of the per-mascon statistics (WaterGAP against GRACE at mascon scale).
MASCON_LABELS = {
    "r": "correlation",
    "nse": "NSE",
    "amp_ratio": "annual amplitude ratio WaterGAP/GRACE",
    "phase_diff": "annual phase WaterGAP − GRACE (months)",
    "trend_diff": "trend WaterGAP − GRACE (mm/yr)",
    "beats_climatology": "share of mascons beating GRACE's climatology",
}


def rows(cal: Calibration) -> tuple[list[str], list[list[str]]]:
    """The calibration report as a table: header and rows of text (statistic, one column per
    climate zone and all, the published value and its source)."""
    zones = cal.by_zone()
    header = ["WaterGAP vs GRACE, mascon scale",
              *(f"{z} ({int(zones.loc[z, 'mascons'])})" for z in zones.index),
              "published", "source"]
    out = []
    for key, label in MASCON_LABELS.items():
        published, source = PUBLISHED.get(key, ("-", "-"))
        out.append([label, *(f"{zones.loc[z, key]:.2f}" for z in zones.index), published,
                    source])
    blank = [""] * len(zones.index)
    for key, label in TWIN_LABELS.items():
        if key in cal.twin:
            published, source = PUBLISHED.get(key, ("twin only", "-"))
            out.append([label, *blank[:-1], f"{cal.twin[key]:.3g}", published, source])
    return header, out


#: Each realism level's documented band (inclusive) for the statistics of the default twin
#: (south-asia, seed 0), as the README's "Realism levels" table gives them. ``nse`` and ``r``
#: are WaterGAP against GRACE at mascon scale (medians over mascons).
BANDS: dict[str, dict[str, tuple[float, float]]] = {
    "optimistic": {"nse": (0.7, 0.9), "r": (0.85, 0.97), "wghm_submascon_r": (0.7, 0.9),
                   "grace_error_lag1": (-0.15, 0.15), "grace_error_over_sigma": (0.75, 1.1)},
    "realistic": {"nse": (0.3, 0.6), "r": (0.65, 0.85), "wghm_submascon_r": (0.15, 0.5),
                  "grace_error_lag1": (0.6, 0.9), "grace_error_over_sigma": (0.75, 1.1),
                  "wghm_hotspot_slope": (0.05, 0.3)},
    "pessimistic": {"nse": (0.0, 0.35), "r": (0.45, 0.7), "wghm_submascon_r": (0.0, 0.3),
                    "grace_error_lag1": (0.55, 0.85), "grace_error_over_sigma": (0.95, 1.4),
                    "wghm_hotspot_slope": (0.02, 0.2)},
}

#: Each level's stated range of WaterGAP's hotspot trend slope (``wghm_hotspot_slope``) where
#: the hotspots are human water use, no glacier among them: the level's ``human_ratio`` ×
#: 0.5–1.5 (per-hotspot factors, displaced and resized footprints), ± 0.1. On the default
#: twin most hotspot cells are Himalayan glaciers, which WaterGAP never carries, and the slope
#: is far lower (its band in :data:`BANDS`).
HUMAN_HOTSPOT_SLOPE: dict[str, tuple[float, float]] = {
    "realistic": (0.4, 1.6), "pessimistic": (0.15, 0.85)}


def outside_bands(cal: Calibration, realism: str) -> list[str]:
    """The statistics of ``cal`` outside ``realism``'s band, as readable lines."""
    values = cal.summary()
    out = []
    for key, (lo, hi) in BANDS[realism].items():
        value = values.get(f"wghm_grace_{key}", values.get(key))
        if value is None or not lo <= value <= hi:
            out.append(f"{key} = {value} outside [{lo}, {hi}]")
    return out
