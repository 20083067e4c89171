"""The CNN's choices of network and training, apart from :mod:`twsbench.models.training` so that the
downscalers register (and their parameters are checked) without torch installed."""

from __future__ import annotations

from dataclasses import dataclass

LOSSES = ("dynamic", "static", "obs_only", "seda")


@dataclass(frozen=True)
class TrainConfig:
    """Choices of the network and its training (all exposed in the run config).

    ``lambdas`` are the pattern weights for (WaterGAP, ERA5 storage); ``ema`` the decay of the
    dynamic weights' average; ``sigma_floor`` (mm) the smallest GRACE σ in ``L_obs``.
    ``grace_input`` adds the month's GRACE (interpolated to the cells) and a has-GRACE flag
    as input channels; ``grace_dropout`` is the share of training months shown without them.
    ``train_tile`` is the side (cells) of the windows a step trains on when the domain is
    larger; ``tiles_per_batch`` the steps (random windows) each batch of months takes, 0
    meaning as many as cover the domain's land once (1 on a domain within one window), so
    that an epoch sees every month over the whole domain on any domain size.
    The device is not a choice here: the run's ``[compute] device`` decides it for every model.
    """

    loss: str = "dynamic"
    epochs: int = 30
    patience: int = 5
    lr: float = 2e-3
    batch_months: int = 8
    base_channels: int = 16
    depth: int = 3
    lambdas: tuple[float, float] = (1.0, 0.5)
    ema: float = 0.9
    sigma_floor: float = 10.0
    grace_input: bool = False
    grace_dropout: float = 0.0
    train_tile: int = 128
    tiles_per_batch: int = 0
    infer_pixels: int = 600_000
    infer_core: int = 64

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"loss: expected one of {', '.join(LOSSES)}, found {self.loss!r}")
        if not 0.0 <= self.grace_dropout < 1.0:
            raise ValueError(f"grace_dropout: expected a share in [0, 1), found "
                             f"{self.grace_dropout!r}")
        if self.tiles_per_batch < 0:
            raise ValueError(f"tiles_per_batch: expected >= 0 (0: cover the domain), found "
                             f"{self.tiles_per_batch!r}")
        if self.grace_dropout > 0 and not self.grace_input:
            raise ValueError(f"grace_dropout: expected 0 without grace_input, found "
                             f"{self.grace_dropout!r}")
