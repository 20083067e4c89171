"""Downscalers from outside twsbench: the README's example through ``twsbench run``, a class
written from the ``Downscaler`` protocol alone found through an entry point, and a run
without torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import tomllib

import numpy as np
import pandas as pd
import pytest

from tests import tiny
from tests.conftest import README, readme_block
from twsbench.core.config import parse
from twsbench.downscaling.contract import DOWNSCALERS, Downscaler
from twsbench.running.catalog import load_plugins


def _cli(args, cwd, env=None, prelude=""):
    """``twsbench ARGS`` in a fresh interpreter (``prelude`` runs first)."""
    code = f"{prelude}\nimport sys\nfrom twsbench.cli import main\nsys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True,
                          text=True, timeout=900, env={**os.environ, **(env or {})})


def _run_tiny(tmp_path, names, **kw):
    """``twsbench run`` of the tiny config with ``names`` into ``tmp_path/reports``."""
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(tiny.toml(tiny.table(models={"names": names})))
    return _cli(["run", str(cfg), "--out", str(tmp_path / "reports"), "-q"], tmp_path, **kw)


def _the_run(tmp_path):
    (run_dir,) = [p for p in (tmp_path / "reports").iterdir() if not p.name.startswith(".")]
    return run_dir


def _readme_config(folder):
    """The README's ``[models]`` example on the tiny domain, LightGBM kept quick."""
    table = tomllib.loads(readme_block("Adding a downscaler", "toml"))
    table["models"]["params"]["lightgbm"] = tiny.QUICK["lightgbm"]
    path = folder / "plugin-run.toml"
    path.write_text(tiny.toml(tiny.table(**table)))
    return path


@pytest.mark.slow
def test_readme_example_runs_and_is_reported(plugin_dir, tmp_path):
    cfg = _readme_config(plugin_dir)
    result = _cli(["run", str(cfg), "--out", str(tmp_path / "reports"), "-q"], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    run_dir = _the_run(tmp_path)
    scores = pd.read_csv(run_dir / "scores.csv")
    assert set(scores["model"]) == {"mascon", "pattern_transfer", "lightgbm",
                                    "wghm_regression"}
    mine = scores[(scores["model"] == "wghm_regression") & (scores["region"] == "domain")
                  & (scores["metric"] == "nse_fine_truth")]
    assert set(mine["split"]) >= {"downscale", "gapfill"}  # months without GRACE predicted too
    assert np.isfinite(mine["value"]).all()
    for page in ("index.md", "index.html"):
        assert "wghm_regression" in (run_dir / page).read_text()
    meta = json.loads((run_dir / "meta.json").read_text())
    (spec,) = [r for r in meta["runs"] if r["name"] == "wghm_regression"]
    assert spec["params"] == {"ridge": 100.0}
    assert "wghm_regression" in result.stdout  # in the printed leaderboard


def test_readme_example_fits_the_regression_it_describes(readme_plugin, tiny_grids):
    """Per mascon, b is the least-squares slope of GRACE on WaterGAP (shrunk by the ridge):
    with ridge 0 the mascon means of the prediction reproduce GRACE's regression fit."""
    g = tiny_grids
    train = g.split_months("train")
    model = readme_plugin(ridge=0.0)
    model.fit(g, train)
    pos = g.month_index(train)
    pos = pos[g.has_grace[pos]]
    w = g.mascons.mean(g.fields["wghm"][pos].T.astype(float)).T
    k = 0  # one mascon by hand, with numpy's polyfit
    b, a = np.polyfit(w[:, k], g.grace[pos, k], 1)
    assert model.b[k] == pytest.approx(b, rel=1e-9)
    assert model.a[k] == pytest.approx(a, rel=1e-9, abs=1e-9)


def test_plugin_source_enters_the_run_id(plugin_dir, tmp_path):
    from twsbench.running.runner import run_id

    folder = tmp_path / "mine"
    folder.mkdir()
    source = (plugin_dir / "my_downscalers.py").read_text()
    module = folder / "my_downscalers_copy.py"
    module.write_text(source.replace('"wghm_regression"', '"wghm_regression_copy"'))
    config = parse(tiny.table(models={"names": ["mascon", "wghm_regression_copy"],
                                      "plugins": ["my_downscalers_copy"]}))
    try:
        load_plugins(["my_downscalers_copy"], [folder])
        before = run_id(config)
        module.write_text(module.read_text() + "\n# one more line\n")
        assert run_id(config) != before
    finally:
        DOWNSCALERS.unregister("wghm_regression_copy")


# ---- a downscaler from the protocol alone, found through an entry point ---------------------

PROTOCOL_ONLY = textwrap.dedent('''
    """Written from twsbench.downscaling.contract.Downscaler alone: no base class, no decorator."""
    import numpy as np


    class RawWaterGAP:
        """WaterGAP's own anomaly on every cell: the input itself as a downscaler."""

        name = "raw_wghm"
        devices = ("cpu",)
        needs_grace = False
        stochastic = False

        def __init__(self, seed=0, device="cpu", **params):
            if params:
                raise TypeError(f"raw_wghm takes no parameters, found {sorted(params)}")
            self.seed, self.device = seed, device

        @classmethod
        def available(cls):
            return True

        @property
        def history(self):
            return []

        def fit(self, grids, months):
            pass

        def covers(self, grids, months):
            return np.ones(len(months), dtype=bool)

        def predict_cells(self, grids, months):
            return grids.fields["wghm"][grids.month_index(months)].astype(np.float64)

        def predict(self, grids, months):
            return grids.to_dataarray(self.predict_cells(grids, months), months)
''')


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A folder on PYTHONPATH with a module and the metadata of a package declaring it in
    the entry-point group, as ``pip install`` of such a package leaves them."""
    folder = tmp_path_factory.mktemp("site")
    (folder / "raw_downscalers.py").write_text(PROTOCOL_ONLY)
    info = folder / "raw_downscalers-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: raw-downscalers\n"
                                   "Version: 0.1\n")
    (info / "entry_points.txt").write_text("[twsbench.downscalers]\n"
                                           "raw_wghm = raw_downscalers:RawWaterGAP\n"
                                           "broken = raw_downscalers:NoSuchClass\n")
    return folder


@pytest.mark.slow
def test_a_protocol_only_class_from_an_entry_point_runs(site, tmp_path):
    env = {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    result = _run_tiny(tmp_path, ["mascon", "raw_wghm", "raw_wghm+conserve"], env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    scores = pd.read_csv(_the_run(tmp_path) / "scores.csv")
    assert {"raw_wghm", "raw_wghm+conserve"} <= set(scores["model"])
    conserved = scores[(scores["model"] == "raw_wghm+conserve")
                       & (scores["metric"] == "nse_mascon_grace")
                       & (scores["split"] == "downscale") & (scores["region"] == "domain")]
    np.testing.assert_allclose(conserved["value"], 1.0, atol=1e-9)
    # the broken entry point does not stop other runs, and naming it says why
    result = _run_tiny(tmp_path, ["broken"], env=env)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "entry point broken" in line and "expected" in line and "found" in line


def test_protocol_only_class_passes_isinstance(site, monkeypatch):
    monkeypatch.syspath_prepend(str(site))
    import raw_downscalers

    assert isinstance(raw_downscalers.RawWaterGAP(), Downscaler)


def test_a_class_missing_a_member_of_the_contract_fails_isinstance(site, monkeypatch):
    monkeypatch.syspath_prepend(str(site))
    import raw_downscalers

    class NoCovers(raw_downscalers.RawWaterGAP):
        covers = None  # what the harness would call

    assert not isinstance(NoCovers(), Downscaler)


# ---- without torch --------------------------------------------------------------------------

NO_TORCH = textwrap.dedent("""
    import sys

    class NoTorch:  # an interpreter where torch is not installed: import torch fails
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "torch":
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)

    sys.meta_path.insert(0, NoTorch())
""")


@pytest.mark.slow
def test_without_torch_a_config_without_cnn_runs(tmp_path):
    result = _run_tiny(tmp_path, ["mascon", "pattern_transfer"], prelude=NO_TORCH)
    assert result.returncode == 0, result.stdout + result.stderr
    run_dir = _the_run(tmp_path)
    assert set(pd.read_csv(run_dir / "scores.csv")["model"]) == {"mascon", "pattern_transfer"}
    assert "torch" not in json.loads((run_dir / "meta.json").read_text())["versions"]


def test_without_torch_a_cnn_name_says_how_to_install(tmp_path):
    result = _run_tiny(tmp_path, ["mascon", "soft_cnn"], prelude=NO_TORCH)
    assert result.returncode == 2, result.stdout + result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "soft_cnn" in line and "pip install 'twsbench[cnn]'" in line
    assert line in README.read_text()  # the README shows this very line
    assert not (tmp_path / "reports").exists()


def test_without_torch_the_default_model_list_leaves_the_cnns_out(tmp_path):
    code = ("from twsbench.core.config import parse; "
            "from twsbench.running.plan import model_names; "
            "print(','.join(model_names(parse({}))))")
    result = subprocess.run([sys.executable, "-c", f"{NO_TORCH}\n{code}"], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1].split(",") == ["mascon", "bilinear", "pattern_transfer",
                                                    "wghm_anomaly", "mascon_regression",
                                                    "random_forest", "random_forest+residual",
                                                    "lightgbm", "lightgbm+residual"]
