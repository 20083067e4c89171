"""The comparison report, built only from a run folder's saved files.

Reads ``scores.csv``, ``monthly.csv``, ``timing.csv``, ``meta.json``, ``grid.nc``,
``predictions/*.nc`` and ``benchmarks/*.json``; writes ``figures/*.png``, ``index.md`` and a
self-contained ``index.html`` (figures embedded, no external resources).
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
from suite.figures import (
    figure_leaderboard,
    figure_maps,
    figure_series,
    figure_speed,
    figure_taylor,
    load_predictions,
)
from suite.scores import higher_is_better

KEY_SCORES = ("nse_fine_truth", "kge_fine_truth", "rmse_fine_truth", "r_submascon_truth",
              "nse_submascon_truth",
              "nse_mascon_grace", "rmse_mascon_grace", "conservation_residual",
              "r_submascon_wghm")
BOOTSTRAP = 2000


def ranking_metric(meta: dict) -> str:
    metric = meta["config"]["ranking"]["metric"]
    if metric == "auto":
        return "nse_fine_truth" if meta["has_truth"] else "nse_mascon_grace"
    return metric


def leaderboard(scores: pd.DataFrame, timing: pd.DataFrame, meta: dict,
                split: str | None = None) -> pd.DataFrame:
    """Mean and spread over seeds of the key scores on a split, ranked."""
    rank = ranking_metric(meta)
    split = split or meta["config"]["ranking"]["report_split"]
    region = meta["config"]["ranking"]["region"]
    sel = scores[(scores["split"] == split) & (scores["region"] == region)]
    grouped = sel.groupby(["model", "metric"])["value"]
    mean, spread = grouped.mean().unstack(), grouped.std(ddof=0).unstack()
    out = pd.DataFrame(index=mean.index)
    for name in dict.fromkeys((rank, *KEY_SCORES)):
        if name in mean.columns:
            out[name] = mean[name]
            out[f"{name}_spread"] = spread[name].fillna(0.0)
    t = timing.groupby("model")[["fit_seconds", "predict_seconds"]].mean()
    out["seconds"] = (t["fit_seconds"] + t["predict_seconds"]).reindex(out.index)
    better = higher_is_better(rank)
    ascending = better is False
    out = out.sort_values(rank, ascending=ascending, na_position="last")
    out.insert(0, "rank", np.arange(1, len(out) + 1))
    return out


def verdicts(worlds: pd.DataFrame, meta: dict, order: list[str]) -> pd.DataFrame:
    """For each pair of models (the first ranked above the second in the primary world), in
    how many worlds the first beats the second on the ranking metric (mean over seeds, report
    split and region), and whether that holds in every world."""
    rank = ranking_metric(meta)
    ranking = meta["config"]["ranking"]
    sel = worlds[(worlds["metric"] == rank) & (worlds["split"] == ranking["report_split"])
                 & (worlds["region"] == ranking["region"])]
    table = sel.groupby(["world", "model"])["value"].mean().unstack("model")
    sign = -1.0 if higher_is_better(rank) is False else 1.0
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


def scorecard(scores: pd.DataFrame, monthly: pd.DataFrame, meta: dict) -> pd.DataFrame:
    """% difference from ``mascon`` on the report split, with a paired bootstrap over months
    of the monthly mean squared error (fine truth when present, else GRACE)."""
    split = meta["config"]["ranking"]["report_split"]
    region = meta["config"]["ranking"]["region"]
    sel = scores[(scores["split"] == split) & (scores["region"] == region)]
    means = sel.groupby(["model", "metric"])["value"].mean().unstack()
    if "mascon" not in means.index:
        return pd.DataFrame()
    ref = means.loc["mascon"]
    metric = "mse_fine_truth" if meta["has_truth"] else "mse_mascon_grace"
    mon = monthly[(monthly["metric"] == metric) & (monthly["split"] == split)]
    mon = mon.groupby(["model", "month"])["value"].mean().unstack("model")
    rng = np.random.default_rng(0)
    rows = []
    for model in means.index:
        row = {"model": model}
        for name in KEY_SCORES:
            if name in means.columns and np.isfinite(ref.get(name, np.nan)) and abs(
                    ref[name]) > 1e-6:
                row[name] = 100.0 * (means.loc[model, name] - ref[name]) / abs(ref[name])
        if model in mon.columns and "mascon" in mon.columns and model != "mascon":
            diff = (mon[model] - mon["mascon"]).dropna().to_numpy()
            if diff.size >= 3:
                idx = rng.integers(0, diff.size, (BOOTSTRAP, diff.size))
                boot = diff[idx].mean(axis=1)
                lo, hi = np.percentile(boot, [2.5, 97.5])
                row["mse_change"] = float(diff.mean())
                row["ci_low"], row["ci_high"] = float(lo), float(hi)
                row["significant"] = bool(lo > 0 or hi < 0)
        rows.append(row)
    return pd.DataFrame(rows).set_index("model")


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
    return df.map(lambda v: f"{v:.4g}" if isinstance(v, float) else v)


def build_report(run: str | Path) -> Path:
    """Write ``figures/``, ``index.md`` and ``index.html`` into the run folder."""
    run = Path(run)
    meta = json.loads((run / "meta.json").read_text())
    scores = pd.read_csv(run / "scores.csv")
    timing = pd.read_csv(run / "timing.csv")
    monthly = pd.read_csv(run / "monthly.csv")
    figs = run / "figures"
    figs.mkdir(exist_ok=True)
    rank = ranking_metric(meta)
    board = leaderboard(scores, timing, meta)
    chosen = leaderboard(scores, timing, meta, split=meta["config"]["ranking"]["choose_split"])
    card = scorecard(scores, monthly, meta)
    with xr.open_dataset(run / "grid.nc") as grid:
        grid = grid.load()
    preds = load_predictions(run)
    figures = figure_leaderboard(board, rank, figs) + figure_speed(board, rank, figs)
    figures += figure_taylor(grid, preds, figs) + figure_series(grid, preds, figs)
    figures += figure_maps(run, grid, preds, meta, figs)
    bench = _benchmarks(run)
    timing_table = timing.groupby("model").mean(numeric_only=True).drop(columns="seed")

    sections = [
        ("Leaderboard", f"Ranked by `{rank}` on the **{meta['config']['ranking']['report_split']}"
         f"** months (region `{meta['config']['ranking']['region']}`), mean over seeds "
         f"{meta['seeds']} with the spread (standard deviation) beside it. The release picks its "
         f"model on the **{meta['config']['ranking']['choose_split']}** months: "
         f"`{chosen.index[0]}`.", board),
        ("Scorecard against mascon", "Change from the `mascon` parent product in %; "
         "`mse_change`: mean change of the monthly mean squared error (mm²) with a 95% paired "
         f"bootstrap interval over months ({BOOTSTRAP} resamples); `significant` when the "
         "interval excludes 0.", card),
        ("Speed", "Wall time and peak resident memory per model (mean over seeds).",
         timing_table),
    ]
    if (run / "worlds.csv").exists():
        table = verdicts(pd.read_csv(run / "worlds.csv"), meta, list(board.index))
        held = int((table["holds in every world"] == "yes").sum())
        sections.insert(1, (
            "Verdict stability", f"Each pair of models ranked in the primary world "
            f"(`{meta['worlds'][0]}`): in how many of the {len(meta['worlds'])} twin worlds "
            f"({', '.join(meta['worlds'])}) the first beats the second on `{rank}` (mean over "
            f"seeds). {held} of {len(table)} verdicts hold in every world; only those are "
            "verdicts a user can rely on.", table.set_index("first")))
    if not bench.empty:
        sections.append(("Speed benchmarks", "pytest-benchmark medians (tests/bench).", bench))
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
          + ", ".join(f"{k} {v:.1f}" for k, v in meta["stage_seconds"].items()), ""]
    for title, text, table in sections:
        md += [f"## {title}", "", text, "", _fmt(table.reset_index()).to_markdown(index=False)
               if not table.empty else "(none)", ""]
    md += ["## Figures", ""] + [f"![{f}](figures/{f})" for f in figures] + [""]
    md += ["Full tables: `scores.csv` (long: run_id, model, seed, split, region, metric, value, "
           "higher_is_better), `timing.csv`, `monthly.csv`.", ""]
    _write(run / "index.md", "\n".join(md))

    body = [f"<h1>twsbench run <code>{html.escape(meta['run_id'])}</code></h1><ul>"]
    body += [f"<li>{html.escape(line[2:])}</li>" for line in md[2:7]]
    body.append("</ul>")
    for title, text, table in sections:
        body.append(f"<h2>{html.escape(title)}</h2><p>{html.escape(text)}</p>")
        body.append(_fmt(table.reset_index()).to_html(index=False, border=0)
                    if not table.empty else "<p>(none)</p>")
    body.append("<h2>Figures</h2>")
    for f in figures:
        data = base64.b64encode((figs / f).read_bytes()).decode()
        body.append(f'<figure><img alt="{html.escape(f)}" src="data:image/png;base64,{data}">'
                    f"<figcaption>{html.escape(f)}</figcaption></figure>")
    style = ("body{font-family:sans-serif;max-width:1200px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;font-size:13px}td,th{padding:3px 8px;"
             "border-bottom:1px solid #ddd;text-align:right}img{max-width:100%}")
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>twsbench "
            f"{html.escape(meta['run_id'])}</title><style>{style}</style></head><body>"
            + "\n".join(body) + "</body></html>")
    _write(run / "index.html", page)
    return run / "index.html"


def _write(path: Path, text: str) -> None:
    cache.write_text(path, text)
