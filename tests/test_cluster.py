"""``twsbench run`` on a ``dask.distributed`` LocalCluster: the same tables as in-process, and
a worker killed mid-task changes nothing."""

from __future__ import annotations

import dataclasses
import os
import signal
import textwrap
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from tests import tiny
from twsbench.core.config import load
from twsbench.core.errors import ConfigError
from twsbench.pipeline.benchmark import run
from twsbench.running.runner import run_id

pytestmark = pytest.mark.slow  # runs on LocalClusters

pytest.importorskip("distributed")

# a plug-in model that is slow while TWSBENCH_TEST_MARKERS names a folder, and leaves a
# marker there (its process id) when a fit starts: the kill test's target
PLUGIN = textwrap.dedent('''
    import os, pathlib, time
    from typing import ClassVar
    from twsbench.baselines.regression import MasconRegression
    from twsbench.downscaling.contract import DOWNSCALERS

    @DOWNSCALERS.register("slow_regression")
    class SlowRegression(MasconRegression):
        stochastic: ClassVar[bool] = True

        def fit(self, grids, months):
            folder = os.environ.get("TWSBENCH_TEST_MARKERS")
            if folder:
                path = pathlib.Path(folder) / f"{os.getpid()}-{time.time_ns()}"
                path.write_text(str(os.getpid()))
                time.sleep(4.0)
            super().fit(grids, months)
''')
TABLES = ("scores.csv", "worlds.csv", "monthly.csv", "uncertainty.csv")


@pytest.fixture(scope="module")
def config_file(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("cluster")
    (folder / "slow_plugin.py").write_text(PLUGIN)
    table = tiny.table(models=tiny.quick(["slow_regression", "lightgbm", "random_forest"],
                                         seeds=[0, 1], plugins=["slow_plugin"]),
                       twin={"seeds": [1, 2]})  # two worlds × three models × two seeds
    path = folder / "cluster.toml"
    path.write_text(tiny.toml(table))
    return path


@pytest.fixture(scope="module")
def in_process(config_file, tmp_path_factory) -> Path:
    run_dir, _ = run(load(config_file), tmp_path_factory.mktemp("in-process"))
    return run_dir


def _on_workers(config_file: Path, n: int):
    config = load(config_file)
    return dataclasses.replace(config, compute=dataclasses.replace(config.compute, workers=n))


def _same_tables(a: Path, b: Path) -> None:
    for name in TABLES:
        left, right = pd.read_csv(a / name), pd.read_csv(b / name)
        pd.testing.assert_frame_equal(left.drop(columns="run_id", errors="ignore"),
                                      right.drop(columns="run_id", errors="ignore"))


def test_local_cluster_gives_the_in_process_tables(config_file, in_process, tmp_path):
    config = _on_workers(config_file, 2)
    assert run_id(config) == in_process.name  # where it runs is not part of the run
    environ = dict(os.environ)
    run_dir, _ = run(config, tmp_path)
    # distributed sets OMP_NUM_THREADS=1 for its workers in the process that starts them;
    # the run gives this process its environment back (a CNN trained here later keeps its
    # threads)
    assert dict(os.environ) == environ
    _same_tables(in_process, run_dir)
    timing = pd.read_csv(run_dir / "timing.csv")
    assert len(timing) == 2 * (2 + 2 + 2)
    assert set(timing["world"]) == {"realistic-seed1", "realistic-seed2"}
    # each fit's worker and its task times (seconds from the run's start)
    assert timing["worker"].nunique() == 2 and "in-process" not in set(timing["worker"])
    assert (timing["task_end_s"] > timing["task_start_s"]).all()
    assert (timing["task_seconds"] >= timing["fit_seconds"]).all()
    assert set(timing["threads"]) == {max(1, len(os.sched_getaffinity(0)) // 2)}
    assert (run_dir / "figures" / "timeline.png").exists()
    in_timing = pd.read_csv(in_process / "timing.csv")
    assert set(in_timing["worker"]) == {"in-process"}
    assert set(in_timing["threads"]) == {len(os.sched_getaffinity(0))}  # no limit


def test_a_killed_worker_changes_nothing(config_file, in_process, tmp_path, monkeypatch):
    markers = tmp_path / "markers"
    markers.mkdir()
    monkeypatch.setenv("TWSBENCH_TEST_MARKERS", str(markers))  # the workers inherit it
    killed: list[int] = []

    def kill_first_fit() -> None:
        deadline = time.time() + 120
        while not killed and time.time() < deadline:
            found = sorted(markers.iterdir())
            if found:
                pid = int(found[0].read_text())
                os.kill(pid, signal.SIGKILL)  # the worker process, mid-fit
                killed.append(pid)
            time.sleep(0.05)

    killer = threading.Thread(target=kill_first_fit)
    killer.start()
    run_dir, _ = run(_on_workers(config_file, 2), tmp_path / "reports")
    killer.join()
    assert killed, "no fit of slow_regression started"
    # the killed fit ran again: one marker per fit of slow_regression, and one more
    assert len(list(markers.iterdir())) == 2 * 2 + 1
    _same_tables(in_process, run_dir)


def test_scheduler_and_workers_exclude_each_other(config_file):
    from twsbench.core.config import validate

    config = load(config_file)
    both = dataclasses.replace(config, compute=dataclasses.replace(
        config.compute, workers=2, scheduler="tcp://127.0.0.1:8786"))
    with pytest.raises(ConfigError, match="scheduler or workers"):
        validate(both)


def test_cnn_tasks_ask_for_a_gpu_where_workers_declare_one():
    from distributed import Client, LocalCluster

    from twsbench.running.cluster import OnCluster, resources_for

    assert resources_for("soft_cnn", gpus=True) == {"GPU": 1}
    assert resources_for("lightgbm", gpus=True) is None
    assert resources_for("soft_cnn", gpus=False) is None
    with LocalCluster(n_workers=1, processes=False, dashboard_address=None,
                      resources={"GPU": 1}) as cluster, Client(cluster) as client:
        assert OnCluster(client, 1).gpus
    with LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        assert not OnCluster(client, 1).gpus


def test_readme_cluster_examples_parse():
    """The README's run lines for clusters are valid commands on shipped configs."""
    import re
    import shlex

    from tests.conftest import README
    from twsbench.cli import build_parser

    text = README.read_text().split("## Scaling out", 1)[1].split("\n## ", 1)[0]
    lines = [ln.split("#")[0].strip() for ln in re.findall(r"^twsbench run .*$", text, re.M)]
    assert any("--workers" in ln for ln in lines) and any("--scheduler" in ln for ln in lines)
    root = README.parent
    for line in lines:
        args = build_parser().parse_args(shlex.split(line)[1:])
        assert (root / args.config).exists(), line


def test_cli_runs_on_workers_and_refuses_an_unreachable_scheduler(config_file, in_process,
                                                                  tmp_path):
    import subprocess
    import sys

    out = tmp_path / "reports"
    ok = subprocess.run([sys.executable, "-m", "twsbench.cli", "run", str(config_file),
                         "--workers", "2", "--threads-per-task", "1", "--out", str(out), "-q"],
                        capture_output=True, text=True, timeout=600)
    assert ok.returncode == 0, ok.stderr[-2000:]
    run_dir = out / in_process.name
    _same_tables(in_process, run_dir)
    assert set(pd.read_csv(run_dir / "timing.csv")["threads"]) == {1}
    bad = subprocess.run([sys.executable, "-m", "twsbench.cli", "run", str(config_file),
                          "--scheduler", "tcp://127.0.0.1:9", "--out", str(tmp_path / "b"),
                          "-q"], capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1 and "[compute] scheduler" in lines[0] and "127.0.0.1:9" in lines[0]
    assert not list((tmp_path / "b").glob("*/index.html"))
