"""Which differences between models are significant: each model against its task's reference
models (a paired block bootstrap of the monthly loss), and per mascon on the downscale months.

:func:`compare` reads a run folder's tables, grid and predictions and writes
``significance.csv`` and ``mascon_gains.csv`` into it; the report only reads them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from twsbench.core import cache
from twsbench.core.kernels import deviation
from twsbench.core.mascons import build_mascons
from twsbench.scoring.leaderboards import REFERENCES
from twsbench.scoring.significance import block_bootstrap

#: the calendar blocks of the bootstrap, in months
BLOCK = 12
#: resamples when the run's config does not say (``[ranking] resamples``)
RESAMPLES = 2000

SIGNIFICANCE_COLUMNS = ("task", "model", "against", "loss", "mean change", "ci low",
                        "ci high", "months", "verdict")
GAIN_COLUMNS = ("model", "against", "mascon", "verdict")


def resamples(meta: dict) -> int:
    """The bootstrap's resample count of a run (``[ranking] resamples``)."""
    return int(meta["config"]["ranking"].get("resamples", RESAMPLES))


def monthly_loss(meta: dict, task: str) -> str:
    """The per-month loss a task's differences are tested on (``monthly.csv``)."""
    if task == "downscale":
        return "mse_submascon_truth"
    return "mse_fine_truth" if meta["has_truth"] else "mse_mascon_grace"


def significance(monthly: pd.DataFrame, meta: dict, task: str) -> pd.DataFrame:
    """Each model against the task's reference models (and ``[ranking] against``): the mean
    change of the monthly loss
    (mean over seeds; negative is better), its 95% interval from a paired block bootstrap
    over 12-month blocks of calendar months, and whether the interval excludes 0."""
    loss = monthly_loss(meta, task)
    mon = monthly[(monthly["metric"] == loss) & (monthly["split"] == task)]
    table = mon.groupby(["month", "model"])["value"].mean().unstack("model").sort_index()
    models = list(dict.fromkeys(monthly["model"]))
    months = table.index.to_numpy().astype("datetime64[M]")
    rows = []
    against = meta["config"]["ranking"].get("against") or []
    for ref in dict.fromkeys([*REFERENCES[task], *against]):
        if ref not in table:
            continue
        for model in models:
            if model == ref or model not in table:
                continue
            diff = (table[model] - table[ref]).to_numpy()[:, None]
            if not np.isfinite(diff).any():
                continue
            iv = block_bootstrap(diff, months, block=BLOCK, n=resamples(meta), seed=0)
            verdict = ("not significant" if not iv.significant[0] else
                       "better" if iv.mean[0] < 0 else "worse")
            rows.append({"task": task, "model": model, "against": ref, "loss": loss,
                         "mean change": float(iv.mean[0]), "ci low": float(iv.low[0]),
                         "ci high": float(iv.high[0]), "months": int(iv.n_months[0]),
                         "verdict": verdict})
    return pd.DataFrame(rows, columns=list(SIGNIFICANCE_COLUMNS))


def mascon_gains(run: Path, grid: xr.Dataset, meta: dict) -> pd.DataFrame:
    """Per-mascon downscaling gain on the downscale test months: for each model and each
    downscale reference, whether the model's sub-mascon error (mean squared ``D ŷ − D y``
    over the mascon's cells, mean over seeds) is significantly below (+1), not
    significantly different from (0) or significantly above (−1) the reference's, by a
    block bootstrap per mascon. Empty without a truth."""
    if "truth" not in grid:
        return pd.DataFrame(columns=list(GAIN_COLUMNS))
    split = grid["split_downscale"].values.astype(bool)
    months = grid["month"].values.astype("datetime64[M]")[split]
    cm = grid["cell_mascon"].values
    area = grid["cell_area"].values
    ops = build_mascons(cm, area)
    truth = grid["truth"].values[split].astype(np.float64)
    d_truth = deviation(ops.A, ops.cell_mascon, truth)
    n = ops.n_mascons
    w_sum = np.bincount(ops.cell_mascon, weights=area, minlength=n)

    def loss(pred: np.ndarray) -> np.ndarray:
        err = (deviation(ops.A, ops.cell_mascon, pred) - d_truth) ** 2
        out = np.stack([np.bincount(ops.cell_mascon, weights=e * area, minlength=n)
                        for e in err]) / w_sum
        return np.where(np.isfinite(pred).all(1, keepdims=True), out, np.nan)

    losses: dict[str, list[np.ndarray]] = {}
    for path in sorted((run / "predictions").glob("*.nc")):
        model = path.stem.split("__seed")[0]
        with xr.open_dataset(path) as ds:
            values = ds["twsa"].values[split].astype(np.float64)
        losses.setdefault(model, []).append(loss(values))
    mean = {k: np.mean(v, axis=0) for k, v in losses.items()}
    frames = []
    for ref in REFERENCES["downscale"]:
        if ref not in mean:
            continue
        for model in mean:
            if model == ref or not np.isfinite(mean[model]).any():
                continue
            iv = block_bootstrap(mean[model] - mean[ref], months, block=BLOCK,
                                 n=resamples(meta), seed=0)
            sig = iv.significant
            verdict = np.where(sig & (iv.mean < 0), 1, np.where(sig & (iv.mean > 0), -1, 0))
            frames.append(pd.DataFrame({"model": model, "against": ref,
                                        "mascon": np.arange(n), "verdict": verdict}))
    if not frames:
        return pd.DataFrame(columns=list(GAIN_COLUMNS))
    return pd.concat(frames, ignore_index=True)


def compare(run: str | Path) -> None:
    """Write ``significance.csv`` (both tasks) and ``mascon_gains.csv`` into a run folder
    that holds ``meta.json``, ``monthly.csv``, ``grid.nc`` and ``predictions/``."""
    run = Path(run)
    meta = json.loads((run / "meta.json").read_text())
    monthly = pd.read_csv(run / "monthly.csv")
    sig = pd.concat([significance(monthly, meta, task) for task in REFERENCES],
                    ignore_index=True)
    cache.write_text(run / "significance.csv", sig.to_csv(index=False))
    with xr.open_dataset(run / "grid.nc") as grid:
        gains = mascon_gains(run, grid.load(), meta)
    cache.write_text(run / "mascon_gains.csv", gains.to_csv(index=False))
