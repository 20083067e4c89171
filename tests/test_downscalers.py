"""Every registered downscaler: one invariant test, plus the baselines' own guarantees."""

from __future__ import annotations

import numpy as np
import pytest

from suite.downscaler import CONSERVE, Downscaler, known_names, make
from suite.prepare import prepare, resolve_inputs
from suite.reference import truth_on_cells
from suite.registry import UnknownNameError
from suite.timing import measure

FAST = {"random_forest": {"n_estimators": 20}, "lightgbm": {"n_estimators": 60}}
NAMES = [n for n in known_names() if not n.startswith("soft_cnn") and n != "seda_loss"]
ALL = NAMES + [n + CONSERVE for n in NAMES]


@pytest.fixture(scope="module")
def tiny(request):
    from suite.config import parse

    config = parse({"domain": {"bbox": [24.0, 31.0, 75.0, 85.0]}, "twin": {"seed": 1}})
    grids, _, _ = prepare(config)
    truth = truth_on_cells(resolve_inputs(config).truth, grids)
    return grids, truth


@pytest.fixture(scope="module")
def predictions(tiny):
    grids, _ = tiny
    out = {}
    for name in ALL:
        model = make(name, seed=0, params=FAST.get(name.removesuffix(CONSERVE)))
        model.fit(grids, grids.split_months("train"))
        out[name] = (model, model.predict(grids, grids.months))
    return out


def _nse_fine(grids, truth, cells, months_mask):
    p, t = cells[months_mask], truth[months_mask]
    nse = 1 - ((p - t) ** 2).sum(0) / ((t - t.mean(0)) ** 2).sum(0)
    return np.average(nse, weights=grids.cell_area)


@pytest.mark.parametrize("name", ALL)
def test_registry_invariants(tiny, predictions, name):
    grids, _ = tiny
    model, out = predictions[name]
    assert isinstance(model, Downscaler)
    assert out.dims == ("time", "lat", "lon")
    np.testing.assert_array_equal(out["lat"].values, grids.lat)
    np.testing.assert_array_equal(out["lon"].values, grids.lon)
    np.testing.assert_array_equal(out["time"].values.astype("datetime64[M]"), grids.months)
    assert out.attrs["units"] == "mm"
    values = out.values
    assert np.isnan(values[:, ~grids.land]).all()  # NaN off land
    cells = grids.from_grid(values)
    covered = model.covers(grids, grids.months)
    assert not np.isnan(cells[covered]).any()  # no NaN on land in covered months
    if model.needs_grace:
        np.testing.assert_array_equal(covered, grids.has_grace)
        assert np.isnan(cells[~covered]).all()
    else:
        assert covered.all()
    # same seed, same output
    again = make(name, seed=0, params=FAST.get(name.removesuffix(CONSERVE)))
    again.fit(grids, grids.split_months("train"))
    np.testing.assert_array_equal(again.predict(grids, grids.months).values, values)


def test_mascon_reproduces_grace_exactly(tiny, predictions):
    grids, _ = tiny
    cells = grids.from_grid(predictions["mascon"][1].values)
    has = grids.has_grace
    np.testing.assert_allclose(grids.mascons.mean(cells[has].T).T, grids.grace[has],
                               rtol=0, atol=1e-9)


@pytest.mark.parametrize("name", ["pattern_transfer"] + [n + CONSERVE for n in NAMES])
def test_conservation_residual_below_1e4_mm(tiny, predictions, name):
    grids, _ = tiny
    cells = grids.from_grid(predictions[name][1].values)
    has = grids.has_grace
    residual = np.abs(grids.mascons.mean(cells[has].T).T - grids.grace[has])
    assert residual.max() < 1e-4


def test_pattern_transfer_beats_mascon_on_fine_scale_truth(tiny, predictions):
    grids, truth = tiny
    test = grids.splits["test"]
    scores = {n: _nse_fine(grids, truth, grids.from_grid(predictions[n][1].values), test)
              for n in ("mascon", "pattern_transfer")}
    assert scores["pattern_transfer"] > scores["mascon"]


def test_learned_models_predict_gap_months_from_predictors(tiny, predictions):
    grids, truth = tiny
    gap = grids.splits["gap"]
    for name in ("lightgbm", "random_forest"):
        cells = grids.from_grid(predictions[name][1].values)
        assert np.isfinite(cells[gap]).all()
        r = np.corrcoef(cells[gap].ravel(), truth[gap].ravel())[0, 1]
        assert r > 0.5  # predictors alone carry the seasonal cycle


def test_bilinear_interpolates_between_mascons(tiny, predictions):
    grids, _ = tiny
    cells = grids.from_grid(predictions["bilinear"][1].values)
    has = grids.has_grace
    g = grids.grace[has]
    # within the range of the mascon values of each month (a convex combination)
    assert np.all(cells[has] <= g.max(axis=1, keepdims=True) + 1e-9)
    assert np.all(cells[has] >= g.min(axis=1, keepdims=True) - 1e-9)
    # and not the mascon product itself
    assert not np.allclose(cells[has], grids.mascons.spread(g.T).T)


def test_unknown_name_lists_known_ones():
    with pytest.raises(UnknownNameError) as info:
        make("kriging")
    text = str(info.value)
    assert "kriging" in text and "lightgbm" in text and "pattern_transfer" in text


def test_bad_parameters_are_rejected():
    with pytest.raises(TypeError, match="n_trees"):
        make("random_forest", params={"n_trees": 5})
    with pytest.raises(TypeError):
        make("mascon", params={"x": 1})


def test_timing_helper_sees_time_and_memory():
    with measure() as m:
        block = np.ones((2000, 20000))  # 320 MB
        block += 1
    assert m.seconds > 0
    assert m.peak_increase > 200 * 2**20
    del block
