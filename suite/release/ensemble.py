"""A seed ensemble of one downscaler: the members' mean, and their spread as its uncertainty.

The one implementation used by ``twsbench release`` (and by anyone combining seeds)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from twsbench.prepare.grids import Grids
from twsbench.running.plan import ModelRun

Stage = Callable[[str], None]


class Ensemble:
    """Fits every member of ``runs`` (one model, several seeds) and predicts their mean.

    ``spread`` is the standard deviation across members (ddof=1 with two or more members;
    zero with one) of the last prediction, ``(months, cells)`` in mm.

    Raises
    ------
    ValueError
        For no members, or members of different models.
    """

    def __init__(self, runs: Sequence[ModelRun]):
        if not runs:
            raise ValueError("expected at least one member, found none")
        names = {r.name for r in runs}
        if len(names) != 1:
            raise ValueError(f"expected members of one model, found {', '.join(sorted(names))}")
        self.runs = list(runs)
        self.name = self.runs[0].name
        self.seeds = [r.seed for r in self.runs]
        self.members = [r.make() for r in self.runs]
        self.spread: np.ndarray | None = None

    @property
    def needs_grace(self) -> bool:
        return self.members[0].needs_grace

    def fit(self, grids: Grids, months: np.ndarray, stage: Stage | None = None) -> None:
        for run, member in zip(self.runs, self.members, strict=True):
            if stage:
                stage(f"fitting {run.name} (seed {run.seed}) on {len(months)} months")
            member.fit(grids, months)

    def predict_cells(self, grids: Grids, months: np.ndarray) -> np.ndarray:
        """The members' mean, ``(months, cells)`` in mm; sets :attr:`spread`."""
        months = np.asarray(months, dtype="datetime64[M]")
        stack = np.stack([m.predict_cells(grids, months) for m in self.members])
        mean = stack.mean(axis=0)
        self.spread = (stack.std(axis=0, ddof=1) if len(self.members) > 1
                       else np.zeros_like(mean))
        return mean
