"""Baselines that use GRACE directly: the parent product, interpolation, pattern transfer."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from twsbench.core import kernels
from twsbench.downscaling.contract import DOWNSCALERS, Base
from twsbench.downscaling.interpolation import interpolate
from twsbench.prepare.grids import Grids


def _grace_or_nan(grids: Grids, months: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pos = grids.month_index(months)
    return grids.grace[pos], grids.has_grace[pos]


@DOWNSCALERS.register("mascon")
class Mascon(Base):
    """GRACE's mascon value on every cell of the mascon: the parent product, the null model."""

    needs_grace: ClassVar[bool] = True

    def predict_cells(self, grids: Grids, months: np.ndarray) -> np.ndarray:
        g, _ = _grace_or_nan(grids, months)
        return kernels.spread(grids.mascons.cell_mascon, g)


@DOWNSCALERS.register("bilinear")
class Bilinear(Base):
    """Linear interpolation from mascon centroids to cell centres (longitude wraps on a global
    domain); see :mod:`twsbench.downscaling.interpolation`."""

    needs_grace: ClassVar[bool] = True

    def predict_cells(self, grids: Grids, months: np.ndarray) -> np.ndarray:
        g, has = _grace_or_nan(grids, months)
        out = np.full((len(months), grids.n_cells), np.nan)
        out[has] = interpolate(grids, g[has])
        return out


@DOWNSCALERS.register("pattern_transfer")
class PatternTransfer(Base):
    """``g + D w``: GRACE's mascon value plus WaterGAP's sub-mascon deviation, where
    ``D = I − E A`` removes mascon means. Conserves GRACE exactly by construction."""

    needs_grace: ClassVar[bool] = True

    def predict_cells(self, grids: Grids, months: np.ndarray) -> np.ndarray:
        g, _ = _grace_or_nan(grids, months)
        m = grids.mascons
        w = grids.fields["wghm"][grids.month_index(months)].astype(np.float64)
        return kernels.spread(m.cell_mascon, g) + kernels.deviation(m.A, m.cell_mascon, w)
