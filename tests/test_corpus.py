"""A corpus of bad inputs through the CLI: each gives one clear line, exit status 2, and
leaves no output behind (files are written by the tests, no binary fixtures).

The cases run the command in-process (``twsbench.cli.main``); a few run it as a subprocess
too, where nothing but that one line may reach the terminal (logging, warnings, a
traceback)."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from tests import synth
from tests.conftest import seed_land_fraction
from twsbench.core import months as mo

LAT = np.arange(-0.75, 1.0, 0.5)
LON = np.arange(0.25, 6.0, 0.5)
WG_LAT = np.arange(1.75, -2.0, -0.5)
WG_LON = np.arange(-2.75, 3.0, 0.5)
E_LAT = 1.75 - 0.25 * np.arange(8)
E_LON = 10.0 + 0.25 * np.arange(12)
E_MONTHS = mo.month_range("2020-01", "2020-04")
JPL = "GRCTellus.JPL.200204_201202.GLO.RL06.3M.MSCNv04CRI.nc"
WG = "watergap22e_gswp3-era5_tws_histsoc_monthly_1901_2022.nc"


def _trap(d, **kw):
    months, epochs = synth.trap_series()
    kw.setdefault("missing_text", mo.MISSING_TEXT)
    return synth.write_jpl(d / JPL, kw.pop("lat", LAT), kw.pop("lon", LON), months,
                           kw.pop("missing_text"), epochs=kw.pop("epochs", epochs), **kw)


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _wg(d, **kw):
    return synth.write_wghm(d / WG, kw.pop("lat", WG_LAT), kw.pop("lon", WG_LON),
                            kw.pop("time", [1212, 1213, 1214]), **kw)


def _era5(d, **kw):
    paths, _ = synth.write_era5_new(d, E_LAT, E_LON, E_MONTHS, **kw)
    return paths if isinstance(paths, list) else [paths]


def _wet_cm():
    months, _ = synth.trap_series()
    phase = 2 * np.pi * (months.astype(int) % 12) / 12
    return 45.0 * np.cos(phase)[:, None, None] * np.ones((months.size, LAT.size, LON.size))


def _swapped_epochs():
    _, epochs = synth.trap_series()
    epochs = epochs.copy()
    epochs[[3, 4]] = epochs[[4, 3]]
    return epochs


def _dup_epochs():
    _, epochs = synth.trap_series()
    epochs = epochs.copy()
    epochs[3] = epochs[2]
    return epochs


FILES = {
    "grace-truncated": lambda d: [_truncate(_trap(d))],
    "grace-text": lambda d: [(d / JPL).write_text("<html>401</html>") and d / JPL],
    "grace-missing-variable": lambda d: [_trap(d, rename={"lwe_thickness": "lwe"})],
    "grace-units": lambda d: [_trap(d, units="furlongs")],
    # a wet region's ±45 cm labelled m: ±45 m of water is more than any storage change
    "grace-cm-labelled-m": lambda d: [_trap(d, units="m", values=_wet_cm())],
    "grace-not-aligned": lambda d: [_trap(d, lon=np.arange(0.0, 6.0, 0.5))],
    "grace-one-degree": lambda d: [_trap(d, lat=np.arange(-1.5, 2.0, 1.0))],
    "grace-duplicate-months": lambda d: [_trap(d, epochs=_dup_epochs())],
    "grace-count-vs-months-missing": lambda d: [_trap(d, missing_text="2002-06;2002-07")],
    "grace-all-nan-month": lambda d: [_trap(d, fill_at=[(1, i, j) for i in range(LAT.size)
                                                         for j in range(LON.size)])],
    "grace-no-mascon-id": lambda d: [_trap(d, static=("land_mask", "scale_factor"))],
    # 0–360 and ±180 both: 359.75 and -0.25 are the same column
    "grace-lon-both-conventions": lambda d: [_trap(d, lon=np.r_[-0.25, LON[:-1], 359.75])],
    "grace-unsorted-records": lambda d: [_trap(d, epochs=_swapped_epochs())],
    "wghm-truncated": lambda d: [_truncate(_wg(d))],
    "wghm-missing-variable": lambda d: [_wg(d, variable="qtot")],
    "wghm-units": lambda d: [_wg(d, units="furlongs")],
    "wghm-not-aligned": lambda d: [_wg(d, lon=np.arange(-3.0, 3.0, 0.5))],
    "wghm-duplicate-months": lambda d: [_wg(d, time=[1212, 1213, 1213])],
    "wghm-all-nan-month": lambda d: [_wg(d, values=np.where(
        np.arange(3)[:, None, None] == 1, np.nan, 500.0) * np.ones((3, 8, 12)))],
    "wghm-lon-both-conventions": lambda d: [_wg(d, lon=np.r_[WG_LON[:-1], 357.25])],
    "wghm-time-units": lambda d: [_wg(d, time_units="fortnights since 1901-01-01")],
    "era5-missing-variable": lambda d: _era5(d, drop=("ro",)),
    "era5-snow-depth-sde": lambda d: _era5(d, rename={"sd": "sde"}),
    "era5-units": lambda d: _era5(d, units={"tp": "furlongs"}),
    "era5-percent-soil-water": lambda d: _era5(d, scale={"swvl2": 100.0}),
    "era5-mm-labelled-m": lambda d: _era5(d, scale={"tp": 1000.0}),
    "era5-celsius-labelled-kelvin": lambda d: _era5(d, scale={"t2m": 1.0}, shift={"t2m": -273.15}),
    "era5-all-nan-month": lambda d: _era5(d, nan_months={"t2m": 2}),
    "era5-truncated": lambda d: [_truncate(p) for p in _era5(d)],
    "era5-zip-missing-stream": lambda d: [_zip_one(d)],
    "missing-file": lambda d: [d / JPL],
}


def _zip_one(d):
    paths = _era5(d)
    target = d / "era5.zip"
    with zipfile.ZipFile(target, "w") as z:
        z.write(paths[0], paths[0].name)
    for p in paths:
        p.unlink()
    return target


CONFIGS = {
    "config-not-toml": "[domain\nname = 'south-asia'",
    "config-unknown-section": "[domian]\nname = 'south-asia'",
    "config-unknown-key": "[domain]\nnmae = 'south-asia'",
    "config-unknown-model": "[models]\nnames = ['kriging']",
    "config-unknown-domain": "[domain]\nname = 'atlantis'",
    "config-bbox-no-land": "[domain]\nbbox = [-10.0, -5.0, -30.0, -25.0]",
    "config-bad-period": "[period]\nstart = 'April 2002'",
    "config-inputs-incomplete": "[inputs]\ngrace = 'x.nc'",
    "config-release-task": "[ranking]\nrelease_task = 'test'",
    "config-split-no-room": "[domain]\nbbox = [24.0, 31.0, 75.0, 85.0]\n[split]\nvalidation = 400",
    # paths are relative to the config's folder, which holds an empty file and a folder
    "config-input-missing": f"[inputs]\ngrace = 'nope/{JPL}'\nwghm = 'nope/{WG}'\n"
                            "era5 = ['nope/era5.zip']",
    "config-input-directory": f"[inputs]\ngrace = 'a-folder'\nwghm = 'nope/{WG}'\n"
                              "era5 = ['nope/era5.zip']",
    "config-input-empty": f"[inputs]\ngrace = 'empty.nc'\nwghm = 'nope/{WG}'\n"
                          "era5 = ['nope/era5.zip']",
    "config-bbox-inverted": "[domain]\nbbox = [31.0, 24.0, 75.0, 85.0]",
    "config-bbox-three-values": "[domain]\nbbox = [24.0, 31.0, 75.0]",
    "config-no-models": "[models]\nnames = []",
    "config-param-wrong-type": "[models]\nnames = ['lightgbm']\n"
                               "[models.params.lightgbm]\nn_estimators = 'many'",
    "config-param-unknown": "[models]\nnames = ['lightgbm']\n[models.params.lightgbm]\nn_trees = 5",
    "config-plugin-missing": "[models]\nplugins = ['no_such_downscalers']",
    "config-seed-not-integer": "[models]\nseeds = [0, 'one']",
}


#: cases also run as a subprocess of their own
IN_A_SUBPROCESS = ("grace-units", "era5-zip-missing-stream", "config-split-no-room",
                   "config-param-wrong-type")


def _cli(args, cwd, cache, land_fraction, monkeypatch, subprocess_=False):
    """``twsbench ARGS`` in ``cwd`` with a fresh ``cache`` (seeded with the land fraction):
    the exit status and what it printed."""
    import contextlib
    import io

    from twsbench.cli import main

    seed_land_fraction(cache, land_fraction)
    if subprocess_:
        env = {**os.environ, "TWSBENCH_CACHE_DIR": str(cache)}
        return subprocess.run([sys.executable, "-m", "twsbench.cli", *args], cwd=cwd, env=env,
                              capture_output=True, text=True, timeout=600)
    monkeypatch.setenv("TWSBENCH_CACHE_DIR", str(cache))
    monkeypatch.chdir(cwd)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def _check(result):
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "expected" in lines[0] and "found" in lines[0]
    return lines[0]


def test_the_corpus_has_at_least_25_cases():
    assert len(FILES) + len(CONFIGS) >= 25


@pytest.mark.parametrize("case", list(FILES))
def test_bad_file(tmp_path, case, land_fraction, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    paths = FILES[case](data)
    before = sorted(p.name for p in data.iterdir())
    for alone in (False, True) if case in IN_A_SUBPROCESS else (False,):
        line = _check(_cli(["inspect", *map(str, paths)], tmp_path, tmp_path / "cache",
                           land_fraction, monkeypatch, alone))
        assert any(p.name in line for p in paths) or "data_stream" in line
        assert sorted(p.name for p in data.iterdir()) == before  # nothing written beside


@pytest.mark.parametrize("case", list(CONFIGS))
def test_bad_config(tmp_path, case, land_fraction, monkeypatch):
    (tmp_path / "empty.nc").touch()
    (tmp_path / "a-folder").mkdir()
    cfg = tmp_path / f"{case}.toml"
    cfg.write_text(CONFIGS[case])
    cache = tmp_path / "cache"
    for alone in (False, True) if case in IN_A_SUBPROCESS else (False,):
        line = _check(_cli(["run", str(cfg), "--out", str(tmp_path / "reports"), "-q"],
                           tmp_path, cache, land_fraction, monkeypatch, alone))
        assert cfg.name in line or "[" in line
        assert not (tmp_path / "reports").exists() or not any((tmp_path / "reports").iterdir())
        assert not list((cache / "grids").glob("*.nc")) if (cache / "grids").exists() else True


def test_readme_shows_a_true_error_line(tmp_path, land_fraction, monkeypatch):
    from tests.conftest import README

    cfg = tmp_path / "bad.toml"
    cfg.write_text(CONFIGS["config-param-wrong-type"])
    line = _check(_cli(["run", str(cfg), "-q"], tmp_path, tmp_path / "cache", land_fraction,
                       monkeypatch))
    assert line in README.read_text()
