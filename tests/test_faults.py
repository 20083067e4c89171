"""Faults: ``twsbench run`` and ``twsbench release`` killed (SIGKILL) at random points and at
chosen stages leave no partial report or product, and a rerun completes from the caches and
checkpoints with the scores (and product) of an uninterrupted run, leaving no temporaries."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from tests import tiny
from tests.conftest import SESSION_ENV, seed_land_fraction, with_world_and_grids
from twsbench.release.product import validate

pytestmark = pytest.mark.slow  # runs killed and rerun in subprocesses

# the session's shared run: soft_cnn trains 4 epochs, so that a kill 3 s into training lands
# between checkpoints
CONFIG = tiny.toml(tiny.RUN)


def _start(args: list[str], cache: Path) -> subprocess.Popen:
    """The CLI in a subprocess, its stage lines streamed on stdout."""
    env = {**SESSION_ENV, "TWSBENCH_CACHE_DIR": str(cache), "PYTHONUNBUFFERED": "1",
           "COLUMNS": "200"}
    return subprocess.Popen([sys.executable, "-m", "twsbench.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)


def _finish(proc: subprocess.Popen) -> None:
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, out


def _kill_after(proc: subprocess.Popen, marker: str | None, delay: float) -> bool:
    """SIGKILL ``proc`` ``delay`` seconds after it prints a line containing ``marker`` (or after
    it starts); False when it finished first."""
    if marker is not None:
        for line in proc.stdout:
            if marker in line:
                break
    time.sleep(delay)
    killed = proc.poll() is None
    if killed:
        proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=120)
    return killed


def _leftovers(*roots: Path) -> list[Path]:
    """Hidden entries: temporaries and working folders that a finished writer removes (a
    normal run leaves none in its cache or report folder)."""
    return [p for root in roots for p in root.rglob(".*")]


def _visible_runs(out: Path) -> list[Path]:
    return [p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")] \
        if out.exists() else []


@pytest.fixture(scope="module")
def reference(tiny_run, tiny_product, tmp_path_factory):
    """An uninterrupted run and release of the same config (the session's shared ones), and
    the config as a file for the CLI."""
    cfg = tmp_path_factory.mktemp("config") / "tiny.toml"
    cfg.write_text(CONFIG)
    return cfg, tiny_run, tiny_product


def _seeded(cache: Path, source: Path) -> Path:
    """A fresh cache holding only the land fraction, which costs seconds to make and is not
    what these tests kill (the each-stage test starts from an empty cache instead)."""
    seed_land_fraction(cache, source)
    return cache


def _assert_same_run(out: Path, reference_run: Path) -> None:
    runs = _visible_runs(out)
    assert [p.name for p in runs] == [reference_run.name]
    assert (runs[0] / "index.html").exists()
    pd.testing.assert_frame_equal(pd.read_csv(reference_run / "scores.csv"),
                                  pd.read_csv(runs[0] / "scores.csv"))


def test_run_killed_at_random_points(reference, tmp_path, land_fraction):
    cfg, ref_run, _ = reference
    out, cache = tmp_path / "reports", _seeded(tmp_path / "cache", land_fraction)
    rng = np.random.default_rng(0)
    for delay in sorted(rng.uniform(1.0, 12.0, size=2)):  # the stages: the test below
        killed = _kill_after(_start(["run", str(cfg), "--out", str(out), "-q"], cache), None,
                             delay)
        finished = [p for p in _visible_runs(out) if (p / "index.html").exists()]
        assert len(finished) == len(_visible_runs(out))  # never a visible half-written report
        if not killed:
            break
    _finish(_start(["run", str(cfg), "--out", str(out), "-q"], cache))
    _assert_same_run(out, ref_run)
    assert not _leftovers(out, cache)


#: (stage line printed by ``twsbench run``, seconds to wait after it before the SIGKILL)
STAGES = [
    ("generating the twin world", 3.0),  # mid-way through writing the five files
    ("computing (reading, regridding)", 0.5),  # prepare, inside the Dask computation
    ("saving grids-", 0.0),  # while the grids cache file is written
    ("soft_cnn (seed 0): fit", 3.0),  # training, after its first checkpoints
    ("soft_cnn (seed 0): predict", 0.0),
    ("writing the scores", 0.0),
    ("building the report", 0.5),  # the report is half-built in the working folder
]


def test_run_killed_at_each_stage(reference, tmp_path):
    cfg, ref_run, _ = reference
    out, cache = tmp_path / "reports", tmp_path / "cache"
    kills = 0
    for marker, delay in STAGES:
        kills += _kill_after(_start(["run", str(cfg), "--out", str(out)], cache), marker, delay)
        assert not _visible_runs(out), marker
    assert kills >= len(STAGES) - 1  # a stage may end before its signal lands, not most
    _finish(_start(["run", str(cfg), "--out", str(out), "-q"], cache))
    _assert_same_run(out, ref_run)
    assert not _leftovers(out, cache)


def test_release_killed_several_times(reference, tmp_path):
    _, run_dir, ref_product = reference
    cache = with_world_and_grids(tmp_path / "cache", tiny.RUN)
    target = tmp_path / "release" / "product.nc"
    target.parent.mkdir()
    args = ["release", str(run_dir), "--out", str(target)]
    rng = np.random.default_rng(1)
    points = [("fitting ", 0.2), ("writing", 0.0), ("writing", 0.3)]
    points += [(None, float(d)) for d in rng.uniform(2.0, 8.0, size=1)]
    kills = 0
    for marker, delay in points:
        kills += _kill_after(_start(args, cache), marker, delay)
        if target.exists():  # it finished before the signal: complete, with its checksum
            assert validate(target) == []
            target.unlink()
            target.with_name(target.name + ".sha256").unlink()
        assert not target.exists()
    assert kills >= 2
    _finish(_start([*args, "-q"], cache))
    assert validate(target) == []
    assert sorted(p.name for p in target.parent.iterdir()) == ["product.nc",
                                                               "product.nc.sha256"]
    assert not _leftovers(cache)
    with xr.open_dataset(ref_product) as a, xr.open_dataset(target) as b:
        for name in ("twsa", "twsa_uncertainty", "grace_available"):
            np.testing.assert_array_equal(a[name].values, b[name].values)
        assert a.attrs["model"] == b.attrs["model"]


def test_stale_temporaries_are_cleared_only_when_their_writer_is_gone(tmp_path):
    from twsbench.core import cache

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    target = tmp_path / "grids-abc.nc"
    dead = tmp_path / f".grids-abc.nc.{gone.pid}.x1.tmp"
    live = tmp_path / f".grids-abc.nc.{os.getpid()}.x2.tmp"
    other = tmp_path / f".grids-abcd.nc.{gone.pid}.x3.tmp"  # another target's
    dead_dir = tmp_path / f".grids-abc.nc.{gone.pid}.x4.tmpdir"
    for path in (dead, live, other):
        path.write_text("partial")
    dead_dir.mkdir()
    new = cache.temp_path(target)
    assert not cache.alive(gone.pid) and cache.alive(os.getpid())
    assert not dead.exists() and live.exists() and other.exists() and new.exists()
    assert dead_dir.exists()  # directories are cleared by temp_dir
    new_dir = cache.temp_dir(target)
    assert not dead_dir.exists() and new_dir.is_dir()


def test_a_run_clears_working_folders_of_killed_runs_of_other_configs(tmp_path):
    from twsbench.running.runner import _remove_stale

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead = tmp_path / f".0123456789ab.partial-{gone.pid}"
    live = tmp_path / f".ba9876543210.partial-{os.getpid()}"
    for path in (dead, live):
        (path / "predictions").mkdir(parents=True)
    _remove_stale(tmp_path)
    assert not dead.exists() and live.exists()
