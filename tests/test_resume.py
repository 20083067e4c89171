"""Runs that resume: the client of a run is killed (SIGKILL) after some tasks finished, and
the same command run again runs exactly the unfinished tasks (counted from the run's
records) and writes the tables of an uninterrupted run; in-process and on a 2-worker
LocalCluster."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from tests import tiny
from tests.conftest import SESSION_ENV, with_world_and_grids

pytestmark = pytest.mark.slow  # whole runs through the CLI, killed and run again

PLUGIN = textwrap.dedent('''
    import time
    from typing import ClassVar

    from twsbench.baselines.regression import MasconRegression
    from twsbench.downscaling.contract import DOWNSCALERS

    @DOWNSCALERS.register("slow_regression")
    class SlowRegression(MasconRegression):
        """A regression whose fit takes ``delay`` seconds more: something to kill."""

        stochastic: ClassVar[bool] = True
        defaults: ClassVar[dict] = {**MasconRegression.defaults, "delay": 1.5}

        def fit(self, grids, months):
            time.sleep(self.params["delay"])
            super().fit(grids, months)
''')
NAMES = ["slow_regression", "lightgbm", "lightgbm+residual"]
TABLES = ("scores.csv", "monthly.csv", "uncertainty.csv", "significance.csv",
          "mascon_gains.csv")


def _start(args: list[str], cache: Path) -> subprocess.Popen:
    env = {**SESSION_ENV, "TWSBENCH_CACHE_DIR": str(cache)}
    return subprocess.Popen([sys.executable, "-m", "twsbench.cli", *args, "-q"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # its workers in its process group


def _finish(proc: subprocess.Popen) -> None:
    out, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, out + err


def _run_dir(out: Path) -> Path:
    (run_dir,) = [p for p in out.iterdir() if not p.name.startswith(".")]
    return run_dir


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """The plug-in beside the config, a cache with the tiny world and grids, and an
    uninterrupted run."""
    folder = tmp_path_factory.mktemp("resume")
    (folder / "slow_plugin.py").write_text(PLUGIN)
    table = tiny.table(models=tiny.quick(NAMES, seeds=[0, 1, 2], plugins=["slow_plugin"]))
    cfg = folder / "resume.toml"
    cfg.write_text(tiny.toml(table))
    cache = with_world_and_grids(folder / "cache", table)
    _finish(_start(["run", str(cfg), "--out", str(folder / "whole")], cache))
    return cfg, cache, _run_dir(folder / "whole")


def _records(out: Path) -> list[Path]:
    return sorted(out.glob(".*.partial-*/tasks/*.pkl"))


def _label(path: Path) -> str:
    with open(path, "rb") as f:
        record = pickle.load(f)
    base, seed = record.tags[0].split("__seed")
    return f"{base.split('+')[0]} (seed {seed}, world {record.world})"


@pytest.mark.parametrize("workers", [0, 2])
def test_a_killed_run_resumes_with_the_unfinished_tasks_only(setup, workers, tmp_path):
    cfg, cache, whole = setup
    args = ["run", str(cfg), "--out", str(tmp_path)] + (["--workers", "2"] if workers else [])
    proc = _start(args, cache)
    deadline = time.time() + 300
    while len(_records(tmp_path)) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the client, and its LocalCluster's workers
    proc.communicate(timeout=60)
    done = {_label(p) for p in _records(tmp_path)}
    assert 2 <= len(done) < 6, done  # six tasks: three seeds of two fits
    _finish(_start(args, cache))
    run_dir = _run_dir(tmp_path)
    meta = pd.read_json(run_dir / "meta.json", typ="series")
    assert set(meta["reused_tasks"]) == done
    assert len(meta["ran_tasks"]) == 6 - len(done) and not done & set(meta["ran_tasks"])
    for name in TABLES:
        left, right = pd.read_csv(whole / name), pd.read_csv(run_dir / name)
        pd.testing.assert_frame_equal(left.drop(columns="run_id", errors="ignore"),
                                      right.drop(columns="run_id", errors="ignore"))
    assert not list(tmp_path.glob(".*"))  # the killed run's folder was taken over
    assert not (run_dir / "tasks").exists()  # a run without failures keeps no records
