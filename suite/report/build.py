"""The comparison report, built only from a run folder's saved files.

Reads ``scores.csv``, ``timing.csv``, ``uncertainty.csv``, ``significance.csv``,
``mascon_gains.csv``, ``meta.json``, ``grid.nc``, ``predictions/*.nc`` and
``benchmarks/*.json``; writes ``figures/*.png``,
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

from twsbench.core import cache
from twsbench.core.errors import TwsbenchError
from twsbench.running.choice import release_choice
from twsbench.scoring.comparisons import (
    BLOCK,
    MAP_REFERENCE,
    VERDICT_MAP,
    WORLD_COLUMNS,
    lead,
    monthly_loss,
    resamples,
    runner_up,
)
from twsbench.scoring.leaderboards import (
    NO_TRUTH,
    REFERENCES,
    consistency,
    leaderboard,
    ranking_metric,
    stability,
)

TASK_TITLES = {"downscale": "Downscale (months with GRACE, every model may use it)",
               "gapfill": "Gap-fill (months whose GRACE no model has)"}

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


def _read_table(run: Path, name: str) -> pd.DataFrame:
    """A table of the run folder; empty when the run has none (e.g. no truth)."""
    path = run / name
    if not path.exists() or path.stat().st_size <= 1:
        return pd.DataFrame()
    return pd.read_csv(path)


def _gains(run: Path, models: list[str]) -> tuple[pd.DataFrame, dict[str, dict[str, np.ndarray]]]:
    """``mascon_gains.csv`` of the ``models``: the share of mascons better and worse than
    each reference, and the per-mascon verdicts for the gain maps."""
    table = _read_table(run, "mascon_gains.csv")
    rows: list[dict] = []
    maps: dict[str, dict[str, np.ndarray]] = {}
    if table.empty:
        return pd.DataFrame(), maps
    for (ref, model), sel in table.groupby(["against", "model"], sort=False):
        if model not in models:
            continue
        verdict = sel.sort_values("mascon")["verdict"].to_numpy()
        maps.setdefault(str(ref), {})[str(model)] = verdict
        rows.append({"model": model, "against": ref, "mascons": verdict.size,
                     "better (%)": 100.0 * float((verdict == 1).mean()),
                     "worse (%)": 100.0 * float((verdict == -1).mean())})
    order = {m: k for k, m in enumerate(models)}
    for ref in maps:
        maps[ref] = dict(sorted(maps[ref].items(), key=lambda kv: order[kv[0]]))
    out = pd.DataFrame(rows)
    return (_in_order(out, REFERENCES["downscale"], models) if rows else out), maps


def _in_order(table: pd.DataFrame, references: tuple[str, ...], models: list[str]
              ) -> pd.DataFrame:
    """Rows by reference, then by the leaderboard's order of models."""
    rank = {"against": {r: k for k, r in enumerate(references)},
            "model": {m: k for k, m in enumerate(models)}}
    return table.sort_values(["against", "model"], key=lambda c: c.map(rank[str(c.name)]))


def _task_sections(task: str, run: Path, scores: pd.DataFrame, timing: pd.DataFrame,
                   meta: dict, grid: xr.Dataset, figs: Path
                   ) -> tuple[list[tuple[str, str, pd.DataFrame]], list[str], pd.DataFrame]:
    """A task's sections (leaderboard, significance, per-mascon gain) and figures."""
    from twsbench.report import figures

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
    sig = _read_table(run, "significance.csv")
    references = tuple(dict.fromkeys([*REFERENCES[task],
                                      *(meta["config"]["ranking"].get("against") or [])]))
    if not sig.empty:
        sig = sig[(sig["task"] == task) & sig["model"].isin(board.index)].drop(columns="task")
        sig = _in_order(sig, references, list(board.index))
    if not sig.empty:
        sections.append((
            f"{task}: differences from the reference models",
            f"Change of the monthly `{monthly_loss(meta, task)}` (mm², mean over seeds; "
            f"negative is better) against {', '.join(references)}, with a 95% interval "
            f"from a paired block bootstrap ({resamples(meta)} resamples of {BLOCK}-month calendar "
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
            "better); the same at the hotspot cells, whose sub-mascon trend the inputs show "
            "in part at most.",
            u_board))
    names = figures.figure_leaderboard(board, str(rank), figs, task=task)
    names += figures.figure_speed(board, str(rank), figs, task=task)
    if task == "downscale":
        gains, maps = _gains(run, list(board.index))
        if not gains.empty:
            sections.append((
                "downscale: per-mascon gain",
                "Share of mascons where a model's sub-mascon error on the downscale months "
                "is significantly below (better) or above (worse) the reference's, by a "
                f"block bootstrap per mascon ({resamples(meta)} resamples, {BLOCK}-month "
                "blocks).",
                gains.set_index("model")))
            for ref, gain in maps.items():
                if gain:
                    names += figures.figure_gain_map(grid, gain, figs, reference=ref)
    return sections, names, board


def _tuning_table(meta: dict) -> pd.DataFrame:
    rows = []
    for name, status in meta.get("tuning_status", {}).items():
        if status["tuned"]:
            rows.append({"model": name, "tuned": "yes", "trials": status.get("trials"),
                         "pruned": status.get("pruned"), "first": status.get("first"),
                         "best": status.get("best"), "cpu_seconds": status.get("cpu_seconds"),
                         "tuning world": status.get("world"), "why not": ""})
        else:
            rows.append({"model": name, "tuned": "no", "why not": status["why"]})
    return pd.DataFrame(rows).set_index("model") if rows else pd.DataFrame()


def _verdict(run: Path, scores: pd.DataFrame, timing: pd.DataFrame, meta: dict
             ) -> tuple[str, pd.DataFrame]:
    """The run's verdict, per task: the leader of the primary world, its margin over the
    second and whether its lower monthly loss is significant, and the model ``twsbench
    release`` would publish."""
    try:
        released, _ = release_choice(scores, meta, str(run))
    except (TwsbenchError, KeyError) as err:  # no task to release on, or a model unknown here
        released = f"none ({err})"
    monthly = pd.read_csv(run / "monthly.csv")
    rows: list[dict[str, object]] = []
    for task in ("downscale", "gapfill"):
        board = leaderboard(scores, timing, meta, task)
        metric = ranking_metric(meta, task)
        if board.empty or metric is None:
            rows.append({"task": task, "leader": "not ranked (no truth)" if metric is None
                         else "no model"})
            continue
        leader, score = str(board.index[0]), float(board[metric].iloc[0])
        row: dict[str, object] = {"task": task, "metric": metric, "leader": leader,
                                  "score": score}
        second = runner_up(board, monthly, meta, task)
        if second is not None:
            test = lead(monthly, meta, task, leader, second)
            row |= {"second": second, "margin": score - float(board.loc[second, metric]),
                    "mean change": test["mean change"],
                    "95% interval": f"{test['ci low']:.4g} to {test['ci high']:.4g}",
                    "lead": test["lead"]}
        rows.append(row)
    world = f" in the primary world `{meta['worlds'][0]}`" if meta.get("worlds") else ""
    text = (f"Per task, the leader on its primary score (mean over seeds){world}, its margin "
            "over the second (the next model whose monthly loss differs from the leader's), "
            "and whether its lower monthly loss is significant (mean change and 95% interval "
            f"of a paired block bootstrap over {BLOCK}-month blocks; "
            "negative: the leader's loss is lower). Where the lead is not significant, the "
            "first two are tied on this evidence; `reversed`: the second's monthly loss is "
            "significantly lower, so the primary score (a median over cells) and the loss "
            "(pooled over cells) disagree and neither crowns the leader. `twsbench release` "
            "would publish "
            f"**{released}**.")
    failed = meta.get("failed_tasks", [])
    if failed:
        models = sorted({f["model"] for f in failed})
        text += (f" {len(failed)} task(s) failed ({', '.join(models)}): those models are "
                 "left out of this verdict (see Failed tasks).")
    return text, pd.DataFrame(rows).set_index("task")


def _verdict_map_section(run: Path, figs: Path) -> tuple[str, pd.DataFrame, list[str]]:
    """The verdict map of a run over several worlds: its text, its table (one row per world
    and task) and its figures."""
    from twsbench.report import figures

    table = pd.read_csv(run / VERDICT_MAP)
    dims = figures.map_dimensions(table)
    names = figures.figure_verdict_map(table, figs)
    shown = table[["world", *[c for c in WORLD_COLUMNS if c in dims], "task", "leader",
                   "second", "margin", "mean change", "ci low", "ci high", "lead"]]
    summary = "; ".join(
        f"{task}: " + ", ".join(f"`{m}` leads in {n}" for m, n in
                                table[table["task"] == task]["leader"].value_counts().items())
        for task in dict.fromkeys(table["task"]))
    text = (f"Which model leads in each of the {table['world'].nunique()} worlds, and by how "
            "much over the second (the primary score's margin; the monthly loss's mean "
            f"change and 95% interval, paired block bootstrap over {BLOCK}-month blocks). "
            "Hatched in the figures: the lead is not significant (or reversed: the second's "
            "monthly loss is significantly lower). " + summary + ". "
            "Full table: `verdict_map.csv`.")
    return text, shown.set_index("world"), names


def _located_section(run: Path, meta: dict, figs: Path
                     ) -> tuple[str, pd.DataFrame, list[str]]:
    """Where the run's inputs sit on the twin's axes, drawn on the verdict map of
    ``[report] verdict_map`` (copied into the run folder)."""
    from twsbench.report import figures

    located = pd.DataFrame(meta["located"]).set_index("axis")
    point = {axis: (r["estimate"], r["low"], r["high"]) for axis, r in located.iterrows()}
    names = figures.figure_verdict_map(pd.read_csv(run / MAP_REFERENCE), figs, point,
                                       name="verdict_map_located")
    text = ("Each axis of the twin estimated from these inputs alone (`twsbench inspect "
            "--locate`: no truth read), with its interval, drawn on the verdict map of "
            f"`{meta['config']['report']['verdict_map']}`. The map's verdict applies to these "
            "inputs only as far as the twin's relations between inputs and truth hold for "
            "them.")
    return text, located, names


def build_report(run: str | Path) -> Path:
    """Write ``figures/``, ``index.md`` and ``index.html`` into the run folder."""
    from twsbench.report import figures

    run = Path(run)
    meta = json.loads((run / "meta.json").read_text())
    scores = pd.read_csv(run / "scores.csv")
    timing = pd.read_csv(run / "timing.csv")
    figs = run / "figures"
    figs.mkdir(exist_ok=True)
    with xr.open_dataset(run / "grid.nc") as grid:
        grid = grid.load()
    preds = figures.load_predictions(run)
    sections: list[tuple[str, str, pd.DataFrame]] = []
    placed: dict[str, list[str]] = {}  # figures shown in a section rather than at the end
    sections.append(("Verdict", *_verdict(run, scores, timing, meta)))
    if (run / VERDICT_MAP).exists():
        text, table, placed["Verdict map"] = _verdict_map_section(run, figs)
        sections.append(("Verdict map", text, table))
    if meta.get("located") and (run / MAP_REFERENCE).exists():
        title = "Where these inputs sit on the verdict map"
        text, table, placed[title] = _located_section(run, meta, figs)
        sections.append((title, text, table))
    failed = meta.get("failed_tasks", [])
    if failed:
        sections.append((
            "Failed tasks",
            f"{len(failed)} task(s) failed. Each failed model (every variant of its fit) is "
            "left off the leaderboards below rather than ranked on fewer seeds; the other "
            "models' scores are those of a run without it. Tracebacks: `failures.log`. "
            "After a fix, the same `twsbench run` command runs only these tasks again.",
            pd.DataFrame(failed)[["model", "seed", "world", "stage", "kind", "reason"]]
            .set_index("model")))
    reused = meta.get("reused_tasks", [])
    if reused:
        sections.append((
            "Tasks taken from an earlier run",
            f"{len(reused)} finished task(s) of an interrupted or partly failed run of the "
            "same config and code were taken as they were, not run again.",
            pd.DataFrame({"task": reused}).set_index("task")))
    names: list[str] = []
    boards = {}
    for task in ("downscale", "gapfill"):
        task_sections, task_figures, boards[task] = _task_sections(
            task, run, scores, timing, meta, grid, figs)
        sections += task_sections
        names += task_figures
    sections.append((
        "Consistency with GRACE (not ranked)",
        "Agreement of mascon means with the GRACE the models were given, on the downscale "
        "months: `mascon` and any `+conserve` model reproduce it exactly, noise included, so "
        "this is a check of the bookkeeping, never a score to rank on.",
        consistency(scores, timing, meta)))
    tuning = _tuning_table(meta)
    if not tuning.empty:
        sections.append((
            "Tuning", "Each learned model's settings: tuned by `twsbench tune` (the same "
            "number of trials for every model, scored on validation months of a tuning "
            "world this run does not score) or not, and why. Objective values are on the "
            "tuning world's validation months; `first` is the trial with the model's "
            "settings before tuning.", tuning))
    if (run / "worlds.csv").exists():
        worlds = pd.read_csv(run / "worlds.csv")
        for task, board in boards.items():
            if board.empty:
                continue
            table = stability(worlds, meta, task=task, order=list(board.index))
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
        md += [f"![{f}](figures/{f})\n" for f in placed.get(title, [])]
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
        body += [_embedded(figs, f) for f in placed.get(title, [])]
    body.append("<h2>Figures</h2>")
    body += [_embedded(figs, f) for f in names]
    style = ("body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;"
             "color:#222}table{border-collapse:collapse;font-size:13px}td,th{padding:3px 8px;"
             "border-bottom:1px solid #ddd;text-align:right}img{max-width:100%;height:auto}"
             "figure{margin:1em 0}.table{max-width:100%;overflow-x:auto}")
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>twsbench "
            f"{html.escape(meta['run_id'])}</title><style>{style}</style></head><body>"
            + "\n".join(body) + "</body></html>")
    _write(run / "index.html", page)
    return run / "index.html"


def _embedded(figs: Path, name: str) -> str:
    """A figure of the run as an HTML ``<figure>`` holding the PNG itself."""
    data = base64.b64encode((figs / name).read_bytes()).decode()
    return (f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(name)}</figcaption></figure>")


def _inline(text: str) -> str:
    """A line of the Markdown text as HTML: escaped, with `code` and **strong**."""
    import re

    out = html.escape(text, quote=False)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", out)


def _write(path: Path, text: str) -> None:
    cache.write_text(path, text)
