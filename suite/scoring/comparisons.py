"""Which differences between models are significant: each model against its task's reference
models (a paired block bootstrap of the monthly loss), and per mascon on the downscale months.

:func:`compare` reads a run folder's tables, grid and predictions and writes
``significance.csv`` and ``mascon_gains.csv`` into it; the report only reads them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from twsbench.core import cache
from twsbench.core.kernels import deviation
from twsbench.core.mascons import build_mascons
from twsbench.scoring.leaderboards import REFERENCES, leaderboard, ranking_metric
from twsbench.scoring.significance import block_bootstrap

#: the calendar blocks of the bootstrap, in months
BLOCK = 12
#: resamples when the run's config does not say (``[ranking] resamples``)
RESAMPLES = 2000

SIGNIFICANCE_COLUMNS = ("task", "model", "against", "loss", "mean change", "ci low",
                        "ci high", "months", "verdict")
GAIN_COLUMNS = ("model", "against", "mascon", "verdict")
#: the monthly losses the comparisons test (:func:`monthly_loss`)
MONTHLY_LOSSES = ("mse_submascon_truth", "mse_fine_truth", "mse_mascon_grace")
#: with several worlds: each world's monthly losses, and each world's verdict per task
WORLDS_MONTHLY = "worlds_monthly.csv"
VERDICT_MAP = "verdict_map.csv"
#: a run that locates its inputs on a map run's verdict map keeps a copy of that map here
MAP_REFERENCE = "verdict_map_reference.csv"
#: where a world sits: its level, seed and axes (``meta.json``'s ``world_axes``)
WORLD_COLUMNS = ("realism", "seed", "submascon_skill", "submascon_share", "human_ratio",
                 "submascon_structure")
VERDICT_COLUMNS = ("world", *WORLD_COLUMNS, "task", "metric", "leader", "leader score",
                   "second", "second score", "margin", "loss", "mean change", "ci low",
                   "ci high", "months", "significant", "lead")


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
    loss, table, months = _loss_table(monthly, meta, task)
    models = list(dict.fromkeys(monthly["model"]))
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


def _loss_table(monthly: pd.DataFrame, meta: dict, task: str
                ) -> tuple[str, pd.DataFrame, np.ndarray]:
    """A task's monthly loss, its (month × model) table (mean over seeds) and the months."""
    loss = monthly_loss(meta, task)
    mon = monthly[(monthly["metric"] == loss) & (monthly["split"] == task)]
    table = mon.groupby(["month", "model"])["value"].mean().unstack("model").sort_index()
    return loss, table, table.index.to_numpy().astype("datetime64[M]")


def lead(monthly: pd.DataFrame, meta: dict, task: str, leader: str, second: str
         ) -> dict[str, Any]:
    """The leader against the second on a task's monthly loss (mean over seeds): mean change
    (negative: the leader's loss is lower), its 95% interval (paired block bootstrap over
    12-month calendar blocks) and the number of months. ``significant``: the interval lies
    below zero. ``lead``: ``significant``, ``not significant``, or ``reversed`` where the
    interval lies above zero: the second's loss is significantly lower, the primary score (a
    median over cells) and the loss (pooled over cells) disagree."""
    loss, table, months = _loss_table(monthly, meta, task)
    iv = block_bootstrap((table[leader] - table[second]).to_numpy()[:, None], months,
                         block=BLOCK, n=resamples(meta), seed=0)
    low, high = float(iv.low[0]), float(iv.high[0])
    verdict = "significant" if high < 0 else "reversed" if low > 0 else "not significant"
    return {"loss": loss, "mean change": float(iv.mean[0]), "ci low": low, "ci high": high,
            "months": int(iv.n_months[0]), "significant": high < 0, "lead": verdict}


def runner_up(board: pd.DataFrame, monthly: pd.DataFrame, meta: dict, task: str
              ) -> str | None:
    """The second of a task's leaderboard: the first model after the leader whose monthly
    loss differs from the leader's (``X`` and ``X+residual`` make the same gap-fill months,
    a tie of one prediction, not a contest)."""
    _, table, _ = _loss_table(monthly, meta, task)
    leader = str(board.index[0])
    for model in board.index[1:]:
        if model in table and leader in table and not np.allclose(
                table[model], table[leader], equal_nan=True):
            return str(model)
    return None


def verdict_map(worlds: pd.DataFrame, monthly: pd.DataFrame, meta: dict) -> pd.DataFrame:
    """Each world's verdict per task: the leader and the second of the world's leaderboard
    (the task's primary score, mean over seeds; models with failed tasks in that world left
    out; the second by :func:`runner_up`), the margin between their scores, and whether the
    leader's lower monthly loss is significant (:func:`lead`). One row per world and task,
    with where the world sits."""
    where = {w["world"]: w for w in meta.get("world_axes", [])}
    timing = pd.DataFrame(columns=["model", "fit_seconds", "predict_seconds"])
    rows = []
    for world in dict.fromkeys(worlds["world"]):
        own = {**meta, "worlds": [world]}  # failures of this world leave its models out
        scores = worlds[worlds["world"] == world].drop(columns="world")
        mon = monthly[monthly["world"] == world]
        for task in REFERENCES:
            board = leaderboard(scores, timing, own, task)
            metric = ranking_metric(meta, task)
            if board.empty or metric is None:
                continue
            first = str(board.index[0])
            row = {"world": world, **{k: where.get(world, {}).get(k) for k in WORLD_COLUMNS},
                   "task": task, "metric": metric, "leader": first,
                   "leader score": float(board[metric].iloc[0])}
            second = runner_up(board, mon, meta, task)
            if second is not None:
                score = float(board.loc[second, metric])
                row |= {"second": second, "second score": score,
                        "margin": row["leader score"] - score,
                        **lead(mon, meta, task, first, second)}
            rows.append(row)
    return pd.DataFrame(rows, columns=list(VERDICT_COLUMNS))


def compare(run: str | Path) -> None:
    """Write ``significance.csv`` (both tasks) and ``mascon_gains.csv`` into a run folder
    that holds ``meta.json``, ``monthly.csv``, ``grid.nc`` and ``predictions/``; with
    several worlds (``worlds.csv``, ``worlds_monthly.csv``) also ``verdict_map.csv``."""
    run = Path(run)
    meta = json.loads((run / "meta.json").read_text())
    monthly = pd.read_csv(run / "monthly.csv")
    sig = pd.concat([significance(monthly, meta, task) for task in REFERENCES],
                    ignore_index=True)
    cache.write_text(run / "significance.csv", sig.to_csv(index=False))
    with xr.open_dataset(run / "grid.nc") as grid:
        gains = mascon_gains(run, grid.load(), meta)
    cache.write_text(run / "mascon_gains.csv", gains.to_csv(index=False))
    if (run / WORLDS_MONTHLY).exists():
        table = verdict_map(pd.read_csv(run / "worlds.csv"), pd.read_csv(run / WORLDS_MONTHLY),
                            meta)
        cache.write_text(run / VERDICT_MAP, table.to_csv(index=False))
