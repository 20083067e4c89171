"""A model that fails is a row, not a lost run: each way a plug-in can fail (it raises, its
output breaks the contract, it hangs past ``[compute] task_timeout``) ends in one line naming
it, exit status 3, the other models' scores of a clean run and the failure in the report;
``--fail-fast`` stops at the first; ``release`` refuses a failed model."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pandas as pd
import pytest

from tests import tiny
from tests.conftest import SESSION_ENV, with_world_and_grids

pytestmark = pytest.mark.slow  # whole runs through the CLI

PLUGIN = textwrap.dedent('''
    import time
    from typing import ClassVar

    import numpy as np

    from twsbench.downscaling.contract import DOWNSCALERS, Base

    @DOWNSCALERS.register("faulty")
    class Faulty(Base):
        """Fails as ``mode`` says."""

        defaults: ClassVar[dict] = {"mode": "ok"}
        stochastic: ClassVar[bool] = True

        def fit(self, grids, months):
            if self.params["mode"] == "raise" or (self.params["mode"] == "seed1"
                                                  and self.seed == 1):
                raise ValueError("the solver did not converge")
            if self.params["mode"] == "hang":
                time.sleep(3600)

        def predict_cells(self, grids, months):
            shape, mode = (len(months), grids.n_cells), self.params["mode"]
            if mode == "shape":
                return np.zeros((len(months), 3))
            if mode == "nan":
                return np.full(shape, np.nan)
            if mode == "inf":
                return np.full(shape, np.inf)
            if mode == "string":
                return "a string"
            return np.zeros(shape)

    # one registered name per way of failing, so that one run holds them all
    for _mode in ("raise", "shape", "nan", "inf", "string", "hang"):
        DOWNSCALERS.register(f"faulty_{_mode}")(
            type(f"Faulty_{_mode}", (Faulty,), {"defaults": {"mode": _mode}}))
''')
#: each failure, the words its one line must hold (besides the model, seed and world)
MODES = {
    "raise": "fit raised ValueError: the solver did not converge",
    "shape": "predict_cells returned shape (",
    "nan": "non-finite values in",
    "inf": "non-finite values in",
    "string": "predict_cells returned a str, expected a float array",
    "hang": "ran past [compute] task_timeout (10 s)",
}
OTHERS = ["mascon", "lightgbm"]


def _cli(args: list[str], cache: Path):
    import subprocess
    import sys

    env = {**SESSION_ENV, "TWSBENCH_CACHE_DIR": str(cache), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "twsbench.cli", *args], env=env,
                          capture_output=True, text=True, timeout=900)


def _config(folder: Path, names: list[str], mode: str = "ok", seeds=(0,), **compute) -> Path:
    models = tiny.quick(names, plugins=["faulty_plugin"], seeds=list(seeds))
    models["params"]["faulty"] = {"mode": mode}
    table = tiny.table(models=models, **({"compute": compute} if compute else {}))
    path = folder / f"{mode}-{len(names)}-{len(seeds)}.toml"
    path.write_text(tiny.toml(table))
    return path


def _run_dir(out: Path) -> Path:
    (run_dir,) = [p for p in out.iterdir() if not p.name.startswith(".")]
    return run_dir


def _rows(run_dir: Path, models: list[str]) -> pd.DataFrame:
    scores = pd.read_csv(run_dir / "scores.csv")
    sel = scores[scores["model"].isin(models)].drop(columns="run_id")
    return sel.sort_values(list(sel.columns[:5])).reset_index(drop=True)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """The plug-in beside its configs, a cache with the tiny world and grids, and a clean
    run of the other models."""
    folder = tmp_path_factory.mktemp("failures")
    (folder / "faulty_plugin.py").write_text(PLUGIN)
    cache = with_world_and_grids(folder / "cache", tiny.table(models=tiny.quick(OTHERS)))
    clean = _cli(["run", str(_config(folder, OTHERS)), "--out", str(folder / "clean"), "-q"],
                 cache)
    assert clean.returncode == 0, clean.stderr
    return folder, cache, _run_dir(folder / "clean")


@pytest.fixture(scope="module")
def failing_run(setup, tmp_path_factory):
    """One run of the other models beside a plug-in failing in each way (with a
    ``task_timeout`` for the one that hangs)."""
    folder, cache, _ = setup
    out = tmp_path_factory.mktemp("failing")
    cfg = _config(folder, [*OTHERS, *(f"faulty_{m}" for m in MODES)], task_timeout=10.0)
    result = _cli(["run", str(cfg), "--out", str(out), "-q"], cache)
    return result, _run_dir(out)


def test_failing_models_leave_the_others_as_a_clean_run_gives_them(setup, failing_run):
    _, _, clean = setup
    result, run_dir = failing_run
    assert result.returncode == 3, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    pd.testing.assert_frame_equal(_rows(run_dir, OTHERS), _rows(clean, OTHERS))
    assert set(pd.read_csv(run_dir / "scores.csv")["model"]) == set(OTHERS)
    index = (run_dir / "index.md").read_text()
    # the report opens with the verdict, which says that models failed; the failures next
    sections = [line for line in index.splitlines() if line.startswith("## ")]
    assert sections[:2] == ["## Verdict", "## Failed tasks"]
    verdict = index.split("## Verdict\n", 1)[1].split("\n## ", 1)[0]
    assert f"{len(MODES)} task(s) failed" in verdict


@pytest.mark.parametrize("mode", list(MODES))
def test_each_way_of_failing_is_one_line_and_a_row(failing_run, mode):
    result, run_dir = failing_run
    name = f"faulty_{mode}"
    lines = [line for line in result.stderr.splitlines() if f"{name} (" in line]
    assert len(lines) == 1, result.stderr
    assert f"{name} (seed 0, world realistic-seed1)" in lines[0] and MODES[mode] in lines[0]
    failures = pd.read_csv(run_dir / "failures.csv").set_index("model")
    assert MODES[mode] in failures.loc[name, "reason"]
    index = (run_dir / "index.md").read_text()
    section = index[:index.index("## ", index.index("## Failed tasks") + 3)]
    assert name in section and MODES[mode] in section
    log = (run_dir / "failures.log").read_text()
    entry = log[log.index(f"== {name} "):].split("\n== ")[0]
    assert ("Traceback" in entry) == (mode != "hang")


def test_a_model_with_a_failed_seed_is_not_ranked(setup, tmp_path):
    from twsbench.core.splits import TASKS
    from twsbench.scoring.leaderboards import leaderboard

    folder, cache, _ = setup
    cfg = _config(folder, [*OTHERS, "faulty"], "seed1", seeds=(0, 1))
    result = _cli(["run", str(cfg), "--out", str(tmp_path), "-q"], cache)
    assert result.returncode == 3 and "faulty (seed 1, world" in result.stderr
    run_dir = _run_dir(tmp_path)
    scores = pd.read_csv(run_dir / "scores.csv")
    assert set(scores.loc[scores["model"] == "faulty", "seed"]) == {0}  # seed 0 was scored
    meta = pd.read_json(run_dir / "meta.json", typ="series").to_dict()
    timing = pd.read_csv(run_dir / "timing.csv")
    for task in TASKS:
        board = leaderboard(scores, timing, meta, task)
        assert "faulty" not in board.index and "lightgbm" in board.index


def test_on_a_local_cluster_failing_models_are_rows(setup, tmp_path):
    folder, cache, clean = setup
    cfg = _config(folder, [*OTHERS, "faulty_raise", "faulty_hang"], task_timeout=10.0)
    result = _cli(["run", str(cfg), "--out", str(tmp_path), "-q", "--workers", "2"], cache)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    for mode in ("raise", "hang"):
        assert f"faulty_{mode} (seed 0, world realistic-seed1)" in result.stderr
        assert MODES[mode] in result.stderr
    pd.testing.assert_frame_equal(_rows(_run_dir(tmp_path), OTHERS), _rows(clean, OTHERS))


def test_fail_fast_stops_and_the_same_command_resumes(setup, tmp_path):
    folder, cache, clean = setup
    cfg = _config(folder, ["lightgbm", "faulty", "mascon"], "raise")
    result = _cli(["run", str(cfg), "--out", str(tmp_path), "-q", "--fail-fast"], cache)
    assert result.returncode == 3
    assert "faulty (seed 0, world realistic-seed1): fit raised" in result.stderr
    assert not [p for p in tmp_path.iterdir() if not p.name.startswith(".")]  # no report
    # lightgbm finished before faulty failed: its record is kept; mascon never ran
    again = _cli(["run", str(cfg), "--out", str(tmp_path), "-q"], cache)
    assert again.returncode == 3
    meta = pd.read_json(_run_dir(tmp_path) / "meta.json", typ="series")
    assert meta["reused_tasks"] == ["lightgbm (seed 0, world realistic-seed1)"]
    assert sorted(meta["ran_tasks"]) == ["faulty (seed 0, world realistic-seed1)",
                                         "mascon (seed 0, world realistic-seed1)"]
    pd.testing.assert_frame_equal(_rows(_run_dir(tmp_path), OTHERS), _rows(clean, OTHERS))


def test_after_a_fix_to_the_plugin_only_its_task_runs(setup, tmp_path):
    _, cache, clean = setup
    folder = tmp_path / "configs"
    folder.mkdir()
    (folder / "faulty_plugin.py").write_text(PLUGIN)
    cfg = _config(folder, [*OTHERS, "faulty"], "raise")
    out = tmp_path / "reports"
    assert _cli(["run", str(cfg), "--out", str(out), "-q"], cache).returncode == 3
    # the fix: the plug-in's fit no longer raises (its module changes, so does the run id)
    (folder / "faulty_plugin.py").write_text(PLUGIN.replace(
        'raise ValueError("the solver did not converge")', "pass"))
    fixed = _cli(["run", str(cfg), "--out", str(out), "-q"], cache)
    assert fixed.returncode == 0, fixed.stderr
    (run_dir,) = [p for p in out.iterdir() if (p / "meta.json").exists()
                  and not (p / "failures.csv").exists()]
    meta = pd.read_json(run_dir / "meta.json", typ="series")
    assert meta["ran_tasks"] == ["faulty (seed 0, world realistic-seed1)"]
    assert sorted(meta["reused_tasks"]) == [f"{m} (seed 0, world realistic-seed1)"
                                            for m in sorted(OTHERS)]
    pd.testing.assert_frame_equal(_rows(run_dir, OTHERS), _rows(clean, OTHERS))
    assert "faulty" in set(pd.read_csv(run_dir / "scores.csv")["model"])


def test_release_refuses_a_model_with_failed_tasks(setup, tmp_path):
    import json

    from twsbench.core.errors import ConfigError
    from twsbench.release.product import choose_model

    _, _, clean = setup
    meta = json.loads((clean / "meta.json").read_text())
    chosen, _ = choose_model(clean, meta)
    meta["failed_tasks"] = [{"world": "realistic-seed1", "model": chosen, "seed": 0,
                             "names": chosen, "stage": "fit", "kind": "error",
                             "reason": "x"}]
    with pytest.raises(ConfigError, match="failed"):
        choose_model(clean, meta)


def test_a_timed_task_is_spawned_where_the_run_uses_cuda(tiny_config, tiny_grids, tmp_path,
                                                          monkeypatch):
    """A forked child cannot use CUDA once its parent has: with a GPU the timed task's child
    is spawned, and it gives the in-process result."""
    import dataclasses
    import multiprocessing
    import time

    import numpy as np

    from twsbench.core import backend
    from twsbench.running.cluster import InProcess, Job
    from twsbench.running.plan import ModelRun
    from twsbench.running.records import Records
    from twsbench.running.tasks import World, fit_one

    asked: list[str] = []
    real = multiprocessing.get_context
    monkeypatch.setattr(multiprocessing, "get_context",
                        lambda method=None: asked.append(method) or real(method))
    monkeypatch.setattr(backend, "resolve", lambda device: "cuda")
    config = dataclasses.replace(tiny_config, compute=dataclasses.replace(
        tiny_config.compute, task_timeout=300.0))
    world = World.of("w", tiny_grids, tiny_grids.grace, None, 5.0)
    group = [ModelRun("mascon_regression", 0)]
    record = InProcess._limited(Job(world, group, "k", True), config, "rid", time.time(),
                                300.0, Records(tmp_path, tmp_path))
    assert asked == ["spawn"] and not record.failures
    here = fit_one(group, world, config, "rid")
    np.testing.assert_array_equal(record.results[0].cells, here[0].cells)
