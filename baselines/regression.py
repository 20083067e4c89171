"""Baselines from the models' anomalies alone: WaterGAP as it is, and a per-mascon linear
regression of GRACE on WaterGAP, ERA5 storage, the seasonal cycle and a trend.

Neither reads GRACE when predicting, so both predict every month (GRACE gaps too).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from twsbench.core import kernels
from twsbench.core.errors import ConfigError
from twsbench.downscaling.contract import DOWNSCALERS, Base
from twsbench.prepare.grids import Grids

#: the regression's predictors, in the order of its coefficients
COLUMNS = ("wghm", "era5_storage", "sin_annual", "cos_annual", "sin_semiannual",
           "cos_semiannual", "trend", "intercept")
#: the trend's origin: years are counted from here (mid GRACE era, which keeps the trend and
#: the intercept nearly uncorrelated)
TREND_ORIGIN = np.datetime64("2012-01", "M")
#: a mascon needs at least this many finite GRACE training months for its own coefficients
MIN_MONTHS = len(COLUMNS)


def _temporal(months: np.ndarray) -> np.ndarray:
    """``(months, 5)``: annual and semi-annual harmonics and years since :data:`TREND_ORIGIN`."""
    months = np.asarray(months, dtype="datetime64[M]")
    since = (months - TREND_ORIGIN).astype(np.int64).astype(np.float64)  # months
    phase = 2 * np.pi * np.mod(since, 12) / 12  # the origin is a January: 0 is January
    return np.stack([np.sin(phase), np.cos(phase), np.sin(2 * phase), np.cos(2 * phase),
                     since / 12], axis=1)


def _wghm(grids: Grids, months: np.ndarray) -> np.ndarray:
    return grids.fields["wghm"][grids.month_index(months)].astype(np.float64)


@DOWNSCALERS.register("wghm_anomaly")
class WghmAnomaly(Base):
    """WaterGAP's TWS anomaly as it is, in every month: the model prior, no GRACE at all."""

    def predict_cells(self, grids: Grids, months: np.ndarray) -> np.ndarray:
        return _wghm(grids, months)


def _solve(xtx: np.ndarray, xty: np.ndarray, ridge: float) -> np.ndarray:
    """``(xtx + ridge·D) β = xty`` for a stack of normal equations ``(..., p, p)``, with ``D``
    the diagonal of ``xtx`` (floored, so that an all-zero predictor gets a coefficient 0
    instead of a singular system): a ridge that is the same relative to every column's
    scale."""
    diag = np.diagonal(xtx, axis1=-2, axis2=-1)
    floor = np.finfo(np.float64).tiny + 1e-12 * diag.max(axis=-1, keepdims=True)
    reg = ridge * np.maximum(diag, floor)
    lhs = xtx + reg[..., :, None] * np.eye(xtx.shape[-1])
    return np.linalg.solve(lhs, xty[..., None])[..., 0]


@DOWNSCALERS.register("mascon_regression")
class MasconRegression(Base):
    """GRACE regressed, in each mascon, on its WaterGAP and ERA5 storage means, annual and
    semi-annual harmonics, a linear trend and an intercept (:data:`COLUMNS`), by least squares
    over the training months with GRACE; a cell gets its mascon's coefficients times its own
    predictors, in every month (GRACE is not read when predicting).

    The normal equations of all mascons are solved at once, with a ridge of ``ridge`` times
    each column's own sum of squares (scale-free; ``1e-6`` only keeps them solvable). The
    trend counts years from :data:`TREND_ORIGIN`.

    Fallback: a mascon with fewer than :data:`MIN_MONTHS` (8, the number of coefficients)
    finite GRACE values in the training months gets the coefficients of the regression pooled
    over all mascons (every finite (mascon, month) pair of the training months).

    Raises
    ------
    ConfigError
        For a negative ``ridge``.
    ValueError
        From ``fit``, when the training months hold fewer than :data:`MIN_MONTHS` finite GRACE
        values in all (nothing to fit).
    """

    defaults: ClassVar[dict[str, Any]] = {"ridge": 1e-6}

    def __init__(self, seed: int = 0, device: str = "cpu", **params: Any):
        super().__init__(seed, device, **params)
        if not self.params["ridge"] >= 0:
            raise ConfigError(f"[models.params.{self.name}] ridge: expected a number >= 0, "
                              f"found {self.params['ridge']!r}")
        self.coef: np.ndarray | None = None  # (mascons, len(COLUMNS))
        self.pooled: np.ndarray | None = None  # mascons that got the pooled coefficients

    def fit(self, grids: Grids, months: np.ndarray) -> None:
        months = np.asarray(months, dtype="datetime64[M]")
        pos = grids.month_index(months)
        pos, months = pos[grids.has_grace[pos]], months[grids.has_grace[pos]]
        A = grids.mascons.A
        t, n = pos.size, grids.n_mascons
        x = np.empty((t, n, len(COLUMNS)))
        x[:, :, 0] = kernels.apply_A(A, grids.fields["wghm"][pos].astype(np.float64))
        x[:, :, 1] = kernels.apply_A(A, grids.fields["era5_storage"][pos].astype(np.float64))
        x[:, :, 2:7] = _temporal(months)[:, None, :]  # A averages a constant to itself
        x[:, :, 7] = 1.0
        y = np.asarray(grids.grace[pos], dtype=np.float64)  # (months, mascons)
        ok = np.isfinite(y) & np.isfinite(x).all(axis=2)
        x = np.where(ok[:, :, None], x, 0.0)  # a left-out pair adds nothing to the sums
        y = np.where(ok, y, 0.0)
        xtx = np.einsum("tmi,tmj->mij", x, x)
        xty = np.einsum("tmi,tm->mi", x, y)
        count = ok.sum(axis=0)
        if count.sum() < MIN_MONTHS:
            raise ValueError(f"{self.name}: expected at least {MIN_MONTHS} finite GRACE values "
                             f"in the training months, found {int(count.sum())}")
        ridge = self.params["ridge"]
        self.pooled = pooled = count < MIN_MONTHS
        coef = np.empty((n, len(COLUMNS)))
        coef[~pooled] = _solve(xtx[~pooled], xty[~pooled], ridge)
        if pooled.any():
            coef[pooled] = _solve(xtx.sum(axis=0), xty.sum(axis=0), ridge)
        self.coef = coef

    def predict_cells(self, grids: Grids, months: np.ndarray) -> np.ndarray:
        if self.coef is None:
            raise RuntimeError(f"{self.name}: predict called before fit")
        months = np.asarray(months, dtype="datetime64[M]")
        pos = grids.month_index(months)
        c = self.coef[grids.mascons.cell_mascon]  # (cells, coefficients)
        out = _temporal(months) @ c[:, 2:7].T + c[:, 7]
        out += c[:, 0] * grids.fields["wghm"][pos].astype(np.float64)
        out += c[:, 1] * grids.fields["era5_storage"][pos].astype(np.float64)
        return out
