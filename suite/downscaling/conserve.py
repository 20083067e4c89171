"""``NAME+conserve``: any downscaler followed by exact conservation on months with GRACE."""

from __future__ import annotations

import numpy as np

from twsbench.core import kernels
from twsbench.downscaling.contract import Base, Downscaler
from twsbench.prepare.grids import Grids

CONSERVE = "+conserve"


def conserve(grids: Grids, months: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Exact conservation on months with GRACE: ``y + E (g − A y)``, so ``A y = g``.

    ``E`` repeats a mascon value over the mascon's cells (the transpose of ``A``'s pattern);
    with row-normalised ``A``, ``A E = I``, which makes the correction exact. Months without
    GRACE are returned unchanged.
    """
    pos = grids.month_index(months)
    has = grids.has_grace[pos]
    out = np.array(values, dtype=np.float64, copy=True)
    m = grids.mascons
    if has.any():
        residual = grids.grace[pos[has]] - kernels.apply_A(m.A, out[has])
        out[has] += kernels.spread(m.cell_mascon, residual)
    return out


class Conserved(Base):
    """Any downscaler followed by exact conservation on months with GRACE."""

    def __init__(self, inner: Downscaler):
        self.inner = inner
        self.name = inner.name + CONSERVE  # type: ignore[misc]
        self.devices = inner.devices  # type: ignore[misc]
        self.needs_grace = inner.needs_grace  # type: ignore[misc]
        self.stochastic = inner.stochastic  # type: ignore[misc]
        self.seed = getattr(inner, "seed", 0)
        self.device = getattr(inner, "device", "cpu")
        self.params = getattr(inner, "params", {})

    @property
    def history(self) -> list[dict]:
        return self.inner.history

    def fit(self, grids: Grids, months: np.ndarray) -> None:
        self.inner.fit(grids, months)

    def covers(self, grids: Grids, months: np.ndarray) -> np.ndarray:
        return self.inner.covers(grids, months)

    def predict_cells(self, grids: Grids, months: np.ndarray) -> np.ndarray:
        return conserve(grids, months, self.inner.predict_cells(grids, months))
