"""The soft-constrained loss: the GRACE misfit at mascon scale and the sub-mascon pattern
terms with dynamic weights; and the GRACE-SeDA loss for comparison.

All tensors are ``(batch months, cells)``. ``cell_mascon`` maps cells to mascons and
``cell_weight`` holds ``A``'s row-normalised area weights, so ``A ŷ`` is an ``index_add``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


def mascon_means(y: torch.Tensor, cell_mascon: torch.Tensor, cell_weight: torch.Tensor,
                 n_mascons: int) -> torch.Tensor:
    """``A ŷ``: ``(B, cells) -> (B, mascons)``."""
    out = torch.zeros(y.shape[0], n_mascons, dtype=y.dtype, device=y.device)
    return out.index_add_(1, cell_mascon, y * cell_weight)


def deviation(y: torch.Tensor, cell_mascon: torch.Tensor, cell_weight: torch.Tensor,
              n_mascons: int) -> torch.Tensor:
    """``D ŷ = ŷ − E A ŷ``: the sub-mascon part (mascon means removed exactly)."""
    return y - mascon_means(y, cell_mascon, cell_weight, n_mascons)[:, cell_mascon]


def correlation(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Pearson correlation of each row of ``a`` with the same row of ``b`` over cells."""
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    return (a * b).sum(1) / torch.sqrt((a * a).sum(1) * (b * b).sum(1) + eps)


def obs_loss(y: torch.Tensor, g: torch.Tensor, sigma: torch.Tensor, present: torch.Tensor,
             cell_mascon: torch.Tensor, cell_weight: torch.Tensor, sigma_floor: float
             ) -> torch.Tensor:
    """``L_obs``: mean over (month, mascon) with GRACE of ``((A ŷ − g) / σ)²``, σ floored."""
    means = mascon_means(y, cell_mascon, cell_weight, g.shape[1])
    z = (means - g) / torch.clamp(sigma, min=sigma_floor)
    mask = present[:, None].expand_as(z)
    if not bool(mask.any()):
        return y.sum() * 0.0
    return (z[mask] ** 2).mean()


def pattern_loss(y: torch.Tensor, source: torch.Tensor, cell_mascon: torch.Tensor,
                 cell_weight: torch.Tensor, n_mascons: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``L_pat = 1 − r(D ŷ, D p)`` averaged over months; also returns the per-month ``r``."""
    r = correlation(deviation(y, cell_mascon, cell_weight, n_mascons),
                    deviation(source, cell_mascon, cell_weight, n_mascons))
    return (1.0 - r).mean(), r


@dataclass
class DynamicWeights:
    """``w_k = λ_k · EMA(drive_k)`` over training steps, ``drive_k = clip(1 − r_k, 0, 1)``.

    ``r_k`` is the batch's mean correlation of the prediction's sub-mascon pattern with source
    *k*, detached from the graph. A source pulls harder while the prediction drifts from its
    pattern and less once they agree. The average starts at 1 (no agreement assumed), so
    ``λ_k`` is each weight's ceiling.

    Anti-correlation (``r_k < 0``) drives like no correlation, ``drive_k = 1``, not up to 2: a
    source whose pattern the prediction opposes is one that GRACE's misfit term is pulling
    away from, and letting it pull with more than its configured weight would let a wrong
    prior (a model missing groundwater depletion) outweigh GRACE exactly where the two
    disagree most.

    The training loop calls :meth:`update` after each optimiser step, with that step's
    correlations; the step itself used :attr:`weights` as they were before it.
    """

    lambdas: tuple[float, ...]
    decay: float = 0.9
    state: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.state:
            self.state = [1.0] * len(self.lambdas)

    @staticmethod
    def drive(r: float) -> float:
        """How hard a source with correlation ``r`` pulls, in [0, 1]."""
        return min(1.0, max(0.0, 1.0 - r))

    def update(self, r: list[float]) -> list[float]:
        """One step: fold the new correlations into the averages; return the weights."""
        self.state = [self.decay * s + (1.0 - self.decay) * self.drive(rk)
                      for s, rk in zip(self.state, r, strict=True)]
        return self.weights

    @property
    def weights(self) -> list[float]:
        return [lam * s for lam, s in zip(self.lambdas, self.state, strict=True)]


def seda_loss(y: torch.Tensor, g: torch.Tensor, present: torch.Tensor, wghm: torch.Tensor,
              cell_mascon: torch.Tensor, cell_weight: torch.Tensor, scale: float
              ) -> torch.Tensor:
    """The GRACE-SeDA loss: ``|window mean of ŷ − GRACE| + MAE(ŷ, w) · (1 − r(ŷ, w))``.

    The window is the mascon (so the first term is ``|A ŷ − g|``), ``w`` is WaterGAP's anomaly;
    both terms are divided by ``scale`` (GRACE's standard deviation, mm).
    """
    means = mascon_means(y, cell_mascon, cell_weight, g.shape[1])
    mask = present[:, None].expand_as(means)
    window = (means - g).abs()[mask].mean() if bool(mask.any()) else y.sum() * 0.0
    r = correlation(y, wghm)
    mae = (y - wghm).abs().mean(dim=1)
    return (window + (mae * (1.0 - r)).mean()) / scale
