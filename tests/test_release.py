"""``twsbench release`` and ``twsbench validate`` on a tiny run."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import netCDF4
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from tests import tiny
from tests.uncertainty_files import coverage_from_files
from twsbench.core.config import parse
from twsbench.pipeline.benchmark import run
from twsbench.prepare.store import prepare
from twsbench.release.product import release, validate
from twsbench.running.catalog import get_class, make
from twsbench.scoring import metrics

pytestmark = pytest.mark.slow  # runs and releases

TINY = tiny.table(models=tiny.quick(["mascon", "pattern_transfer", "lightgbm"], seeds=[0, 1]))


@pytest.fixture(scope="module")
def product(tmp_path_factory):
    out = tmp_path_factory.mktemp("release")
    run_dir, _ = run(parse(TINY), out / "reports")
    path = release(run_dir, out / "product.nc")
    return run_dir, path


def test_release_passes_validate(product):
    _, path = product
    assert validate(path) == []
    assert (path.parent / (path.name + ".sha256")).exists()


def test_release_picks_a_model_that_covers_every_month(product):
    _, path = product
    with netCDF4.Dataset(path) as ds:
        assert ds.model == "lightgbm"  # mascon and pattern_transfer need GRACE
        choice = json.loads(ds.model_choice)
        assert choice["task"] == "gapfill" and choice["metric"] == "nse_fine_truth"
        headline = json.loads(ds.headline_scores)
        assert headline["run_id"] == ds.run_id == ds.headline_run
        assert {"nse_submascon_truth", "r_submascon_truth"} <= set(headline["downscale"])
        assert {"nse_fine_truth", "nse_mascon_grace"} <= set(headline["gapfill"])
        assert json.loads(ds.ensemble_seeds) == [0, 1]
        assert "SYNTHETIC" in ds.title and "SYNTHETIC" in ds.summary
        assert "CC-BY-4.0" in ds.license and "10.5067/TEMSC-3JC634" in ds.references
        assert json.loads(ds.run_config)["domain"]["bbox"] == tiny.BBOX
        assert json.loads(ds.headline_scores)


def test_release_refits_for_the_epochs_the_scored_fit_chose(tmp_path, monkeypatch):
    import twsbench.release.product as rel

    models = tiny.quick(["mascon", "soft_cnn"])
    models["params"]["soft_cnn"]["epochs"] = 4
    run_dir, _ = run(parse(tiny.table(models=models)), tmp_path / "reports")
    path = run_dir / "history" / "soft_cnn__seed0.json"
    history = json.loads(path.read_text())
    assert [e["epoch"] for e in history] == [0, 1, 2, 3] and all("val_obs" in e
                                                                 for e in history)
    # the scored fit's validation loss was lowest after its second epoch
    for e, loss in zip(history, (5.0, 1.0, 3.0, 4.0), strict=True):
        e["val_obs"] = loss
    path.write_text(json.dumps(history))
    made = []

    class Spy(rel.Ensemble):
        def __init__(self, runs):
            super().__init__(runs)
            made.append(self)

    monkeypatch.setattr(rel, "Ensemble", Spy)
    product = release(run_dir, tmp_path / "product.nc")
    (ensemble,) = made
    assert [r.params["epochs"] for r in ensemble.runs] == [2]
    assert [len(m.history) for m in ensemble.members] == [2]  # trained for 2 epochs, no more
    assert "val_obs" not in ensemble.members[0].history[-1]  # no validation months left
    with netCDF4.Dataset(product) as ds:
        assert ds.model == "soft_cnn"
        assert json.loads(ds.refit_epochs) == {"0": 2}


def test_product_values_flags_and_conservation(product, tiny_grids):
    run_dir, path = product
    # the product's GRACE anomalies are against every baseline month with GRACE
    grids, _ = tiny_grids.withhold(np.zeros(tiny_grids.months.size, dtype=bool))
    ds = xr.open_dataset(path)
    assert ds.sizes["time"] == 249
    twsa = ds["twsa"].values
    assert twsa.dtype == np.float32
    cells = grids.from_grid(twsa)
    assert np.isfinite(cells).all()  # every month, every land cell
    assert np.isnan(twsa[:, ~grids.land]).all()
    np.testing.assert_array_equal(ds["grace_available"].values.astype(bool), grids.has_grace)
    assert (ds["twsa_uncertainty"].values[:, grids.land] > 0).all()
    has = grids.has_grace
    residual = metrics.conservation_residual_max(cells[has], grids.grace[has], grids.mascons.A)
    stated = float(ds.attrs["conservation_residual_max_mm"])
    assert residual <= stated + 1e-3  # float32 storage
    ds.close()


def test_released_uncertainty_is_calibrated_on_both_tasks(product):
    """On the (realistic) twin, the released model's σ covers 60–76% of cell-months within
    ±1σ and 90–98% within ±2σ, with a spread–skill ratio in 0.8–1.25, on the downscale and
    the gapfill months (test months: the σ was fitted on the validation months)."""
    run_dir, path = product
    with netCDF4.Dataset(path) as ds:
        model = ds.model
        attrs = {a: ds["twsa_uncertainty"].getncattr(a)
                 for a in ds["twsa_uncertainty"].ncattrs()}
    members, measured = coverage_from_files(run_dir, model)
    assert members == 2
    table = pd.read_csv(run_dir / "uncertainty.csv")
    for task, scores in measured.items():
        assert 0.60 <= scores["coverage_1sigma"] <= 0.76, (task, scores)
        assert 0.90 <= scores["coverage_2sigma"] <= 0.98, (task, scores)
        assert 0.8 <= scores["spread_skill"] <= 1.25, (task, scores)
        for metric, value in scores.items():  # the run's table says the same
            row = table[(table["model"] == model) & (table["split"] == task)
                        & (table["region"] == "domain") & (table["metric"] == metric)]
            assert row["value"].item() == pytest.approx(value, abs=2e-4)
            # the product states what was measured
            label = "spread_skill_ratio" if metric == "spread_skill" else metric
            assert attrs[f"{label}_{task}"] == pytest.approx(value, abs=2e-4)
        assert 0.0 < attrs[f"coverage_1sigma_hotspots_{task}"] < 1.0
    assert "validation months" in attrs["uncertainty_calibration"]
    assert json.loads(attrs["uncertainty_calibration"].split(": ", 1)[1])["regimes"]


def test_validate_checks_the_uncertainty_attributes(product, tmp_path):
    _, path = product
    for change, expected in ((lambda v: v.delncattr("uncertainty_formula"),
                              "uncertainty_formula missing"),
                             (lambda v: v.setncattr("coverage_1sigma_gapfill", 1.7),
                              "coverage_1sigma_gapfill: expected a fraction"),
                             (lambda v: v.delncattr("crps_mm_downscale"),
                              "crps_mm_downscale missing")):
        broken = tmp_path / "broken.nc"
        broken.write_bytes(path.read_bytes())
        with netCDF4.Dataset(broken, "a") as ds:
            change(ds["twsa_uncertainty"])
        assert any(expected in p for p in validate(broken)), expected


def test_validate_finds_problems(product, tmp_path):
    _, path = product
    broken = tmp_path / "broken.nc"
    broken.write_bytes(path.read_bytes())
    (tmp_path / "broken.nc.sha256").write_text("0" * 64 + "  broken.nc\n")
    with netCDF4.Dataset(broken, "a") as ds:
        ds.delncattr("license")
    problems = validate(broken)
    assert any("checksum" in p for p in problems)
    assert any("license" in p for p in problems)
    result = subprocess.run([sys.executable, "-m", "twsbench.cli", "validate", str(broken)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "FAIL" in result.stdout


def test_existing_product_is_not_overwritten(product):
    run_dir, path = product
    before = path.read_bytes()
    result = subprocess.run([sys.executable, "-m", "twsbench.cli", "release", str(run_dir),
                             "--out", str(path), "-q"], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 2 and "existing" in result.stderr
    assert path.read_bytes() == before


def test_compliance_checker_cf_and_acdd(product, tmp_path):
    pytest.importorskip("compliance_checker")
    _, path = product
    report = tmp_path / "cc.json"
    import shutil

    cli = shutil.which("compliance-checker") or str(
        __import__("pathlib").Path(sys.executable).parent / "compliance-checker")
    subprocess.run([cli, "--test", "cf:1.8",
                    "--test", "acdd:1.3", "-f", "json", "-o", str(report), str(path)],
                   capture_output=True, text=True, timeout=300)
    results = json.loads(report.read_text())
    assert set(results) == {"cf:1.8", "acdd:1.3"}
    for name, checker in results.items():
        assert checker["high_priorities"]  # the checks ran
        # ACDD's recommended attributes (medium priority) are there too
        levels = ("high_priorities", "medium_priorities") if name.startswith("acdd") else (
            "high_priorities",)
        for level in levels:
            failing = [r for r in checker.get(level, [])
                       if r.get("value", [1, 1])[0] < r.get("value", [1, 1])[1]]
            assert not failing, f"{name}: {[(r['name'], r.get('msgs')) for r in failing]}"
    # the command users run: the normal criteria pass and nothing is left to correct
    result = subprocess.run([cli, "-t", "acdd:1.3", "-c", "normal", str(path)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:]
    assert "potential issue" not in result.stdout, result.stdout[-2000:]


_KILLED = textwrap.dedent("""
    import os, sys, time
    import twsbench.release.product as rel
    real = os.replace
    def slow(src, dst):
        if str(dst).endswith(".nc"):
            print("renaming", flush=True)
            time.sleep(60)
        real(src, dst)
    rel.os.replace = slow
    rel.release(sys.argv[1], sys.argv[2])
""")


def test_killed_release_leaves_no_product(product, tmp_path):
    import signal

    run_dir, _ = product
    target = tmp_path / "killed.nc"
    proc = subprocess.Popen([sys.executable, "-c", _KILLED, str(run_dir), str(target)],
                            stdout=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if line.startswith("renaming"):
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert not target.exists()  # the checksum goes in first: no product without one
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".killed.nc.")]


def test_product_across_the_antimeridian(tmp_path):
    """A domain across 180° has a cyclic grid (171.25 … 179.75, -179.75 … -172.25); the
    product's columns come out in ascending longitude with every value at its own cell."""
    config = parse({"domain": {"bbox": [62.0, 70.0, 170.0, -172.0]}, "twin": {"seed": 2},
                    "models": {"names": ["lightgbm"],
                               "params": {"lightgbm": {"n_estimators": 20}}}})
    grids, _, _ = prepare(config)
    assert np.any(np.diff(grids.lon) < 0)  # the grid wraps
    run_dir, _ = run(config, tmp_path / "reports")
    path = release(run_dir, tmp_path / "product.nc")
    assert validate(path) == []
    order = np.argsort(grids.lon)
    with xr.open_dataset(path) as ds:
        np.testing.assert_array_equal(ds["lon"].values, grids.lon[order])
        twsa = ds["twsa"].values
        stated = float(ds.attrs["conservation_residual_max_mm"])
    np.testing.assert_array_equal(np.isfinite(twsa[0]), grids.land[:, order])
    cells = grids.from_grid(twsa[..., np.argsort(order)]).astype(float)
    has = grids.has_grace
    residual = metrics.conservation_residual_max(cells[has], grids.grace[has], grids.mascons.A)
    assert residual <= stated + 1e-3


def test_release_refits_what_was_scored_conserve_parameters_included(tmp_path, tiny_grids):
    """``[models.params."lightgbm+conserve"]`` changes the scored model; the release refits
    that model (both seeds), not one with the plain ``lightgbm`` table."""
    mine = {"n_estimators": 9, "num_leaves": 5}
    table = tiny.table(models={"names": ["mascon", "lightgbm+conserve"], "seeds": [0, 1],
                               "params": {"lightgbm": {"n_estimators": 40},
                                          "lightgbm+conserve": mine}})
    run_dir, _ = run(parse(table), tmp_path / "reports")
    meta = json.loads((run_dir / "meta.json").read_text())
    scored = [r for r in meta["runs"] if r["name"] == "lightgbm+conserve"]
    resolved = {**get_class("lightgbm").defaults, **mine}  # the records name every parameter
    assert [(r["seed"], r["params"]) for r in scored] == [(0, resolved), (1, resolved)]
    path = release(run_dir, tmp_path / "product.nc")
    with xr.open_dataset(path) as ds:
        assert ds.attrs["model"] == "lightgbm+conserve"
        assert json.loads(ds.attrs["model_params"]) == resolved
        assert json.loads(ds.attrs["ensemble_seeds"]) == [0, 1]
        product = tiny_grids.from_grid(ds["twsa"].values).astype(np.float64)
    g, _ = tiny_grids.withhold(np.zeros(tiny_grids.months.size, dtype=bool))
    with_grace = g.months[g.has_grace]

    def refit(params):
        members = []
        for seed in (0, 1):
            model = make("lightgbm+conserve", seed=seed, params=params)
            model.fit(g, with_grace)
            members.append(model.predict_cells(g, g.months))
        return np.mean(members, axis=0)

    np.testing.assert_allclose(product, refit(mine), rtol=0, atol=1e-3)  # float32 storage
    assert np.abs(product - refit({"n_estimators": 40})).max() > 1.0
