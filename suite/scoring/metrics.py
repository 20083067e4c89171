"""Scores: metric kernels on ``(months, units)`` arrays, and the registry of scalar metrics.

Every kernel is plain NumPy on arrays shaped ``(months, units)``, where *units* are 0.5° cells
or mascons (a 1-D array is read as one unit's time series). Values are in mm (TWS anomalies).

Conventions shared by every function here:

NaN policy (pairwise)
    A ``(month, unit)`` pair counts only where *both* prediction and reference are finite
    (NaN and ±inf are missing), as xskillscore matches NaNs pairwise. Putting NaN into either
    array at a position gives the same score as removing that pair. A score with nothing left
    to average (or a reference without variance) is NaN; no warning is raised.
Weights
    Optional per-unit weights (cell or mascon area in m², any proportional unit) of shape
    ``(units,)``, finite and non-negative; ``None`` means equal weights. A mask zeroes the
    *weights*: weight 0 on a unit is the same as removing that unit.
Order of operations
    Each docstring names it. Pooled scores (:func:`rmse`, :func:`bias`, :func:`pearson_r`)
    average over all finite pairs of months × units at once (RMSE is the root *after*
    averaging over time and space, not a mean of monthly or per-unit RMSEs). Per-unit scores
    (NSE, KGE, variance kept, trends, annual cycle) are computed over time for each unit, then
    reduced over units with the weights; units whose score is undefined (NaN) drop out of the
    reduction.
Inputs
    Arrays are converted with :func:`numpy.asarray` to float64 at the boundary only, so Dask
    (or xarray) inputs work but are *computed* in full. Variances are population variances
    (``ddof = 0``).

:data:`METRICS` registers the scalar scores as :class:`Metric` records with the direction of
"better" and the inputs each needs.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import numpy as np

from twsbench.core import kernels
from twsbench.core.registry import Registry

Reduce = Literal["median", "mean"]

#: A variance at or below ``(_FLAT · eps · max|x|)²`` is round-off around a constant series.
_FLAT = 64.0
#: Months per year, and the angular frequency of the annual harmonic (rad per month).
_YEAR = 12.0
_OMEGA = 2.0 * np.pi / _YEAR
KGE_PARTS = ("kge", "r", "alpha", "beta", "beta_std")


# ---- work shared between scores of the same arrays -------------------------------------------
_shared = threading.local()


@contextlib.contextmanager
def shared_work() -> Iterator[None]:
    """Inside the block, kernels called again on the *same array objects* reuse their result
    (per-unit NSE and KGE, annual harmonics, trends, sub-mascon deviations and their moments)
    instead of computing it again: a scores table asks for many scores of one prediction, and
    several share these parts. The results are the very same arrays, so every score is
    identical with and without the block. Keep the block short (one split and region): it
    holds the arrays it has seen."""
    outer = getattr(_shared, "memo", None)
    _shared.memo = {} if outer is None else outer
    try:
        yield
    finally:
        _shared.memo = outer


def _reused(func: Callable[..., Any]) -> Callable[..., Any]:
    """``func`` remembered by the identity of its arguments inside :func:`shared_work`."""
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        memo = getattr(_shared, "memo", None)
        if memo is None:
            return func(*args, **kwargs)
        key = (func.__name__, *(id(a) for a in args),
               *((k, id(v)) for k, v in sorted(kwargs.items())))
        if key not in memo:  # the arguments are kept, so their ids stay theirs
            memo[key] = (func(*args, **kwargs), args, kwargs)
        return memo[key][0]

    return wrapper


# ---- inputs ---------------------------------------------------------------------------------
def _series(x: Any, name: str) -> np.ndarray:
    """``x`` as float64 ``(months, units)`` (1-D: one unit); computes Dask arrays."""
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise ValueError(f"{name}: expected a (months, units) array, found shape {a.shape}")
    return a


def _pair(pred: Any, ref: Any, pred_name: str = "pred", ref_name: str = "ref"
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Both arrays, and where both are finite; missing pairs are zero-filled in both."""
    p, r = _series(pred, pred_name), _series(ref, ref_name)
    if p.shape != r.shape:
        raise ValueError(f"expected {pred_name} and {ref_name} of one shape, found {p.shape} "
                         f"and {r.shape}")
    valid = np.isfinite(p) & np.isfinite(r)
    return np.where(valid, p, 0.0), np.where(valid, r, 0.0), valid


def _weights(weights: Any, n_units: int, name: str = "weights") -> np.ndarray:
    """Per-unit weights ``(units,)``: ones when ``None``; finite and non-negative."""
    if weights is None:
        return np.ones(n_units)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n_units,):
        raise ValueError(f"{name}: expected shape ({n_units},), found {w.shape}")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError(f"{name}: expected finite non-negative weights, found "
                         f"{int(np.sum(~np.isfinite(w)))} non-finite and "
                         f"{int(np.sum(w < 0))} negative")
    top = w.max(initial=0.0)
    # only relative weights matter: scaled to a largest of 1, subnormal weights (5e-324)
    # keep their ratios instead of rounding in the weighted sums
    return w / top if top > 0 else w


def _time(t: Any, n_months: int, name: str, per_year: bool) -> np.ndarray:
    """Month coordinates as float: datetime64 -> years (``per_year``) or months since 1970-01."""
    a = np.asarray(t)
    if np.issubdtype(a.dtype, np.datetime64):
        months = a.astype("datetime64[M]").astype(np.int64).astype(np.float64)
        a = 1970.0 + months / _YEAR if per_year else months
    a = np.asarray(a, dtype=np.float64)
    if a.shape != (n_months,):
        raise ValueError(f"{name}: expected shape ({n_months},), found {a.shape}")
    return a


def _masked(p: np.ndarray, r: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """NaN outside ``valid`` in both arrays (pairwise masking for per-series fits)."""
    return np.where(valid, p, np.nan), np.where(valid, r, np.nan)


# ---- weighted moments -----------------------------------------------------------------------
class _Moments(NamedTuple):
    weight: np.ndarray  # total weight of the pairs
    mean_p: np.ndarray
    mean_r: np.ndarray
    var_p: np.ndarray
    var_r: np.ndarray
    cov: np.ndarray
    flat_p: np.ndarray  # variance is zero up to round-off (or nothing to average)
    flat_r: np.ndarray


def _scale(x: np.ndarray, w: np.ndarray, axis: int | None) -> np.ndarray:
    """Largest magnitude of ``x`` where ``w > 0`` (for round-off thresholds)."""
    if w.all():  # every entry counts (weights are >= 0): no masked copy needed
        return np.maximum(x.max(axis=axis, keepdims=True), -x.min(axis=axis, keepdims=True))
    return np.max(np.abs(np.where(w > 0, x, 0.0)), axis=axis, keepdims=True)


def _moments(p: np.ndarray, r: np.ndarray, w: np.ndarray, axis: int | None,
             scale_p: np.ndarray | None = None, scale_r: np.ndarray | None = None) -> _Moments:
    """Weighted means, variances and covariance over ``axis`` (``p``, ``r`` zero where w = 0).

    A variance counts as zero below the round-off of values of size ``scale`` (default: the
    largest ``|p|`` or ``|r|`` itself; pass the inputs' scale for derived fields).
    """
    sw = w.sum(axis=axis, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        mp = (w * p).sum(axis=axis, keepdims=True) / sw
        mr = (w * r).sum(axis=axis, keepdims=True) / sw
        dp = np.where(w > 0, p - mp, 0.0)  # two passes: centred sums keep precision
        dr = np.where(w > 0, r - mr, 0.0)
        vp = (w * dp * dp).sum(axis=axis, keepdims=True) / sw
        vr = (w * dr * dr).sum(axis=axis, keepdims=True) / sw
        cov = (w * dp * dr).sum(axis=axis, keepdims=True) / sw
    eps = np.finfo(np.float64).eps
    sp = _scale(p, w, axis) if scale_p is None else scale_p
    sr = _scale(r, w, axis) if scale_r is None else scale_r
    flat_p = ~(vp > (_FLAT * eps * sp) ** 2)  # also True where vp is NaN (no weight)
    flat_r = ~(vr > (_FLAT * eps * sr) ** 2)

    def out(a):
        return a.squeeze(axis=axis) if axis is not None else a.reshape(())

    return _Moments(*(out(a) for a in (sw, mp, mr, vp, vr, cov, flat_p, flat_r)))


def _correlation(m: _Moments) -> np.ndarray:
    """Pearson r from moments; NaN where either side has no variance."""
    with np.errstate(invalid="ignore", divide="ignore"):
        r = m.cov / np.sqrt(m.var_p * m.var_r)
    return np.where(m.flat_p | m.flat_r, np.nan, np.clip(r, -1.0, 1.0))


def _weighted_mean(values: np.ndarray, w: np.ndarray) -> float:
    """Weighted mean over finite values with positive weight; NaN if none."""
    ok = np.isfinite(values) & (w > 0)
    total = w[ok].sum()
    return float((w[ok] * values[ok]).sum() / total) if total > 0 else float("nan")


def weighted_median(values: Any, weights: Any = None) -> float:
    r"""Weighted (lower) median.

    The smallest value :math:`v_{(k)}` (values sorted ascending) whose cumulative weight
    reaches half the total: :math:`\sum_{j \le k} w_{(j)} \ge \tfrac12 \sum_j w_j`
    (up to a relative round-off of 1e-12). With equal weights and an even count this is the
    lower of the two middle values, not their average as in :func:`numpy.median`.

    Parameters
    ----------
    values
        ``(n,)`` values; NaN values drop out.
    weights
        ``(n,)`` finite non-negative weights (``None``: equal); zero-weight values drop out.

    Returns
    -------
    float
        The weighted median, NaN when no finite value has positive weight.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    w = _weights(weights, v.size)
    ok = np.isfinite(v) & (w > 0)
    if not ok.any():
        return float("nan")
    v, w = v[ok], w[ok]
    order = np.argsort(v, kind="stable")
    cum = np.cumsum(w[order])
    k = np.searchsorted(cum, 0.5 * cum[-1] - 1e-12 * cum[-1], side="left")
    return float(v[order][min(k, v.size - 1)])


def _reduce(per_unit: np.ndarray, w: np.ndarray, reduce: str) -> float:
    if reduce == "median":
        return weighted_median(per_unit, w)
    if reduce == "mean":
        return _weighted_mean(per_unit, w)
    raise ValueError(f"reduce: expected 'median' or 'mean', found {reduce!r}")


# ---- pooled scores --------------------------------------------------------------------------
def rmse(pred: Any, ref: Any, weights: Any = None) -> float:
    r"""Root-mean-square error pooled over all finite pairs of months × units.

    .. math:: \mathrm{RMSE} = \sqrt{\frac{\sum_{t,i} w_i m_{ti} (\hat y_{ti} - y_{ti})^2}
                                      {\sum_{t,i} w_i m_{ti}}}

    with :math:`m_{ti} = 1` where both values are finite. The root is taken *after* averaging
    over time and space (not a mean of monthly or per-unit RMSEs).

    Parameters
    ----------
    pred, ref
        ``(months, units)`` prediction and reference in mm.
    weights
        ``(units,)`` area weights (``None``: equal).

    Returns
    -------
    float
        RMSE in mm; NaN when no pair has positive weight.
    """
    p, r, valid = _pair(pred, ref)
    w = valid * _weights(weights, p.shape[1])
    total = w.sum()
    return float(np.sqrt((w * (p - r) ** 2).sum() / total)) if total > 0 else float("nan")


def bias(pred: Any, ref: Any, weights: Any = None) -> float:
    r"""Mean error pooled over all finite pairs: :math:`\sum w_i m_{ti} (\hat y_{ti} - y_{ti})
    / \sum w_i m_{ti}`.

    Parameters
    ----------
    pred, ref
        ``(months, units)`` prediction and reference in mm.
    weights
        ``(units,)`` area weights (``None``: equal).

    Returns
    -------
    float
        Bias in mm (positive: prediction too high); NaN when no pair has positive weight.
    """
    p, r, valid = _pair(pred, ref)
    w = valid * _weights(weights, p.shape[1])
    total = w.sum()
    return float((w * (p - r)).sum() / total) if total > 0 else float("nan")


def pearson_r(pred: Any, ref: Any, weights: Any = None) -> float:
    r"""Pearson correlation pooled over all finite pairs of months × units, area-weighted.

    .. math:: r = \frac{\sum w (\hat y - \bar{\hat y})(y - \bar y)}
                   {\sqrt{\sum w (\hat y - \bar{\hat y})^2 \sum w (y - \bar y)^2}}

    with weighted means :math:`\bar y` over the same pairs (pair weight :math:`w_i m_{ti}`).
    Pooling mixes spatial and temporal variation; unweighted it equals
    :func:`scipy.stats.pearsonr` of the flattened finite pairs.

    Parameters
    ----------
    pred, ref
        ``(months, units)`` prediction and reference in mm.
    weights
        ``(units,)`` area weights (``None``: equal).

    Returns
    -------
    float
        r in [-1, 1]; NaN when either side has no variance (as SciPy) or no pairs.
    """
    p, r, valid = _pair(pred, ref)
    w = valid * _weights(weights, p.shape[1])
    return float(_correlation(_moments(p, r, w, axis=None)))


# ---- per-unit scores over time --------------------------------------------------------------
@_reused
def nse_per_unit(pred: Any, ref: Any) -> np.ndarray:
    r"""Nash–Sutcliffe efficiency of each unit over its finite months.

    .. math:: \mathrm{NSE}_i = 1 - \frac{\sum_t m_{ti} (\hat y_{ti} - y_{ti})^2}
                                     {\sum_t m_{ti} (y_{ti} - \bar y_i)^2}

    with :math:`\bar y_i` the mean of the reference over the unit's finite pairs. Equals
    :func:`sklearn.metrics.r2_score` of the unit's series (``y_true = ref``).

    Parameters
    ----------
    pred, ref
        ``(months, units)`` prediction and reference in mm.

    Returns
    -------
    numpy.ndarray
        ``(units,)`` NSE in (-inf, 1]; NaN where the unit has fewer than 2 pairs or the
        reference has no variance (scikit-learn returns 0 or 1 there instead).

    References
    ----------
    Nash, J. E. and Sutcliffe, J. V. (1970), River flow forecasting through conceptual
    models part I, J. Hydrol. 10(3), 282–290, doi:10.1016/0022-1694(70)90255-6.
    """
    p, r, valid = _pair(pred, ref)
    m = _moments(p, r, valid.astype(np.float64), axis=0)
    sse = ((p - r) ** 2).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = 1.0 - sse / (m.weight * m.var_r)
    return np.where(m.flat_r, np.nan, out)


def nse(pred: Any, ref: Any, weights: Any = None, *, reduce: Reduce = "median") -> float:
    """Per-unit NSE (:func:`nse_per_unit`) reduced over units with area weights.

    ``reduce="median"``: the weighted median of :func:`weighted_median` (the smallest NSE whose
    cumulative weight reaches half the total weight); ``"mean"``: the weighted mean. Units with
    undefined NSE (NaN) drop out.

    Parameters
    ----------
    pred, ref
        ``(months, units)`` prediction and reference in mm.
    weights
        ``(units,)`` area weights (``None``: equal).
    reduce
        ``"median"`` (the suite's ranking default) or ``"mean"``.

    Returns
    -------
    float
        NSE; NaN when no unit has a defined NSE with positive weight.
    """
    p = _series(pred, "pred")
    return _reduce(nse_per_unit(p, ref), _weights(weights, p.shape[1]), reduce)


@_reused
def kge_per_unit(pred: Any, ref: Any) -> dict[str, np.ndarray]:
    r"""Kling–Gupta efficiency for anomalies (KGE'') of each unit over its finite months.

    .. math:: \mathrm{KGE''} = 1 - \sqrt{(r - 1)^2 + (\alpha - 1)^2 + \beta_\sigma^2},
              \quad \alpha = \sigma_{\hat y} / \sigma_y,
              \quad \beta_\sigma = (\mu_{\hat y} - \mu_y) / \sigma_y

    The classical bias term :math:`\beta = \mu_{\hat y} / \mu_y` (Gupta et al. 2009) is
    ill-defined for anomalies, whose means are near zero; so is Kling et al.'s (2012)
    variability ratio of coefficients of variation :math:`\gamma = (\sigma_{\hat y} /
    \mu_{\hat y}) / (\sigma_y / \mu_y)`. The suite therefore uses Gupta's ratio of standard
    deviations :math:`\alpha` and the bias normalised by the reference's spread
    :math:`\beta_\sigma` (ideal 0), the form of Tang et al. (2021). The classical
    :math:`\beta` is returned for reference only and enters nothing.

    Standard deviations are population ones (``ddof = 0``) over the unit's finite pairs.

    Parameters
    ----------
    pred, ref
        ``(months, units)`` prediction and reference in mm.

    Returns
    -------
    dict of numpy.ndarray
        ``(units,)`` arrays ``kge``, ``r``, ``alpha``, ``beta`` (mean ratio; NaN where the
        reference mean is 0), ``beta_std``. All are NaN where the unit has fewer than 2 pairs or
        the reference has no variance. A constant prediction has zero covariance, so ``r = 0``
        there (SciPy returns NaN), and the KGE stays defined and penalised.

    References
    ----------
    Gupta, H. V., Kling, H., Yilmaz, K. K. and Martinez, G. F. (2009), Decomposition of the
    mean squared error and NSE performance criteria, J. Hydrol. 377, 80–91,
    doi:10.1016/j.jhydrol.2009.08.003.
    Kling, H., Fuchs, M. and Paulin, M. (2012), Runoff conditions in the upper Danube basin
    under an ensemble of climate change scenarios, J. Hydrol. 424–425, 264–277,
    doi:10.1016/j.jhydrol.2012.01.011.
    Tang, G., Clark, M. P. and Papalexiou, S. M. (2021), SC-Earth: a station-based serially
    complete Earth dataset from 1950 to 2019, J. Climate 34(16), 6493–6511,
    doi:10.1175/JCLI-D-21-0067.1.
    """
    p, r, valid = _pair(pred, ref)
    m = _moments(p, r, valid.astype(np.float64), axis=0)
    undefined = m.flat_r
    sd_p, sd_r = np.sqrt(m.var_p), np.sqrt(m.var_r)
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.where(m.flat_p, 0.0, np.clip(m.cov / (sd_p * sd_r), -1.0, 1.0))
        alpha = np.where(m.flat_p, 0.0, sd_p / sd_r)
        beta = np.where(m.mean_r != 0, m.mean_p / m.mean_r, np.nan)
        beta_std = (m.mean_p - m.mean_r) / sd_r
    kge_ = 1.0 - np.sqrt((corr - 1.0) ** 2 + (alpha - 1.0) ** 2 + beta_std**2)
    parts = {"kge": kge_, "r": corr, "alpha": alpha, "beta": beta, "beta_std": beta_std}
    return {k: np.where(undefined, np.nan, v) for k, v in parts.items()}


def kge(pred: Any, ref: Any, weights: Any = None, *, reduce: Reduce = "median",
        part: str = "kge") -> float:
    """Per-unit KGE'' (:func:`kge_per_unit`) or one of its parts, reduced over units.

    Reduced like :func:`nse`: weighted median (default) or weighted mean over units with a
    defined value. Each part is reduced on its own, so the median ``r`` need not belong to the
    unit with the median KGE.

    Parameters
    ----------
    pred, ref
        ``(months, units)`` prediction and reference in mm.
    weights
        ``(units,)`` area weights (``None``: equal).
    reduce
        ``"median"`` or ``"mean"``.
    part
        ``"kge"``, ``"r"``, ``"alpha"``, ``"beta"`` or ``"beta_std"``.

    Returns
    -------
    float
    """
    if part not in KGE_PARTS:
        raise ValueError(f"part: expected one of {', '.join(KGE_PARTS)}, found {part!r}")
    p = _series(pred, "pred")
    return _reduce(kge_per_unit(p, ref)[part], _weights(weights, p.shape[1]), reduce)


def variance_kept(pred: Any, ref: Any, weights: Any = None) -> float:
    r"""Share of the reference's temporal variance kept by the prediction.

    For each unit, the ratio of variances over its finite pairs,
    :math:`v_i = \mathrm{var}_t(\hat y_i) / \mathrm{var}_t(y_i)`, then the area-weighted
    mean over units with a defined ratio: :math:`\sum w_i v_i / \sum w_i`. 1 is ideal;
    smoothing gives less than 1, noise more. The mean of ratios weighs a unit with a quiet
    reference as much as a loud one (and can be pulled up by near-constant references).

    Parameters
    ----------
    pred, ref
        ``(months, units)`` prediction and reference in mm.
    weights
        ``(units,)`` area weights (``None``: equal).

    Returns
    -------
    float
        The weighted mean ratio; NaN when no unit has reference variance and positive weight.
    """
    p, r, valid = _pair(pred, ref)
    m = _moments(p, r, valid.astype(np.float64), axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(m.flat_r, np.nan, m.var_p / m.var_r)
    return _weighted_mean(ratio, _weights(weights, p.shape[1]))


# ---- mascon-scale and sub-mascon scores -----------------------------------------------------
def _conservation_errors(pred_cells: Any, grace: Any, A: Any) -> np.ndarray:
    y = _series(pred_cells, "pred_cells")
    g = _series(grace, "grace")
    if A.shape != (g.shape[1], y.shape[1]) or g.shape[0] != y.shape[0]:
        raise ValueError(f"expected A of shape (mascons, cells) = ({g.shape[1]}, {y.shape[1]}) "
                         f"and {y.shape[0]} months of grace, found A {A.shape} and grace "
                         f"{g.shape}")
    # a cell that is NaN makes its mascon's mean NaN, so that (month, mascon) pair drops out
    return np.abs(np.asarray(kernels.apply_A(A, y)) - g)


def conservation_residual(pred_cells: Any, grace: Any, A: Any, weights: Any = None) -> float:
    r"""Mean absolute mascon-scale residual :math:`|A\hat y - g|` over finite pairs.

    .. math:: \frac{\sum_{t,m} w_m\, k_{tm}\, |(A \hat y_t)_m - g_{tm}|}
                   {\sum_{t,m} w_m\, k_{tm}}

    where :math:`k_{tm} = 1` when both the mascon mean of the prediction and GRACE are finite
    (months without GRACE drop out; a mascon with a NaN cell has no mean and drops out).

    Parameters
    ----------
    pred_cells
        ``(months, cells)`` prediction in mm.
    grace
        ``(months, mascons)`` GRACE anomalies in mm, NaN without GRACE.
    A
        ``(mascons, cells)`` row-normalised aggregation operator (sparse or dense).
    weights
        ``(mascons,)`` mascon weights (``None``: equal).

    Returns
    -------
    float
        Mean residual in mm (0 for an exactly conserving prediction); NaN with no pairs.
    """
    err = _conservation_errors(pred_cells, grace, A)
    ok = np.isfinite(err)
    w = ok * _weights(weights, err.shape[1])
    total = w.sum()
    return float((w * np.where(ok, err, 0.0)).sum() / total) if total > 0 else float("nan")


def conservation_residual_max(pred_cells: Any, grace: Any, A: Any, weights: Any = None
                              ) -> float:
    r"""Largest :math:`|(A\hat y)_{tm} - g_{tm}|` over finite pairs of mascons with positive
    weight (see :func:`conservation_residual`).

    Parameters
    ----------
    pred_cells, grace, A, weights
        As for :func:`conservation_residual`.

    Returns
    -------
    float
        Maximum residual in mm; NaN with no pairs.
    """
    err = _conservation_errors(pred_cells, grace, A)
    ok = np.isfinite(err) & (_weights(weights, err.shape[1]) > 0)
    return float(err[ok].max()) if ok.any() else float("nan")


class _Deviations(NamedTuple):
    dp: np.ndarray  # D ŷ, zero where not ok
    dr: np.ndarray  # D y
    ok: np.ndarray  # (month, cell) pairs where both deviations exist
    p: np.ndarray  # the fields themselves (zero-filled), whose size sets round-off
    r: np.ndarray


@_reused
def _deviations(pred_cells: Any, ref_cells: Any, A: Any, cell_mascon: Any) -> _Deviations:
    """Pairwise sub-mascon deviations ``D ŷ`` and ``D y`` and where both exist.

    Mascon means use ``A``'s weights renormalised over the cells valid in *both* fields that
    month, so a missing cell is the same as a cell outside the mascon; with no gaps this is
    :func:`twsbench.core.kernels.deviation` exactly. A field constant over each mascon (a spread of
    mascon values) has ``D x = 0`` only up to round-off of the field's size, so callers judge
    "no variance" against that size.
    """
    p, r, valid = _pair(pred_cells, ref_cells, "pred_cells", "ref_cells")
    cm = np.asarray(cell_mascon)
    if cm.shape != (p.shape[1],) or A.shape[1] != p.shape[1]:
        raise ValueError(f"expected cell_mascon of shape ({p.shape[1]},) and A with "
                         f"{p.shape[1]} columns, found {cm.shape} and {A.shape}")
    if valid.all():  # no gaps: D of each field alone (the same arrays as the inputs)
        dp = _field_deviation(A, cm, _series(pred_cells, "pred_cells"))
        dr = _field_deviation(A, cm, _series(ref_cells, "ref_cells"))
    else:
        share = np.asarray(kernels.apply_A(A, valid.astype(np.float64)))
        with np.errstate(invalid="ignore", divide="ignore"):
            mp = np.asarray(kernels.apply_A(A, p)) / share
            mr = np.asarray(kernels.apply_A(A, r)) / share
        dp = p - kernels.spread(cm, mp)
        dr = r - kernels.spread(cm, mr)
    ok = valid & np.isfinite(dp) & np.isfinite(dr)
    return _Deviations(np.where(ok, dp, 0.0), np.where(ok, dr, 0.0), ok, p, r)


@_reused
def _field_deviation(A: Any, cell_mascon: np.ndarray, x: np.ndarray) -> np.ndarray:
    return kernels.deviation(A, cell_mascon, x)


@_reused
def _deviation_moments(d: _Deviations, weights: Any, axis: int | None) -> _Moments:
    w = d.ok * _weights(weights, d.dp.shape[1])
    return _moments(d.dp, d.dr, w, axis, _scale(d.p, w, axis), _scale(d.r, w, axis))


def spatial_correlation(pred_cells: Any, ref_cells: Any, A: Any, cell_mascon: Any,
                        weights: Any = None) -> np.ndarray:
    r"""Per month, the area-weighted correlation over cells of the sub-mascon deviations.

    With :math:`D = I - EA` (remove each mascon's mean), month *t* scores
    :math:`\mathrm{corr}_w(D\hat y_t, D y_t)` over the cells finite in both fields (see the
    NaN note below). The deviations are blind to mascon means: adding any mascon-constant
    field to the prediction leaves the score unchanged. This scores the sub-mascon *pattern*
    only; mascon-scale skill is measured by the GRACE-agreement scores.

    Parameters
    ----------
    pred_cells, ref_cells
        ``(months, cells)`` prediction and reference in mm.
    A
        ``(mascons, cells)`` row-normalised aggregation operator.
    cell_mascon
        ``(cells,)`` index of each cell's mascon (row of ``A``).
    weights
        ``(cells,)`` area weights for the correlation (``None``: equal); the mascon means use
        ``A``'s own weights.

    Returns
    -------
    numpy.ndarray
        ``(months,)`` correlations; NaN for a month where either field has no sub-mascon
        variance (beyond round-off), e.g. for a prediction that spreads mascon values flat.

    Notes
    -----
    Pairwise NaN policy at cell level: a cell missing in either field that month is left out
    of the correlation *and* of its mascon's mean (``A``'s weights renormalised over the
    remaining cells), as if it were not in the domain.
    """
    return _correlation(_deviation_moments(_deviations(pred_cells, ref_cells, A, cell_mascon),
                                           weights, axis=1))


def mean_spatial_correlation(pred_cells: Any, ref_cells: Any, A: Any, cell_mascon: Any,
                             weights: Any = None) -> float:
    r"""Mean over months of :func:`spatial_correlation`, ignoring months where it is NaN.

    Each month is weighted by the total weight of the cells it scores (equal weights when every
    month is complete): :math:`\sum_t W_t c_t / \sum_t W_t`.

    Parameters
    ----------
    pred_cells, ref_cells, A, cell_mascon, weights
        As for :func:`spatial_correlation`.

    Returns
    -------
    float
        The mean correlation; NaN when no month has one.
    """
    m = _deviation_moments(_deviations(pred_cells, ref_cells, A, cell_mascon), weights, axis=1)
    return _weighted_mean(_correlation(m), m.weight)


def submascon_variance_ratio(pred_cells: Any, ref_cells: Any, A: Any, cell_mascon: Any,
                             weights: Any = None) -> float:
    r"""Weighted variance of :math:`D\hat y` over all (month, cell) pairs, divided by that of
    :math:`Dy`.

    .. math:: \frac{\mathrm{var}_w(D\hat y)}{\mathrm{var}_w(D y)}

    pooled over months × cells with pair weight :math:`w_i k_{ti}` (the deviations' weighted
    mean is 0 when ``weights`` are ``A``'s areas, so this is a ratio of mean squares). 1 is
    ideal; a prediction that spreads mascon values flat scores 0. Missing cells are handled as
    in :func:`spatial_correlation`.

    Parameters
    ----------
    pred_cells, ref_cells, A, cell_mascon, weights
        As for :func:`spatial_correlation`.

    Returns
    -------
    float
        The ratio; NaN when the reference has no sub-mascon variance.
    """
    m = _deviation_moments(_deviations(pred_cells, ref_cells, A, cell_mascon), weights,
                           axis=None)
    if m.flat_r:
        return float("nan")
    return 0.0 if m.flat_p else float(m.var_p / m.var_r)


def submascon_nse(pred_cells: Any, ref_cells: Any, A: Any, cell_mascon: Any,
                 weights: Any = None) -> float:
    r"""Skill below the mascon scale: the NSE of :math:`D\hat y` against :math:`D y`, pooled
    over all (month, cell) pairs.

    .. math:: 1 - \frac{\sum_{t,i} w_i k_{ti} (D\hat y_{ti} - D y_{ti})^2}
                       {\sum_{t,i} w_i k_{ti} (D y_{ti})^2}

    The benchmark is the zero deviation: a prediction flat over each mascon (the mascon
    product, or any spread of mascon values) scores exactly 0, a perfect sub-mascon pattern 1,
    a pattern of the wrong sign or size below 0. Blind to mascon means, so it scores only what
    downscaling adds. Missing cells are handled as in :func:`spatial_correlation`.

    Parameters
    ----------
    pred_cells, ref_cells, A, cell_mascon, weights
        As for :func:`spatial_correlation`.

    Returns
    -------
    float
        The NSE; NaN when the reference has no sub-mascon variance.
    """
    d = _deviations(pred_cells, ref_cells, A, cell_mascon)
    m = _deviation_moments(d, weights, axis=None)
    if m.flat_r:
        return float("nan")
    if m.flat_p:  # round-off of a flat field: no pattern at all
        return 0.0
    w = d.ok * _weights(weights, d.dp.shape[1])
    return float(1.0 - (w * (d.dp - d.dr) ** 2).sum() / (w * d.dr**2).sum())


# ---- trends and the annual cycle ------------------------------------------------------------
@_reused
def trend_per_unit(x: Any, years: Any) -> np.ndarray:
    r"""Least-squares linear trend of each unit over its finite months.

    .. math:: b_i = \frac{\sum_t m_{ti} (t - \bar t_i)(x_{ti} - \bar x_i)}
                         {\sum_t m_{ti} (t - \bar t_i)^2}

    with means over the unit's own finite months (NaN months are ignored per unit).
    Equals :func:`numpy.polyfit` of degree 1 on the finite months.

    Parameters
    ----------
    x
        ``(months, units)`` values in mm.
    years
        ``(months,)`` time in years (decimal years), or ``datetime64`` months.

    Returns
    -------
    numpy.ndarray
        ``(units,)`` trends in mm/yr; NaN where a unit has fewer than 2 finite months.
    """
    v = _series(x, "x")
    t = _time(years, v.shape[0], "years", per_year=True)
    tt = np.broadcast_to(t[:, None], v.shape)
    valid = np.isfinite(v) & np.isfinite(tt)
    m = _moments(np.where(valid, tt, 0.0), np.where(valid, v, 0.0), valid.astype(np.float64),
                 axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(m.flat_p, np.nan, m.cov / m.var_p)


def submascon_trend_error(pred_cells: Any, ref_cells: Any, A: Any, cell_mascon: Any,
                          years: Any, weights: Any = None) -> float:
    r"""Area-weighted RMS difference of the trends of :math:`D\hat y` and :math:`D y`: the
    error of a cell's trend relative to its mascon's, which the mascon product cannot have.

    Parameters
    ----------
    pred_cells, ref_cells, A, cell_mascon
        As for :func:`spatial_correlation`.
    years
        As for :func:`trend_per_unit`.
    weights
        ``(cells,)`` area weights; zero leaves a cell out (e.g. all but the hotspot cells).

    Returns
    -------
    float
        RMS trend error in mm/yr; NaN when no cell with weight has both trends.
    """
    d = _deviations(pred_cells, ref_cells, A, cell_mascon)
    w = _weights(weights, d.dp.shape[1])
    cells = np.flatnonzero(w > 0)  # trends are per cell: only the weighted cells count
    dp = np.where(d.ok[:, cells], d.dp[:, cells], np.nan)
    dr = np.where(d.ok[:, cells], d.dr[:, cells], np.nan)
    diff2 = (trend_per_unit(dp, years) - trend_per_unit(dr, years)) ** 2
    return float(np.sqrt(_weighted_mean(diff2, w[cells])))


def trend_error(pred: Any, ref: Any, years: Any, weights: Any = None) -> float:
    r"""Area-weighted RMS difference of per-unit trends.

    Trends (:func:`trend_per_unit`) of prediction and reference are fitted over the *same*
    months (pairwise masking), then :math:`\sqrt{\sum w_i (b_i - \hat b_i)^2 / \sum w_i}`
    over units where both are defined.

    Parameters
    ----------
    pred, ref
        ``(months, units)`` prediction and reference in mm.
    years
        ``(months,)`` time in years, or ``datetime64`` months (see
        :func:`trend_per_unit`).
    weights
        ``(units,)`` area weights (``None``: equal).

    Returns
    -------
    float
        RMS trend error in mm/yr; NaN when no unit has both trends.
    """
    p, r, valid = _pair(pred, ref)
    p, r = _masked(p, r, valid)
    diff2 = (trend_per_unit(p, years) - trend_per_unit(r, years)) ** 2
    return float(np.sqrt(_weighted_mean(diff2, _weights(weights, p.shape[1]))))


class AnnualCycle(NamedTuple):
    """Annual harmonic of each unit: ``amplitude`` (mm) and ``phase`` (month of peak, [0, 12);
    0 = January, 1 = February, …, fractional between)."""

    amplitude: np.ndarray
    phase: np.ndarray


_N_COEF = 6  # mean, trend, annual cos/sin, semiannual cos/sin
#: Smallest eigenvalue of the normal matrix, relative to the largest, for a determined fit.
_RANK_TOL = 1e-10


def annual_harmonic(x: Any, months: Any) -> AnnualCycle:
    r"""Amplitude and phase of the annual harmonic from a least-squares fit per unit.

    Over each unit's finite months, fits

    .. math:: x(t) = a + b\,t + c_1 \cos\omega t + s_1 \sin\omega t
                     + c_2 \cos 2\omega t + s_2 \sin 2\omega t, \quad \omega = 2\pi/12

    with *t* in months, and returns :math:`A = \sqrt{c_1^2 + s_1^2}` and the month of the
    annual peak :math:`\varphi = (\operatorname{atan2}(s_1, c_1)/\omega) \bmod 12`, so
    :math:`c_1\cos\omega t + s_1\sin\omega t = A\cos\omega(t - \varphi)`. Fitting the trend
    and semiannual terms together keeps them out of the annual term on gappy series. Each
    monthly value is placed at its month's index (``t mod 12 = 0`` is January).

    Parameters
    ----------
    x
        ``(months, units)`` values in mm.
    months
        ``(months,)`` ``datetime64`` months, or month numbers with ``t mod 12 = 0`` January
        (e.g. months since 1970-01).

    Returns
    -------
    AnnualCycle
        ``(units,)`` ``amplitude`` (mm) and ``phase`` (months in [0, 12)); NaN where a unit's
        finite months cannot determine the six coefficients.
    """
    v = _series(x, "x")
    t = _time(months, v.shape[0], "months", per_year=False)
    valid = np.isfinite(v) & np.isfinite(t)[:, None]
    tc = np.where(np.isfinite(t), t, 0.0)
    t0 = tc[np.isfinite(t)].mean() if np.isfinite(t).any() else 0.0
    design = np.stack([np.ones_like(tc), (tc - t0) / _YEAR,
                       np.cos(_OMEGA * tc), np.sin(_OMEGA * tc),
                       np.cos(2 * _OMEGA * tc), np.sin(2 * _OMEGA * tc)], axis=1)
    # normal equations of every unit at once: G_i = Xᵀ diag(m_i) X and b_i = Xᵀ (m_i x_i)
    n_units = v.shape[1]
    outer = (design[:, :, None] * design[:, None, :]).reshape(design.shape[0], -1)
    gram = (valid.T.astype(np.float64) @ outer).reshape(n_units, _N_COEF, _N_COEF)
    rhs = np.where(valid, v, 0.0).T @ design
    eig = np.linalg.eigvalsh(gram)  # ascending; too few or aliased months leave G singular
    solvable = eig[:, 0] > _RANK_TOL * eig[:, -1]
    gram[~solvable] = np.eye(_N_COEF)
    coef = np.linalg.solve(gram, rhs[..., None])[..., 0].T
    coef[:, ~solvable] = np.nan
    c1, s1 = coef[2], coef[3]
    phase = np.mod(np.arctan2(s1, c1) / _OMEGA, _YEAR)
    phase = np.where(phase >= _YEAR, phase - _YEAR, phase)  # mod can round up to 12.0
    return AnnualCycle(amplitude=np.hypot(c1, s1), phase=phase)


@_reused
def _annual_pair(pred: Any, ref: Any, months: Any) -> tuple[AnnualCycle, AnnualCycle]:
    p, r, valid = _pair(pred, ref)
    p, r = _masked(p, r, valid)
    return annual_harmonic(p, months), annual_harmonic(r, months)


def annual_amplitude_error(pred: Any, ref: Any, months: Any, weights: Any = None) -> float:
    r"""Area-weighted mean absolute difference of annual amplitudes.

    Both series are fitted (:func:`annual_harmonic`) over the same finite months of each unit,
    then :math:`\sum w_i |\hat A_i - A_i| / \sum w_i` over units where both are defined.

    Parameters
    ----------
    pred, ref
        ``(months, units)`` prediction and reference in mm.
    months
        ``(months,)`` months (see :func:`annual_harmonic`).
    weights
        ``(units,)`` area weights (``None``: equal).

    Returns
    -------
    float
        Mean amplitude error in mm.
    """
    hp, hr = _annual_pair(pred, ref, months)
    return _weighted_mean(np.abs(hp.amplitude - hr.amplitude),
                          _weights(weights, hp.amplitude.size))


def annual_phase_error(pred: Any, ref: Any, months: Any, weights: Any = None) -> float:
    r"""Area-weighted mean absolute circular difference of annual phases, in months.

    Per unit :math:`d_i = \min(|\hat\varphi_i - \varphi_i| \bmod 12,\;
    12 - |\hat\varphi_i - \varphi_i| \bmod 12) \in [0, 6]`, then
    :math:`\sum w_i d_i / \sum w_i` over units where both phases are defined. Phases are
    not weighted by amplitude, so units with a weak annual cycle count fully.

    Parameters
    ----------
    pred, ref
        ``(months, units)`` prediction and reference in mm.
    months
        ``(months,)`` months (see :func:`annual_harmonic`).
    weights
        ``(units,)`` area weights (``None``: equal).

    Returns
    -------
    float
        Mean phase error in months, in [0, 6].
    """
    hp, hr = _annual_pair(pred, ref, months)
    d = np.mod(np.abs(hp.phase - hr.phase), _YEAR)
    return _weighted_mean(np.minimum(d, _YEAR - d), _weights(weights, d.size))


# ---- registry -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Metric:
    """A registered scalar score.

    Attributes
    ----------
    name
        The registry name (snake_case).
    func
        The function computing the score; called with the inputs named in ``needs``.
    higher_is_better
        ``True`` (NSE, KGE, r), ``False`` (errors), or ``None`` when the best value is
        ``ideal`` and both sides of it are worse (bias, variance ratios, KGE's α and β).
    ideal
        The perfect score.
    needs
        Names of the inputs ``func`` takes, in order (its positional parameters), e.g.
        ``("pred", "ref", "weights")`` or ``("pred_cells", "grace", "A", "weights")``.
    """

    name: str
    func: Callable[..., float]
    higher_is_better: bool | None
    ideal: float
    needs: tuple[str, ...]

    def __call__(self, *args: Any, **kwargs: Any) -> float:
        return self.func(*args, **kwargs)

    def loss(self, value: float) -> float:
        """Distance from :attr:`ideal`, so that smaller is better for every metric."""
        if self.higher_is_better is None:
            return abs(value - self.ideal)
        return self.ideal - value if self.higher_is_better else value - self.ideal


#: The scalar scores, by name.
METRICS: Registry[Metric] = Registry("metric")


def _add(name: str, func: Callable[..., Any], higher_is_better: bool | None, ideal: float,
         **fixed: Any) -> None:
    needs = tuple(p.name for p in inspect.signature(func).parameters.values()
                  if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD)
    call = functools.partial(func, **fixed) if fixed else func
    METRICS.register(name)(Metric(name, call, higher_is_better, ideal, needs))


_add("rmse", rmse, False, 0.0)
_add("bias", bias, None, 0.0)
_add("pearson_r", pearson_r, True, 1.0)
_add("nse", nse, True, 1.0, reduce="median")
_add("nse_mean", nse, True, 1.0, reduce="mean")
_add("kge", kge, True, 1.0, part="kge")
_add("kge_r", kge, True, 1.0, part="r")
_add("kge_alpha", kge, None, 1.0, part="alpha")
_add("kge_beta_std", kge, None, 0.0, part="beta_std")
_add("variance_kept", variance_kept, None, 1.0)
_add("conservation_residual", conservation_residual, False, 0.0)
_add("conservation_residual_max", conservation_residual_max, False, 0.0)
_add("mean_spatial_correlation", mean_spatial_correlation, True, 1.0)
_add("submascon_variance_ratio", submascon_variance_ratio, None, 1.0)
_add("submascon_nse", submascon_nse, True, 1.0)
_add("trend_error", trend_error, False, 0.0)
_add("submascon_trend_error", submascon_trend_error, False, 0.0)
_add("annual_amplitude_error", annual_amplitude_error, False, 0.0)
_add("annual_phase_error", annual_phase_error, False, 0.0)
