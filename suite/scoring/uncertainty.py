"""A calibrated 1-σ for every downscaler, cell and month, and the scores of it.

The predictive standard deviation of a model's seed-ensemble mean ``μ`` is::

    σ² = s² + [GRACE used] · σ_G² + exp(x · β_r)

- ``s²``: the variance across the model's seeds (ddof=1; zero for a model that runs once);
- ``σ_G²``: GRACE's 1-σ of the cell's mascon, squared, in months whose GRACE the model
  uses (its prediction changes when the month's GRACE is hidden, see :func:`uses_grace`);
- ``exp(x · β_r)``: the disaggregation term, what putting a mascon's mass into its cells
  (and, without GRACE, predicting the mascon) gets wrong. ``x`` are per-cell predictors
  from what the inputs say about the cell (:data:`PREDICTORS`):

  * ``mascon_trend_misfit``: log(1 + τ²), τ the trend (mm/yr) of the cell's mascon's GRACE
    minus WaterGAP over the months with GRACE. A trend the model misses at the mascon scale
    (depletion, glaciers, reservoirs) is a sign of sub-mascon change no input shows;
  * ``mascon_misfit_variance``: log of the variance of that difference after its trend;
  * ``wghm_submascon_variance``, ``era5_submascon_variance``: log(1 + mean square of the
    source's sub-mascon deviation ``D x``) over the training months.

  ``β_r`` is fitted for each regime ``r`` (``grace``: months with GRACE that the model uses;
  ``nograce``: months without) by maximising the Gaussian likelihood of the ensemble mean's
  errors on the validation months, cell-area weighted, with ``s²`` and ``σ_G²`` held fixed.
  The ``nograce`` errors come from predicting the validation months with their GRACE hidden.

On the twin the errors are against the truth, read here, by scoring code, never by a
downscaler: the validation months the term is fitted on are neither test task's months, and
the downscalers' predictions do not depend on it. Without a truth (real files) the term is
not fitted and the run scores no uncertainty.

Scores (:func:`score`), per task split and region (``domain``, ``hotspots``): the coverage of
±1σ and ±2σ and of central intervals at :data:`LEVELS`, the spread–skill ratio
``sqrt(mean σ²) / RMSE`` and the Gaussian CRPS (closed form, ``properscoring``), all
cell-area weighted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import optimize, special

from twsbench.core import kernels
from twsbench.prepare.grids import Grids
from twsbench.scoring.metrics import trend_per_unit

PREDICTORS = ("intercept", "mascon_trend_misfit", "mascon_misfit_variance",
              "wghm_submascon_variance", "era5_submascon_variance")
REGIMES = ("grace", "nograce")
LEVELS = (10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 98)  # central intervals, % nominal
UNCERTAINTY_COLUMNS = ("run_id", "model", "members", "split", "region", "metric", "value")
SCORED_SPLITS = ("downscale", "gapfill", "gapfill_withheld", "gapfill_nograce")
FORMULA = ("sigma^2 = s^2 + [GRACE used] * sigma_G^2 + exp(x . beta_r): s the seed spread "
           "(ddof=1), sigma_G GRACE's 1-sigma of the mascon in months whose GRACE the model "
           "uses, x the cell's predictors " + ", ".join(PREDICTORS[1:]) + ", beta_r fitted "
           "per regime (grace, nograce) on the validation months by Gaussian likelihood")
_TOL = 1e-6  # mm: predictions that differ by less did not use the month's GRACE


def _years(months: np.ndarray) -> np.ndarray:
    return 1970.0 + (np.asarray(months, "datetime64[M]").astype(int) + 0.5) / 12.0


def predictors(grids: Grids) -> np.ndarray:
    """``(cells, len(PREDICTORS))``: the per-cell predictors of the disaggregation term, from
    the GRACE the grids show (months with ``has_grace``) and the sources' fields."""
    m = grids.mascons
    has = grids.has_grace
    misfit = grids.grace[has] - kernels.apply_A(m.A, grids.fields["wghm"][has])
    years = _years(grids.months[has])
    tau = trend_per_unit(misfit, years)  # mm/yr per mascon
    tau = np.where(np.isfinite(tau), tau, 0.0)
    resid = misfit - np.outer(years - years.mean(), tau)
    var = np.maximum(np.var(resid - resid.mean(axis=0), axis=0), 1.0)
    train = grids.splits["train"]
    sub = {}
    for name in ("wghm", "era5_storage"):
        d = kernels.deviation(m.A, m.cell_mascon, grids.fields[name][train])
        sub[name] = np.log1p(np.mean(d**2, axis=0))
    cm = m.cell_mascon
    return np.stack([np.ones(grids.n_cells), np.log1p(tau**2)[cm], np.log(var)[cm],
                     sub["wghm"], sub["era5_storage"]], axis=1)


@dataclass
class Calibration:
    """The disaggregation term of one model: per regime, the coefficients of the
    standardised predictors (``scale``/``shift`` standardise every column but the intercept).
    ``uses_grace``: whether the model's predictions depend on the month's GRACE; ``regimes``
    holds only the regimes the model has (a model that needs GRACE: ``grace`` only)."""

    uses_grace: bool
    shift: list[float]
    scale: list[float]
    regimes: dict[str, list[float]] = field(default_factory=dict)
    fitted_on: int = 0  # validation months

    def term(self, x: np.ndarray, regime: str) -> np.ndarray:
        """``exp(x · β)`` per cell, mm²."""
        z = (x - np.asarray(self.shift)) / np.asarray(self.scale)
        return np.exp(np.clip(z @ np.asarray(self.regimes[regime]), -50.0, 50.0))

    def sigma(self, grids: Grids, x: np.ndarray, spread: np.ndarray) -> np.ndarray:
        """``(months, cells)`` 1-σ of every month of ``grids`` (NaN where the model has no
        regime for the month: a model that needs GRACE, in a month without)."""
        has = grids.has_grace
        out = np.full(spread.shape, np.nan)
        sigma_g = grids.grace_sigma[:, grids.cell_mascon]
        for regime, months in (("grace", has & self.uses_grace),
                               ("nograce", ~(has & self.uses_grace))):
            if regime not in self.regimes or not months.any():
                continue
            var = spread[months] ** 2 + self.term(x, regime)[None]
            if regime == "grace":
                var = var + sigma_g[months] ** 2
            out[months] = np.sqrt(var)
        return out

    def as_dict(self) -> dict:
        return {"uses_grace": self.uses_grace, "predictors": list(PREDICTORS),
                "shift": self.shift, "scale": self.scale, "regimes": self.regimes,
                "fitted_on": self.fitted_on, "formula": FORMULA}

    @classmethod
    def from_dict(cls, d: dict) -> Calibration:
        if list(d.get("predictors", [])) != list(PREDICTORS):
            raise ValueError(f"expected the predictors {list(PREDICTORS)}, found "
                             f"{d.get('predictors')}")
        return cls(bool(d["uses_grace"]), list(d["shift"]), list(d["scale"]),
                   {k: list(v) for k, v in d["regimes"].items()}, int(d.get("fitted_on", 0)))


def uses_grace(visible: np.ndarray, hidden: np.ndarray) -> bool:
    """Whether predictions of the same months differ with and without their GRACE."""
    ok = np.isfinite(visible) & np.isfinite(hidden)
    return bool(np.any(np.abs(visible[ok] - hidden[ok]) > _TOL)) or not ok.all()


def fit_term(x: np.ndarray, err: np.ndarray, base: np.ndarray, weights: np.ndarray
             ) -> list[float]:
    """β maximising the weighted Gaussian likelihood of ``err ~ N(0, base + exp(x · β))``.

    ``x`` is ``(cells, k)`` (standardised, column 0 the intercept); ``err`` and ``base`` are
    ``(months, cells)``; ``weights`` ``(cells,)``. Non-finite errors are left out."""
    ok = np.isfinite(err) & np.isfinite(base)
    w = np.where(ok, weights[None, :], 0.0)
    w = w / w.sum()
    e2 = np.where(ok, err, 0.0) ** 2
    b = np.where(ok, base, 0.0)

    def nll(beta: np.ndarray) -> tuple[float, np.ndarray]:
        d = np.exp(np.clip(x @ beta, -50.0, 50.0))[None, :]
        v = b + d
        f = float(np.sum(w * (np.log(v) + e2 / v)))
        g = (w * d * (1.0 / v - e2 / v**2)).sum(axis=0) @ x
        return f, g

    beta0 = np.zeros(x.shape[1])
    beta0[0] = np.log(max(float(np.sum(w * (e2 - b))), 1.0))
    res = optimize.minimize(nll, beta0, jac=True, method="L-BFGS-B")
    return [float(v) for v in res.x]


def calibrate(grids: Grids, mean: np.ndarray, spread: np.ndarray, hidden: np.ndarray | None,
              hidden_spread: np.ndarray | None, truth: np.ndarray) -> Calibration:
    """Fit the disaggregation term of one model on the validation months.

    ``mean``/``spread``: the ensemble over every month of ``grids`` (GRACE as the model saw
    it); ``hidden``/``hidden_spread``: the ensemble over the validation months predicted with
    their GRACE hidden (None for a model that needs GRACE)."""
    val = grids.splits["validation"]
    x = predictors(grids)
    shift = np.r_[0.0, x[:, 1:].mean(axis=0)]
    scale = np.r_[1.0, np.maximum(x[:, 1:].std(axis=0), 1e-9)]
    z = (x - shift) / scale
    w = grids.cell_area
    # a model that needs GRACE uses it; another, where hiding it changes its prediction
    used = hidden is None or uses_grace(mean[val], hidden)
    cal = Calibration(used, shift.tolist(), scale.tolist(), fitted_on=int(val.sum()))
    sigma_g2 = grids.grace_sigma[val][:, grids.cell_mascon] ** 2
    if used:  # the validation months' errors with GRACE
        cal.regimes["grace"] = fit_term(z, mean[val] - truth[val], spread[val] ** 2
                                        + sigma_g2, w)
    if hidden is not None:
        assert hidden_spread is not None
        cal.regimes["nograce"] = fit_term(z, hidden - truth[val], hidden_spread**2, w)
    return cal


def crps_gaussian(err: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """CRPS of N(μ, σ²) at an observation ``μ + err`` (``properscoring``'s closed form)."""
    import properscoring

    return properscoring.crps_gaussian(err, 0.0, sigma)


def _weighted(values: np.ndarray, w: np.ndarray) -> float:
    total = w.sum()
    return float((values * w).sum() / total) if total > 0 else float("nan")


def interval_scores(err: np.ndarray, sigma: np.ndarray, weights: np.ndarray) -> dict[str, float]:
    """Coverage, spread–skill, CRPS, RMSE and mean σ of ``err`` with 1-σ ``sigma`` (same
    shape; ``weights`` broadcast to it); entries where either is NaN are left out."""
    ok = np.isfinite(err) & np.isfinite(sigma)
    w = np.where(ok, np.broadcast_to(weights, err.shape), 0.0)
    if w.sum() <= 0:
        return {}
    e = np.where(ok, err, 0.0)
    s = np.where(ok, sigma, 1.0)
    z = np.abs(e) / np.maximum(s, 1e-12)
    out = {"coverage_1sigma": _weighted(z <= 1.0, w), "coverage_2sigma": _weighted(z <= 2.0, w)}
    for level in LEVELS:
        k = special.ndtri(0.5 + level / 200.0)
        out[f"coverage_{level}"] = _weighted(z <= k, w)
    mse, var = _weighted(e**2, w), _weighted(s**2, w)
    out["rmse"] = float(np.sqrt(mse))
    out["mean_sigma"] = float(np.sqrt(var))
    out["spread_skill"] = float(np.sqrt(var / mse)) if mse > 0 else float("nan")
    out["crps"] = _weighted(crps_gaussian(e, s), w)
    return out


def score(grids: Grids, mean: np.ndarray, sigma: np.ndarray, truth: np.ndarray,
          hot: np.ndarray | None) -> list[tuple[str, str, str, float]]:
    """``(split, region, metric, value)`` rows of every task split, for the domain and
    (when given) the hotspot cells."""
    rows = []
    for split in SCORED_SPLITS:
        months = grids.splits.get(split)
        if months is None or not months.any():
            continue
        err, sig = mean[months] - truth[months], sigma[months]
        regions = {"domain": grids.cell_area}
        if hot is not None and hot.any():
            regions["hotspots"] = grids.cell_area * hot
        for region, w in regions.items():
            for metric, value in interval_scores(err, sig, w).items():
                rows.append((split, region, metric, value))
    return rows


class Accumulator:
    """One model's seed ensemble, built a member at a time: the running mean and the sum of
    squared deviations (Welford) of its predictions of every month and of the validation
    months with their GRACE hidden."""

    def __init__(self) -> None:
        self.n = 0
        self._mean: np.ndarray | None = None
        self._m2: np.ndarray | None = None
        self._hmean: np.ndarray | None = None
        self._hm2: np.ndarray | None = None

    @staticmethod
    def _update(n: int, mean, m2, x):
        if mean is None:
            return x.astype(np.float64).copy(), np.zeros(x.shape)
        delta = x - mean
        mean = mean + delta / n
        m2 = m2 + delta * (x - mean)
        return mean, m2

    def add(self, cells: np.ndarray, hidden: np.ndarray | None) -> None:
        self.n += 1
        self._mean, self._m2 = self._update(self.n, self._mean, self._m2, cells)
        if hidden is not None:
            self._hmean, self._hm2 = self._update(self.n, self._hmean, self._hm2, hidden)

    def _spread(self, m2: np.ndarray) -> np.ndarray:
        return np.sqrt(m2 / (self.n - 1)) if self.n > 1 else np.zeros_like(m2)

    @property
    def mean(self) -> np.ndarray:
        assert self._mean is not None
        return self._mean

    @property
    def spread(self) -> np.ndarray:
        assert self._m2 is not None
        return self._spread(self._m2)

    @property
    def hidden(self) -> tuple[np.ndarray | None, np.ndarray | None]:
        if self._hmean is None or self._hm2 is None:
            return None, None
        return self._hmean, self._spread(self._hm2)


def hide_validation(grids: Grids) -> Grids:
    """The grids with the validation months' GRACE hidden (see
    :meth:`twsbench.prepare.grids.Grids.withhold`): what a model predicts there without GRACE."""
    return grids.withhold(grids.splits["validation"])[0]


def evaluate(grids: Grids, acc: Accumulator, truth: np.ndarray, hot: np.ndarray | None
             ) -> tuple[Calibration, np.ndarray, list[tuple[str, str, str, float]]]:
    """Calibrate one model's ensemble and score its σ: ``(calibration, sigma, rows)``."""
    hidden, hidden_spread = acc.hidden
    cal = calibrate(grids, acc.mean, acc.spread, hidden, hidden_spread, truth)
    sigma = cal.sigma(grids, predictors(grids), acc.spread)
    return cal, sigma, score(grids, acc.mean, sigma, truth, hot)
