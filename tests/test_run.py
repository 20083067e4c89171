"""``twsbench run`` and ``twsbench report`` end to end on tiny configs."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from tests import synth, tiny
from twsbench.core import months as mo
from twsbench.core.config import parse
from twsbench.pipeline.benchmark import run
from twsbench.scoring.table import COLUMNS

MODELS = tiny.RUN_MODELS  # the session's shared run (tiny_run, tests/conftest.py)


def test_run_writes_the_report_folder(tiny_run):
    for name in ("index.md", "index.html", "scores.csv", "scores.parquet", "timing.csv",
                 "monthly.csv", "meta.json", "grid.nc"):
        assert (tiny_run / name).exists(), name
    figures = {p.name for p in (tiny_run / "figures").glob("*.png")}
    assert {"leaderboard_downscale.png", "leaderboard_gapfill.png", "taylor.png",
            "speed_skill_gapfill.png", "series_hotspots.png", "gain_mascon.png"} <= figures
    assert any(f.startswith("map_") for f in figures)
    assert not list(tiny_run.parent.glob(".*partial*"))  # nothing half-written left


def test_report_shows_every_models_uncertainty(tiny_run):
    """The reliability figure, a CRPS column on each leaderboard, and a calibrated σ (its
    coverage, spread–skill and CRPS) for every model that takes part in a task."""
    assert (tiny_run / "figures" / "reliability.png").exists()
    u = pd.read_csv(tiny_run / "uncertainty.csv")
    calibrations = json.loads((tiny_run / "uncertainty.json").read_text())
    assert set(calibrations) == set(MODELS["names"])
    assert calibrations["mascon"]["uses_grace"] and set(calibrations["mascon"]["regimes"]) \
        == {"grace"}  # it needs GRACE: no σ without it
    # LightGBM sees the month's GRACE only through the residual step
    assert set(calibrations["lightgbm+residual"]["regimes"]) == {"grace", "nograce"}
    assert not calibrations["lightgbm"]["uses_grace"]
    # the CNN's prediction does not use the month's GRACE (no GRACE input channel)
    assert not calibrations["soft_cnn"]["uses_grace"]
    for task, models in (("downscale", set(MODELS["names"])),
                         ("gapfill", {"lightgbm", "lightgbm+residual", "soft_cnn"})):
        crps = u[(u.split == task) & (u.region == "domain") & (u.metric == "crps")]
        assert set(crps["model"]) == models and (crps["value"] > 0).all()
    page = (tiny_run / "index.md").read_text()
    for task in ("downscale", "gapfill"):
        assert f"## {task}: how wrong a cell can be (calibrated 1-σ)" in page
    board = page.split("## Gap-fill")[1].split("##")[0]
    assert "crps" in board.splitlines()[4]  # the leaderboard's header row
    assert "figures/reliability.png" in page
    sigma = xr.load_dataset(tiny_run / "uncertainty" / "lightgbm.nc")["sigma"].values
    assert np.isfinite(sigma).all() and (sigma > 0).all()


def test_scores_table_is_long_and_named(tiny_run):
    scores = pd.read_csv(tiny_run / "scores.csv")
    assert tuple(scores.columns) == COLUMNS
    assert set(scores["model"]) == set(MODELS["names"])
    assert {"train", "validation", "downscale", "gapfill", "gapfill_withheld",
            "gapfill_nograce"} == set(scores["split"])
    metrics = set(scores["metric"])
    for name in ("nse_fine_truth", "rmse_mascon_grace", "r_submascon_wghm",
                 "conservation_residual", "kge_fine_truth", "trend_error_fine_truth"):
        assert name in metrics
    parquet = pd.read_parquet(tiny_run / "scores.parquet")
    pd.testing.assert_frame_equal(parquet.astype(str), scores.astype(str).replace(
        "nan", "<NA>"), check_dtype=False)
    assert set(parquet["higher_is_better"].dropna()) == {True, False}
    timing = pd.read_csv(tiny_run / "timing.csv")
    assert {"fit_seconds", "predict_seconds", "cells_months_per_second",
            "fit_peak_rss_gib", "predict_peak_rss_gib", "device"} <= set(timing.columns)


def test_mascon_scores_nse_1_against_grace(tiny_run):
    scores = pd.read_csv(tiny_run / "scores.csv")
    sel = scores[(scores["model"] == "mascon") & (scores["metric"] == "nse_mascon_grace")
                 & scores["split"].isin(["train", "validation", "downscale"])]
    assert len(sel) > 0
    np.testing.assert_allclose(sel["value"], 1.0, atol=1e-9)


def test_html_report_is_self_contained(tiny_run):
    page = (tiny_run / "index.html").read_text()
    assert "<img" in page and "data:image/png;base64," in page
    for pattern in (r'src="http', r"src='http", r'href="http', r"<script[^>]+src=",
                    r"<link[^>]+href=", r"@import", r"url\("):
        assert not re.search(pattern, page), pattern


@pytest.mark.slow
def test_report_rebuilds_from_saved_files(tiny_run, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(tiny_run, copy)
    (copy / "index.html").unlink()
    shutil.rmtree(copy / "figures")
    result = subprocess.run([sys.executable, "-m", "twsbench.cli", "report", str(copy)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert (copy / "index.html").exists() and (copy / "figures" / "taylor.png").exists()
    bad = subprocess.run([sys.executable, "-m", "twsbench.cli", "report", str(tmp_path / "no")],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_same_config_same_scores_and_runs_never_overwrite(tiny_run, tmp_path):
    """The same command again reuses the finished run; ``--force`` makes a new folder with
    the same scores (each a user's command: a fresh interpreter, a cache without the shared
    run's CNN checkpoints)."""
    from tests.conftest import SESSION_ENV, with_world_and_grids

    mine = tmp_path / "reports" / tiny_run.name  # a copy: the shared run is read only
    shutil.copytree(tiny_run, mine)
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(tiny.toml(tiny.RUN))
    env = {**SESSION_ENV,
           "TWSBENCH_CACHE_DIR": str(with_world_and_grids(tmp_path / "cache", tiny.RUN))}

    def again(*extra: str) -> str:
        result = subprocess.run([sys.executable, "-m", "twsbench.cli", "run", str(cfg),
                                 "--out", str(mine.parent), "-q", *extra], env=env,
                                capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, result.stderr
        return result.stdout

    assert f"run {tiny_run.name} (already there)" in again()
    assert sorted(p.name for p in mine.parent.iterdir()) == [mine.name]  # left as it is
    again("--force")
    (forced,) = [p for p in mine.parent.iterdir() if p.name != mine.name]
    assert forced.name.startswith(tiny_run.name)
    a = pd.read_csv(tiny_run / "scores.csv").drop(columns="run_id")
    b = pd.read_csv(forced / "scores.csv").drop(columns="run_id")
    pd.testing.assert_frame_equal(a, b)


def test_meta_records_versions_and_seeds(tiny_run):
    meta = json.loads((tiny_run / "meta.json").read_text())
    assert meta["seeds"] == [0]
    assert {"numpy", "torch", "lightgbm", "twsbench"} <= set(meta["versions"])
    assert meta["run_id"] == tiny_run.name


# ---- real-format files from elsewhere ------------------------------------------------------

def _other_region(tmp_path, with_truth: bool, grace_units: str = "cm",
                  amplitude_cm: float = 12.0):
    """Real-format files for central Africa written by the test helpers (not by the twin)."""
    lat = np.arange(-5.75, 6.0, 0.5)
    lon360 = np.arange(15.25, 33.0, 0.5)
    period = mo.month_range("2002-04", "2022-12")
    present = period[~np.isin(period, mo.MISSING_MONTHS)]
    t = (present.astype(int) % 12)[:, None, None]
    season = amplitude_cm * np.cos(2 * np.pi * (t - 3) / 12 + lat[None, :, None] / 10)  # cm
    grace = synth.write_jpl(tmp_path / "GRCTellus.JPL.200204_202212.GLO.RL06.3M.MSCNv04CRI.nc",
                            lat, lon360, present, mo.MISSING_TEXT, units=grace_units,
                            values=np.broadcast_to(season, (present.size, lat.size,
                                                            lon360.size)).copy())
    wg_time = np.arange(1212, 1464)  # 2002-01 .. 2022-12 in months since 1901-01
    tw = (wg_time % 12)[:, None, None]
    wg = 500 + 100 * np.cos(2 * np.pi * (tw - 3.5) / 12 + lat[::-1][None, :, None] / 10)
    wghm = synth.write_wghm(tmp_path / "watergap22e_gswp3-era5_tws_histsoc_monthly_1901_2022.nc",
                            lat[::-1], lon360 - 0.0, wg_time,
                            values=np.broadcast_to(wg, (wg_time.size, lat.size,
                                                        lon360.size)).copy())
    e_lat = np.arange(6.0, -6.01, -0.25)
    e_lon = np.arange(15.0, 33.01, 0.25)  # an `area` request: -180..180 longitudes
    (tmp_path / "era5").mkdir()
    era5, _ = synth.write_era5_new(tmp_path / "era5", e_lat, e_lon,
                                   mo.month_range("2002-01", "2022-12"), one_file=True)
    table = {"inputs": {"grace": str(grace), "wghm": str(wghm),
                        "era5": [str(p) for p in (era5 if isinstance(era5, list) else [era5])]},
             "domain": {"bbox": [-6.0, 6.0, 15.0, 33.0]},
             "models": {"names": ["mascon", "pattern_transfer", "bilinear"]}}
    if with_truth:
        months = mo.month_range("2002-04", "2022-12")
        tm = (months.astype(int) % 12)[:, None, None]
        truth = 120 * np.cos(2 * np.pi * (tm - 3) / 12 + lat[None, :, None] / 10) + np.broadcast_to(
            lon360[None, None, :] - 24.0, (months.size, lat.size, lon360.size))
        table["inputs"]["truth"] = str(synth.write_truth(tmp_path / "truth.nc", lat, lon360 - 360
                                                         * (lon360 > 180), months,
                                                         values=truth))
    return parse(table)


@pytest.mark.slow
@pytest.mark.parametrize("with_truth", [False, True])
def test_run_on_real_format_files_from_another_region(tmp_path, with_truth):
    config = _other_region(tmp_path, with_truth)
    run_dir, _ = run(config, tmp_path / "reports")
    scores = pd.read_csv(run_dir / "scores.csv")
    metrics = set(scores["metric"])
    assert "nse_mascon_grace" in metrics
    assert ("nse_fine_truth" in metrics) == with_truth
    meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["has_truth"] == with_truth
    assert "real-format" in (run_dir / "index.md").read_text()


def test_grace_in_cm_labelled_m_stops_prepare(tmp_path):
    """A wet region's GRACE values (±45 cm) labelled metres would be ±45 m of water: prepare
    stops with one line naming the file and the variable."""
    from twsbench.core.errors import InputError
    from twsbench.prepare.store import prepare

    config = _other_region(tmp_path, False, grace_units="m", amplitude_cm=45.0)
    with pytest.raises(InputError) as info:
        prepare(config)
    message = str(info.value)
    assert "GRCTellus" in message and "lwe_thickness" in message and "units" in message
    assert "\n" not in message


def test_region_scores_equal_the_domain_formulas_weighted_to_the_region():
    """A region is scored on its own cells and mascons; that must equal scoring the whole
    domain with weights zero outside the region (whole mascons keep A's rows complete)."""
    from twsbench.prepare.files import resolve_inputs
    from twsbench.prepare.store import prepare
    from twsbench.scoring.metrics import METRICS
    from twsbench.scoring.reference import truth_on_cells
    from twsbench.scoring.table import regions, score_prediction

    config = parse({**tiny.RUN, "domain": {"bbox": [22.0, 38.0, 70.0, 84.0]}})
    grids, _, _ = prepare(config)
    assert len(regions(grids)) >= 3
    truth = truth_on_cells(resolve_inputs(config).truth, grids)
    cells = truth + np.random.default_rng(0).normal(0, 30, truth.shape)
    rows, _ = score_prediction(grids, cells, truth, "x", 0, "r")
    table = {(r[3], r[4], r[5]): r[6] for r in rows}
    m, test = grids.mascons, grids.splits["downscale"]
    pred_m = m.mean(cells.T).T
    checked = 0
    for region, (cell_mask, mascon_mask) in regions(grids).items():
        wc = np.where(cell_mask, grids.cell_area, 0.0)
        wm = np.where(mascon_mask, m.area(), 0.0)
        c, t = cells[test], truth[test]
        expected = {
            "nse_fine_truth": METRICS.get("nse")(c, t, wc),
            "rmse_mascon_grace": METRICS.get("rmse")(pred_m[test], grids.grace[test], wm),
            "r_submascon_truth": METRICS.get("mean_spatial_correlation")(
                c, t, m.A, m.cell_mascon, wc),
            "annual_phase_error_fine_truth": METRICS.get("annual_phase_error")(
                c, t, grids.months[test], wc),
        }
        for name, value in expected.items():
            np.testing.assert_allclose(table[("downscale", region, name)], value, rtol=1e-9)
            checked += 1
    assert checked >= 4 * 3  # the domain and at least two other regions


def test_comparisons_are_scored_into_the_run_folder_and_the_report_reads_them(tiny_run):
    """Significance and per-mascon gain are computed by scoring (significance.csv,
    mascon_gains.csv); the report's sections show exactly those rows."""
    sig = pd.read_csv(tiny_run / "significance.csv")
    down = sig[sig["task"] == "downscale"]
    assert set(down["against"]) == {"mascon", "pattern_transfer"}
    assert {"lightgbm", "soft_cnn"} <= set(down["model"])
    monthly = pd.read_csv(tiny_run / "monthly.csv")
    loss = monthly[(monthly["metric"] == "mse_submascon_truth")
                   & (monthly["split"] == "downscale")]
    table = loss.groupby(["month", "model"])["value"].mean().unstack("model")
    for row in down.to_dict("records"):
        mean = float((table[row["model"]] - table[row["against"]]).mean())
        assert np.isclose(row["mean change"], mean, rtol=1e-9), row
        assert row["ci low"] <= mean <= row["ci high"]  # inside its 95% interval
    page = (tiny_run / "index.md").read_text()
    section = page.split("## downscale: differences from the reference models")[1]
    section = section.split("\n## ")[0]
    for row in down.to_dict("records"):
        assert f"| {row['model']} " in section and row["against"] in section
    gains = pd.read_csv(tiny_run / "mascon_gains.csv")
    assert set(gains["verdict"]) <= {-1, 0, 1}
    grid = xr.load_dataset(tiny_run / "grid.nc")
    n = int(grid["cell_mascon"].max()) + 1
    for (model, ref), sel in gains.groupby(["model", "against"]):
        assert sorted(sel["mascon"]) == list(range(n)), (model, ref)
    gain_page = page.split("## downscale: per-mascon gain")[1].split("\n## ")[0]
    soft = gains[(gains["model"] == "soft_cnn") & (gains["against"] == "mascon")]
    better = f"{100.0 * (soft['verdict'] == 1).mean():.4g}"
    assert any(line.startswith("| soft_cnn") and better in line
               for line in gain_page.splitlines())
    assert json.loads((tiny_run / "meta.json").read_text())["config"]["ranking"][
        "resamples"] == 2000
