"""Significance of paired score differences over months: a block bootstrap on the calendar, and
the Diebold–Mariano test.

Input is a paired loss difference per month — a model's loss minus the reference model's loss
(e.g. the monthly area-weighted mean squared error, mm²) — for one or more columns (models,
mascons, regions), with the months as ``datetime64[M]``. A negative mean favours the model.

Why blocks of calendar months
    Monthly errors are autocorrelated (the held-out test months come in 11-month blocks; GRACE
    errors have a lag-1 autocorrelation near 0.8), so resampling single months as if they were
    independent gives intervals that are too narrow. :func:`block_bootstrap` places the values
    on the full monthly calendar from the first to the last month (NaN in months not listed)
    and resamples blocks of ``block`` consecutive *calendar* months, so months that are close
    in time stay together and months far apart do not form false neighbours. ``block=1`` is
    the ordinary bootstrap over months.

NaN policy
    NaN and ±inf are missing. Every mean is over the finite values only: the observed mean of
    a column, and the mean of each resampled series (a resample that holds no finite month of
    a column is left out of that column's quantiles). A column without any finite month gives
    NaN everywhere and is never significant.

Where the draws come from (``scores``)
    The block draws are those of the Bureau of Meteorology's ``scores`` package
    (:func:`scores.processing.block_bootstrap`, circular moving blocks), applied to the vector
    of calendar positions ``0 .. span-1``; the same draws then serve every column, which keeps
    the columns paired. The reduction to resampled means is done here, as a matrix product of
    draw counts ``(n, span)`` with the zero-filled values ``(span, K)``, because handing the
    whole ``(span, K)`` array to ``scores`` is slow and large: measured on 2 shared cores for
    K = 100 columns, span = 249 months, n = 2000, block 12, that path took 1.8–2.4 s and
    built a 380 MiB resampled array (peak 0.86 GiB) before the mean and quantiles; drawing
    only the positions with ``scores`` and reducing here took 0.13–0.28 s in all (most of it
    in ``scores``' draws) and a few MiB. The results are the same (a test checks it).
    ``scores`` takes no seed: it draws from NumPy's legacy global generator, which
    :func:`block_bootstrap` seeds with ``seed`` and restores afterwards (so the function is
    deterministic, but not safe to call from several threads at once).

Intervals
    Percentile intervals: the central ``level`` quantiles (NumPy's default linear
    interpolation) of the resampled means. When the calendar span is no longer than one block
    every circular resample is a rotation of the series and has the same mean, so the bounds
    are NaN instead of a zero-width interval.

:func:`dm_test` wraps ``scores``' Diebold–Mariano test with the Harvey–Leybourne–Newbold
correction. With ``h = 1`` it assumes the differences are serially uncorrelated; on
autocorrelated monthly errors prefer :func:`block_bootstrap`.

References
----------
Künsch, H. R. (1989). The jackknife and the bootstrap for general stationary observations.
*Annals of Statistics* 17(3), 1217–1241. https://doi.org/10.1214/aos/1176347265

Gilleland, E. (2020). Bootstrap methods for statistical inference. Part I: comparative
forecast verification for continuous variables. *Journal of Atmospheric and Oceanic
Technology* 37(11), 2117–2134. https://doi.org/10.1175/JTECH-D-20-0069.1

Diebold, F. X. and Mariano, R. S. (1995). Comparing predictive accuracy. *Journal of Business
& Economic Statistics* 13(3), 253–263. https://doi.org/10.1080/07350015.1995.10524599

Harvey, D., Leybourne, S. and Newbold, P. (1997). Testing the equality of prediction mean
squared errors. *International Journal of Forecasting* 13(2), 281–291.
https://doi.org/10.1016/S0169-2070(96)00719-4
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

#: Fewest months with a finite difference for a column to be called significant.
MIN_MONTHS = 3


@dataclass(frozen=True)
class Interval:
    """Bootstrap interval of the mean paired difference, per column.

    Attributes
    ----------
    mean : numpy.ndarray
        ``(K,)`` mean difference over the months with a finite value (NaN if none).
    low, high : numpy.ndarray
        ``(K,)`` bounds of the central ``level`` percentile interval (NaN if undefined).
    n_months : numpy.ndarray
        ``(K,)`` number of months with a finite difference (int).
    """

    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray
    n_months: np.ndarray

    @property
    def significant(self) -> np.ndarray:
        """``(K,)`` bool: the interval excludes 0 and at least :data:`MIN_MONTHS` months count."""
        return ((self.low > 0) | (self.high < 0)) & (self.n_months >= MIN_MONTHS)


class DMResult(NamedTuple):
    """Diebold–Mariano test per column (see :func:`dm_test`)."""

    statistic: np.ndarray  # (K,) HLN-corrected statistic; > 0 when the model's loss is higher
    pvalue: np.ndarray  # (K,) two-sided, Student t with n_months - 1 degrees of freedom
    n_months: np.ndarray  # (K,) months with a finite difference


def block_bootstrap(diff: Any, months: Any, block: int = 12, n: int = 2000, seed: int = 0,
                    level: float = 0.95) -> Interval:
    """Paired block bootstrap of the mean difference over calendar months.

    Parameters
    ----------
    diff : array_like
        ``(T,)`` or ``(T, K)`` paired loss differences (model minus reference, e.g. mm² for a
        monthly mean squared error), one row per month; NaN where a column has no value.
    months : array_like
        The ``T`` months, convertible to ``datetime64[M]``, strictly increasing; gaps allowed.
    block : int
        Block length in calendar months (1: the ordinary bootstrap over months).
    n : int
        Number of resamples.
    seed : int
        Seed of the draws, ``0 .. 2**32 - 1``; the same seed gives the same result.
    level : float
        Coverage of the central interval, strictly between 0 and 1.

    Returns
    -------
    Interval
        Arrays of shape ``(K,)``; a 1-D ``diff`` gives arrays of shape ``(1,)``.

    Raises
    ------
    ValueError
        If a shape, the months or a parameter is not as described above.

    Notes
    -----
    Every resample draws circular blocks of ``block`` calendar months from the span
    ``months[0] .. months[-1]`` until it has as many calendar months as the span; the same
    draws serve every column. See the module docstring for the NaN policy and the source of
    the draws.
    """
    values = _on_calendar(diff, months)
    if isinstance(block, bool) or not isinstance(block, int | np.integer) or block < 1:
        raise ValueError(f"expected block a positive integer, found {block!r}")
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"expected n a positive integer, found {n!r}")
    if (isinstance(seed, bool) or not isinstance(seed, int | np.integer)
            or not 0 <= seed < 2**32):
        raise ValueError(f"expected seed an integer in 0 .. 2**32 - 1, found {seed!r}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"expected level strictly between 0 and 1, found {level!r}")

    span, k = values.shape
    finite = np.isfinite(values)
    filled = np.where(finite, values, 0.0)
    count = finite.sum(axis=0)
    mean = _ratio(filled.sum(axis=0), count.astype(np.float64))
    low = np.full(k, np.nan)
    high = np.full(k, np.nan)
    has = count > 0
    if span > block and has.any():
        times = _draw_counts(span, int(block), int(n), int(seed))  # (n, span)
        boot = _ratio(times @ filled[:, has], times @ finite[:, has].astype(np.float64))
        tail = (1.0 - level) / 2.0
        with warnings.catch_warnings():
            # a sparse column can miss every resample when n is tiny: NaN bounds, no warning
            warnings.filterwarnings("ignore", message="All-NaN slice", category=RuntimeWarning)
            low[has], high[has] = np.nanquantile(boot, [tail, 1.0 - tail], axis=0)
    return Interval(mean=mean, low=low, high=high, n_months=count)


def dm_test(diff: Any, months: Any, h: int = 1) -> DMResult:
    """Diebold–Mariano test of a zero mean difference, with the Harvey correction.

    Calls :func:`scores.stats.statistical_tests.diebold_mariano` with ``method="HLN"`` and
    Student's t distribution (Harvey et al. 1997) and turns its one-sided confidence into a
    two-sided p-value.

    Parameters
    ----------
    diff : array_like
        ``(T,)`` or ``(T, K)`` paired loss differences (model minus reference); NaN where
        missing.
    months : array_like
        The ``T`` months, convertible to ``datetime64[M]``, strictly increasing.
    h : int
        Forecast horizon in months: the test allows autocorrelation up to lag ``h - 1``.
        With ``h = 1`` no autocovariance enters, so missing months do not matter; with
        ``h > 1`` each column's finite months must be consecutive calendar months.

    Returns
    -------
    DMResult
        ``statistic``, ``pvalue`` and ``n_months``, each of shape ``(K,)`` (``(1,)`` for a
        1-D ``diff``). Columns with at most ``h`` finite months, all-zero differences or a
        non-positive variance estimate give NaN.

    Raises
    ------
    ValueError
        If a shape or the months are not as described, ``h`` is not a positive integer, or
        ``h > 1`` and a column has a missing month between its first and last finite month.
    """
    values = _on_calendar(diff, months)
    if isinstance(h, bool) or not isinstance(h, int | np.integer) or h < 1:
        raise ValueError(f"expected h a positive integer, found {h!r}")
    finite = np.isfinite(values)
    count = finite.sum(axis=0)
    if h > 1:
        for j in np.flatnonzero(count > 0):
            where = np.flatnonzero(finite[:, j])
            if where[-1] - where[0] + 1 != where.size:
                raise ValueError(f"expected consecutive finite months for h > 1, found "
                                 f"{where[-1] - where[0] + 1 - where.size} missing in column {j}")
    statistic = np.full(values.shape[1], np.nan)
    pvalue = np.full(values.shape[1], np.nan)
    ok = count > h
    if ok.any():
        import scipy.stats
        import xarray as xr
        from scores.stats.statistical_tests import diebold_mariano

        series = np.where(finite, values, np.nan)[:, ok].T
        da = xr.DataArray(series, dims=["column", "month"],
                          coords={"h": ("column", np.full(series.shape[0], int(h)))})
        with warnings.catch_warnings():
            # scores drops NaN before the test; harmless here (no lag spans a gap, see above)
            warnings.filterwarnings("ignore", message="A least one NaN", category=RuntimeWarning)
            out = diebold_mariano(da, "column", "h", method="HLN", statistic_distribution="t")
        statistic[ok] = out["dm_test_stat"].values
        dof = count[ok] - 1.0
        pvalue[ok] = 2.0 * scipy.stats.t.sf(np.abs(statistic[ok]), dof)
    return DMResult(statistic=statistic, pvalue=pvalue, n_months=count)


# ---- helpers ----------------------------------------------------------------------------------
def _on_calendar(diff: Any, months: Any) -> np.ndarray:
    """``diff`` as float64 ``(span, K)`` on the calendar ``months[0] .. months[-1]``, NaN-filled."""
    d = np.asarray(diff, dtype=np.float64)
    if d.ndim == 1:
        d = d[:, None]
    if d.ndim != 2 or d.shape[0] == 0:
        raise ValueError(f"expected diff of shape (T,) or (T, K) with T >= 1, found shape "
                         f"{np.shape(diff)}")
    try:
        m = np.asarray(months, dtype="datetime64[M]")
    except (TypeError, ValueError) as err:
        raise ValueError(f"expected months convertible to datetime64[M], found "
                         f"{np.asarray(months).dtype}") from err
    if m.shape != (d.shape[0],):
        raise ValueError(f"expected months of shape ({d.shape[0]},) to match diff, found "
                         f"{m.shape}")
    if np.isnat(m).any():
        raise ValueError(f"expected months without NaT, found {int(np.isnat(m).sum())}")
    step = np.diff(m).astype(np.int64)
    if (step <= 0).any():
        i = int(np.flatnonzero(step <= 0)[0])
        raise ValueError(f"expected strictly increasing months, found {m[i + 1]} after {m[i]}")
    pos = (m - m[0]).astype(np.int64)
    values = np.full((int(pos[-1]) + 1, d.shape[1]), np.nan)
    values[pos] = d
    return values


def _draw_counts(span: int, block: int, n: int, seed: int) -> np.ndarray:
    """``(n, span)`` float: how often each calendar position is drawn in each resample."""
    # scores' import is slow (about 1 s), so it happens on first use, not with this module
    import xarray as xr
    from scores.processing import block_bootstrap as scores_block_bootstrap

    state = np.random.get_state()
    np.random.seed(seed)
    try:
        drawn = scores_block_bootstrap(xr.DataArray(np.arange(span), dims="month"),
                                       blocks={"month": block}, n_iteration=n, circular=True)
    finally:
        np.random.set_state(state)
    pos = np.asarray(drawn.transpose("iteration", "month").values, dtype=np.int64)
    flat = (np.arange(n)[:, None] * span + pos).ravel()
    return np.bincount(flat, minlength=n * span).reshape(n, span).astype(np.float64)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den``, NaN where ``den`` is 0, without warnings."""
    out = np.full(np.broadcast_shapes(num.shape, den.shape), np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out
