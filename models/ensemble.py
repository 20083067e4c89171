"""An ensemble of one downscaler over seeds: the mean, and the spread as its uncertainty."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from suite.downscaler import make
from suite.grids import Grids


class Ensemble:
    """Fits ``name`` once per seed; predicts the members' mean and keeps their spread.

    ``spread`` is the standard deviation across members (ddof=1 with two or more members;
    zero with one) of the last prediction, ``(months, cells)`` in mm.
    """

    def __init__(self, name: str, seeds: list[int], params: dict[str, Any] | None = None):
        if not seeds:
            raise ValueError("expected at least one seed, found none")
        self.name = name
        self.members = [make(name, seed=s, params=params) for s in seeds]
        self.spread: np.ndarray | None = None

    @property
    def needs_grace(self) -> bool:
        return self.members[0].needs_grace

    def fit(self, grids: Grids, months: np.ndarray) -> None:
        for member in self.members:
            member.fit(grids, months)

    def predict(self, grids: Grids, months: np.ndarray) -> xr.DataArray:
        months = np.asarray(months, dtype="datetime64[M]")
        stack = np.stack([m.predict_cells(grids, months) for m in self.members])
        mean = stack.mean(axis=0)
        self.spread = stack.std(axis=0, ddof=1) if len(self.members) > 1 else np.zeros_like(mean)
        out = grids.to_dataarray(mean, months)
        out.attrs.update(model=self.name, members=len(self.members))
        return out
