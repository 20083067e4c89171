"""Verdict stability: one run over several twin worlds (seeds × realism levels)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tests import tiny
from twsbench.core.config import parse
from twsbench.core.errors import ConfigError
from twsbench.pipeline.benchmark import run

pytestmark = pytest.mark.slow  # six twin worlds, each run

NAMES = ["mascon", "pattern_transfer", "lightgbm"]
SMALL = [25.0, 29.0, 76.0, 82.0]
WORLDS = {"seeds": [1, 2, 3], "realism": ["realistic", "pessimistic"]}


@pytest.fixture(scope="module")
def stability_run(tmp_path_factory):
    table = tiny.table(domain={"bbox": SMALL}, twin=WORLDS, models=tiny.quick(NAMES))
    run_dir, _ = run(parse(table), tmp_path_factory.mktemp("reports"))
    return run_dir


def test_every_world_is_scored_and_the_first_is_the_leaderboard(stability_run, tmp_path):
    worlds = pd.read_csv(stability_run / "worlds.csv")
    labels = [f"{r}-seed{s}" for r in WORLDS["realism"] for s in WORLDS["seeds"]]
    assert list(dict.fromkeys(worlds["world"])) == labels
    meta = json.loads((stability_run / "meta.json").read_text())
    assert meta["worlds"] == labels
    # scores.csv is the primary world's, exactly as a run of that world alone
    alone, _ = run(parse(tiny.table(domain={"bbox": SMALL}, twin={"seed": 1},
                                    models=tiny.quick(NAMES))), tmp_path)
    single = pd.read_csv(alone / "scores.csv").drop(columns="run_id")
    primary = worlds[worlds["world"] == labels[0]].drop(columns=["world", "run_id"])
    pd.testing.assert_frame_equal(primary.reset_index(drop=True), single)
    # each world is its own: the ranking metric differs between worlds
    rank = worlds[(worlds["metric"] == "nse_fine_truth") & (worlds["split"] == "gapfill")
                  & (worlds["region"] == "domain") & (worlds["model"] == "lightgbm")]
    assert rank["value"].nunique() == len(labels)


def test_report_has_the_verdict_table(stability_run):
    text = (stability_run / "index.md").read_text()
    assert "## downscale: verdict stability" in text
    section = text.split("## downscale: verdict stability", 1)[1].split("\n## ", 1)[0]
    pairs = [line for line in section.splitlines() if line.startswith("| ") and "/6" in line]
    assert len(pairs) == len(NAMES) * (len(NAMES) - 1) // 2
    for line in pairs:
        won = int(line.split("/6")[0].split("|")[-1])
        assert ("yes" in line) == (won == 6)


def test_cnn_checkpoints_of_different_worlds_never_mix(tiny_grids, tmp_path):
    """A CNN with an explicit checkpoint folder keeps one subfolder per fit: the fit of
    another world's grids must not resume (or reuse) this world's checkpoint."""
    import dataclasses

    from twsbench.running.catalog import make

    model = make("soft_cnn", 0, {"checkpoint_dir": str(tmp_path)})
    other = dataclasses.replace(tiny_grids, attrs={**tiny_grids.attrs,
                                                   "cache_key": "another world"})
    train = tiny_grids.split_months("train")
    here, there = model._checkpoints(tiny_grids, train), model._checkpoints(other, train)
    assert here != there
    assert here.parent == there.parent == tmp_path
    assert model._checkpoints(tiny_grids, train) == here  # the same fit resumes


def test_readme_world_list_gives_the_worlds_it_names():
    import tomllib

    from tests.conftest import README, readme_block

    config = parse(tomllib.loads(readme_block("Verdict stability", "toml")), "README")
    labels = [w.label for w in config.worlds]
    assert len(labels) == 6 and labels[0] == "realistic-seed1"
    assert "`realistic-seed1` here" in README.read_text()


@pytest.mark.parametrize(("twin", "message"), [
    ({"realism": "rosy"}, "[twin] realism: expected one of optimistic, realistic, pessimistic"),
    ({"realism": ["realistic", "realistic"]}, "expected each level once"),
    ({"seeds": [1, 1]}, "[twin] seeds: expected each seed once"),
    ({"seeds": [-1]}, "[twin] seeds: expected non-negative integers"),
])
def test_bad_world_lists_are_config_errors(twin, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse(tiny.table(twin=twin))
