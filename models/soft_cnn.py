"""The dynamic soft-constrained CNN and its ablations, as registered downscalers.

| name | loss |
|---|---|
| ``soft_cnn`` | ``L_obs + Σ_k w_k(t) L_pat,k`` with dynamic weights |
| ``soft_cnn_static`` | the same with fixed weights: the dynamic run's mean applied weights |
| ``soft_cnn_obs_only`` | ``L_obs`` alone |
| ``seda_loss`` | the GRACE-SeDA loss |
| ``soft_cnn_grace`` | ``soft_cnn`` with the month's GRACE as an input, trained with GRACE dropout |

After Uz, Atman, Akyılmaz & Shum (2026), J. Hydrol., doi:10.1016/j.jhydrol.2026.135015; the
paper's formulas are not public, so this is the suite's documented design
(``docs/cnn.md``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from twsbench.core import backend, cache, codehash
from twsbench.core.errors import ConfigError
from twsbench.downscaling.contract import DOWNSCALERS, Base, Choice, Range, SearchSpace
from twsbench.models.settings import TrainConfig
from twsbench.prepare.grids import Grids

if TYPE_CHECKING:
    from twsbench.models.training import Trainer

_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainConfig) if f.name != "loss"}
INSTALL = "pip install 'twsbench[cnn]' (torch==2.13.0 on CPU; see the README for CUDA)"


def require_torch(name: str) -> None:
    """Raise one line saying how to install torch when it is missing."""
    if not backend.torch_installed():
        raise ConfigError(f"[models] names: {name}: expected torch, which the CNN downscalers "
                          f"need (install the cnn extra: {INSTALL}), found it not "
                          f"installed")


class SoftCNN(Base):
    """Fully convolutional residual U-Net trained with the soft-constrained loss.

    Parameters
    ----------
    seed
        Seed of the weights' initialisation and of the batch order.
    device
        ``"cpu"`` or ``"cuda"``.
    checkpoint_dir
        Where checkpoints go (default: the cache). Each fit gets its own subfolder, keyed by
        the grids, the code that trains (the modules this one imports), parameters, seed,
        device and training months, so a finished checkpoint is reused only by the same fit
        (several twin worlds never share one).
    **params
        Any field of :class:`twsbench.models.settings.TrainConfig` except ``loss``.
    """

    devices: ClassVar[tuple[str, ...]] = ("cpu", "cuda")
    needs_grace: ClassVar[bool] = False
    stochastic: ClassVar[bool] = True
    defaults: ClassVar[dict[str, Any]] = {**_DEFAULTS, "checkpoint_dir": None}
    param_types: ClassVar[dict[str, tuple[type, ...]]] = {"checkpoint_dir": (str, Path)}
    search_space: ClassVar[SearchSpace] = {
        "lr": Range(3e-4, 1e-2, log=True), "base_channels": Choice((8, 16, 32)),
        "batch_months": Choice((4, 8, 16)), "sigma_floor": Range(3.0, 30.0, log=True)}
    #: parameters of the pattern terms, searched where the loss has them
    pattern_space: ClassVar[SearchSpace] = {"ema": Range(0.5, 0.99)}
    loss: ClassVar[str] = "dynamic"
    #: called with each epoch's record while fitting (``twsbench tune`` prunes trials there)
    on_epoch: Callable[[dict], None] | None = None

    @classmethod
    def available(cls) -> bool:
        return backend.torch_installed()

    def __init__(self, seed: int = 0, device: str = "cpu", **params: Any):
        require_torch(self.name)
        super().__init__(seed, device, **params)
        train = {k: v for k, v in self.params.items() if k != "checkpoint_dir"}
        try:
            self.config = TrainConfig(loss=self.loss, **train)
        except ValueError as err:
            raise ConfigError(f"[models.params.{self.name}] {err}") from err
        self.checkpoint_dir = self.params["checkpoint_dir"]
        self.trainer: Trainer | None = None

    def _checkpoints(self, grids: Grids, train: np.ndarray) -> Path:
        code = codehash.digest(dict.fromkeys((__name__, type(self).__module__)))
        key = json.dumps({"grids": grids.attrs.get("cache_key"), "code": code, "name": self.name,
                          "config": dataclasses.asdict(self.config), "seed": self.seed,
                          "device": self.device, "train": [str(m) for m in train]},
                         sort_keys=True)
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        root = (Path(self.checkpoint_dir) if self.checkpoint_dir is not None
                else cache.cache_dir() / "checkpoints")
        return root / f"{self.name}-{digest}"

    def fit(self, grids: Grids, months: np.ndarray, validation: np.ndarray | None = None
            ) -> None:
        from twsbench.models.training import Trainer

        months = np.asarray(months, dtype="datetime64[M]")
        if validation is None:  # the grids' validation months not used for training
            validation = grids.split_months("validation")
            validation = validation[~np.isin(validation, months)]
        self.trainer = Trainer(grids, self.config, self.seed,
                               self._checkpoints(grids, months), device=self.device)
        self.trainer.fit(months, np.asarray(validation, dtype="datetime64[M]"),
                         on_epoch=self.on_epoch)

    @property
    def history(self) -> list[dict]:
        return self.trainer.history.epochs if self.trainer else []

    def predict_cells(self, grids: Grids, months: np.ndarray) -> np.ndarray:
        if self.trainer is None:
            raise RuntimeError(f"{self.name}: predict called before fit")
        if grids is not self.trainer.grids:
            self.trainer.use_grids(grids)
        return self.trainer.predict(np.asarray(months, dtype="datetime64[M]")).astype(
            np.float64)


@DOWNSCALERS.register("soft_cnn")
class SoftCNNDynamic(SoftCNN):
    loss = "dynamic"
    search_space: ClassVar[SearchSpace] = {**SoftCNN.search_space, **SoftCNN.pattern_space}


@DOWNSCALERS.register("soft_cnn_static")
class SoftCNNStatic(SoftCNN):
    """The dynamic CNN's ablation: the same loss with each pattern weight fixed at the mean
    weight the dynamic run (``soft_cnn``, same seed and parameters) applied over its training
    steps, so that the two differ only in the weights' dynamics, not their size.

    The fit trains the dynamic network first (or takes it from its checkpoint: a run that
    scores ``soft_cnn`` too has trained it already) to read its history.
    """

    loss = "static"

    def fit(self, grids: Grids, months: np.ndarray, validation: np.ndarray | None = None
            ) -> None:
        dynamic = SoftCNNDynamic(self.seed, self.device, **self.params)
        dynamic.fit(grids, months, validation)
        assert dynamic.trainer is not None
        wghm, era5 = dynamic.trainer.mean_applied_weights()
        self.dynamic_weights = (wghm, era5)
        dynamic.trainer = None  # its network is not needed any more
        self.config = dataclasses.replace(self.config, lambdas=self.dynamic_weights)
        super().fit(grids, months, validation)


@DOWNSCALERS.register("soft_cnn_obs_only")
class SoftCNNObsOnly(SoftCNN):
    loss = "obs_only"


@DOWNSCALERS.register("seda_loss")
class SedaLoss(SoftCNN):
    loss = "seda"


@DOWNSCALERS.register("soft_cnn_grace")
class SoftCNNGrace(SoftCNN):
    """The dynamic CNN with the month's GRACE as an input (interpolated to the cells, and a
    has-GRACE flag), trained with GRACE dropout: a ``grace_dropout`` share of the training
    months is shown without it, so one network serves months with GRACE (downscale) and
    without (gap-fill). Its validation loss is taken with GRACE hidden, which it cannot
    copy."""

    loss = "dynamic"
    defaults: ClassVar[dict[str, Any]] = {**SoftCNN.defaults, "grace_input": True,
                                          "grace_dropout": 0.3}
    search_space: ClassVar[SearchSpace] = {**SoftCNN.search_space, **SoftCNN.pattern_space,
                                           "grace_dropout": Range(0.0, 0.7)}
