"""The dynamic soft-constrained CNN and its ablations, as registered downscalers.

| name | loss |
|---|---|
| ``soft_cnn`` | ``L_obs + Σ_k w_k(t) L_pat,k`` with dynamic weights |
| ``soft_cnn_static`` | the same with fixed weights ``w_k = λ_k`` |
| ``soft_cnn_obs_only`` | ``L_obs`` alone |
| ``seda_loss`` | the GRACE-SeDA loss |

After Uz, Atman, Akyılmaz & Shum (2026), J. Hydrol., doi:10.1016/j.jhydrol.2026.135015; the
paper's formulas are not public, so this is the suite's documented design (DESIGN.md).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from models.training import TrainConfig, Trainer
from suite import cache
from suite.downscaler import DOWNSCALERS, Base
from suite.grids import Grids

_PARAMS = {f.name for f in dataclasses.fields(TrainConfig)} - {"loss"}


class SoftCNN(Base):
    """Fully convolutional residual U-Net trained with the soft-constrained loss.

    Parameters
    ----------
    seed
        Seed of the weights' initialisation and of the batch order.
    checkpoint_dir
        Where checkpoints go (default: the cache, keyed by grids, parameters and seed); a
        finished checkpoint there is reused instead of training again.
    **params
        Any field of :class:`models.training.TrainConfig` except ``loss``.
    """

    name = "soft_cnn"
    devices: ClassVar[tuple[str, ...]] = ("cpu", "cuda")
    needs_grace: ClassVar[bool] = False
    stochastic: ClassVar[bool] = True
    loss: ClassVar[str] = "dynamic"

    def __init__(self, seed: int = 0, checkpoint_dir: str | Path | None = None,
                 **params: Any):
        unknown = set(params) - _PARAMS
        if unknown:
            raise TypeError(f"{self.name}: expected parameters among {', '.join(sorted(_PARAMS))}"
                            f", found {', '.join(sorted(unknown))}")
        if "lambdas" in params:
            params["lambdas"] = tuple(params["lambdas"])
        self.seed = seed
        self.config = TrainConfig(loss=self.loss, **params)
        self.checkpoint_dir = checkpoint_dir
        self.trainer: Trainer | None = None

    def _checkpoints(self, grids: Grids, train: np.ndarray) -> Path:
        if self.checkpoint_dir is not None:
            return Path(self.checkpoint_dir)
        key = json.dumps({"grids": grids.attrs.get("cache_key"), "name": self.name,
                          "config": dataclasses.asdict(self.config), "seed": self.seed,
                          "train": [str(m) for m in train]}, sort_keys=True)
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        return cache.cache_dir() / "checkpoints" / f"{self.name}-{digest}"

    def fit(self, grids: Grids, months: np.ndarray, validation: np.ndarray | None = None
            ) -> None:
        months = np.asarray(months, dtype="datetime64[M]")
        if validation is None:  # the grids' validation months not used for training
            validation = grids.split_months("validation")
            validation = validation[~np.isin(validation, months)]
        self.trainer = Trainer(grids, self.config, self.seed,
                               self._checkpoints(grids, months))
        self.trainer.fit(months, np.asarray(validation, dtype="datetime64[M]"))

    @property
    def history(self) -> list[dict]:
        return self.trainer.history.epochs if self.trainer else []

    def predict_cells(self, grids: Grids, months: np.ndarray) -> np.ndarray:
        if self.trainer is None:
            raise RuntimeError(f"{self.name}: predict called before fit")
        if grids is not self.trainer.grids:
            self.trainer.grids = grids
        return self.trainer.predict(np.asarray(months, dtype="datetime64[M]")).astype(
            np.float64)


@DOWNSCALERS.register("soft_cnn")
class SoftCNNDynamic(SoftCNN):
    name = "soft_cnn"
    loss = "dynamic"


@DOWNSCALERS.register("soft_cnn_static")
class SoftCNNStatic(SoftCNN):
    name = "soft_cnn_static"
    loss = "static"


@DOWNSCALERS.register("soft_cnn_obs_only")
class SoftCNNObsOnly(SoftCNN):
    name = "soft_cnn_obs_only"
    loss = "obs_only"


@DOWNSCALERS.register("seda_loss")
class SedaLoss(SoftCNN):
    name = "seda_loss"
    loss = "seda"
