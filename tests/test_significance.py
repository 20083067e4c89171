"""Block bootstrap and Diebold–Mariano test of paired monthly differences: interval widths on
autocorrelated and independent series, rejection rates, calendar placement and NaN handling,
and parity with ``scores`` and SciPy."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
import xarray as xr
from scores.processing import block_bootstrap as scores_block_bootstrap
from scores.stats.statistical_tests import diebold_mariano

from twsbench.scoring.significance import Interval, block_bootstrap, dm_test

START = np.datetime64("1990-01", "M")

# ---- fixtures -------------------------------------------------------------------------------


def _calendar(n: int) -> np.ndarray:
    return np.arange(START, START + n)


def _ar1(rng: np.random.Generator, n: int, k: int, rho: float) -> np.ndarray:
    """``(n, k)`` stationary AR(1) series with unit innovations and mean 0."""
    e = rng.standard_normal((n, k))
    x = np.empty_like(e)
    x[0] = e[0] / np.sqrt(1.0 - rho**2)
    for t in range(1, n):
        x[t] = rho * x[t - 1] + e[t]
    return x


@pytest.fixture
def scattered():
    """Two 11-month blocks and 9 scattered months over 2002..2022, 4 columns with NaN."""
    rng = np.random.default_rng(3)
    blocks = [np.arange(np.datetime64("2004-03"), np.datetime64("2004-03") + 11),
              np.arange(np.datetime64("2015-06"), np.datetime64("2015-06") + 11)]
    loose = np.array(["2002-05", "2003-01", "2007-08", "2009-12", "2011-02", "2012-07",
                      "2017-07", "2019-11", "2022-12"], dtype="datetime64[M]")
    months = np.sort(np.concatenate(blocks + [loose]))
    diff = rng.normal(0.3, 1.0, (months.size, 4))
    diff[rng.random(diff.shape) < 0.2] = np.nan
    diff[:, 2] = np.nan  # a column without any value
    return diff, months


def _width(r: Interval) -> np.ndarray:
    return r.high - r.low


# ---- interval widths ------------------------------------------------------------------------


def test_blocks_widen_the_interval_on_autocorrelated_differences():
    x = _ar1(np.random.default_rng(1), 360, 200, 0.9)
    ratio = _width(block_bootstrap(x, _calendar(360), block=12)) / _width(
        block_bootstrap(x, _calendar(360), block=1))
    assert ratio.mean() > 1.8


def test_blocks_keep_the_width_on_independent_differences():
    x = np.random.default_rng(1).standard_normal((360, 200))
    ratio = _width(block_bootstrap(x, _calendar(360), block=12)) / _width(
        block_bootstrap(x, _calendar(360), block=1))
    assert 0.8 < ratio.mean() < 1.25


# ---- rejection rates ------------------------------------------------------------------------


@pytest.mark.parametrize("block", [1, 12])
def test_clear_shift_is_significant_both_ways(block):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((120, 50)) + 5.0 / np.sqrt(120)
    up = block_bootstrap(x, _calendar(120), block=block)
    down = block_bootstrap(-x, _calendar(120), block=block)
    assert up.significant.all() and (up.low > 0).all()
    assert down.significant.all() and (down.high < 0).all()


@pytest.mark.parametrize("block", [1, 12])
def test_zero_mean_is_rarely_significant(block):
    x = np.random.default_rng(2).standard_normal((120, 400))
    rate = block_bootstrap(x, _calendar(120), block=block).significant.mean()
    assert 0.01 <= rate <= 0.12


def test_too_few_months_are_never_significant():
    # two months, both clearly positive: the interval [5, 6] excludes 0, but 2 < MIN_MONTHS
    r = block_bootstrap(np.array([5.0, 6.0]), _calendar(2), block=1)
    assert r.low[0] >= 5.0 and not r.significant[0]
    r = block_bootstrap(np.array([5.0, 6.0, 5.5]), _calendar(3), block=1)
    assert r.significant[0]


# ---- calendar, NaN, determinism -------------------------------------------------------------


def test_scattered_months_equal_their_place_on_the_calendar(scattered):
    diff, months = scattered
    full = np.arange(months[0], months[-1] + 1)
    placed = np.full((full.size, diff.shape[1]), np.nan)
    placed[np.searchsorted(full, months)] = diff
    a = block_bootstrap(diff, months, n=500)
    b = block_bootstrap(placed, full, n=500)
    for name in ("mean", "low", "high", "n_months"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


def test_all_nan_column_is_nan_and_leaves_the_others_alone(scattered):
    diff, months = scattered
    r = block_bootstrap(diff, months, n=500)
    assert r.n_months[2] == 0 and not r.significant[2]
    assert np.isnan([r.mean[2], r.low[2], r.high[2]]).all()
    keep = [0, 1, 3]
    alone = block_bootstrap(diff[:, keep], months, n=500)
    assert np.isfinite(alone.low).all()
    # same draws; a matrix product over fewer columns may differ in the last bit
    np.testing.assert_allclose(alone.low, r.low[keep], rtol=1e-12)
    np.testing.assert_allclose(alone.high, r.high[keep], rtol=1e-12)


def test_columns_are_paired_and_their_order_does_not_matter(scattered):
    diff, months = scattered
    order = [3, 0, 2, 1]
    r = block_bootstrap(diff, months, n=500)
    p = block_bootstrap(diff[:, order], months, n=500)
    for name in ("mean", "low", "high", "n_months"):
        np.testing.assert_allclose(getattr(p, name), getattr(r, name)[order], rtol=1e-12)
    # one column alone gives what it gives among the others, as a (1,) array
    one = block_bootstrap(diff[:, 1], months, n=500)
    assert one.low.shape == (1,)
    np.testing.assert_allclose(one.low, r.low[[1]], rtol=1e-12)


def test_same_seed_same_result_and_global_state_kept(scattered):
    diff, months = scattered
    np.random.seed(123)
    before = np.random.random()
    np.random.seed(123)
    a = block_bootstrap(diff, months, n=500, seed=7)
    after = np.random.random()
    b = block_bootstrap(diff, months, n=500, seed=7)
    c = block_bootstrap(diff, months, n=500, seed=8)
    assert after == before
    np.testing.assert_array_equal(a.low, b.low)
    np.testing.assert_array_equal(a.high, b.high)
    assert not np.array_equal(a.low[[0, 1, 3]], c.low[[0, 1, 3]])


def test_span_within_one_block_has_no_interval():
    r = block_bootstrap(np.arange(1.0, 12.0), _calendar(11), block=12)
    assert r.mean[0] == 6.0 and r.n_months[0] == 11
    assert np.isnan(r.low[0]) and np.isnan(r.high[0]) and not r.significant[0]


# ---- parity ---------------------------------------------------------------------------------


def test_mean_and_months_by_hand():
    months = np.array(["2010-01", "2010-02", "2010-05", "2010-06"], dtype="datetime64[M]")
    diff = np.array([[1.0, np.nan], [2.0, 4.0], [np.nan, np.inf], [6.0, -1.0]])
    r = block_bootstrap(diff, months, block=2, n=200)
    np.testing.assert_allclose(r.mean, [3.0, 1.5])
    np.testing.assert_array_equal(r.n_months, [3, 2])


@pytest.mark.filterwarnings("ignore:All-NaN slice:RuntimeWarning")  # xarray on column 2
def test_agrees_with_scores_block_bootstrap_on_the_calendar(scattered):
    diff, months = scattered
    full = np.arange(months[0], months[-1] + 1)
    placed = np.full((full.size, diff.shape[1]), np.nan)
    placed[np.searchsorted(full, months)] = diff
    np.random.seed(5)
    boot = scores_block_bootstrap(xr.DataArray(placed, dims=["month", "column"]),
                                  blocks={"month": 6}, n_iteration=300, circular=True)
    means = boot.mean("month", skipna=True)
    low, high = means.quantile([0.05, 0.95], dim="iteration", skipna=True).transpose(
        "quantile", "column").values
    r = block_bootstrap(diff, months, block=6, n=300, seed=5, level=0.9)
    np.testing.assert_allclose(r.low, low, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(r.high, high, rtol=1e-12, atol=1e-12)


def test_dm_with_h1_is_the_one_sample_t_test(scattered):
    diff, months = scattered
    d = dm_test(diff, months)
    cols = [0, 1, 3]
    t = scipy.stats.ttest_1samp(diff[:, cols], 0.0, nan_policy="omit")
    np.testing.assert_allclose(d.statistic[cols], t.statistic, rtol=1e-10)
    np.testing.assert_allclose(d.pvalue[cols], t.pvalue, rtol=1e-10)
    assert np.isnan(d.statistic[2]) and np.isnan(d.pvalue[2]) and d.n_months[2] == 0


def test_dm_with_h2_matches_scores_on_consecutive_months():
    x = _ar1(np.random.default_rng(4), 60, 3, 0.5) + 0.2
    x[:5, 1] = np.nan  # a later start is not a gap
    d = dm_test(x, _calendar(60), h=2)
    da = xr.DataArray(x.T, dims=["column", "month"], coords={"h": ("column", [2, 2, 2])})
    with pytest.warns(RuntimeWarning):
        ref = diebold_mariano(da, "column", "h", method="HLN", statistic_distribution="t")
    np.testing.assert_allclose(d.statistic, ref["dm_test_stat"].values, rtol=1e-12)
    conf = ref["confidence_gt_0"].values
    np.testing.assert_allclose(d.pvalue, 2 * np.minimum(conf, 1 - conf), rtol=1e-9)


def test_dm_with_h2_refuses_gaps(scattered):
    diff, months = scattered
    with pytest.raises(ValueError, match="expected consecutive finite months"):
        dm_test(diff, months, h=2)


# ---- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("diff", "months", "kwargs", "found"), [
    (np.zeros((3, 2, 2)), _calendar(3), {}, "found shape"),
    (np.zeros(0), _calendar(0), {}, "found shape"),
    (np.zeros(4), _calendar(3), {}, r"expected months of shape \(4,\)"),
    (np.zeros(3), _calendar(3)[::-1], {}, "expected strictly increasing months"),
    (np.zeros(3), np.array(["2001-01", "2001-01", "2001-02"], "datetime64[M]"), {},
     "expected strictly increasing months"),
    (np.zeros(3), _calendar(3), {"block": 0}, "expected block"),
    (np.zeros(3), _calendar(3), {"n": 0}, "expected n"),
    (np.zeros(3), _calendar(3), {"seed": -1}, "expected seed"),
    (np.zeros(3), _calendar(3), {"level": 1.0}, "expected level"),
])
def test_bad_input_says_what_was_expected(diff, months, kwargs, found):
    with pytest.raises(ValueError, match=found):
        block_bootstrap(diff, months, **kwargs)


def test_ranking_against_adds_a_reference_on_both_tasks():
    """``[ranking] against = ["full"]``: an ablation is tested against its full model, which
    is 30 mm² better every month, beside the tasks' own references."""
    import pandas as pd

    from twsbench.scoring.comparisons import significance

    months = pd.period_range("2003-01", periods=48, freq="M").to_timestamp()
    rng = np.random.default_rng(0)
    rows = []
    for task, loss, refs in (("downscale", "mse_submascon_truth", ("mascon",)),
                             ("gapfill", "mse_fine_truth", ("wghm_anomaly",))):
        base = 100 + rng.normal(0, 5, months.size)
        for model, shift in ((refs[0], 0.0), ("full", -30.0), ("ablation", 0.0)):
            rows += [{"model": model, "seed": 0, "month": m, "split": task, "metric": loss,
                      "value": v + shift} for m, v in zip(months, base, strict=True)]
    monthly = pd.DataFrame(rows)
    meta = {"has_truth": True, "config": {"ranking": {"resamples": 200}}}
    for task in ("downscale", "gapfill"):
        plain = significance(monthly, meta, task)
        assert "full" not in set(plain["against"])
        meta["config"]["ranking"]["against"] = ["full"]
        table = significance(monthly, meta, task).set_index(["model", "against"])
        del meta["config"]["ranking"]["against"]
        row = table.loc[("ablation", "full")]
        assert row["verdict"] == "worse" and row["mean change"] == pytest.approx(30.0)
