"""Every registered downscaler (the CNNs with tiny settings) and the README's plug-in: one
invariant test each, plus the baselines' own guarantees; scored with
:mod:`twsbench.scoring.metrics`."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from tests import tiny
from tests.conftest import fit_quick
from twsbench.core.errors import ConfigError
from twsbench.downscaling.contract import DOWNSCALERS, Downscaler, check_params
from twsbench.downscaling.wrappers import CONSERVE, RESIDUAL, Conserved
from twsbench.running.catalog import known_names, make
from twsbench.scoring import metrics

PLUGIN = "wghm_regression"  # the README's example
NAMES = [*known_names(), PLUGIN]
ALL = NAMES + [n + steps for n in NAMES for steps in (RESIDUAL, CONSERVE, RESIDUAL + CONSERVE)]


@pytest.fixture(scope="module")
def fitted(readme_plugin, tiny_fitted, tiny_grids, tmp_path_factory):
    """The built-in downscalers of the session's chain and the README's plug-in, fitted."""
    mine = fit_quick([PLUGIN], tiny_grids, tmp_path_factory.mktemp("plugin-fit"))
    return {**tiny_fitted, **mine}


@pytest.mark.parametrize("name", ALL)
def test_registry_invariants(tiny_grids, fitted, name, tmp_path):
    grids = tiny_grids
    model, cells = fitted[name]
    assert isinstance(model, Downscaler)
    assert model.name == name
    assert cells.shape == (grids.months.size, grids.n_cells) and cells.dtype == np.float64
    out = model.predict(grids, grids.months)
    assert out.dims == ("time", "lat", "lon")
    np.testing.assert_array_equal(out["lat"].values, grids.lat)
    np.testing.assert_array_equal(out["lon"].values, grids.lon)
    np.testing.assert_array_equal(out["time"].values.astype("datetime64[M]"), grids.months)
    assert out.attrs["units"] == "mm"
    values = out.values
    assert np.isnan(values[:, ~grids.land]).all()  # NaN off land
    np.testing.assert_array_equal(grids.from_grid(values), cells)  # predict = predict_cells
    covered = model.covers(grids, grids.months)
    assert not np.isnan(cells[covered]).any()  # no NaN on land in covered months
    if model.needs_grace:
        np.testing.assert_array_equal(covered, grids.has_grace)
        assert np.isnan(cells[~covered]).all()
    else:
        assert covered.all()
    if name.endswith(CONSERVE):
        has = grids.has_grace
        assert metrics.conservation_residual_max(cells[has], grids.grace[has],
                                                 grids.mascons.A) < 1e-4
        return
    # same seed, same output, from a fresh fit
    again = make(name, seed=0, params=tiny.quick_params(name, tmp_path))
    again.fit(grids, grids.split_months("train"))
    np.testing.assert_array_equal(again.predict_cells(grids, grids.months), cells)


def test_every_name_of_the_registry_is_checked():
    assert {"mascon", "bilinear", "pattern_transfer", "wghm_anomaly", "mascon_regression",
            "random_forest", "lightgbm", *tiny.CNNS} <= set(NAMES)


def test_registering_sets_the_name():
    assert {n: DOWNSCALERS.get(n).name for n in known_names()} == {n: n for n in known_names()}


def test_make_conserve_wraps(tiny_grids):
    model = make("lightgbm+conserve", params={"n_estimators": 7})
    assert isinstance(model, Conserved) and model.inner.params["n_estimators"] == 7


def test_mascon_reproduces_grace_exactly(tiny_grids, fitted):
    grids = tiny_grids
    has = grids.has_grace
    cells = fitted["mascon"][1]
    assert metrics.conservation_residual_max(cells[has], grids.grace[has],
                                             grids.mascons.A) < 1e-9


def test_pattern_transfer_conserves_by_construction(tiny_grids, fitted):
    grids = tiny_grids
    has = grids.has_grace
    assert metrics.conservation_residual_max(fitted["pattern_transfer"][1][has],
                                             grids.grace[has], grids.mascons.A) < 1e-4


def test_pattern_transfer_beats_mascon_on_fine_scale_truth(tiny_grids, tiny_truth, fitted):
    grids, test = tiny_grids, tiny_grids.splits["test"]
    scores = {n: metrics.nse(fitted[n][1][test], tiny_truth[test], grids.cell_area)
              for n in ("mascon", "pattern_transfer")}
    assert scores["pattern_transfer"] > scores["mascon"]


def test_learned_models_predict_gap_months_from_predictors(tiny_grids, tiny_truth, fitted):
    gap = tiny_grids.splits["gap"]
    for name in ("lightgbm", "random_forest", "wghm_anomaly", "mascon_regression", PLUGIN):
        cells = fitted[name][1]
        assert np.isfinite(cells[gap]).all()
        # predictors alone carry the seasonal cycle
        assert metrics.pearson_r(cells[gap], tiny_truth[gap]) > 0.5


def test_bilinear_interpolates_between_mascons(tiny_grids, fitted):
    grids = tiny_grids
    cells = fitted["bilinear"][1]
    has = grids.has_grace
    g = grids.grace[has]
    # within the range of the mascon values of each month (a convex combination)
    assert np.all(cells[has] <= g.max(axis=1, keepdims=True) + 1e-9)
    assert np.all(cells[has] >= g.min(axis=1, keepdims=True) - 1e-9)
    # and not the mascon product itself
    assert not np.allclose(cells[has], grids.mascons.spread(g.T).T)


def test_unknown_name_lists_known_ones():
    with pytest.raises(ConfigError) as info:
        make("kriging")
    text = str(info.value)
    assert "kriging" in text and "lightgbm" in text and "pattern_transfer" in text


def test_bad_parameters_are_rejected_with_the_config_table():
    with pytest.raises(ConfigError, match=r"\[models.params.random_forest\].*n_trees"):
        make("random_forest", params={"n_trees": 5})
    with pytest.raises(ConfigError, match=r"expected parameters among none, found unknown x"):
        make("mascon", params={"x": 1})
    with pytest.raises(ConfigError, match=r"n_estimators: expected an integer, found 'many'"):
        make("lightgbm", params={"n_estimators": "many"})
    with pytest.raises(ConfigError, match=r"lambdas: expected a list of 2"):
        make("soft_cnn", params={"lambdas": [1.0, 0.5, 0.2]})


@pytest.mark.parametrize(("default", "good", "bad"), [
    (1, [0, 7], [1.5, True, "1"]),
    (0.5, [1, 0.25], ["0.5", False]),
    (True, [False], [1, "yes"]),
    ("x", ["y"], [1, None]),
    ((1.0, 0.5), [[2, 3.5], (0.0, 1.0)], [[1.0], [1.0, "a"], 1.0]),
])
def test_parameter_types_follow_the_defaults(default, good, bad):
    for value in good:
        assert check_params("m", {"p": default}, {"p": value})["p"] == (
            tuple(value) if isinstance(default, tuple) else value)
    for value in bad:
        with pytest.raises(ConfigError, match=r"\[models.params.m\] p: expected"):
            check_params("m", {"p": default}, {"p": value})


def test_explicit_parameter_types():
    types = {"depth": (int, type(None))}
    assert check_params("m", {"depth": None}, {"depth": 3}, types)["depth"] == 3
    with pytest.raises(ConfigError, match="expected an integer or nothing, found 'deep'"):
        check_params("m", {"depth": None}, {"depth": "deep"}, types)


MEASURED_BLOCK = """
import numpy as np
from twsbench.core.timing import measure
with measure() as m:
    block = np.ones((2000, 20000))  # 320 MB
    block += 1
print(m.seconds, m.peak_increase)
"""


def test_timing_helper_sees_time_and_memory():
    # in a fresh interpreter: a long test process may serve the block from memory it already
    # holds, freed by earlier tests but still resident, and its RSS would not grow
    out = subprocess.run([sys.executable, "-c", MEASURED_BLOCK], capture_output=True,
                         text=True, check=True).stdout.split()
    seconds, increase = float(out[0]), int(out[1])
    assert seconds > 0
    assert increase > 200 * 2**20
