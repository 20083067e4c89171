"""Parameter layers (``run --params``, ``[models] params_files``) and ``--set``."""

from __future__ import annotations

import pytest

from tests import tiny
from twsbench.cli import main
from twsbench.core.config import from_plain, load, override
from twsbench.core.errors import ConfigError
from twsbench.running.plan import plan
from twsbench.running.runner import run_id

LAYER = """[tuning]
trials = 3

[tuning.lightgbm]
best = 0.5

[models.params.lightgbm]
num_leaves = 9
"""


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "c.toml"
    table = tiny.table(models={"names": ["mascon", "lightgbm", "lightgbm+residual"],
                               "params": {"lightgbm": {"num_leaves": 5, "n_estimators": 7}}})
    path.write_text(tiny.toml(table))
    (tmp_path / "layer.toml").write_text(LAYER)
    return path


def _params(config, name="lightgbm"):
    return [r.params for r in plan(config) if r.name == name][0]


def test_a_layer_goes_on_top_and_sets_go_last(config_file):
    layer = config_file.parent / "layer.toml"
    plain = load(config_file)
    layered = load(config_file, (layer,))
    assert _params(plain)["num_leaves"] == 5
    assert _params(layered)["num_leaves"] == 9 and _params(layered)["n_estimators"] == 7
    assert _params(layered, "lightgbm+residual")["num_leaves"] == 9
    assert layered.tuning == {"trials": 3, "lightgbm": {"best": 0.5}}
    assert layered.layers == (str(layer.resolve()),)
    assert run_id(layered) != run_id(plain)
    last = load(config_file, (layer,), ("models.params.lightgbm.num_leaves=11",))
    assert _params(last)["num_leaves"] == 11


def test_params_files_in_the_config_and_switched_off_by_set(config_file):
    text = config_file.read_text().replace("[models]\n", '[models]\nparams_files = '
                                           '["layer.toml"]\n', 1)
    config_file.write_text(text)
    assert _params(load(config_file))["num_leaves"] == 9
    off = load(config_file, sets=("models.params_files=[]",))
    assert _params(off)["num_leaves"] == 5 and off.tuning == {}
    # a run folder's record is read back without the layer files
    config = load(config_file)
    (config_file.parent / "layer.toml").unlink()
    from twsbench.core.config import as_plain

    again = from_plain(as_plain(config), "meta.json")
    assert _params(again)["num_leaves"] == 9 and again.tuning == config.tuning


@pytest.mark.parametrize("text, expected", [
    ("models.seeds=[0, 1]", {"models": {"seeds": [0, 1]}}),
    ('models.params."lightgbm+residual".num_leaves=3',
     {"models": {"params": {"lightgbm+residual": {"num_leaves": 3}}}}),
    ("compute.device=cpu", {"compute": {"device": "cpu"}}),
])
def test_set_reads_toml_values(text, expected):
    assert override(text) == expected


@pytest.mark.parametrize("layer, found", [
    ("[twin]\nseed = 3\n", r"\[twin\]: expected only \[models.params.NAME\] and \[tuning\]"),
    ("[models]\nnames = ['x']\n", r"\[models\] names: expected only"),
    ("[models.params.lightgbm\n", "expected valid TOML"),
])
def test_bad_layers_exit_2_with_one_line(config_file, layer, found, capsys):
    bad = config_file.parent / "bad.toml"
    bad.write_text(layer)
    assert main(["run", str(config_file), "--params", str(bad), "--out",
                 str(config_file.parent / "r")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and str(bad) in err
    with pytest.raises(ConfigError, match=found):
        load(config_file, (bad,))
    assert not (config_file.parent / "r").exists()


def test_bad_set_is_one_line(config_file):
    with pytest.raises(ConfigError, match="--set: expected KEY=VALUE"):
        load(config_file, sets=("models.seeds",))
