"""The ``Downscaler`` protocol, the registry of downscalers, and the exact-conservation
wrapper ``+conserve``.

A downscaler sees only :class:`suite.grids.Grids` (never the twin's truth). It is fitted on
some months and predicts any months as a (time, lat, lon) field in mm on the domain's 0.5°
cells, NaN off land.
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
import xarray as xr

from suite import kernels
from suite.grids import Grids
from suite.registry import Registry

CONSERVE = "+conserve"


@runtime_checkable
class Downscaler(Protocol):
    """What the harness needs of a downscaler."""

    name: str
    devices: tuple[str, ...]
    needs_grace: bool  # predicts only months with GRACE (NaN elsewhere)

    def fit(self, grids: Grids, months: np.ndarray) -> None: ...

    def predict(self, grids: Grids, months: np.ndarray) -> xr.DataArray: ...


DOWNSCALERS: Registry[type] = Registry("downscaler")


class Base:
    """Shared plumbing: parameters, month bookkeeping and the output array."""

    name: ClassVar[str] = "base"
    devices: ClassVar[tuple[str, ...]] = ("cpu",)
    needs_grace: ClassVar[bool] = False
    stochastic: ClassVar[bool] = False  # output depends on the seed (run once per seed)

    def __init__(self, seed: int = 0, **params: Any):
        if params:
            raise TypeError(f"{self.name}: expected no parameters, found {', '.join(params)}")
        self.seed = seed

    def fit(self, grids: Grids, months: np.ndarray) -> None:
        """Most baselines learn nothing."""

    def covers(self, grids: Grids, months: np.ndarray) -> np.ndarray:
        """Which of ``months`` this model predicts (the others come back NaN)."""
        pos = grids.month_index(months)
        return grids.has_grace[pos] if self.needs_grace else np.ones(pos.size, dtype=bool)

    def predict(self, grids: Grids, months: np.ndarray) -> xr.DataArray:
        months = np.asarray(months, dtype="datetime64[M]")
        values = np.asarray(self.predict_cells(grids, months), dtype=np.float64)
        out = grids.to_dataarray(values, months)
        out.attrs.update(model=self.name, needs_grace=int(self.needs_grace))
        return out

    def predict_cells(self, grids: Grids, months: np.ndarray) -> np.ndarray:
        """``(months, cells)`` predictions in mm."""
        raise NotImplementedError


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

    def __init__(self, inner: Base):
        self.inner = inner
        self.name = inner.name + CONSERVE
        self.devices = inner.devices
        self.needs_grace = inner.needs_grace
        self.stochastic = inner.stochastic
        self.seed = inner.seed

    def fit(self, grids: Grids, months: np.ndarray) -> None:
        self.inner.fit(grids, months)

    def covers(self, grids: Grids, months: np.ndarray) -> np.ndarray:
        return self.inner.covers(grids, months)

    def predict_cells(self, grids: Grids, months: np.ndarray) -> np.ndarray:
        return conserve(grids, months, self.inner.predict_cells(grids, months))

    def __getattr__(self, item: str) -> Any:  # metadata of the inner model (e.g. uncertainty)
        inner = self.__dict__.get("inner")
        if inner is None:
            raise AttributeError(item)
        return getattr(inner, item)


def make(name: str, seed: int = 0, params: dict[str, Any] | None = None) -> Base:
    """A downscaler by registered name; ``NAME+conserve`` wraps it in :class:`Conserved`.

    Raises
    ------
    UnknownNameError
        For a name that is not registered (the message lists the known names).
    """
    import baselines  # noqa: F401  (registers the classical downscalers)

    try:
        import models  # noqa: F401  (registers the deep downscalers)
    except ImportError:  # torch missing: the classical ones still work
        pass
    base_name = name.removesuffix(CONSERVE)
    cls = DOWNSCALERS.get(base_name)
    model = cls(seed=seed, **(params or {}))
    return Conserved(model) if name.endswith(CONSERVE) else model


def known_names() -> list[str]:
    import baselines  # noqa: F401

    try:
        import models  # noqa: F401
    except ImportError:
        pass
    return DOWNSCALERS.names()
