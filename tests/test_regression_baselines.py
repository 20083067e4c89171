"""The GRACE-free baselines of :mod:`twsbench.baselines.regression`: WaterGAP's anomaly as it is,
and the per-mascon regression, checked on synthetic GRACE that is an exact linear combination of
its predictors (built on the tiny grids with known coefficients)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from twsbench.core import kernels
from twsbench.core.errors import ConfigError
from twsbench.running.catalog import make
from twsbench.scoring import metrics

#: the synthetic truth's own conventions (the model may count years and phases from elsewhere:
#: with an intercept and a sin/cos pair the predictions do not depend on it)
ORIGIN = np.datetime64("2000-01", "M")


def _design(grids) -> np.ndarray:
    """``(months, mascons, 8)``: mascon means of WaterGAP and ERA5 storage, annual and
    semi-annual harmonics, years since :data:`ORIGIN`, 1."""
    A = grids.mascons.A
    w = kernels.apply_A(A, grids.fields["wghm"].astype(np.float64))
    e = kernels.apply_A(A, grids.fields["era5_storage"].astype(np.float64))
    moy = grids.months.astype(int) % 12
    years = (grids.months - ORIGIN).astype(int) / 12
    temporal = np.stack([np.sin(2 * np.pi * moy / 12), np.cos(2 * np.pi * moy / 12),
                         np.sin(4 * np.pi * moy / 12), np.cos(4 * np.pi * moy / 12), years,
                         np.ones_like(years)], axis=1)
    t, n = w.shape
    return np.concatenate([w[:, :, None], e[:, :, None],
                           np.broadcast_to(temporal[:, None, :], (t, n, 6))], axis=2)


@pytest.fixture(scope="module")
def synthetic(tiny_grids):
    """The tiny grids with GRACE replaced by an exact linear combination of the predictors,
    different coefficients in every mascon; returns (grids, coefficients, the combination in
    every month)."""
    rng = np.random.default_rng(42)
    n = tiny_grids.n_mascons
    coef = np.column_stack([rng.uniform(0.5, 1.5, n), rng.uniform(-0.5, 0.5, n),
                            rng.uniform(-20, 20, (n, 4)), rng.uniform(-3, 3, n),
                            rng.uniform(-20, 20, n)])
    truth = np.einsum("tmi,mi->tm", _design(tiny_grids), coef)
    grace = np.where(tiny_grids.has_grace[:, None], truth, np.nan)
    return dataclasses.replace(tiny_grids, grace=grace), coef, truth


def _mascon_means(grids, cells):
    return kernels.apply_A(grids.mascons.A, cells)


def _fitted(grids, **params):
    model = make("mascon_regression", params=params)
    model.fit(grids, grids.split_months("train"))
    return model


def _fitted_any(name, grids):
    model = make(name)
    model.fit(grids, grids.split_months("train"))
    return model.predict_cells(grids, grids.months)


def test_wghm_anomaly_is_watergap_as_it_is(tiny_grids):
    grids = tiny_grids
    model = make("wghm_anomaly")
    model.fit(grids, grids.split_months("train"))
    cells = model.predict_cells(grids, grids.months)
    assert cells.dtype == np.float64
    np.testing.assert_array_equal(cells, grids.fields["wghm"])
    assert model.covers(grids, grids.months).all() and not model.needs_grace
    # any months, in any order (GRACE gaps too)
    pick = grids.months[grids.splits["gap"]][::-1]
    np.testing.assert_array_equal(model.predict_cells(grids, pick),
                                  grids.fields["wghm"][grids.month_index(pick)])


def test_mascon_regression_recovers_known_coefficients(synthetic):
    grids, coef, truth = synthetic
    held_out = ~grids.splits["train"]  # validation, test and the months without GRACE
    assert (~grids.has_grace[held_out]).any()
    exact = _fitted(grids, ridge=0.0)  # plain least squares
    np.testing.assert_allclose(exact.coef[:, :2], coef[:, :2], rtol=0, atol=1e-9)
    means = _mascon_means(grids, exact.predict_cells(grids, grids.months))
    np.testing.assert_allclose(means[held_out], truth[held_out], rtol=0, atol=1e-6)
    # the default tiny ridge changes the fit only in the last digits
    default = _mascon_means(grids, _fitted(grids).predict_cells(grids, grids.months))
    assert np.abs(default - truth).max() < 1e-4 * np.abs(truth).max()


def test_mascon_regression_applies_the_mascon_coefficients_to_the_cells_own_predictors(
        synthetic):
    grids, _, _ = synthetic
    model = _fitted(grids)
    cells = model.predict_cells(grids, grids.months)
    w = grids.fields["wghm"].astype(np.float64)
    e = grids.fields["era5_storage"].astype(np.float64)
    c = model.coef[grids.mascons.cell_mascon]
    # within a mascon, cells differ exactly by their own WaterGAP and ERA5 deviations
    np.testing.assert_allclose(
        kernels.deviation(grids.mascons.A, grids.mascons.cell_mascon, cells),
        kernels.deviation(grids.mascons.A, grids.mascons.cell_mascon,
                          c[:, 0] * w + c[:, 1] * e), rtol=0, atol=1e-9)


def test_mascon_regression_reads_grace_only_of_the_training_months(synthetic):
    grids, _, _ = synthetic
    model = _fitted(grids)
    cells = model.predict_cells(grids, grids.months)
    rng = np.random.default_rng(0)
    train = grids.splits["train"]
    # other months' GRACE changed: the same fit
    noisy = grids.grace + np.where(train[:, None], 0.0, rng.normal(0, 500, grids.grace.shape))
    other = _fitted(dataclasses.replace(grids, grace=noisy))
    np.testing.assert_array_equal(other.coef, model.coef)
    # no GRACE at all when predicting: the same prediction
    blind = dataclasses.replace(grids, grace=np.full_like(grids.grace, np.nan),
                                has_grace=np.zeros_like(grids.has_grace))
    np.testing.assert_array_equal(model.predict_cells(blind, grids.months), cells)
    assert model.covers(blind, grids.months).all()


def test_mascon_regression_pools_mascons_with_too_few_months(synthetic):
    grids, _, truth = synthetic
    # mascon 0 keeps only 5 finite GRACE training months, mascon 1 none
    grace = grids.grace.copy()
    keep = np.flatnonzero(grids.splits["train"] & grids.has_grace)[:5]
    drop = np.ones(grids.months.size, dtype=bool)
    drop[keep] = False
    grace[drop, 0] = np.nan
    grace[:, 1] = np.nan
    thinned = dataclasses.replace(grids, grace=grace)
    model = _fitted(thinned, ridge=0.0)  # no ridge: their own systems would be singular
    assert model.pooled.tolist() == [m in (0, 1) for m in range(grids.n_mascons)]
    # the other mascons keep their own fit
    np.testing.assert_allclose(model.coef[2:], _fitted(grids, ridge=0.0).coef[2:], rtol=1e-12)
    # the sparse ones get least squares over every finite (mascon, training month) pair
    x = _design(grids)
    rows = thinned.splits["train"][:, None] & np.isfinite(grace)
    pooled, *_ = np.linalg.lstsq(x[rows], grace[rows], rcond=None)
    means = _mascon_means(grids, model.predict_cells(thinned, grids.months))
    for m in (0, 1):
        np.testing.assert_allclose(means[:, m], x[:, m] @ pooled, rtol=0,
                                   atol=1e-6 * np.abs(truth).max())


def test_mascon_regression_needs_grace_in_the_training_months(tiny_grids):
    with pytest.raises(ConfigError, match=r"ridge: expected a number >= 0, found -1"):
        make("mascon_regression", params={"ridge": -1.0})
    model = make("mascon_regression")
    with pytest.raises(RuntimeError, match="before fit"):
        model.predict_cells(tiny_grids, tiny_grids.months)
    with pytest.raises(ValueError, match="finite GRACE"):
        model.fit(tiny_grids, tiny_grids.months[~tiny_grids.has_grace])


def test_mascon_regression_beats_watergap_alone_on_the_twin(tiny_grids, tiny_truth):
    grids = tiny_grids
    for split in ("test", "gap"):
        sel = grids.splits[split]
        nse = {name: metrics.nse(_fitted_any(name, grids)[sel], tiny_truth[sel],
                                 grids.cell_area)
               for name in ("wghm_anomaly", "mascon_regression")}
        assert nse["mascon_regression"] > nse["wghm_anomaly"] + 0.05, (split, nse)
