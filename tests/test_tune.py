"""``twsbench tune``: one search for every learned model, a parameter layer that
``run --params`` applies, and a tuning that reads no test month and not the scored world."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib

import numpy as np
import pytest

from tests import tiny
from tests.conftest import SESSION_ENV, poison_grace, poison_months
from twsbench.core.config import load, parse
from twsbench.core.errors import ConfigError
from twsbench.pipeline.tune import learned, tune, tuning_seed
from twsbench.prepare.files import resolve_inputs
from twsbench.prepare.store import prepare
from twsbench.running.plan import plan
from twsbench.running.runner import run_id

pytestmark = pytest.mark.slow  # each tunes CNNs and trees on tiny worlds

MODELS = ["mascon", "lightgbm", "lightgbm+residual", "mascon_regression", "soft_cnn"]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "twsbench.cli", *args, "-q"],
                          env=SESSION_ENV, capture_output=True, text=True, timeout=1200)


def test_tune_writes_a_layer_that_run_params_applies(tmp_path):
    config_path = tmp_path / "tiny.toml"
    config_path.write_text(tiny.toml(tiny.table(models=tiny.quick(MODELS))))
    layer_path = tmp_path / "tuned.toml"
    result = _cli("tune", str(config_path), "--trials", "2", "--out", str(layer_path))
    assert result.returncode == 0, result.stderr
    layer = tomllib.loads(layer_path.read_text())
    info = layer["tuning"]
    # the same budget for every learned model with a search space; the others named
    assert set(layer["models"]["params"]) == {"lightgbm", "soft_cnn"}
    assert info["untuned"] == ["mascon_regression"]
    assert all(info[n]["trials"] == 2 and info[n]["cpu_seconds"] > 0
               for n in ("lightgbm", "soft_cnn"))
    assert info["world"] == "realistic-seed2"  # the scored world is seed 1
    assert info["command"].startswith("twsbench tune ")
    assert "not tuned (no search space): mascon_regression" in result.stdout

    plain, layered = load(config_path), load(config_path, (layer_path,))
    tuned = {r.name: r.params for r in plan(layered)}
    for name in ("lightgbm", "lightgbm+residual", "soft_cnn"):
        base = name.split("+")[0]
        assert {k: tuned[name][k] for k in layer["models"]["params"][base]} == \
            layer["models"]["params"][base]
    assert tuned["lightgbm"] != {r.name: r.params for r in plan(plain)}["lightgbm"]
    assert run_id(plain) != run_id(layered)

    out = tmp_path / "reports"
    result = _cli("run", str(config_path), "--params", str(layer_path), "--out", str(out))
    assert result.returncode == 0, result.stderr
    (run_dir,) = [p for p in out.iterdir() if not p.name.startswith(".")]
    assert run_dir.name == run_id(layered)
    meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["params_layers"] == [str(layer_path.resolve())]
    assert meta["tuning"]["lightgbm"] == info["lightgbm"]
    assert meta["tuning_status"]["mascon_regression"] == {
        "tuned": False, "why": "it declares no search space"}
    assert meta["tuning_status"]["lightgbm"]["tuned"]
    tuning = (run_dir / "index.md").read_text().split("## Tuning")[1].split("\n## ")[0]
    assert "it declares no search space" in tuning and "realistic-seed2" in tuning
    scored = {r["name"]: r["params"] for r in meta["runs"]}
    assert scored["soft_cnn"]["lr"] == pytest.approx(layer["models"]["params"]["soft_cnn"]["lr"])


def _files_table(files, models) -> dict:
    return tiny.table(inputs={"grace": str(files.grace), "wghm": str(files.wghm),
                              "era5": [str(p) for p in files.era5],
                              "truth": str(files.truth)}, models=models)


def _tuned(table: dict, out, world_seed: int | None = None) -> dict:
    layer = tune(parse(table), 2, out, world_seed=world_seed)
    return {"params": layer["models"]["params"],
            "best": {n: layer["tuning"][n]["best"] for n in layer["models"]["params"]}}


def test_tuning_reads_no_test_month(tmp_path):
    """Real-format files: the test months' GRACE and truth poisoned (30 cm, 50 cm), the
    tuned parameters and their validation scores are the same."""
    models = tiny.quick(["lightgbm", "soft_cnn"])
    files = resolve_inputs(parse(tiny.TINY))
    clean_table = _files_table(files, models)
    full, _, _ = prepare(parse(clean_table))
    test = full.months[full.splits["test"] | full.splits["gapfill_withheld"]]
    folder = tmp_path / "poisoned"
    folder.mkdir()
    for path in (files.grace, files.wghm, files.truth, *files.era5):
        shutil.copy(path, folder / path.name)
    poison_grace(folder / files.grace.name, test[np.isin(test, full.months[full.has_grace])])
    poison_months(folder / files.truth.name, test, twsa=lambda v: v + 500.0)
    bad_table = tiny.table(inputs={"grace": str(folder / files.grace.name),
                                   "wghm": str(files.wghm),
                                   "era5": [str(p) for p in files.era5],
                                   "truth": str(folder / files.truth.name)}, models=models)
    bad_full, _, _ = prepare(parse(bad_table))
    assert np.nanmin(bad_full.grace[full.splits["test"] & full.has_grace]
                     - full.grace[full.splits["test"] & full.has_grace]) > 200  # it got there
    assert _tuned(clean_table, tmp_path / "clean.toml") == _tuned(bad_table,
                                                                  tmp_path / "bad.toml")


def test_tuning_reads_not_the_scored_world(tmp_path):
    """The twin: configs scoring different worlds tune on the same tuning world to the same
    parameters; the scored world itself is refused as the tuning world."""
    models = tiny.quick(["lightgbm"])
    one = tiny.table(models=models)
    other = tiny.table(models=models, twin={"seed": 4})
    assert _tuned(one, tmp_path / "a.toml", world_seed=3) == _tuned(other, tmp_path / "b.toml",
                                                                     world_seed=3)
    assert tuning_seed(parse(one)) == tiny.TINY["twin"]["seed"] + 1
    with pytest.raises(ConfigError, match="expected a twin seed other than the scored"):
        tune(parse(other), 2, tmp_path / "c.toml", world_seed=4)


def test_only_learned_models_with_a_search_space_are_tuned():
    config = parse(tiny.table(models=tiny.quick(MODELS + ["random_forest+residual"])))
    assert learned(config) == (["lightgbm", "soft_cnn", "random_forest"], ["mascon_regression"])


def test_trials_on_a_local_cluster_tune_every_model(tmp_path):
    """``--workers 2``: the trials run on a LocalCluster, in rounds of its task slots; the
    layer has the same tables and provenance as in-process (without pruning)."""
    import dataclasses

    config = parse(tiny.table(models=tiny.quick(["lightgbm", "random_forest"])))
    config = dataclasses.replace(config, compute=dataclasses.replace(config.compute,
                                                                     workers=2))
    layer = tune(config, 3, tmp_path / "tuned.toml")
    assert set(layer["models"]["params"]) == {"lightgbm", "random_forest"}
    assert all(layer["tuning"][n]["trials"] == 3 and layer["tuning"][n]["pruned"] == 0
               for n in ("lightgbm", "random_forest"))
    # the first trial is the model's settings, as in-process: the same value
    serial = tune(parse(tiny.table(models=tiny.quick(["lightgbm"]))), 1, tmp_path / "one.toml")
    assert layer["tuning"]["lightgbm"]["first"] == serial["tuning"]["lightgbm"]["first"]
