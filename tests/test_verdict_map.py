"""The verdict map: one run over a grid of twin worlds (sub-mascon skill × human ratio) gives
each world's leader per task, whether its lead is significant, a figure per task and
``verdict_map.csv``; the report opens with the verdict."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tests import tiny
from twsbench.core.config import parse
from twsbench.pipeline.benchmark import run
from twsbench.report import figures

pytestmark = pytest.mark.slow  # four twin worlds, each run

NAMES = ["mascon", "pattern_transfer", "bilinear", "mascon_regression", "lightgbm",
         "lightgbm+residual"]
SMALL = [25.0, 29.0, 76.0, 82.0]
AXES = {"submascon_skill": [0.2, 0.8], "human_ratio": [0.0, 2.0]}


@pytest.fixture(scope="module")
def map_run(tmp_path_factory):
    table = tiny.table(domain={"bbox": SMALL}, twin={"seed": 1, **AXES},
                       models=tiny.quick(NAMES))
    run_dir, _ = run(parse(table), tmp_path_factory.mktemp("reports"))
    return run_dir


def test_each_world_gets_its_leader_and_its_place_on_the_map(map_run):
    table = pd.read_csv(map_run / "verdict_map.csv")
    worlds = pd.read_csv(map_run / "worlds.csv")
    places = {f"realistic-skill{s:g}-human{h:g}-seed1": (s, h)
              for s in AXES["submascon_skill"] for h in AXES["human_ratio"]}
    labels = list(places)
    assert list(dict.fromkeys(table["world"])) == labels
    assert sorted(set(table["task"])) == ["downscale", "gapfill"]
    for _, row in table.iterrows():
        assert (row["submascon_skill"], row["human_ratio"]) == places[row["world"]]
        # the leader is the best mean of the task's primary score in that world
        sel = worlds[(worlds["world"] == row["world"]) & (worlds["split"] == row["task"])
                     & (worlds["metric"] == row["metric"]) & (worlds["region"] == "domain")]
        means = sel.groupby("model")["value"].mean().dropna().sort_values(ascending=False)
        # the second: the next model that is not the same prediction (X+residual makes
        # X's gap-fill months, so the same scores)
        second = next(m for m in means.index[1:] if means[m] != means.iloc[0])
        assert row["leader"] == means.index[0] and row["second"] == second
        assert row["margin"] == pytest.approx(means.iloc[0] - means[second])
        # significant exactly when the interval lies below zero (the leader's loss lower);
        # reversed when it lies above (the second's loss lower)
        assert bool(row["significant"]) == (row["ci high"] < 0)
        assert row["lead"] == ("significant" if row["ci high"] < 0 else "reversed"
                               if row["ci low"] > 0 else "not significant")
    # the worlds differ: the skill changes what WaterGAP-driven models score
    lgbm = worlds[(worlds["model"] == "lightgbm") & (worlds["split"] == "downscale")
                  & (worlds["metric"] == "nse_submascon_truth") & (worlds["region"] == "domain")]
    assert lgbm["value"].nunique() == len(labels)


def test_the_report_opens_with_the_verdict_and_draws_the_map(map_run):
    text = (map_run / "index.md").read_text()
    sections = [line for line in text.splitlines() if line.startswith("## ")]
    assert sections[:2] == ["## Verdict", "## Verdict map"]
    verdict = text.split("## Verdict\n", 1)[1].split("\n## ", 1)[0]
    meta = json.loads((map_run / "meta.json").read_text())
    from twsbench.release.product import choose_model

    released, _ = choose_model(map_run, meta)
    assert f"would publish **{released}**" in verdict
    for task in ("downscale", "gapfill"):
        assert (map_run / "figures" / f"verdict_map_{task}.png").stat().st_size > 5000
        assert f"![verdict_map_{task}.png](figures/verdict_map_{task}.png)" in text
    page = (map_run / "index.html").read_text()
    assert page.count('alt="verdict_map_') == 2
    assert page.index("<h2>Verdict</h2>") < page.index("<h2>Verdict map</h2>")


def test_the_map_hatches_exactly_the_worlds_without_a_significant_lead():
    table = pd.DataFrame({
        "world": ["a", "b", "c", "d"], "realism": "realistic", "seed": 0,
        "submascon_skill": [0.2, 0.2, 0.8, 0.8], "submascon_share": np.nan,
        "human_ratio": [0.0, 2.0, 0.0, 2.0], "submascon_structure": np.nan,
        "task": "downscale", "metric": "nse_submascon_truth",
        "leader": ["bilinear", "bilinear", "soft_cnn", "soft_cnn"],
        "margin": [0.01, 0.2, 0.05, 0.3], "significant": [False, True, False, True]})
    colours = {"bilinear": "#1f77b4", "soft_cnn": "#ff7f0e"}
    fig = figures._verdict_map_figure(table, "downscale", colours)
    ax = fig.axes[0]
    cells = {(round(p.get_x() + 0.5), round(p.get_y() + 0.5)): p for p in ax.patches}
    assert len(cells) == 4
    # x: skill 0.2, 0.8; y: human 0, 2
    for (i, j), significant in {(0, 0): False, (0, 1): True, (1, 0): False,
                                (1, 1): True}.items():
        assert (cells[(i, j)].get_hatch() is None) == significant
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0.2", "0.8"]
    assert figures.map_dimensions(table) == ["submascon_skill", "human_ratio"]


def test_a_run_on_files_shows_where_its_inputs_sit_on_a_map(map_run, tmp_path):
    """A run on real-format files (no truth) with ``[report] verdict_map`` naming a map run:
    its inputs located from the files alone, drawn on that map in its report."""
    from twsbench.core.config import parse as parse_config
    from twsbench.prepare.files import resolve_inputs
    from twsbench.scoring.locate import locate_files

    files = resolve_inputs(parse_config(tiny.table(domain={"bbox": SMALL}, twin={"seed": 1})))
    inputs = {"grace": str(files.grace), "wghm": str(files.wghm),
              "era5": [str(p) for p in files.era5]}
    table = tiny.table(domain={"bbox": SMALL}, inputs=inputs,
                       models=tiny.quick(["mascon", "mascon_regression"]),
                       report={"verdict_map": str(map_run)})
    run_dir, _ = run(parse(table), tmp_path)
    meta = json.loads((run_dir / "meta.json").read_text())
    expected = locate_files(files.grace, files.wghm, files.era5)
    assert [(a["axis"], a["estimate"]) for a in meta["located"]] == [
        (a.axis, a.estimate) for a in expected]
    pd.testing.assert_frame_equal(pd.read_csv(run_dir / "verdict_map_reference.csv"),
                                  pd.read_csv(map_run / "verdict_map.csv"))
    text = (run_dir / "index.md").read_text()
    assert "## Where these inputs sit on the verdict map" in text
    section = text.split("## Where these inputs sit on the verdict map", 1)[1].split("\n## ")[0]
    assert "submascon_skill" in section and "human_ratio" in section
    for task in ("downscale", "gapfill"):
        assert f"verdict_map_located_{task}.png" in section


def test_a_missing_verdict_map_is_refused_before_the_run(tmp_path):
    from twsbench.core.errors import InputError
    from twsbench.running.plan import plan

    config = parse(tiny.table(report={"verdict_map": str(tmp_path / "nowhere")}))
    with pytest.raises(InputError, match=r"\[report\] verdict_map.*expected a map run's "
                                         r"verdict_map.csv .*found no such file"):
        plan(config)


def test_the_located_point_is_drawn_where_its_estimate_falls():
    table = pd.DataFrame({
        "world": ["a", "b", "c", "d"], "realism": "realistic", "seed": 0,
        "submascon_skill": [0.2, 0.2, 0.8, 0.8], "human_ratio": [0.5, 2.0, 0.5, 2.0],
        "task": "downscale", "metric": "nse_submascon_truth",
        "leader": ["bilinear", "bilinear", "soft_cnn", "soft_cnn"],
        "margin": [0.01, 0.2, 0.05, 0.3], "significant": [False, True, False, True]})
    point = {"submascon_skill": (0.5, 0.35, 0.65), "human_ratio": (1.25, 0.8, 1.7)}
    fig = figures._verdict_map_figure(table, "downscale", {"bilinear": "#1f77b4",
                                                           "soft_cnn": "#ff7f0e"}, point)
    (line,) = [ln for ln in fig.axes[0].lines if ln.get_marker() == "o"]
    # halfway between the two columns and the two rows
    assert line.get_xdata()[0] == pytest.approx(0.5) and line.get_ydata()[0] == pytest.approx(0.5)


@pytest.mark.parametrize("offset, expected", [(-40.0, "significant"), (0.0, "not significant"),
                                              (40.0, "reversed")])
def test_a_lead_counts_only_when_the_leaders_loss_is_lower(offset, expected):
    """The leader by its score can have the higher monthly loss (the score is a median over
    cells, the loss pooled): that lead is reversed, never significant."""
    from twsbench.scoring.comparisons import lead, monthly_loss

    meta = {"has_truth": True, "config": {"ranking": {"resamples": 500}}}
    loss = monthly_loss(meta, "gapfill")
    months = pd.period_range("2003-01", periods=48, freq="M").to_timestamp()
    rng = np.random.default_rng(0)
    base = 500.0 + 100.0 * rng.standard_normal(48)
    rows = [{"month": m, "model": model, "seed": 0, "split": "gapfill", "metric": loss,
             "value": v + (offset if model == "first" else 0.0) + rng.normal(0.0, 5.0)}
            for model in ("first", "second") for m, v in zip(months, base, strict=True)]
    out = lead(pd.DataFrame(rows), meta, "gapfill", "first", "second")
    assert out["lead"] == expected
    assert out["significant"] == (expected == "significant")
