"""The calibrated 1-σ (:mod:`twsbench.scoring.uncertainty`): its fit, its scores and the
ensemble."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, stats

from twsbench.scoring import uncertainty as unc


def _synthetic(rng, n_months=40, n_cells=400):
    x = np.c_[np.ones(n_cells), rng.normal(size=(n_cells, 2))]
    beta = np.array([5.0, 0.8, -0.4])
    base = rng.uniform(10.0, 200.0, size=(n_months, n_cells))
    var = base + np.exp(x @ beta)[None]
    return x, beta, base, var


def test_fit_term_recovers_the_variance_model_and_covers_68_percent():
    rng = np.random.default_rng(0)
    x, beta, base, var = _synthetic(rng)
    err = rng.normal(size=var.shape) * np.sqrt(var)
    fitted = unc.fit_term(x, err, base, np.ones(x.shape[0]))
    np.testing.assert_allclose(fitted, beta, atol=0.08)
    # new errors from the same model: the fitted σ covers them at the nominal rates
    new = rng.normal(size=var.shape) * np.sqrt(var)
    sigma = np.sqrt(base + np.exp(x @ np.asarray(fitted))[None])
    scores = unc.interval_scores(new, sigma, np.ones(x.shape[0]))
    assert abs(scores["coverage_1sigma"] - 0.6827) < 0.01
    assert abs(scores["coverage_2sigma"] - 0.9545) < 0.006
    assert abs(scores["spread_skill"] - 1.0) < 0.02


def test_fit_term_keeps_the_fixed_terms_out_of_the_fitted_one():
    """The disaggregation term is what the spread and GRACE's σ leave: with the whole
    variance in ``base`` it fits (nearly) nothing."""
    rng = np.random.default_rng(1)
    x, _, base, _ = _synthetic(rng)
    err = rng.normal(size=base.shape) * np.sqrt(base)
    fitted = unc.fit_term(x, err, base, np.ones(x.shape[0]))
    term = np.exp(x @ np.asarray(fitted))
    assert np.median(term) < 0.05 * np.median(base)


def test_fit_term_weights_and_missing_errors():
    rng = np.random.default_rng(2)
    x, beta, base, var = _synthetic(rng, n_cells=300)
    err = rng.normal(size=var.shape) * np.sqrt(var)
    err[:, :100] = 1e6  # cells of zero weight
    err[::3, 100:150] = np.nan  # months without a value
    w = np.r_[np.zeros(100), np.ones(200)]
    np.testing.assert_allclose(unc.fit_term(x, err, base, w), beta, atol=0.15)


@pytest.mark.parametrize(("err", "sigma"), [(0.0, 1.0), (1.3, 0.7), (-40.0, 25.0),
                                            (250.0, 30.0)])
def test_crps_equals_the_integral_of_its_definition(err, sigma):
    # CRPS(F, y) = ∫ (F(t) − 1{t ≥ y})² dt with F = N(0, σ²) and y = err
    cdf = stats.norm(0.0, sigma).cdf
    lo, hi = min(err, 0.0) - 12 * sigma, max(err, 0.0) + 12 * sigma
    left, _ = integrate.quad(lambda t: cdf(t) ** 2, lo, err, limit=200)
    right, _ = integrate.quad(lambda t: (1 - cdf(t)) ** 2, err, hi, limit=200)
    got = float(unc.crps_gaussian(np.array([err]), np.array([sigma]))[0])
    assert got == pytest.approx(left + right, rel=1e-6, abs=1e-9)


def test_interval_scores_of_known_errors():
    err = np.array([[0.5, 1.5, 2.5, -0.5, np.nan]])
    sigma = np.array([[1.0, 1.0, 1.0, 1.0, 1.0]])
    s = unc.interval_scores(err, sigma, np.ones(5))
    assert s["coverage_1sigma"] == pytest.approx(0.5)
    assert s["coverage_2sigma"] == pytest.approx(0.75)
    assert s["rmse"] == pytest.approx(np.sqrt((0.25 + 2.25 + 6.25 + 0.25) / 4))
    assert s["spread_skill"] == pytest.approx(1.0 / s["rmse"])
    assert s["coverage_50"] == pytest.approx(0.5)  # the 50% interval is ±0.674σ
    # weights: the one error beyond 2σ counts three times
    w = unc.interval_scores(err, sigma, np.array([1.0, 1.0, 3.0, 1.0, 1.0]))
    assert w["coverage_2sigma"] == pytest.approx(3 / 6)


def test_accumulator_equals_the_stacked_ensemble():
    rng = np.random.default_rng(3)
    members = rng.normal(size=(3, 12, 50)) * 40
    hidden = rng.normal(size=(3, 4, 50))
    acc = unc.Accumulator()
    for m, h in zip(members, hidden, strict=True):
        acc.add(m, h)
    np.testing.assert_allclose(acc.mean, members.mean(0), rtol=1e-12)
    np.testing.assert_allclose(acc.spread, members.std(0, ddof=1), rtol=1e-10)
    h_mean, h_spread = acc.hidden
    np.testing.assert_allclose(h_spread, hidden.std(0, ddof=1), rtol=1e-10)
    one = unc.Accumulator()
    one.add(members[0], None)
    assert np.all(one.spread == 0) and one.hidden == (None, None)


def test_sigma_regimes(tiny_grids):
    """GRACE's σ enters only the months whose GRACE the model uses; a model that needs
    GRACE has no σ without it; a model that never uses it gets the no-GRACE term."""
    g = tiny_grids
    x = unc.predictors(g)
    assert x.shape == (g.n_cells, len(unc.PREDICTORS)) and np.isfinite(x).all()
    k = len(unc.PREDICTORS)
    flat = [0.0] * k
    beta = [np.log(100.0), *([0.0] * (k - 1))]  # a term of 100 mm² everywhere
    spread = np.full((g.months.size, g.n_cells), 3.0)
    sg2 = g.grace_sigma[:, g.cell_mascon] ** 2
    has = g.has_grace
    both = unc.Calibration(True, flat, [1.0] * k, {"grace": beta, "nograce": beta})
    s = both.sigma(g, x, spread)
    np.testing.assert_allclose(s[has] ** 2, 9.0 + 100.0 + sg2[has], rtol=1e-9)
    np.testing.assert_allclose(s[~has] ** 2, 109.0, rtol=1e-9)
    never = unc.Calibration(False, flat, [1.0] * k, {"nograce": beta})
    np.testing.assert_allclose(never.sigma(g, x, spread) ** 2, 109.0, rtol=1e-9)
    needs = unc.Calibration(True, flat, [1.0] * k, {"grace": beta})
    s = needs.sigma(g, x, spread)
    assert np.isfinite(s[has]).all() and np.isnan(s[~has]).all()
    assert unc.Calibration.from_dict(both.as_dict()) == both


def test_predictors_see_a_trend_grace_shows_and_wghm_misses(tiny_grids):
    """The mascon trend misfit predictor grows where GRACE gains a trend WaterGAP lacks."""
    import dataclasses

    g = tiny_grids
    years = (g.months.astype(int) - g.months.astype(int).mean()) / 12.0
    grace = g.grace.copy()
    grace[:, 0] += 20.0 * years  # 20 mm/yr in mascon 0
    trended = dataclasses.replace(g, grace=grace)
    trended.__dict__["mascons"] = g.mascons
    before, after = unc.predictors(g), unc.predictors(trended)
    col = unc.PREDICTORS.index("mascon_trend_misfit")
    in0 = g.cell_mascon == 0
    assert np.all(after[in0, col] > before[in0, col] + 1.0)
    np.testing.assert_array_equal(after[~in0, col], before[~in0, col])
