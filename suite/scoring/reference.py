"""The fine-scale truth on the prepared cells — for scoring code only, never for downscalers."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from twsbench.core.errors import InputError
from twsbench.inputs import read_truth
from twsbench.prepare.grids import Grids


def truth_on_cells(path: str | Path, grids: Grids, hide: np.ndarray | None = None
                   ) -> np.ndarray:
    """``(months, cells)`` truth anomalies (mm) aligned with ``grids``; NaN where absent.

    The truth is re-centred on the grids' baseline so that it is comparable with every
    anomaly in the suite. ``hide`` (a month mask) leaves those months out: NaN, and not in
    the baseline's mean (tuning reads no test month).
    """
    da = read_truth(path)
    try:
        da = da.sel(lat=grids.lat, lon=grids.lon, method="nearest", tolerance=1e-3)
    except KeyError as err:
        raise InputError(path, "twsa", "a grid covering the domain's cells",
                         "a grid that does not") from err
    out = np.full((grids.months.size, grids.n_cells), np.nan)
    months = da["time"].values.astype("datetime64[M]")
    keep = np.isin(months, grids.months)
    values = da.values[keep].reshape(int(keep.sum()), -1)[:, grids.cell_index]
    out[np.searchsorted(grids.months, months[keep])] = values
    if hide is not None:
        out[np.asarray(hide, dtype=bool)] = np.nan
    base = (grids.months >= np.datetime64(grids.attrs["baseline"][0], "M")) & (
        grids.months <= np.datetime64(grids.attrs["baseline"][1], "M"))
    return out - np.nanmean(out[base], axis=0)
