"""The default run's verdict on its own uncertainty: ``tox -e benchmark`` runs these after
``twsbench run`` (the default run, ``configs/twin-south-asia.toml``; with
``TWSBENCH_REQUIRE_DEFAULT_RUN=1``, so a missing run fails instead of skipping). In ``tox -e
py`` they skip unless that run exists.

On the realistic twin at full size, the model the release picks must have a calibrated σ on
both tasks, and its product must state it and pass ``validate``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import netCDF4
import pandas as pd
import pytest

from tests.uncertainty_files import coverage_from_files
from twsbench.core.config import load
from twsbench.release.product import choose_model, release, validate
from twsbench.running.runner import run_id

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "twin-south-asia.toml"


@pytest.fixture(scope="module")
def default_run() -> Path:
    run_dir = ROOT / "reports" / run_id(load(CONFIG))
    if not (run_dir / "index.html").exists():
        if os.environ.get("TWSBENCH_REQUIRE_DEFAULT_RUN") == "1":
            pytest.fail(f"expected the default run at {run_dir}, found none")
        pytest.skip("the default run has not been made here (tox -e benchmark makes it)")
    return run_dir


def test_default_run_released_model_is_calibrated(default_run):
    model, choice = choose_model(default_run)
    members, measured = coverage_from_files(default_run, model)
    table = pd.read_csv(default_run / "uncertainty.csv")
    hot = table[(table["model"] == model) & (table["region"] == "hotspots")
                & (table["metric"] == "coverage_1sigma")].set_index("split")["value"]
    report = {task: {k: round(float(v), 4) for k, v in s.items()} for task, s in
              measured.items()}
    print(f"{model} ({members} seeds, chosen on {choice['task']}): {json.dumps(report)}; "
          f"±1σ at hotspots: {hot.round(4).to_dict()}")
    for task, scores in measured.items():
        assert 0.60 <= scores["coverage_1sigma"] <= 0.76, (task, scores)
        assert 0.90 <= scores["coverage_2sigma"] <= 0.98, (task, scores)
        assert 0.8 <= scores["spread_skill"] <= 1.25, (task, scores)
        assert task in hot.index


def test_default_run_product_states_its_uncertainty(default_run):
    model, _ = choose_model(default_run)
    products = sorted(default_run.glob(f"twsbench_*_{model}_200204_202212.nc"))
    path = products[-1] if products else release(default_run)
    assert validate(path) == []
    _, measured = coverage_from_files(default_run, model)
    with netCDF4.Dataset(path) as ds:
        var = ds["twsa_uncertainty"]
        for task, scores in measured.items():
            assert var.getncattr(f"coverage_1sigma_{task}") == pytest.approx(
                scores["coverage_1sigma"], abs=2e-4)
            assert var.getncattr(f"coverage_2sigma_{task}") == pytest.approx(
                scores["coverage_2sigma"], abs=2e-4)
