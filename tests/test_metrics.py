"""Metrics checked three ways: hand-worked values, parity with SciPy/scikit-learn/NumPy, and
NaN, weight and Dask inputs; plus a few invariants (hypothesis) and the registry."""

from __future__ import annotations

import inspect

import dask.array as da
import numpy as np
import pytest
import scipy.stats
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from sklearn.metrics import mean_squared_error, r2_score

from twsbench.core.mascons import build_mascons
from twsbench.core.registry import UnknownNameError
from twsbench.scoring import metrics as M

# ---- fixtures -------------------------------------------------------------------------------


@pytest.fixture
def pair():
    """(36 months, 6 units) correlated prediction and reference with unequal weights."""
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(36, 6)) * np.arange(1, 7) + 10 * np.sin(np.arange(36) / 2)[:, None]
    pred = 0.8 * ref + rng.normal(scale=2.0, size=ref.shape) + 0.5
    return pred, ref, rng.uniform(0.5, 2.0, 6)


@pytest.fixture
def cells():
    """4 months on 12 cells in 3 mascons (unequal areas), prediction and reference."""
    rng = np.random.default_rng(1)
    ids = np.array([5, 5, 5, 5, 9, 9, 9, 2, 2, 2, 2, 2])
    area = rng.uniform(0.5, 2.0, ids.size)
    masc = build_mascons(ids, area)
    ref = rng.normal(size=(4, ids.size)) * 3
    pred = ref + rng.normal(size=ref.shape)
    return masc, pred, ref, area


def _dask(x):
    return da.from_array(np.asarray(x), chunks=(max(1, x.shape[0] // 3), 2))


# ---- rmse and bias --------------------------------------------------------------------------


def test_rmse_and_bias_hand_worked():
    pred = np.array([[1.0, 2.0], [3.0, 4.0]])
    ref = np.array([[0.0, 2.0], [3.0, 6.0]])
    # errors 1, 0, 0, -2; squares 1, 0, 0, 4 -> mean 5/4 over all 4 pairs
    assert M.rmse(pred, ref) == pytest.approx(np.sqrt(1.25))
    # the root comes after the time average: the mean of monthly RMSEs would be
    # (sqrt(1/2) + sqrt(4/2)) / 2 = 1.0607, not sqrt(1.25) = 1.1180
    assert M.rmse(pred, ref) != pytest.approx((np.sqrt(0.5) + np.sqrt(2.0)) / 2)
    # weights (3, 1): (3·1 + 1·0 + 3·0 + 1·4) / (2 months · (3 + 1)) = 7/8
    assert M.rmse(pred, ref, [3.0, 1.0]) == pytest.approx(np.sqrt(7 / 8))
    # bias: (1 + 0 + 0 − 2) / 4 = −0.25; weighted (3·1 + 1·0 + 3·0 + 1·(−2)) / 8 = 0.125
    assert M.bias(pred, ref) == pytest.approx(-0.25)
    assert M.bias(pred, ref, [3.0, 1.0]) == pytest.approx(0.125)


def test_rmse_and_bias_match_sklearn_and_numpy(pair):
    pred, ref, w = pair
    sample_w = np.broadcast_to(w, ref.shape).ravel()
    expected = np.sqrt(mean_squared_error(ref.ravel(), pred.ravel(), sample_weight=sample_w))
    assert M.rmse(pred, ref, w) == pytest.approx(expected, rel=1e-12)
    assert M.rmse(pred, ref) == pytest.approx(np.sqrt(mean_squared_error(ref, pred)), rel=1e-12)
    assert M.bias(pred, ref, w) == pytest.approx(np.average(pred - ref, weights=sample_w.reshape(
        ref.shape)), rel=1e-12)


# ---- pearson_r ------------------------------------------------------------------------------


def test_pearson_r_hand_worked():
    # means 2 and 2; deviations (−1, 0, 1) and (−1, 1, 0): cov 1/3, variances 2/3 -> r = 0.5
    assert M.pearson_r([1.0, 2.0, 3.0], [1.0, 3.0, 2.0]) == pytest.approx(0.5)


def test_pearson_r_matches_scipy_and_weighted_covariance(pair):
    pred, ref, w = pair
    assert M.pearson_r(pred, ref) == pytest.approx(
        scipy.stats.pearsonr(pred.ravel(), ref.ravel()).statistic, rel=1e-12)
    c = np.cov(pred.ravel(), ref.ravel(), aweights=np.broadcast_to(w, ref.shape).ravel())
    assert M.pearson_r(pred, ref, w) == pytest.approx(c[0, 1] / np.sqrt(c[0, 0] * c[1, 1]),
                                                      rel=1e-12)


def test_integer_weights_equal_repeating_units(pair):
    pred, ref, _ = pair
    w = np.array([1.0, 2.0, 1.0, 3.0, 1.0, 1.0])
    rep = np.repeat(np.arange(6), w.astype(int))
    for f in (M.rmse, M.bias, M.pearson_r):
        assert f(pred, ref, w) == pytest.approx(f(pred[:, rep], ref[:, rep]), rel=1e-12)


def test_pearson_r_without_variance_is_nan():
    assert np.isnan(M.pearson_r([1.0, 2.0, 3.0], [2.0, 2.0, 2.0]))
    assert np.isnan(M.pearson_r([0.1, 0.2, 0.3], [0.1, 0.1, 0.1]))  # round-off, not variance


# ---- NSE ------------------------------------------------------------------------------------


def test_nse_hand_worked():
    ref = np.array([[1.0, 0.0], [2.0, 2.0], [3.0, 0.0], [4.0, 2.0]])
    pred = np.array([[1.0, 1.0], [2.0, 1.0], [3.0, 1.0], [5.0, 1.0]])
    # unit 0: mean 2.5, SS_tot = 2.25 + 0.25 + 0.25 + 2.25 = 5, SS_res = 1 -> 1 − 1/5 = 0.8
    # unit 1: mean 1,   SS_tot = 4 · 1 = 4,                  SS_res = 4 -> 1 − 4/4 = 0
    np.testing.assert_allclose(M.nse_per_unit(pred, ref), [0.8, 0.0])
    # lower weighted median of (0, 0.8) with equal weights: cumulative 1 of 2 reaches half -> 0
    assert M.nse(pred, ref) == pytest.approx(0.0)
    # weights (3, 1): sorted (0 w1, 0.8 w3), cumulative (1, 4), half 2 reached at 0.8
    assert M.nse(pred, ref, [3.0, 1.0]) == pytest.approx(0.8)
    # weighted mean (3·0.8 + 1·0) / 4 = 0.6
    assert M.nse(pred, ref, [3.0, 1.0], reduce="mean") == pytest.approx(0.6)


def test_nse_per_unit_matches_r2_score(pair):
    pred, ref, _ = pair
    np.testing.assert_allclose(M.nse_per_unit(pred, ref),
                               r2_score(ref, pred, multioutput="raw_values"), rtol=1e-12)
    assert M.nse_per_unit(pred[:, 2], ref[:, 2])[0] == pytest.approx(
        r2_score(ref[:, 2], pred[:, 2]), rel=1e-12)


def test_nse_undefined_units_are_nan_and_drop_out():
    ref = np.array([[1.0, 5.0, 1.0], [2.0, 5.0, np.nan], [4.0, 5.0, np.nan]])
    pred = np.array([[1.0, 4.0, 1.0], [2.0, 6.0, 2.0], [3.0, 5.0, 3.0]])
    # unit 0: mean 7/3, SS_tot = 16/9 + 1/9 + 25/9 = 42/9, SS_res = 1 -> 1 − 9/42 = 11/14
    # unit 1: constant reference; unit 2: a single pair
    np.testing.assert_allclose(M.nse_per_unit(pred, ref), [11 / 14, np.nan, np.nan])
    assert M.nse(pred, ref) == pytest.approx(11 / 14)
    assert np.isnan(M.nse(pred[:, 1:], ref[:, 1:]))


def test_weighted_median_definition():
    # sorted (1, 2, 3, 4), cumulative (1, 2, 3, 4): half of 4 is first reached at 2
    assert M.weighted_median([3.0, 1.0, 2.0, 4.0]) == 2.0
    # weights (1, 1, 1, 5) on (1, 2, 3, 4): cumulative (1, 2, 3, 8), half 4 reached at 4
    assert M.weighted_median([1.0, 2.0, 3.0, 4.0], [1.0, 1.0, 1.0, 5.0]) == 4.0
    # round-off: 0.1 + 0.2 = 0.30000000000000004 is exactly half of 0.6 (+ round-off)
    assert M.weighted_median([1.0, 2.0, 3.0], [0.1, 0.2, 0.3]) == 2.0
    assert M.weighted_median([np.nan, 7.0, 1.0], [5.0, 1.0, 0.0]) == 7.0
    assert np.isnan(M.weighted_median([np.nan, 1.0], [1.0, 0.0]))


# ---- KGE ------------------------------------------------------------------------------------


def test_kge_hand_worked():
    ref = np.array([[-1.0, 1.0], [1.0, 3.0], [-1.0, 1.0], [1.0, 3.0]])
    pred = np.array([[-1.5, 3.0], [2.5, 1.0], [-1.5, 3.0], [2.5, 1.0]])
    out = M.kge_per_unit(pred, ref)
    # unit 0: ref mean 0, sd 1; pred = 2·ref + 0.5: r = 1, α = 2, β_σ = 0.5/1,
    #   KGE = 1 − sqrt(0 + 1 + 0.25) = 1 − sqrt(1.25); mean ratio 0.5/0 undefined
    # unit 1: ref mean 2, sd 1; pred mirrored: r = −1, α = 1, β_σ = 0, β = 2/2,
    #   KGE = 1 − sqrt(4) = −1
    np.testing.assert_allclose(out["kge"], [1 - np.sqrt(1.25), -1.0])
    np.testing.assert_allclose(out["r"], [1.0, -1.0])
    np.testing.assert_allclose(out["alpha"], [2.0, 1.0])
    np.testing.assert_allclose(out["beta_std"], [0.5, 0.0])
    np.testing.assert_allclose(out["beta"], [np.nan, 1.0])
    # lower median of (−1, −0.118) is −1; with weights (3, 1) half of 4 is reached at −0.118
    assert M.kge(pred, ref) == pytest.approx(-1.0)
    assert M.kge(pred, ref, [3.0, 1.0]) == pytest.approx(1 - np.sqrt(1.25))
    assert M.kge(pred, ref, [3.0, 1.0], reduce="mean") == pytest.approx(
        (3 * (1 - np.sqrt(1.25)) - 1) / 4)
    assert M.kge(pred, ref, [3.0, 1.0], part="alpha") == pytest.approx(2.0)


def test_kge_parts_match_scipy_and_numpy(pair):
    pred, ref, _ = pair
    out = M.kge_per_unit(pred, ref)
    for i in range(ref.shape[1]):
        assert out["r"][i] == pytest.approx(scipy.stats.pearsonr(pred[:, i], ref[:, i])[0],
                                            rel=1e-12)
    np.testing.assert_allclose(out["alpha"], pred.std(axis=0) / ref.std(axis=0), rtol=1e-12)
    np.testing.assert_allclose(out["beta_std"],
                               (pred.mean(axis=0) - ref.mean(axis=0)) / ref.std(axis=0),
                               rtol=1e-12)
    np.testing.assert_allclose(out["beta"], pred.mean(axis=0) / ref.mean(axis=0), rtol=1e-12)
    expected = 1 - np.sqrt((out["r"] - 1) ** 2 + (out["alpha"] - 1) ** 2 + out["beta_std"] ** 2)
    np.testing.assert_allclose(out["kge"], expected, rtol=1e-12)


def test_kge_of_a_constant_prediction_is_penalised_not_dropped():
    ref = np.array([-1.0, 1.0, -1.0, 1.0])
    # σ_p = 0: r = 0 (zero covariance), α = 0, β_σ = (0.5 − 0)/1 -> 1 − sqrt(1 + 1 + 0.25) = −0.5
    out = M.kge_per_unit(np.full(4, 0.5), ref)
    assert out["kge"][0] == pytest.approx(-0.5)
    assert out["r"][0] == 0.0
    assert np.isnan(M.kge_per_unit(ref, np.full(4, 2.0))["kge"][0])  # reference without variance


# ---- variance kept --------------------------------------------------------------------------


def test_variance_kept_hand_worked_and_numpy(pair):
    ref = np.array([[-1.0, 1.0], [1.0, 3.0], [-1.0, 1.0], [1.0, 3.0]])
    pred = np.array([[-1.5, 3.0], [2.5, 1.0], [-1.5, 3.0], [2.5, 1.0]])
    # per unit var ratios: (2² · 1)/1 = 4 and 1/1 = 1; mean 2.5, weighted (3·4 + 1)/4 = 3.25
    assert M.variance_kept(pred, ref) == pytest.approx(2.5)
    assert M.variance_kept(pred, ref, [3.0, 1.0]) == pytest.approx(3.25)
    p, r, w = pair
    assert M.variance_kept(p, r, w) == pytest.approx(
        np.average(p.var(axis=0) / r.var(axis=0), weights=w), rel=1e-12)


# ---- NaN policy, weights and Dask, across the pooled and per-unit scores --------------------

POOLED = [M.rmse, M.bias, M.pearson_r]
PER_UNIT = [M.nse_per_unit, lambda p, r: M.kge_per_unit(p, r)["kge"],
            lambda p, r: M.kge_per_unit(p, r)["beta_std"]]
WEIGHTED = [M.rmse, M.bias, M.pearson_r, M.nse, M.kge, M.variance_kept,
            lambda p, r, w: M.nse(p, r, w, reduce="mean"),
            lambda p, r, w: M.kge(p, r, w, part="alpha")]


@pytest.mark.parametrize("f", POOLED)
@pytest.mark.parametrize("where", ["pred", "ref", "both"])
def test_pooled_nan_equals_removing_the_pair(pair, f, where):
    pred, ref, _ = pair
    t, i = 7, 3
    p, r = pred.copy(), ref.copy()
    if where in ("pred", "both"):
        p[t, i] = np.nan
    if where in ("ref", "both"):
        r[t, i] = np.inf  # non-finite counts as missing
    k = t * ref.shape[1] + i
    expected = f(np.delete(pred.ravel(), k), np.delete(ref.ravel(), k))
    assert f(p, r) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("f", PER_UNIT)
def test_per_unit_nan_equals_removing_the_month(pair, f):
    pred, ref, _ = pair
    p, r = pred.copy(), ref.copy()
    p[4, 1] = np.nan
    r[9, 1] = np.nan
    r[2, 5] = np.nan
    got = f(p, r)
    keep1 = np.setdiff1d(np.arange(36), [4, 9])
    keep5 = np.setdiff1d(np.arange(36), [2])
    assert got[1] == pytest.approx(f(pred[keep1, 1], ref[keep1, 1])[0], rel=1e-12)
    assert got[5] == pytest.approx(f(pred[keep5, 5], ref[keep5, 5])[0], rel=1e-12)
    np.testing.assert_allclose(got[[0, 2, 3, 4]], f(pred, ref)[[0, 2, 3, 4]], rtol=1e-12)


@pytest.mark.parametrize("f", WEIGHTED)
def test_zero_weight_equals_removing_the_unit(pair, f):
    pred, ref, w = pair
    w0 = w.copy()
    w0[2] = 0.0
    keep = [0, 1, 3, 4, 5]
    assert f(pred, ref, w0) == pytest.approx(f(pred[:, keep], ref[:, keep], w[keep]), rel=1e-12)


@pytest.mark.parametrize("f", WEIGHTED)
def test_dask_inputs_give_the_same_number(pair, f):
    pred, ref, w = pair
    pred = pred.copy()
    pred[3, 2] = np.nan
    assert f(_dask(pred), _dask(ref), da.from_array(w, chunks=3)) == pytest.approx(
        f(pred, ref, w), rel=1e-12)


def test_no_pairs_give_nan_without_warnings():
    nan = np.full((3, 2), np.nan)
    ones = np.ones((3, 2))
    with np.errstate(all="raise"):
        for f in (M.rmse, M.bias, M.pearson_r, M.nse, M.kge, M.variance_kept):
            assert np.isnan(f(nan, ones))
        assert np.isnan(M.rmse(ones, ones, [0.0, 0.0]))


def test_float32_inputs_are_accumulated_in_float64(pair):
    pred, ref, w = pair
    assert M.rmse(pred.astype(np.float32), ref.astype(np.float32), w) == pytest.approx(
        M.rmse(pred.astype(np.float32).astype(np.float64),
               ref.astype(np.float32).astype(np.float64), w), rel=1e-12)


def test_bad_inputs_say_what_was_expected():
    with pytest.raises(ValueError, match="one shape"):
        M.rmse(np.ones((3, 2)), np.ones((3, 3)))
    with pytest.raises(ValueError, match=r"expected shape \(2,\)"):
        M.rmse(np.ones((3, 2)), np.ones((3, 2)), [1.0])
    with pytest.raises(ValueError, match="non-negative"):
        M.bias(np.ones((3, 2)), np.ones((3, 2)), [1.0, -1.0])
    with pytest.raises(ValueError, match="'median' or 'mean'"):
        M.nse(np.ones((3, 2)), np.ones((3, 2)), reduce="max")
    with pytest.raises(ValueError, match="beta_std"):
        M.kge(np.ones((3, 2)), np.ones((3, 2)), part="gamma")
    with pytest.raises(ValueError, match=r"\(months, units\)"):
        M.rmse(np.ones((2, 2, 2)), np.ones((2, 2, 2)))


# ---- conservation ---------------------------------------------------------------------------


def test_conservation_residual_is_zero_for_spread_grace():
    # mascon 3: cells 1, 4 (A weights 0.75, 0.25); mascon 7: cells 0, 2, 3 (0.25, 0.5, 0.25)
    m = build_mascons(np.array([7, 3, 7, 7, 3]), np.array([1.0, 3.0, 2.0, 1.0, 1.0]))
    g = np.array([[10.0, -2.0], [4.0, 1.5]])
    pred = m.spread(g.T).T
    assert M.conservation_residual(pred, g, m.A) == 0.0
    assert M.conservation_residual_max(pred, g, m.A) == 0.0
    # +4 mm on cell 1 in month 0 raises mascon 3's mean by 0.75·4 = 3: residuals (3, 0, 0, 0)
    pred[0, 1] += 4.0
    assert M.conservation_residual(pred, g, m.A) == pytest.approx(3 / 4)
    assert M.conservation_residual_max(pred, g, m.A) == pytest.approx(3.0)
    # mascon weights (1, 3): 1·3 / (2 months · 4) = 3/8
    assert M.conservation_residual(pred, g, m.A, [1.0, 3.0]) == pytest.approx(3 / 8)
    # without GRACE in month 1 only month 0 counts: (3 + 0) / 2
    g[1] = np.nan
    assert M.conservation_residual(pred, g, m.A) == pytest.approx(1.5)


def test_conservation_residual_random_operator_and_dask(cells):
    masc, pred, _, _ = cells
    rng = np.random.default_rng(3)
    g = rng.normal(size=(4, masc.n_mascons))
    spread = masc.spread(g.T).T
    assert M.conservation_residual(spread, g, masc.A) == pytest.approx(0.0, abs=1e-14)
    expected = np.abs(masc.A.toarray() @ pred.T - g.T).mean()
    assert M.conservation_residual(pred, g, masc.A) == pytest.approx(expected, rel=1e-12)
    assert M.conservation_residual(_dask(pred), _dask(g), masc.A) == pytest.approx(
        expected, rel=1e-12)
    assert M.conservation_residual_max(pred, g, masc.A) == pytest.approx(
        np.abs(masc.A.toarray() @ pred.T - g.T).max(), rel=1e-12)


# ---- sub-mascon scores ----------------------------------------------------------------------


def test_spatial_scores_hand_worked():
    m = build_mascons(np.array([0, 0, 1, 1]), np.ones(4))
    ref = np.array([[1.0, 3.0, 5.0, 9.0]])
    pred = np.array([[2.0, 2.0, 6.0, 8.0]])
    # mascon means 2 and 7 in both: D ref = (−1, 1, −2, 2), D pred = (0, 0, −1, 1)
    # cov = (0 + 0 + 2 + 2)/4 = 1, var_p = 2/4, var_r = 10/4 -> r = 1/sqrt(1.25)
    np.testing.assert_allclose(M.spatial_correlation(pred, ref, m.A, m.cell_mascon),
                               [1 / np.sqrt(1.25)])
    assert M.submascon_variance_ratio(pred, ref, m.A, m.cell_mascon) == pytest.approx(0.2)
    # Σ (D pred − D ref)² = 4, Σ (D ref)² = 10
    assert M.submascon_nse(pred, ref, m.A, m.cell_mascon) == pytest.approx(0.6)


def test_spatial_correlation_is_blind_to_mascon_means(cells):
    masc, _, ref, area = cells
    rng = np.random.default_rng(4)
    shift = masc.spread(rng.normal(scale=50.0, size=(masc.n_mascons, 4))).T
    args = (masc.A, masc.cell_mascon, area)
    np.testing.assert_allclose(M.spatial_correlation(ref + shift, ref, *args), 1.0)
    np.testing.assert_allclose(M.spatial_correlation(-ref + shift, ref, *args), -1.0)
    assert M.mean_spatial_correlation(ref + shift, ref, *args) == pytest.approx(1.0)
    assert M.submascon_variance_ratio(2 * ref + shift, ref, *args) == pytest.approx(4.0)
    assert M.submascon_nse(ref + shift, ref, *args) == pytest.approx(1.0)
    assert M.submascon_nse(-ref + shift, ref, *args) == pytest.approx(-3.0)
    # a flat spread of mascon values has no sub-mascon pattern at all
    assert M.submascon_variance_ratio(shift, ref, *args) == 0.0
    assert M.submascon_nse(shift, ref, *args) == 0.0
    assert np.all(np.isnan(M.spatial_correlation(shift, ref, *args)))


def test_spatial_correlation_matches_weighted_correlation_of_deviations(cells):
    masc, pred, ref, area = cells
    dp, dr = masc.deviation(pred.T).T, masc.deviation(ref.T).T
    got = M.spatial_correlation(pred, ref, masc.A, masc.cell_mascon, area)
    for t in range(4):
        c = np.cov(dp[t], dr[t], aweights=area)
        assert got[t] == pytest.approx(c[0, 1] / np.sqrt(c[0, 0] * c[1, 1]), rel=1e-12)
    unweighted = M.spatial_correlation(pred, ref, masc.A, masc.cell_mascon)
    np.testing.assert_allclose(unweighted, [scipy.stats.pearsonr(dp[t], dr[t])[0]
                                            for t in range(4)], rtol=1e-12)
    assert M.mean_spatial_correlation(pred, ref, masc.A, masc.cell_mascon, area) == \
        pytest.approx(got.mean(), rel=1e-12)
    expected = np.sum(area * dp**2) / np.sum(area * dr**2)  # deviations have zero mean
    assert M.submascon_variance_ratio(pred, ref, masc.A, masc.cell_mascon, area) == \
        pytest.approx(expected, rel=1e-10)


def test_spatial_nan_equals_removing_the_cell_that_month(cells):
    masc, pred, ref, area = cells
    ids = masc.ids[masc.cell_mascon]
    p = pred.copy()
    p[1, 5] = np.nan
    got = M.spatial_correlation(p, ref, masc.A, masc.cell_mascon, area)
    keep = np.setdiff1d(np.arange(12), [5])
    sub = build_mascons(ids[keep], area[keep])
    without = M.spatial_correlation(pred[:, keep], ref[:, keep], sub.A, sub.cell_mascon,
                                    area[keep])
    full = M.spatial_correlation(pred, ref, masc.A, masc.cell_mascon, area)
    assert got[1] == pytest.approx(without[1], rel=1e-12)
    np.testing.assert_allclose(got[[0, 2, 3]], full[[0, 2, 3]], rtol=1e-12)
    # the month mean weighs month 1 by its remaining area
    w_t = np.array([area.sum(), area.sum() - area[5], area.sum(), area.sum()])
    assert M.mean_spatial_correlation(p, ref, masc.A, masc.cell_mascon, area) == \
        pytest.approx(np.sum(w_t * got) / w_t.sum(), rel=1e-12)
    # a month missing everywhere drops out of the mean
    p[2] = np.nan
    got = M.spatial_correlation(p, ref, masc.A, masc.cell_mascon, area)
    assert np.isnan(got[2])
    assert np.isfinite(M.mean_spatial_correlation(p, ref, masc.A, masc.cell_mascon, area))


def test_spatial_scores_accept_dask(cells):
    masc, pred, ref, area = cells
    for f in (M.spatial_correlation, M.mean_spatial_correlation, M.submascon_variance_ratio,
              M.submascon_nse):
        np.testing.assert_allclose(f(_dask(pred), _dask(ref), masc.A, masc.cell_mascon, area),
                                   f(pred, ref, masc.A, masc.cell_mascon, area), rtol=1e-12)


# ---- trends ---------------------------------------------------------------------------------


def test_trend_hand_worked():
    years = np.array([2000.0, 2001.0, 2002.0])
    x = np.array([[1.0, 0.0], [3.0, np.nan], [5.0, 4.0]])
    # unit 0: (1, 3, 5) rises 2 mm/yr; unit 1: (0, ·, 4) over 2 years is also 2 mm/yr
    np.testing.assert_allclose(M.trend_per_unit(x, years), [2.0, 2.0])
    # a single finite month has no trend
    assert np.isnan(M.trend_per_unit(np.array([1.0, np.nan, np.nan]), years)[0])
    # pred trends (2, 0) vs ref (1, 0): RMS of (1, 0) = sqrt(1/2); weights (3, 1): sqrt(3/4)
    pred = np.array([[0.0, 1.0], [2.0, 1.0], [4.0, 1.0]])
    ref = np.array([[0.0, 5.0], [1.0, 5.0], [2.0, 5.0]])
    assert M.trend_error(pred, ref, years) == pytest.approx(np.sqrt(0.5))
    assert M.trend_error(pred, ref, years, [3.0, 1.0]) == pytest.approx(np.sqrt(0.75))


def test_trend_matches_polyfit_with_gaps(pair):
    _, ref, _ = pair
    years = 2002.0 + np.arange(36) / 12
    x = ref.copy()
    x[[1, 5, 20], 0] = np.nan
    x[30:, 4] = np.nan
    got = M.trend_per_unit(x, years)
    for i in range(x.shape[1]):
        ok = np.isfinite(x[:, i])
        assert got[i] == pytest.approx(np.polyfit(years[ok], x[ok, i], 1)[0], rel=1e-10)


def test_trend_accepts_datetime64_months_and_dask(pair):
    pred, ref, w = pair
    months = np.arange("2002-04", "2005-04", dtype="datetime64[M]")
    years = 1970 + months.astype(np.int64) / 12
    np.testing.assert_allclose(M.trend_per_unit(ref, months), M.trend_per_unit(ref, years),
                               rtol=1e-10)
    assert M.trend_error(_dask(pred), _dask(ref), months, w) == pytest.approx(
        M.trend_error(pred, ref, years, w), rel=1e-10)


def test_trend_error_is_pairwise(pair):
    pred, ref, _ = pair
    years = 2002.0 + np.arange(36) / 12
    p = pred.copy()
    p[:10, 0] = np.nan
    # ref's trend for unit 0 must be fitted over the same 26 months as pred's
    tp = np.polyfit(years[10:], pred[10:, 0], 1)[0]
    tr = np.polyfit(years[10:], ref[10:, 0], 1)[0]
    assert M.trend_error(p[:, :1], ref[:, :1], years) == pytest.approx(abs(tp - tr), rel=1e-10)


# ---- annual cycle ---------------------------------------------------------------------------


def _cycle(t, amplitude, phase, mean=5.0, trend=0.3, semi=2.0):
    w = 2 * np.pi / 12
    return mean + trend * t / 12 + amplitude * np.cos(w * (t - phase)) + semi * np.sin(2 * w * t)


def test_annual_harmonic_recovers_a_known_cycle_with_gaps():
    months = np.arange("2002-01", "2006-01", dtype="datetime64[M]")
    t = months.astype(np.int64).astype(float)  # months since 1970-01: January ≡ 0 (mod 12)
    x = np.stack([_cycle(t, 10.0, 3.0), _cycle(t, 4.0, 11.5), _cycle(t, 1.0, 0.25)], axis=1)
    x[[2, 3, 17], 1] = np.nan
    x[:40, 2] = np.nan  # 8 months: still 6 coefficients' worth
    amp, phase = M.annual_harmonic(x, months)
    np.testing.assert_allclose(amp, [10.0, 4.0, 1.0], rtol=1e-9)
    np.testing.assert_allclose(phase, [3.0, 11.5, 0.25], rtol=1e-9)
    # numeric month numbers give the same fit
    np.testing.assert_allclose(M.annual_harmonic(x, t).phase, phase, rtol=1e-12)
    # too few months to fit six coefficients
    assert np.all(np.isnan(M.annual_harmonic(x[:5], months[:5])))


def test_annual_errors_hand_worked_and_phase_wraps():
    months = np.arange("2002-01", "2005-01", dtype="datetime64[M]")
    t = months.astype(np.int64).astype(float)
    ref = np.stack([_cycle(t, 10.0, 0.5), _cycle(t, 6.0, 3.0)], axis=1)
    pred = np.stack([_cycle(t, 8.0, 11.5), _cycle(t, 6.0, 6.0)], axis=1)
    # amplitudes |8 − 10| = 2 and 0 -> mean 1; weights (3, 1): 6/4
    assert M.annual_amplitude_error(pred, ref, months) == pytest.approx(1.0)
    assert M.annual_amplitude_error(pred, ref, months, [3.0, 1.0]) == pytest.approx(1.5)
    # phases 11.5 vs 0.5 are 1 month apart across the new year; 6 vs 3 are 3 apart -> mean 2
    assert M.annual_phase_error(pred, ref, months) == pytest.approx(2.0)
    assert M.annual_phase_error(pred, ref, months, [3.0, 1.0]) == pytest.approx(1.5)


def test_annual_harmonic_matches_lstsq_per_unit(pair):
    _, ref, _ = pair
    months = np.arange("2002-04", "2005-04", dtype="datetime64[M]")
    t = months.astype(np.int64).astype(float)
    x = ref.copy()
    x[[0, 7], 2] = np.nan
    amp, phase = M.annual_harmonic(x, months)
    w = 2 * np.pi / 12
    for i in range(x.shape[1]):
        ok = np.isfinite(x[:, i])
        tt = t[ok]
        X = np.stack([np.ones_like(tt), tt, np.cos(w * tt), np.sin(w * tt),
                      np.cos(2 * w * tt), np.sin(2 * w * tt)], axis=1)
        c = np.linalg.lstsq(X, x[ok, i], rcond=None)[0]
        assert amp[i] == pytest.approx(np.hypot(c[2], c[3]), rel=1e-9)
        assert phase[i] == pytest.approx(np.arctan2(c[3], c[2]) / w % 12, rel=1e-9)


def test_annual_errors_nan_zero_weight_and_dask(pair):
    pred, ref, w = pair
    months = np.arange("2002-04", "2005-04", dtype="datetime64[M]")
    p = pred.copy()
    p[5, 1] = np.nan
    for f in (M.annual_amplitude_error, M.annual_phase_error):
        assert f(_dask(p), _dask(ref), months, w) == pytest.approx(f(p, ref, months, w),
                                                                   rel=1e-12)
        w0 = w.copy()
        w0[3] = 0.0
        keep = [0, 1, 2, 4, 5]
        assert f(p, ref, months, w0) == pytest.approx(f(p[:, keep], ref[:, keep], months,
                                                        w[keep]), rel=1e-12)
        keep_t = np.setdiff1d(np.arange(36), [5])
        r = ref.copy()
        r[5, 1] = 1e6  # masked by pred's NaN, so it must not matter
        assert f(p[:, [1]], r[:, [1]], months) == pytest.approx(
            f(pred[keep_t][:, [1]], ref[keep_t][:, [1]], months[keep_t]), rel=1e-12)
    assert 0.0 <= M.annual_phase_error(pred, ref, months, w) <= 6.0


# ---- invariants -----------------------------------------------------------------------------

_values = st.floats(-1e3, 1e3, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(data=hnp.arrays(np.float64, (6, 3), elements=_values),
       noise=hnp.arrays(np.float64, (6, 3), elements=_values),
       holes=hnp.arrays(np.bool_, (6, 3)),
       w=hnp.arrays(np.float64, 3, elements=st.floats(0.0, 10.0)))
def test_rmse_bounds_the_bias(data, noise, holes, w):
    pred = np.where(holes, np.nan, data + noise)
    rmse, bias = M.rmse(pred, data, w), M.bias(pred, data, w)
    if np.isnan(rmse):
        assert np.isnan(bias)
    else:
        assert rmse >= abs(bias) * (1 - 1e-12) - 1e-9


@settings(max_examples=60, deadline=None)
@given(ref=hnp.arrays(np.float64, 8, elements=st.floats(-100, 100)),
       steps=hnp.arrays(np.int64, 8, elements=st.integers(-4, 4)))
def test_nse_is_one_exactly_when_the_prediction_is_the_reference(ref, steps):
    assume(np.ptp(ref) > 1e-6)  # NSE is undefined without reference variance (tested above)
    value = M.nse_per_unit(ref + 0.5 * steps, ref)[0]
    assert (value == 1.0) == bool(np.all(steps == 0))
    assert value <= 1.0
    kge = M.kge_per_unit(ref + 0.5 * steps, ref)["kge"][0]
    assert (kge == pytest.approx(1.0, abs=1e-12)) == bool(np.all(steps == 0))


@settings(max_examples=30, deadline=None)
@given(shift=hnp.arrays(np.float64, (3, 4), elements=st.floats(-1e3, 1e3)))
def test_spatial_correlation_ignores_any_mascon_constant_field(shift):
    rng = np.random.default_rng(5)
    ids = np.array([0, 0, 0, 1, 1, 2, 2, 2, 3, 3])
    area = rng.uniform(0.5, 2.0, ids.size)
    m = build_mascons(ids, area)
    ref = rng.normal(size=(3, ids.size))
    pred = ref + rng.normal(scale=0.5, size=ref.shape)
    base = M.spatial_correlation(pred, ref, m.A, m.cell_mascon, area)
    moved = M.spatial_correlation(pred + m.spread(shift.T).T, ref, m.A, m.cell_mascon, area)
    np.testing.assert_allclose(moved, base, rtol=1e-6, atol=1e-9)


# ---- registry -------------------------------------------------------------------------------


def _inputs(pair, cells):
    pred, ref, w = pair
    masc, pc, rc, area = cells
    months = np.arange("2002-04", "2005-04", dtype="datetime64[M]")
    g = masc.mean(rc.T).T
    return {"pred": pred, "ref": ref, "weights": w, "years": months, "months": months,
            "pred_cells": pc, "ref_cells": rc, "A": masc.A, "cell_mascon": masc.cell_mascon,
            "grace": g}


def test_every_registered_metric_is_scalar_and_declares_its_inputs(pair, cells):
    inputs = _inputs(pair, cells)
    assert len(M.METRICS.names()) >= 15
    for name in M.METRICS:
        metric = M.METRICS.get(name)
        assert metric.name == name and name == name.lower()
        assert isinstance(metric.higher_is_better, bool | None)
        params = [p.name for p in inspect.signature(metric.func).parameters.values()
                  if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
        assert list(metric.needs) == params
        kwargs = dict(inputs)
        if "grace" in metric.needs:  # weights per mascon
            kwargs["weights"] = cells[0].area()
        elif "ref_cells" in metric.needs:  # weights per cell
            kwargs["weights"] = cells[3]
            kwargs["years"] = inputs["years"][:cells[1].shape[0]]  # the cells' months
        value = metric(*(kwargs[k] for k in metric.needs))
        assert isinstance(value, float) and np.isfinite(value), name


def test_registry_directions_and_losses():
    assert M.METRICS.get("nse").higher_is_better is True
    assert M.METRICS.get("rmse").higher_is_better is False
    assert M.METRICS.get("bias").higher_is_better is None
    assert "nse" in M.METRICS and "nse_mean" in M.METRICS
    assert M.METRICS.get("nse").loss(0.8) == pytest.approx(0.2)
    assert M.METRICS.get("rmse").loss(3.0) == 3.0
    assert M.METRICS.get("bias").loss(-2.0) == 2.0
    assert M.METRICS.get("variance_kept").loss(1.25) == pytest.approx(0.25)
    with pytest.raises(UnknownNameError, match="rmse"):
        M.METRICS.get("nash_sutcliffe")


def test_registered_reductions_differ_as_named():
    ref = np.array([[1.0, 0.0], [2.0, 2.0], [3.0, 0.0], [4.0, 2.0]])
    pred = np.array([[1.0, 1.0], [2.0, 1.0], [3.0, 1.0], [5.0, 1.0]])
    w = np.array([3.0, 1.0])
    assert M.METRICS.get("nse")(pred, ref, w) == pytest.approx(0.8)  # weighted median
    assert M.METRICS.get("nse_mean")(pred, ref, w) == pytest.approx(0.6)


def test_shared_work_gives_identical_scores(tiny_grids, tiny_truth, monkeypatch):
    """The scores table reuses work between scores of the same arrays
    (:func:`twsbench.scoring.metrics.shared_work`); every score and monthly value is the very
    value computed without it."""
    import contextlib

    from twsbench.scoring import table

    grids, truth = tiny_grids, tiny_truth
    rng = np.random.default_rng(5)
    cells = truth + rng.normal(0.0, 20.0, truth.shape)
    cells[~grids.has_grace] = np.nan  # a model that needs GRACE: gaps in some splits
    shared = table.score_prediction(grids, cells, truth, "m", 0, "r")
    monkeypatch.setattr(table, "shared_work", contextlib.nullcontext)
    alone = table.score_prediction(grids, cells, truth, "m", 0, "r")
    for got, want in zip(shared, alone, strict=True):
        assert len(got) == len(want)
        for a, b in zip(got, want, strict=True):  # rows: names, then the value
            value = 6 if len(a) == 8 else 5  # a scores row, or a monthly row
            assert a[:value] == b[:value] and a[value + 1:] == b[value + 1:]
            assert a[value] == b[value] or (np.isnan(a[value]) and np.isnan(b[value])), (a, b)
