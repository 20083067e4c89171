"""Leaderboards: each task's primary score, the ranked table of models (mean and spread over
seeds), the consistency table (never ranked) and the stability of pairwise verdicts over twin
worlds. Built from a run folder's tables (``scores.csv``, ``timing.csv``, ``worlds.csv``) and
its ``meta.json``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from twsbench.scoring.table import higher_is_better

#: each task's columns after its primary score
TASK_SCORES = {
    "downscale": ("nse_submascon_truth", "r_submascon_truth", "trend_error_hotspot_truth",
                  "nse_fine_truth", "rmse_fine_truth"),
    "gapfill": ("nse_fine_truth", "nse_mascon_grace", "kge_fine_truth", "rmse_fine_truth",
                "rmse_mascon_grace"),
}
#: agreement with the GRACE the models were given: reported, never ranked
CONSISTENCY = ("nse_mascon_grace", "rmse_mascon_grace", "conservation_residual",
               "r_submascon_wghm")
#: the simple models every other model is tested against, by task
REFERENCES = {"downscale": ("mascon", "pattern_transfer"),
              "gapfill": ("wghm_anomaly", "mascon_regression")}
NO_TRUTH = ("Sub-mascon skill cannot be scored without a truth: on real files no "
            "downscale ranking exists. The consistency table shows agreement with the GRACE "
            "the models were given, which copying GRACE maximises.")


def ranking_metric(meta: dict, task: str = "gapfill") -> str | None:
    """The primary score of a task's leaderboard (None: the task cannot be ranked, i.e.
    ``downscale`` on real files)."""
    metric = meta["config"]["ranking"][task]
    if metric != "auto":
        return metric
    if meta["has_truth"]:
        return {"downscale": "nse_submascon_truth", "gapfill": "nse_fine_truth"}[task]
    return "nse_mascon_grace" if task == "gapfill" else None


def failed_models(meta: dict) -> dict[str, int]:
    """The models (every variant of a failed fit) with failed tasks in the run's primary
    world, and how many of their seeds failed: they are left off the leaderboards rather
    than ranked on a mean over fewer seeds (the report lists them)."""
    failures = meta.get("failed_tasks", [])
    primary = (meta.get("worlds") or [None])[0]
    out: dict[str, int] = {}
    for f in failures:
        if primary is None or f["world"] == primary:
            for name in str(f["names"]).split():
                out[name] = out.get(name, 0) + 1
    return out


def _board(scores: pd.DataFrame, timing: pd.DataFrame, meta: dict, split: str,
           columns: tuple[str, ...], rank: str | None) -> pd.DataFrame:
    """Mean over seeds of ``columns`` on a split, with the spread over seeds beside each
    where some model ran several seeds; ranked by ``rank``; models without a value of
    ``rank`` (they take no part in the task), and models with failed tasks
    (:func:`failed_models`), are left out."""
    region = meta["config"]["ranking"]["region"]
    sel = scores[(scores["split"] == split) & (scores["region"] == region)
                 & ~scores["model"].isin(list(failed_models(meta)))]
    grouped = sel.groupby(["model", "metric"])["value"]
    mean, spread = grouped.mean().unstack(), grouped.std(ddof=0).unstack()
    seeds = sel.groupby("model")["seed"].nunique().reindex(mean.index)
    spread.loc[seeds <= 1] = np.nan  # one run: no spread to show
    several = bool((seeds > 1).any())
    out = pd.DataFrame(index=mean.index)
    for name in dict.fromkeys(c for c in (rank, *columns) if c):
        if name in mean.columns and mean[name].notna().any():
            out[name] = mean[name]
            if several:
                out[f"{name}_spread"] = spread[name]
    t = timing.groupby("model")[["fit_seconds", "predict_seconds"]].mean()
    out["seconds"] = (t["fit_seconds"] + t["predict_seconds"]).reindex(out.index)
    if rank is not None:
        if rank not in out.columns:  # no model takes part
            return pd.DataFrame()
        out = out[out[rank].notna()]
        out = out.sort_values(rank, ascending=higher_is_better(rank) is False)
        out.insert(0, "rank", np.arange(1, len(out) + 1))
    return out


def leaderboard(scores: pd.DataFrame, timing: pd.DataFrame, meta: dict,
                task: str = "gapfill") -> pd.DataFrame:
    """A task's leaderboard on its test months: mean (and spread) over seeds, ranked by the
    task's primary score; empty when the task cannot be ranked (downscale without a truth)."""
    rank = ranking_metric(meta, task)
    if rank is None:
        return pd.DataFrame()
    return _board(scores, timing, meta, task, TASK_SCORES[task], rank)


def consistency(scores: pd.DataFrame, timing: pd.DataFrame, meta: dict) -> pd.DataFrame:
    """Agreement with the GRACE the models were given (downscale test months): never
    ranked, because copying GRACE maximises it."""
    return _board(scores, timing, meta, "downscale", CONSISTENCY, None)


def stability(worlds: pd.DataFrame, meta: dict, order: list[str], task: str = "gapfill"
             ) -> pd.DataFrame:
    """For each pair of models (the first ranked above the second in the primary world), in
    how many worlds the first beats the second on the task's primary score (mean over
    seeds, the task's test months and the ranking region), and whether that holds in every
    world."""
    rank = ranking_metric(meta, task)
    ranking = meta["config"]["ranking"]
    sel = worlds[(worlds["metric"] == rank) & (worlds["split"] == task)
                 & (worlds["region"] == ranking["region"])]
    table = sel.groupby(["world", "model"])["value"].mean().unstack("model")
    sign = -1.0 if higher_is_better(str(rank)) is False else 1.0
    rows = []
    for i, first in enumerate(order):
        for second in order[i + 1:]:
            if first not in table or second not in table:
                continue
            both = table[[first, second]].dropna()
            wins = int((sign * (both[first] - both[second]) > 0).sum())
            rows.append({"first": first, "second": second,
                         "worlds won": f"{wins}/{len(both)}",
                         "holds in every world": "yes" if wins == len(both) > 0 else "no"})
    return pd.DataFrame(rows, columns=["first", "second", "worlds won",
                                       "holds in every world"])
