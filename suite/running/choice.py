"""Which model a run releases (``twsbench release``), decided from its scores alone so that
the report can say it too."""

from __future__ import annotations

import pandas as pd

from twsbench.core.errors import ConfigError
from twsbench.running.catalog import get_class
from twsbench.scoring.leaderboards import NO_TRUTH, failed_models, ranking_metric
from twsbench.scoring.table import higher_is_better


def release_choice(scores: pd.DataFrame, meta: dict, where: str) -> tuple[str, dict]:
    """The model ``twsbench release`` publishes: the first of the run's ``release_task``
    leaderboard among those that predict every month (mean over seeds), a tie going to the
    better of the other task; one with failed tasks is refused. ``where`` (the run folder)
    names the run in errors."""
    ranking = meta["config"]["ranking"]
    task = ranking["release_task"]
    metric = ranking_metric(meta, task)
    if metric is None:
        raise ConfigError(f"[ranking] release_task: expected a task the run could rank, found "
                          f"{task!r}, which needs a truth ({NO_TRUTH.split(':')[0]})")

    def mean_of(split: str, name: str) -> pd.Series:
        sel = scores[(scores["split"] == split) & (scores["metric"] == name)
                     & (scores["region"] == ranking["region"])]
        return sel.groupby("model")["value"].mean()

    means = mean_of(task, metric).dropna()
    full = [m for m in means.index if not get_class(m).needs_grace]
    if not full:
        raise ConfigError(f"{where}: expected a model that predicts every month, found only "
                          f"models that need GRACE ({', '.join(means.index)})")
    # a tie (X and X+residual give the same gap-fill months) goes to the better model of
    # the other task
    board = pd.DataFrame({"value": means[full]})
    keys, ascending = ["value"], [higher_is_better(metric) is False]
    other = next(t for t in ("downscale", "gapfill") if t != task)
    second = ranking_metric(meta, other)
    if second is not None:
        board["other"] = mean_of(other, second).reindex(board.index)
        keys.append("other")
        ascending.append(higher_is_better(second) is False)
    board = board.sort_values(keys, ascending=ascending, na_position="last", kind="stable")
    chosen = str(board.index[0])
    failed = failed_models(meta)
    if chosen in failed:
        raise ConfigError(f"{where}: expected the release's model ({chosen}, first on "
                          f"{task}) to have every task finished, found {failed[chosen]} failed "
                          "(failures.csv); fix it and run the same twsbench run command again")
    return chosen, {"task": task, "metric": metric, "split": task,
                    "value": float(board["value"].iloc[0]), "run_id": meta["run_id"]}
