"""One resolution of what a config runs: names, seeds, parameters and device."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from tests import tiny
from twsbench.core import backend
from twsbench.core.config import parse
from twsbench.core.errors import ConfigError
from twsbench.running.plan import ModelRun, model_names, params_for, plan

CONFIGS = Path(__file__).parent.parent / "configs"


def test_seeds_only_for_stochastic_models():
    config = parse(tiny.table(models={"names": ["mascon", "lightgbm", "soft_cnn+conserve"],
                                      "seeds": [3, 1, 2]}))
    runs = plan(config)
    assert [(r.name, r.seed) for r in runs] == [
        ("mascon", 3), ("lightgbm", 3), ("lightgbm", 1), ("lightgbm", 2),
        ("soft_cnn+conserve", 3), ("soft_cnn+conserve", 1), ("soft_cnn+conserve", 2)]
    assert all(r.device == "cpu" for r in runs) or backend.resolve("auto") == "cuda"


def test_conserve_tables_update_the_model_table():
    config = parse(tiny.table(models={
        "names": ["lightgbm", "lightgbm+conserve"],
        "params": {"lightgbm": {"n_estimators": 11, "num_leaves": 7},
                   "lightgbm+conserve": {"n_estimators": 5}}}))
    assert params_for(config, "lightgbm") == {"n_estimators": 11, "num_leaves": 7}
    assert params_for(config, "lightgbm+conserve") == {"n_estimators": 5, "num_leaves": 7}
    (plain, conserved) = plan(config)
    assert conserved.make().inner.params["n_estimators"] == 5
    assert plain.make().params["n_estimators"] == 11


def test_leaving_names_out_runs_the_default_runs_models_in_order():
    assert model_names(parse({})) == ("mascon", "bilinear", "pattern_transfer", "wghm_anomaly",
                                      "mascon_regression", "random_forest",
                                      "random_forest+residual", "lightgbm", "lightgbm+residual",
                                      "soft_cnn", "soft_cnn+residual")


def test_the_built_in_config_is_the_readmes_default_run():
    """``twsbench run`` with no config is ``configs/twin-south-asia.toml``: the same plan
    (three seeds of each stochastic model) and the same run id."""
    from twsbench.core.config import load
    from twsbench.running.runner import run_id

    builtin, default = load(None), load(CONFIGS / "twin-south-asia.toml")
    assert builtin.models.seeds == (0, 1, 2)
    assert plan(builtin) == plan(default)
    assert [r.seed for r in plan(builtin) if r.name == "soft_cnn"] == [0, 1, 2]
    assert run_id(builtin) == run_id(default)
    # with the committed tuned parameters, which --set models.params_files=[] leaves out
    tuned = tomllib.loads((CONFIGS / "tuned-south-asia.toml").read_text())
    for name, values in tuned["models"]["params"].items():
        (run,) = [r for r in plan(builtin) if r.name == name and r.seed == 0]
        assert {k: run.params[k] for k in values} == pytest.approx(values)
    assert builtin.tuning == tuned["tuning"]
    untuned = load(CONFIGS / "twin-south-asia.toml", sets=("models.params_files=[]",))
    assert untuned.tuning == {} and run_id(untuned) != run_id(default)


def test_one_device_for_every_model(monkeypatch):
    """``[compute] device`` resolved once: models that can run on CUDA get it, the others
    the CPU; ``cpu`` keeps every model on the CPU."""
    monkeypatch.setattr(backend, "cupy_available", lambda: False)
    monkeypatch.setattr(backend, "torch_cuda_available", lambda: True)
    config = parse(tiny.table(models={"names": ["lightgbm", "soft_cnn"]}))
    assert {r.name: r.device for r in plan(config)} == {"lightgbm": "cpu", "soft_cnn": "cuda"}
    model = [r for r in plan(config) if r.name == "soft_cnn"][0].make()
    assert model.device == "cuda"
    cpu = parse(tiny.table(models={"names": ["lightgbm", "soft_cnn"]},
                           compute={"device": "cpu"}))
    assert {r.device for r in plan(cpu)} == {"cpu"}


def test_a_device_a_model_cannot_use_is_refused():
    with pytest.raises(ConfigError, match="expected a device among cpu, found 'cuda'"):
        ModelRun("lightgbm", 0, {}, "cuda").make()


def test_params_for_a_model_not_registered_are_refused():
    config = parse(tiny.table(models={"names": ["mascon"], "params": {"krigging": {"a": 1}}}))
    with pytest.raises(ConfigError, match=r"\[models.params.krigging\]: expected a table named "
                                          r"after a registered model"):
        plan(config)


def test_unknown_ranking_metric_is_refused_by_the_harness():
    config = parse(tiny.table(models={"names": ["mascon"]}, ranking={"gapfill": "nse_fin"}))
    with pytest.raises(ConfigError, match=r"\[ranking\] gapfill: expected auto or a score"):
        plan(config)


def test_parsing_checks_shapes_the_harness_checks_names():
    config = parse(tiny.table(models={"names": ["kriging"]}))  # a well-formed list
    with pytest.raises(ConfigError, match=r"\[models\] names: expected names among .*"
                                          r"found 'kriging'"):
        plan(config)


def test_parsing_imports_no_downscaler_and_no_torch():
    import subprocess
    import sys

    code = ("import sys; from twsbench.core.config import parse; "
            "parse({'models': {'names': ['soft_cnn', 'lightgbm']}}); "
            "print(sorted(m for m in ('torch', 'twsbench.baselines', 'twsbench.models', "
            "'twsbench.downscaling.contract') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
