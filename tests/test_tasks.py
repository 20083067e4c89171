"""The two tasks: what downscalers see of the withheld months, and what each task ranks on."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from tests import tiny
from tests.conftest import poison_grace
from twsbench.core.config import parse
from twsbench.pipeline.benchmark import run
from twsbench.prepare.files import resolve_inputs
from twsbench.prepare.store import prepare
from twsbench.running.runner import withheld
from twsbench.scoring.leaderboards import leaderboard, ranking_metric

pytestmark = pytest.mark.slow  # runs on poisoned and truthless worlds

#: every kind of model that predicts months without GRACE, and two that need it
GAPFILL_MODELS = ["wghm_anomaly", "mascon_regression", "random_forest", "lightgbm", "soft_cnn"]
NEEDS_GRACE = ["mascon", "bilinear"]


def _files_config(grace, files, models, truth=True) -> dict:
    inputs = {"grace": str(grace), "wghm": str(files.wghm),
              "era5": [str(p) for p in files.era5]}
    if truth:
        inputs["truth"] = str(files.truth)
    return tiny.table(inputs=inputs, models=models)


@pytest.fixture(scope="module")
def poisoned_runs(tmp_path_factory):
    """Two runs on the same twin files, one with the withheld months' GRACE poisoned."""
    out = tmp_path_factory.mktemp("poison")
    files = resolve_inputs(parse(tiny.TINY))
    models = tiny.quick(GAPFILL_MODELS + NEEDS_GRACE)
    clean_cfg = parse(_files_config(files.grace, files, models), str(out / "clean.toml"))
    full, _, _ = prepare(clean_cfg)
    months = full.months[full.splits["gapfill_withheld"]]
    poisoned = out / "poisoned" / files.grace.name
    poisoned.parent.mkdir()
    shutil.copy(files.grace, poisoned)
    poison_grace(poisoned, months)
    bad_cfg = parse(_files_config(poisoned, files, models), str(out / "bad.toml"))
    bad_full, _, _ = prepare(bad_cfg)
    clean_dir, _ = run(clean_cfg, out / "clean")
    bad_dir, _ = run(bad_cfg, out / "bad")
    return full, bad_full, clean_dir, bad_dir


def _prediction(run_dir, model) -> np.ndarray:
    with xr.open_dataset(run_dir / "predictions" / f"{model}__seed0.nc") as ds:
        return ds["twsa"].values


def test_poisoned_withheld_grace_changes_no_gapfill_prediction(poisoned_runs):
    full, bad_full, clean_dir, bad_dir = poisoned_runs
    withheld_months = full.splits["gapfill_withheld"]
    gapfill = full.splits["gapfill"]
    # the poison reached the prepared grids: the withheld months' GRACE differs by ~300 mm
    diff = bad_full.grace[withheld_months] - full.grace[withheld_months]
    assert np.nanmin(diff) > 200
    for model in GAPFILL_MODELS:
        clean, bad = _prediction(clean_dir, model), _prediction(bad_dir, model)
        assert np.isfinite(clean[gapfill]).all(), model
        np.testing.assert_array_equal(clean[gapfill], bad[gapfill], err_msg=model)
    for model in NEEDS_GRACE:  # no part in gapfill: nothing at the withheld months
        assert np.isnan(_prediction(clean_dir, model)[withheld_months]).all()


def test_withheld_months_move_no_baseline(poisoned_runs):
    full, bad_full, _, _ = poisoned_runs
    view, reference = withheld(full)
    bad_view, bad_reference = withheld(bad_full)
    np.testing.assert_array_equal(view.grace, bad_view.grace)  # NaN in the same places
    np.testing.assert_array_equal(view.grace_sigma, bad_view.grace_sigma)
    np.testing.assert_array_equal(view.has_grace, bad_view.has_grace)
    np.testing.assert_array_equal(view.features, bad_view.features)
    mask = full.splits["gapfill_withheld"]
    assert not view.has_grace[mask].any() and np.isnan(view.grace[mask]).all()
    # the scoring reference keeps the withheld months, on the view's baseline
    np.testing.assert_allclose(reference[view.has_grace], view.grace[view.has_grace])
    assert np.isfinite(reference[mask]).all()
    assert view.attrs["cache_key"] != full.attrs["cache_key"]


def test_gapfill_scores_compare_with_the_withheld_grace(poisoned_runs):
    _, _, clean_dir, bad_dir = poisoned_runs
    scores = {k: pd.read_csv(d / "scores.csv") for k, d in (("clean", clean_dir),
                                                            ("bad", bad_dir))}
    pick = lambda s: s[(s.split == "gapfill_withheld") & (s.region == "domain")  # noqa: E731
                       & (s.metric == "rmse_mascon_grace")].set_index("model")["value"]
    clean, bad = pick(scores["clean"]), pick(scores["bad"])
    # same predictions, a reference 300 mm away: the withheld GRACE is what is scored
    assert (bad - clean).dropna().min() > 100
    truth = lambda s: s[(s.split == "gapfill") & (s.metric == "nse_fine_truth")  # noqa: E731
                        & (s.region == "domain")].set_index("model")["value"]
    pd.testing.assert_series_equal(truth(scores["clean"]), truth(scores["bad"]))


@pytest.fixture(scope="module")
def no_truth_run(tmp_path_factory):
    """A real-format world without a truth, with models that copy GRACE exactly."""
    out = tmp_path_factory.mktemp("no-truth")
    files = resolve_inputs(parse(tiny.TINY))
    models = tiny.quick(["mascon+conserve", "mascon", "bilinear+conserve", "wghm_anomaly",
                         "mascon_regression", "lightgbm"])
    config = parse(_files_config(files.grace, files, models, truth=False),
                   str(out / "files.toml"))
    run_dir, _ = run(config, out / "reports")
    return run_dir


def test_without_a_truth_copying_grace_does_not_rank_first(no_truth_run):
    import json

    meta = json.loads((no_truth_run / "meta.json").read_text())
    scores = pd.read_csv(no_truth_run / "scores.csv")
    timing = pd.read_csv(no_truth_run / "timing.csv")
    assert not meta["has_truth"]
    assert ranking_metric(meta, "downscale") is None
    assert leaderboard(scores, timing, meta, "downscale").empty
    board = leaderboard(scores, timing, meta, "gapfill")
    assert ranking_metric(meta, "gapfill") == "nse_mascon_grace"
    assert list(board.index) and "mascon+conserve" not in board.index
    assert board.index[0] != "mascon+conserve"
    assert set(board.index) == {"wghm_anomaly", "mascon_regression", "lightgbm"}
    # where the models were given GRACE, copying it is perfect: consistency, not skill
    seen = scores[(scores.split == "downscale") & (scores.region == "domain")
                  & (scores.metric == "nse_mascon_grace")].set_index("model")["value"]
    assert seen["mascon+conserve"] == pytest.approx(1.0)
    page = (no_truth_run / "index.md").read_text()
    assert "cannot be scored without a truth" in page
    # no truth: nothing to calibrate σ against, and no uncertainty scores
    assert not (no_truth_run / "uncertainty.csv").exists()
    assert "calibrated 1-σ" not in page
    assert "Consistency with GRACE (not ranked)" in page


def test_twin_downscale_ranks_on_submascon_skill(tmp_path):
    import json

    models = tiny.quick(["mascon", "bilinear", "wghm_anomaly"])
    run_dir, _ = run(parse(tiny.table(models=models)), tmp_path)
    meta = json.loads((run_dir / "meta.json").read_text())
    scores = pd.read_csv(run_dir / "scores.csv")
    board = leaderboard(scores, pd.read_csv(run_dir / "timing.csv"), meta, "downscale")
    assert board.columns[1] == "nse_submascon_truth"
    assert board.loc["mascon", "nse_submascon_truth"] == 0.0
    assert not any(c.endswith("_spread") for c in board.columns)  # one seed: no spread
    gap = leaderboard(scores, pd.read_csv(run_dir / "timing.csv"), meta, "gapfill")
    assert list(gap.index) == ["wghm_anomaly"]  # the others need the month's GRACE
    assert gap.columns[1] == "nse_fine_truth"


def test_the_default_run_has_three_seeds_of_each_stochastic_model():
    from pathlib import Path

    from twsbench.core.config import load
    from twsbench.running.catalog import get_class
    from twsbench.running.plan import model_names

    config = load(Path(__file__).parent.parent / "configs" / "twin-south-asia.toml")
    stochastic = [n for n in model_names(config) if get_class(n).stochastic]
    assert {"random_forest", "lightgbm", "soft_cnn"} <= set(stochastic)
    assert len(config.models.seeds) >= 3


def test_withholding_nothing_takes_grace_against_every_baseline_month(poisoned_runs):
    full = poisoned_runs[0]
    view, reference = full.withhold(np.zeros(full.months.size, dtype=bool))
    base = full.baseline_months() & full.has_grace
    assert (full.splits["gapfill_withheld"] & base).any()  # the run's baseline left some out
    np.testing.assert_allclose(view.grace[base].mean(axis=0), 0.0, atol=1e-9)
    np.testing.assert_array_equal(view.has_grace, full.has_grace)
    np.testing.assert_allclose(reference, view.grace, equal_nan=True)
