"""``NAME+residual`` and ``NAME+conserve`` for every registered model: what each adds, in
which months, and that a run fits the wrapped model once for all of its variants."""

from __future__ import annotations

import numpy as np
import pytest

from tests import tiny
from twsbench.core.config import parse
from twsbench.core.errors import ConfigError
from twsbench.downscaling.interpolation import interpolation_matrix
from twsbench.running.catalog import get_class, known_names, make
from twsbench.running.plan import ModelRun, fit_groups, params_for, plan
from twsbench.running.runner import withheld
from twsbench.running.tasks import World, fit_one

VARIANTS = ("", "+residual", "+residual+conserve")


def _mascon_means(grids, cells: np.ndarray) -> np.ndarray:
    """Area-weighted mean of each mascon's cells, month by month (``A ŷ`` written out)."""
    cm, area = grids.mascons.cell_mascon, grids.cell_area
    total = np.bincount(cm, weights=area, minlength=grids.mascons.n_mascons)
    return np.stack([np.bincount(cm, weights=area * row, minlength=total.size) / total
                     for row in cells])


@pytest.fixture(scope="module")
def world(tiny_grids, tiny_truth):
    """The tiny world as a run's models see it: the gap-fill blocks' GRACE withheld."""
    grids, reference = withheld(tiny_grids)
    return World.of("tiny", grids, reference, tiny_truth, 5.0)


@pytest.mark.parametrize("name", known_names())
def test_residual_adds_the_interpolated_misfit_in_months_with_the_models_grace(
        name, world, tmp_path, monkeypatch):
    grids, full = world.grids, world.reference
    config = parse(tiny.TINY)
    params = tiny.quick_params(name, tmp_path)
    specs = [ModelRun(name + v, 0, params) for v in VARIANTS]
    cls = get_class(name)
    fits = []
    fit = cls.fit
    monkeypatch.setattr(cls, "fit", lambda self, *a, **k: (fits.append(1), fit(self, *a, **k)))
    plain, residual, conserved = (r.cells for r in fit_one(specs, world, config, "rid"))
    assert len(fits) == 1  # one fit serves the three variants

    has = grids.has_grace
    withheld_months = ~has & np.isfinite(full).all(axis=1)
    missing = ~np.isfinite(full).all(axis=1)
    assert withheld_months.any() and missing.any() and has.any()
    # without the model's GRACE: the plain prediction, bit for bit (NaN where it has none)
    np.testing.assert_array_equal(residual[~has], plain[~has])
    np.testing.assert_array_equal(conserved[~has], plain[~has])
    # with it: the misfit of the prediction's mascon means, interpolated linearly
    misfit = grids.grace[has] - _mascon_means(grids, plain[has])
    expected = plain[has] + (interpolation_matrix(grids) @ misfit.T).T
    np.testing.assert_allclose(residual[has], expected, rtol=0, atol=1e-6)
    # and conservation after it: GRACE exactly, a constant per mascon added
    np.testing.assert_allclose(_mascon_means(grids, conserved[has]), grids.grace[has],
                               rtol=0, atol=1e-6)
    added = conserved[has] - residual[has]
    per_mascon = _mascon_means(grids, added)[:, grids.mascons.cell_mascon]
    np.testing.assert_allclose(added, per_mascon, rtol=0, atol=1e-6)


def test_residual_changes_a_model_that_misses_grace(world, tiny_truth):
    """The residual step matters: WaterGAP's mascon means are not GRACE's."""
    grids = world.grids
    plain = make("wghm_anomaly").predict_cells(grids, grids.months)
    residual = make("wghm_anomaly+residual").predict_cells(grids, grids.months)
    has = grids.has_grace
    assert np.abs(residual[has] - plain[has]).max() > 1.0


@pytest.mark.parametrize("name", ["lightgbm+conserve+residual", "lightgbm+residual+residual",
                                  "lightgbm+conserve+conserve"])
def test_steps_out_of_order_or_repeated_are_rejected(name):
    with pytest.raises(ConfigError, match=r"NAME\+residual\+conserve, found"):
        make(name)


def test_variants_share_a_fit_only_with_the_same_parameters():
    config = parse(tiny.table(models={
        "names": ["lightgbm", "lightgbm+residual", "lightgbm+residual+conserve"],
        "seeds": [0, 1],
        "params": {"lightgbm": {"n_estimators": 7},
                   "lightgbm+residual+conserve": {"num_leaves": 5}}}))
    assert params_for(config, "lightgbm+residual+conserve") == {"n_estimators": 7,
                                                                "num_leaves": 5}
    groups = [[r.tag for r in g] for g in fit_groups(plan(config))]
    assert groups == [["lightgbm__seed0", "lightgbm+residual__seed0"],
                      ["lightgbm__seed1", "lightgbm+residual__seed1"],
                      ["lightgbm+residual+conserve__seed0"],
                      ["lightgbm+residual+conserve__seed1"]]


@pytest.mark.parametrize("better", ["lightgbm", "lightgbm+residual"])
def test_a_release_tie_goes_to_the_better_model_of_the_other_task(tmp_path, better):
    """``X`` and ``X+residual`` predict the gap-fill months alike: the release takes the one
    that is better on downscale, whichever way round."""
    import json

    import pandas as pd

    from twsbench.core.config import as_plain
    from twsbench.release.product import choose_model

    meta = {"config": as_plain(parse(tiny.TINY)), "has_truth": True, "run_id": "r"}
    meta["config"].pop("source", None)
    rows = []
    for model in ("lightgbm", "lightgbm+residual", "wghm_anomaly"):
        gap = 0.5 if model == "wghm_anomaly" else 0.8
        down = 0.1 if model == better else 0.0
        rows += [{"model": model, "seed": 0, "split": "gapfill", "region": "domain",
                  "metric": "nse_fine_truth", "value": gap},
                 {"model": model, "seed": 0, "split": "downscale", "region": "domain",
                  "metric": "nse_submascon_truth", "value": down}]
    pd.DataFrame(rows).to_csv(tmp_path / "scores.csv", index=False)
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    model, choice = choose_model(tmp_path)
    assert model == better and choice["value"] == 0.8
