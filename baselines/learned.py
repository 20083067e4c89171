"""The classical learned recipe: random forest and LightGBM.

1. Predictors (WaterGAP TWSA, ERA5 storage, P, E, R, T2m anomalies; latitude, longitude;
   month of year; time index) are aggregated to mascons with ``A``.
2. A regressor is fitted on (mascon, month) pairs of the training months with GRACE's mascon
   value as the target.
3. It predicts every 0.5° cell from the cells' own predictors, in every month alike.

The month's GRACE enters only through a wrapper: ``lightgbm+residual`` adds the interpolated
coarse residual (GRACE − the prediction's mascon means) in months with GRACE
(:mod:`twsbench.downscaling.wrappers`), so the plain and the residual versions are scored
from one fit.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from twsbench.core import kernels, threads
from twsbench.downscaling.contract import DOWNSCALERS, Base, Range, SearchSpace
from twsbench.prepare.grids import FIELDS, Grids

PREDICTORS = (*FIELDS, "lat", "lon", "sin_month", "cos_month", "time_index")


def _design(grids: Grids, months: np.ndarray, level: str) -> np.ndarray:
    """Predictor matrix, rows ordered month-major: ``(months × units, predictors)``."""
    pos = grids.month_index(months)
    m = grids.mascons
    dynamic = np.stack([grids.fields[k][pos] for k in FIELDS], axis=1)  # (t, f, cells)
    if level == "mascon":
        dynamic = np.stack([kernels.apply_A(m.A, dynamic[:, k]) for k in range(len(FIELDS))],
                           axis=1)
        lat, lon = m.centroids(grids.cell_lat, grids.cell_lon)
    else:
        lat, lon = grids.cell_lat, grids.cell_lon
    t, _, n = dynamic.shape
    moy = months.astype(int) % 12
    index = (grids.months[0].astype(int), grids.months[-1].astype(int))
    time_index = (months.astype(int) - index[0]) / max(1, index[1] - index[0])
    columns = [dynamic[:, k] for k in range(len(FIELDS))] + [
        np.broadcast_to(lat, (t, n)), np.broadcast_to(lon, (t, n)),
        np.broadcast_to(np.sin(2 * np.pi * moy / 12)[:, None], (t, n)),
        np.broadcast_to(np.cos(2 * np.pi * moy / 12)[:, None], (t, n)),
        np.broadcast_to(time_index[:, None], (t, n)),
    ]
    return np.stack([c.reshape(-1) for c in columns], axis=1).astype(np.float32)


class Learned(Base):
    """Shared fit/predict of the tree ensembles; subclasses build the regressor."""

    defaults: ClassVar[dict[str, Any]] = {}
    stochastic: ClassVar[bool] = True

    def __init__(self, seed: int = 0, device: str = "cpu", **params: Any):
        super().__init__(seed, device, **params)
        self.model: Any = None

    def regressor(self):
        raise NotImplementedError

    def _predict_rows(self, x: np.ndarray) -> np.ndarray:
        return self.model.predict(x)

    def fit(self, grids: Grids, months: np.ndarray) -> None:
        months = np.asarray(months, dtype="datetime64[M]")
        months = months[grids.has_grace[grids.month_index(months)]]
        if months.size == 0:
            raise ValueError(f"{self.name}: expected training months with GRACE, found none")
        x = _design(grids, months, "mascon")
        y = grids.grace[grids.month_index(months)].reshape(-1)
        self.model = self.regressor()
        self.model.fit(x, y)

    def predict_cells(self, grids: Grids, months: np.ndarray) -> np.ndarray:
        if self.model is None:
            raise RuntimeError(f"{self.name}: predict called before fit")
        months = np.asarray(months, dtype="datetime64[M]")
        out = np.empty((months.size, grids.n_cells))
        step = max(1, 200_000 // grids.n_cells)  # bounded memory for the design matrix
        for start in range(0, months.size, step):
            chunk = months[start:start + step]
            out[start:start + chunk.size] = self._predict_rows(
                _design(grids, chunk, "cell")).reshape(chunk.size, grids.n_cells)
        return out


@DOWNSCALERS.register("random_forest")
class RandomForest(Learned):
    """scikit-learn random forest on mascon-level predictors."""

    defaults: ClassVar[dict[str, Any]] = {"n_estimators": 100, "min_samples_leaf": 3,
                                          "max_features": 0.5, "max_depth": None,
                                          "n_jobs": -1}
    param_types: ClassVar[dict[str, tuple[type, ...]]] = {
        "max_depth": (int, type(None)), "max_features": (float, int, str)}
    search_space: ClassVar[SearchSpace] = {
        "n_estimators": Range(50, 300, log=True, integer=True),
        "min_samples_leaf": Range(1, 30, log=True, integer=True),
        "max_features": Range(0.2, 1.0)}

    def regressor(self):
        from sklearn.ensemble import RandomForestRegressor

        # n_jobs under the task's thread cap (twsbench.core.threads); the forest is the same
        return RandomForestRegressor(random_state=self.seed, **{
            **self.params, "n_jobs": threads.jobs(self.params["n_jobs"])})

    def _predict_rows(self, x: np.ndarray) -> np.ndarray:
        # scikit-learn sums the trees in thread-completion order, which changes the last bits
        # from run to run; summing them in tree order keeps the same seed, same output
        from joblib import Parallel, delayed

        trees = self.model.estimators_
        parts = Parallel(n_jobs=threads.jobs(self.params["n_jobs"]), prefer="threads")(
            delayed(tree.predict)(x, check_input=False) for tree in trees)
        total = np.zeros(x.shape[0])
        for part in parts:
            total += part
        return total / len(trees)


@DOWNSCALERS.register("lightgbm")
class LightGBM(Learned):
    """LightGBM gradient boosting on mascon-level predictors."""

    defaults: ClassVar[dict[str, Any]] = {"n_estimators": 500, "learning_rate": 0.05,
                                          "num_leaves": 31, "min_child_samples": 20,
                                          "subsample": 0.8, "subsample_freq": 1,
                                          "colsample_bytree": 0.9, "n_jobs": 2}
    search_space: ClassVar[SearchSpace] = {
        "n_estimators": Range(100, 1500, log=True, integer=True),
        "learning_rate": Range(0.01, 0.2, log=True),
        "num_leaves": Range(7, 127, log=True, integer=True),
        "min_child_samples": Range(5, 200, log=True, integer=True),
        "subsample": Range(0.5, 1.0),
        "colsample_bytree": Range(0.4, 1.0)}

    def regressor(self):
        import lightgbm

        # deterministic: the same trees at any n_jobs, which follows the task's thread cap
        return lightgbm.LGBMRegressor(random_state=self.seed, deterministic=True,
                                      force_row_wise=True, verbose=-1, **{
                                          **self.params,
                                          "n_jobs": threads.jobs(self.params["n_jobs"])})
