"""The comparison report, built only from a run folder's saved files.

Reads ``scores.csv``, ``monthly.csv``, ``timing.csv``, ``uncertainty.csv``, ``meta.json``,
``grid.nc``, ``predictions/*.nc`` and ``benchmarks/*.json``; writes ``figures/*.png``,
``index.md`` and a self-contained ``index.html`` (figures embedded, no external resources).
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from suite import cache
from suite.scores import higher_is_better

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
TASK_TITLES = {"downscale": "Downscale (months with GRACE, every model may use it)",
               "gapfill": "Gap-fill (months whose GRACE no model has)"}
BOOTSTRAP = 2000
BLOCK = 12
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


#: the calibrated σ's scores on a task's months, beside each leaderboard
UNCERTAINTY_SCORES = ("crps", "coverage_1sigma", "coverage_2sigma", "spread_skill")


def read_uncertainty(run: Path) -> pd.DataFrame:
    """``uncertainty.csv`` of the run's first world (empty without a truth)."""
    path = run / "uncertainty.csv"
    if not path.exists():
        return pd.DataFrame(columns=["model", "split", "region", "metric", "value"])
    table = pd.read_csv(path)
    if "world" in table:
        table = table[table["world"] == table["world"].iloc[0]]
    return table


def uncertainty_board(table: pd.DataFrame, task: str, order: list[str]) -> pd.DataFrame:
    """Each model's σ on the task's months: coverage of ±1σ and ±2σ, the spread–skill
    ratio and the CRPS, over the domain and at the hotspot cells, in ``order``."""
    sel = table[table["split"] == task]
    if sel.empty:
        return pd.DataFrame()
    wide = sel.pivot_table(index="model", columns=["region", "metric"], values="value")
    out = pd.DataFrame(index=[m for m in order if m in wide.index])
    for region, suffix in (("domain", ""), ("hotspots", " (hotspots)")):
        for metric in UNCERTAINTY_SCORES:
            if (region, metric) in wide.columns:
                out[f"{metric}{suffix}"] = wide[(region, metric)].reindex(out.index)
    out.index.name = "model"
    return out


def _board(scores: pd.DataFrame, timing: pd.DataFrame, meta: dict, split: str,
           columns: tuple[str, ...], rank: str | None) -> pd.DataFrame:
    """Mean over seeds of ``columns`` on a split, with the spread over seeds beside each
    where some model ran several seeds; ranked by ``rank``; models without a value of
    ``rank`` (they take no part in the task) are left out."""
    region = meta["config"]["ranking"]["region"]
    sel = scores[(scores["split"] == split) & (scores["region"] == region)]
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


def verdicts(worlds: pd.DataFrame, meta: dict, order: list[str], task: str = "gapfill"
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


def monthly_loss(meta: dict, task: str) -> str:
    """The per-month loss a task's differences are tested on (``monthly.csv``)."""
    if task == "downscale":
        return "mse_submascon_truth"
    return "mse_fine_truth" if meta["has_truth"] else "mse_mascon_grace"


def significance(monthly: pd.DataFrame, meta: dict, task: str, models: list[str]
                 ) -> pd.DataFrame:
    """Each model against the task's reference models: the mean change of the monthly loss
    (mean over seeds; negative is better), its 95% interval from a paired block bootstrap
    over 12-month blocks of calendar months, and whether the interval excludes 0."""
    from suite.significance import block_bootstrap

    mon = monthly[(monthly["metric"] == monthly_loss(meta, task))
                  & (monthly["split"] == task)]
    table = mon.groupby(["month", "model"])["value"].mean().unstack("model").sort_index()
    months = table.index.to_numpy().astype("datetime64[M]")
    rows = []
    for ref in REFERENCES[task]:
        if ref not in table:
            continue
        for model in models:
            if model == ref or model not in table:
                continue
            diff = (table[model] - table[ref]).to_numpy()[:, None]
            if not np.isfinite(diff).any():
                continue
            iv = block_bootstrap(diff, months, block=BLOCK, n=BOOTSTRAP, seed=0)
            verdict = ("not significant" if not iv.significant[0] else
                       "better" if iv.mean[0] < 0 else "worse")
            rows.append({"model": model, "against": ref, "loss": monthly_loss(meta, task),
                         "mean change": float(iv.mean[0]), "ci low": float(iv.low[0]),
                         "ci high": float(iv.high[0]), "months": int(iv.n_months[0]),
                         "verdict": verdict})
    return pd.DataFrame(rows, columns=["model", "against", "loss", "mean change", "ci low",
                                       "ci high", "months", "verdict"])


def mascon_gains(run: Path, grid: xr.Dataset, models: list[str]
                 ) -> tuple[pd.DataFrame, dict[str, dict[str, np.ndarray]]]:
    """Per-mascon downscaling gain on the downscale test months: for each model, the share
    of mascons where its sub-mascon error (mean squared ``D ŷ − D y`` over the mascon's
    cells, mean over seeds) is significantly below that of each downscale reference
    (block bootstrap per mascon), and the per-mascon verdicts (+1 better, 0 not
    significant, −1 worse) for the gain map."""
    from suite.kernels import deviation
    from suite.mascons import build_mascons
    from suite.significance import block_bootstrap

    if "truth" not in grid:
        return pd.DataFrame(), {}
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
        if model not in models and model not in REFERENCES["downscale"]:
            continue
        with xr.open_dataset(path) as ds:
            values = ds["twsa"].values[split].astype(np.float64)
        losses.setdefault(model, []).append(loss(values))
    mean = {k: np.mean(v, axis=0) for k, v in losses.items()}
    rows: list[dict] = []
    maps: dict[str, dict[str, np.ndarray]] = {}
    for ref in REFERENCES["downscale"]:
        if ref not in mean:
            continue
        maps[ref] = {}
        for model in models:
            if model == ref or model not in mean:
                continue
            iv = block_bootstrap(mean[model] - mean[ref], months, block=BLOCK, n=BOOTSTRAP,
                                 seed=0)
            sig = iv.significant
            verdict = np.where(sig & (iv.mean < 0), 1, np.where(sig & (iv.mean > 0), -1, 0))
            maps[ref][model] = verdict
            rows.append({"model": model, "against": ref, "mascons": n,
                         "better (%)": 100.0 * float((verdict == 1).mean()),
                         "worse (%)": 100.0 * float((verdict == -1).mean())})
    return pd.DataFrame(rows), maps


# ---- documents -----------------------------------------------------------------------------

def _benchmarks(run: Path) -> pd.DataFrame:
    rows = []
    for path in sorted((run / "benchmarks").glob("*.json")) if (run / "benchmarks").exists() \
            else []:
        data = json.loads(path.read_text())
        for b in data.get("benchmarks", []):
            rows.append({"benchmark": b["name"], "group": b.get("group") or "",
                         "median_ms": 1e3 * b["stats"]["median"], "rounds": b["stats"]["rounds"]})
    return pd.DataFrame(rows)


def _fmt(df: pd.DataFrame) -> pd.DataFrame:
    """Numbers to 4 significant digits; a ``NAME_spread`` column joins its ``NAME`` column as
    "mean ± spread" (just the mean for a model that ran once)."""
    out = df.copy()
    for name in [c for c in df.columns if f"{c}_spread" in df.columns]:
        spread = df[f"{name}_spread"]
        out[name] = [f"{m:.4g} ± {d:.2g}" if np.isfinite(d) else f"{m:.4g}"
                     for m, d in zip(df[name], spread, strict=True)]
        out = out.drop(columns=f"{name}_spread")
    return out.map(lambda v: f"{v:.4g}" if isinstance(v, float) else v)


def _task_sections(task: str, run: Path, scores: pd.DataFrame, timing: pd.DataFrame,
                   monthly: pd.DataFrame, meta: dict, grid: xr.Dataset, figs: Path
                   ) -> tuple[list[tuple[str, str, pd.DataFrame]], list[str], pd.DataFrame]:
    """A task's sections (leaderboard, significance, per-mascon gain) and figures."""
    from suite import figures

    rank = ranking_metric(meta, task)
    board = leaderboard(scores, timing, meta, task)
    title = TASK_TITLES[task]
    if board.empty:
        why = NO_TRUTH if rank is None else (
            "No model of this run takes part: every one needs the month's GRACE.")
        return [(title, why, board)], [], board
    missing = sorted(set(scores["model"]) - set(board.index))
    seeds = meta["seeds"]
    text = (f"Ranked by `{rank}` on the `{task}` months (region "
            f"`{meta['config']['ranking']['region']}`), mean over seeds {seeds}"
            + (" ± the spread (standard deviation over seeds) of the models that ran "
               "several" if any(c.endswith("_spread") for c in board.columns) else "") + ".")
    if task == "gapfill":
        text += (" `nse_mascon_grace` here compares mascon means with the GRACE withheld "
                 "from every model.")
    if missing:
        text += (f" Taking no part (they need the month's GRACE): {', '.join(missing)}.")
    unc = read_uncertainty(run)
    sel = unc[(unc["split"] == task) & (unc["region"] == "domain")
              & (unc["metric"] == "crps")].set_index("model")["value"]
    if not sel.empty:  # the CRPS of the ensemble's calibrated σ (one value per model)
        board.insert(len(board.columns) - 1, "crps", sel.reindex(board.index))
        text += (" `crps` (mm): the Gaussian CRPS of the seed ensemble's mean and "
                 "calibrated σ.")
    sections = [(title, text, board)]
    sig = significance(monthly, meta, task, list(board.index))
    if not sig.empty:
        sections.append((
            f"{task}: differences from the reference models",
            f"Change of the monthly `{monthly_loss(meta, task)}` (mm², mean over seeds; "
            f"negative is better) against {', '.join(REFERENCES[task])}, with a 95% interval "
            f"from a paired block bootstrap ({BOOTSTRAP} resamples of {BLOCK}-month calendar "
            "blocks, which keeps the months' autocorrelation). A difference is called only "
            "where the interval excludes 0.", sig.set_index("model")))
    u_board = uncertainty_board(unc[unc["region"].isin(["domain", "hotspots"])], task,
                                list(board.index))
    if not u_board.empty:
        sections.append((
            f"{task}: how wrong a cell can be (calibrated 1-σ)",
            "Each model's seed-ensemble mean with its 1-σ (the seed spread, GRACE's σ in "
            "months whose GRACE the model uses, and a disaggregation term fitted on the "
            "validation months; see the README), scored on this task's months: the share of "
            "cell-months within ±1σ (68% if calibrated) and ±2σ (95%), the spread–skill "
            "ratio √(mean σ²)/RMSE (1 if calibrated) and the Gaussian CRPS (mm, lower is "
            "better); the same at the hotspot cells, whose sub-mascon trend no input shows.",
            u_board))
    names = figures.figure_leaderboard(board, str(rank), figs, task=task)
    names += figures.figure_speed(board, str(rank), figs, task=task)
    if task == "downscale":
        gains, maps = mascon_gains(run, grid, list(board.index))
        if not gains.empty:
            sections.append((
                "downscale: per-mascon gain",
                "Share of mascons where a model's sub-mascon error on the downscale months "
                "is significantly below (better) or above (worse) the reference's, by a "
                f"block bootstrap per mascon ({BOOTSTRAP} resamples, {BLOCK}-month blocks).",
                gains.set_index("model")))
            for ref, gain in maps.items():
                if gain:
                    names += figures.figure_gain_map(grid, gain, figs, reference=ref)
    return sections, names, board


def build_report(run: str | Path) -> Path:
    """Write ``figures/``, ``index.md`` and ``index.html`` into the run folder."""
    from suite import figures

    run = Path(run)
    meta = json.loads((run / "meta.json").read_text())
    scores = pd.read_csv(run / "scores.csv")
    timing = pd.read_csv(run / "timing.csv")
    monthly = pd.read_csv(run / "monthly.csv")
    figs = run / "figures"
    figs.mkdir(exist_ok=True)
    with xr.open_dataset(run / "grid.nc") as grid:
        grid = grid.load()
    preds = figures.load_predictions(run)
    sections: list[tuple[str, str, pd.DataFrame]] = []
    names: list[str] = []
    boards = {}
    for task in ("downscale", "gapfill"):
        task_sections, task_figures, boards[task] = _task_sections(
            task, run, scores, timing, monthly, meta, grid, figs)
        sections += task_sections
        names += task_figures
    sections.append((
        "Consistency with GRACE (not ranked)",
        "Agreement of mascon means with the GRACE the models were given, on the downscale "
        "months: `mascon` and any `+conserve` model reproduce it exactly, noise included, so "
        "this is a check of the bookkeeping, never a score to rank on.",
        consistency(scores, timing, meta)))
    if (run / "worlds.csv").exists():
        worlds = pd.read_csv(run / "worlds.csv")
        for task, board in boards.items():
            if board.empty:
                continue
            table = verdicts(worlds, meta, task=task, order=list(board.index))
            held = int((table["holds in every world"] == "yes").sum())
            sections.append((
                f"{task}: verdict stability",
                f"Each pair of models ranked in the primary world (`{meta['worlds'][0]}`): in "
                f"how many of the {len(meta['worlds'])} twin worlds ({', '.join(meta['worlds'])})"
                f" the first beats the second on `{ranking_metric(meta, task)}` (mean over "
                f"seeds). {held} of {len(table)} verdicts hold in every world; only those are "
                "verdicts a user can rely on.", table.set_index("first")))
    timing_table = timing.groupby("model").mean(numeric_only=True).drop(
        columns=["seed", "task_start_s", "task_end_s"], errors="ignore")
    sections.append(("Speed", "Wall time and peak resident memory per model (mean over "
                     "seeds; `task_seconds` is the whole task, fit, predictions and "
                     f"scores, on {meta.get('executor', 'in-process')}).", timing_table))
    names += figures.figure_timeline(timing, figs)
    bench = _benchmarks(run)
    if not bench.empty:
        sections.append(("Speed benchmarks", "pytest-benchmark medians (tests/bench).", bench))
    unc = read_uncertainty(run)
    if not unc.empty:
        names += figures.figure_reliability(unc[unc["region"] == "domain"], figs)
    names += figures.figure_taylor(grid, preds, figs) + figures.figure_series(grid, preds, figs)
    names += figures.figure_maps(run, grid, preds, meta, figs)
    inputs = ("twin world (synthetic)" if meta["config"]["inputs"]["grace"] is None
              else "real-format files")
    md = [f"# twsbench run `{meta['run_id']}`", "",
          f"- domain: {meta['grids'].get('domain')}; {meta['grids'].get('cells')}",
          f"- months: {meta['grids'].get('months')}; splits: {meta['grids'].get('splits')}",
          f"- inputs: {inputs}"
          + (f" ({meta['worlds'][0]})" if meta.get("worlds") else "")
          + f"; truth: {'yes' if meta['has_truth'] else 'no'}",
          f"- versions: {', '.join(f'{k} {v}' for k, v in meta['versions'].items())}",
          f"- seeds: {meta['seeds']}; stage seconds: "
          + ", ".join(f"{k} {v:.1f}" for k, v in meta["stage_seconds"].items()), "",
          "Two tasks are scored on their own test months. **downscale**: months with GRACE, "
          "which every model may use; what counts is the part below the mascon scale. "
          "**gapfill**: the held-out blocks, whose GRACE is withheld from everything the "
          "models see, and the months without GRACE; models that need the month's GRACE "
          "take no part.", ""]
    for title, text, table in sections:
        md += [f"## {title}", "", text, "", _fmt(table.reset_index()).to_markdown(index=False)
               if not table.empty else "(none)", ""]
    md += ["## Figures", ""] + [f"![{f}](figures/{f})" for f in names] + [""]
    md += ["Full tables: `scores.csv` (long: run_id, model, seed, split, region, metric, value, "
           "higher_is_better; the split names the task), `timing.csv`, `monthly.csv`.", ""]
    _write(run / "index.md", "\n".join(md))

    body = [f"<h1>twsbench run <code>{html.escape(meta['run_id'])}</code></h1><ul>"]
    body += [f"<li>{_inline(line[2:])}</li>" for line in md[2:7]]
    body.append(f"</ul><p>{_inline(md[8])}</p>")
    for title, text, table in sections:
        body.append(f"<h2>{html.escape(title)}</h2><p>{_inline(text)}</p>")
        body.append("<div class='table'>" + _fmt(table.reset_index()).to_html(
            index=False, border=0) + "</div>" if not table.empty else "<p>(none)</p>")
    body.append("<h2>Figures</h2>")
    for f in names:
        data = base64.b64encode((figs / f).read_bytes()).decode()
        body.append(f'<figure><img alt="{html.escape(f)}" src="data:image/png;base64,{data}">'
                    f"<figcaption>{html.escape(f)}</figcaption></figure>")
    style = ("body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;"
             "color:#222}table{border-collapse:collapse;font-size:13px}td,th{padding:3px 8px;"
             "border-bottom:1px solid #ddd;text-align:right}img{max-width:100%;height:auto}"
             "figure{margin:1em 0}.table{max-width:100%;overflow-x:auto}")
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>twsbench "
            f"{html.escape(meta['run_id'])}</title><style>{style}</style></head><body>"
            + "\n".join(body) + "</body></html>")
    _write(run / "index.html", page)
    return run / "index.html"


def _inline(text: str) -> str:
    """A line of the Markdown text as HTML: escaped, with `code` and **strong**."""
    import re

    out = html.escape(text, quote=False)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", out)


def _write(path: Path, text: str) -> None:
    cache.write_text(path, text)
