"""Faults: a ``twsbench run`` killed at random points leaves no partial report, and a rerun
completes from the caches and checkpoints with the scores of an uninterrupted run."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd

CONFIG = """
[domain]
bbox = [24.0, 31.0, 75.0, 85.0]
[twin]
seed = 1
[models]
names = ["mascon", "pattern_transfer", "lightgbm", "soft_cnn"]
[models.params.lightgbm]
n_estimators = 40
[models.params.soft_cnn]
epochs = 4
base_channels = 8
"""


def _run(cfg, out, env):
    return subprocess.Popen([sys.executable, "-m", "suite.cli", "run", str(cfg), "--out",
                             str(out), "-q"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)


def test_killed_runs_leave_nothing_and_a_rerun_gives_the_same_scores(tmp_path):
    import os

    cfg = tmp_path / "tiny.toml"
    cfg.write_text(CONFIG)
    env = {**os.environ, "TWSBENCH_CACHE_DIR": str(tmp_path / "cache")}
    # uninterrupted, with its own cache
    ref_env = {**os.environ, "TWSBENCH_CACHE_DIR": str(tmp_path / "ref-cache")}
    reference = _run(cfg, tmp_path / "ref", ref_env)
    assert reference.wait(timeout=900) == 0, reference.stderr.read()
    # killed at several points (world generation, prepare, training, scoring)
    out = tmp_path / "reports"
    rng = np.random.default_rng(0)
    for delay in sorted(rng.uniform(1.0, 12.0, size=4)):
        proc = _run(cfg, out, env)
        time.sleep(delay)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        finished = [p for p in out.glob("*") if p.is_dir() and (p / "index.html").exists()]
        partial = [p for p in out.glob("*") if p.is_dir() and not (p / "index.html").exists()
                   and not p.name.startswith(".")]
        assert not partial  # never a visible, half-written report
        if finished:
            break
    final = _run(cfg, out, env)
    assert final.wait(timeout=900) == 0, final.stderr.read()
    runs = [p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert len(runs) == 1
    assert not list(out.glob(".*partial*"))  # working folders of killed runs are gone
    (ref_dir,) = [p for p in (tmp_path / "ref").iterdir() if not p.name.startswith(".")]
    assert json.loads((runs[0] / "meta.json").read_text())["run_id"] == ref_dir.name
    a = pd.read_csv(ref_dir / "scores.csv")
    b = pd.read_csv(runs[0] / "scores.csv")
    pd.testing.assert_frame_equal(a, b)
