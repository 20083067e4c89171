"""Steps any downscaler can be followed by, named as suffixes of its registered name.

| name | in months with the model's GRACE | in the others |
|---|---|---|
| ``NAME+residual`` | ``ŷ + I (g − A ŷ)``: GRACE's misfit, interpolated | ``ŷ`` |
| ``NAME+conserve`` | ``ŷ + E (g − A ŷ)``: exact conservation, ``A ŷ = g`` | ``ŷ`` |
| ``NAME+residual+conserve`` | the residual step, then conservation | ``ŷ`` |

``I`` is the linear interpolation from mascon centroids to cells
(:mod:`twsbench.downscaling.interpolation`), ``E`` repeats a mascon's value over its cells.
The residual step gives any model the month's GRACE gradient between mascons, which is what
``bilinear`` knows below the mascon scale; conservation then removes what is left of the
misfit, a constant per mascon. "The model's GRACE" is what its grids show: the withheld
months' GRACE is not there, so a wrapper changes nothing in the gap-fill task's months.

A wrapper holds its inner model and fits nothing of its own, so one fitted model serves
every variant of its name (``twsbench run`` fits ``X`` once for ``X``, ``X+residual`` and
``X+residual+conserve``; :func:`wrap`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from twsbench.core import kernels
from twsbench.core.errors import ConfigError, OutputError
from twsbench.downscaling.contract import Base, Downscaler
from twsbench.downscaling.interpolation import interpolate
from twsbench.prepare.grids import Grids

RESIDUAL = "+residual"
CONSERVE = "+conserve"
#: The steps in the one order they compose (a residual after conservation would be zero)
STEPS = (RESIDUAL, CONSERVE)
SPELLINGS = "NAME, NAME+residual, NAME+conserve or NAME+residual+conserve"


def split_name(name: str) -> tuple[str, tuple[str, ...]]:
    """``"X+residual+conserve"`` → ``("X", ("+residual", "+conserve"))``.

    Raises
    ------
    ConfigError
        For steps repeated or out of order (``X+conserve+residual``).
    """
    steps: list[str] = []
    base = name
    while True:
        step = next((s for s in STEPS if base.endswith(s) and len(base) > len(s)), None)
        if step is None:
            break
        steps.insert(0, step)
        base = base[: -len(step)]
    if steps != [s for s in STEPS if s in steps]:
        raise ConfigError(f"[models] names: expected {SPELLINGS}, found {name!r}")
    return base, tuple(steps)


def _correction(grids: Grids, months: np.ndarray, values: np.ndarray, spread) -> np.ndarray:
    """``values`` plus ``spread(g − A values)`` in the months with GRACE, a copy."""
    pos = grids.month_index(months)
    has = grids.has_grace[pos]
    out = np.array(values, dtype=np.float64, copy=True)
    if has.any():
        misfit = grids.grace[pos[has]] - kernels.apply_A(grids.mascons.A, out[has])
        out[has] += spread(misfit)
    return out


def add_residual(grids: Grids, months: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The residual step: ``y + I (g − A y)`` on months with GRACE; the others unchanged."""
    return _correction(grids, months, values, lambda misfit: interpolate(grids, misfit))


def conserve(grids: Grids, months: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Exact conservation on months with GRACE: ``y + E (g − A y)``, so ``A y = g``.

    ``E`` repeats a mascon value over the mascon's cells (the transpose of ``A``'s pattern);
    with row-normalised ``A``, ``A E = I``, which makes the correction exact. Months without
    GRACE are returned unchanged.
    """
    return _correction(grids, months, values,
                       lambda misfit: kernels.spread(grids.mascons.cell_mascon, misfit))


class Wrapper(Base):
    """A downscaler followed by a step on its predictions; it has the inner model's
    attributes and fit, and is named after it with :attr:`suffix` added."""

    suffix = ""

    def __init__(self, inner: Downscaler):
        self.inner = inner
        self.name = inner.name + self.suffix  # type: ignore[misc]
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

    def step(self, grids: Grids, months: np.ndarray, values: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def predict_cells(self, grids: Grids, months: np.ndarray) -> np.ndarray:
        months = np.asarray(months, dtype="datetime64[M]")
        return self.step(grids, months, self.inner.predict_cells(grids, months))


class WithResidual(Wrapper):
    """Any downscaler followed by the interpolated GRACE residual on months with GRACE."""

    suffix = RESIDUAL

    def step(self, grids: Grids, months: np.ndarray, values: np.ndarray) -> np.ndarray:
        return add_residual(grids, months, values)


class Conserved(Wrapper):
    """Any downscaler followed by exact conservation on months with GRACE."""

    suffix = CONSERVE

    def step(self, grids: Grids, months: np.ndarray, values: np.ndarray) -> np.ndarray:
        return conserve(grids, months, values)


def check_output(values: object, grids: Grids, months: np.ndarray, covered: np.ndarray,
                 who: str, stage: str = "predict_cells") -> np.ndarray:
    """``values`` as a float64 array if it keeps the output contract: shape
    ``(months, cells)``, floats, finite in every month the model covers (``covered``) and NaN
    in the others.

    Raises
    ------
    OutputError
        One line: ``who`` (model, seed, world), the ``stage``, what was expected and found.
    """
    months = np.asarray(months, dtype="datetime64[M]")
    want = (months.size, grids.n_cells)
    head = f"{who}: {stage} returned"
    if not isinstance(values, np.ndarray) or values.dtype.kind != "f":
        kind = (f"an array of {values.dtype}" if isinstance(values, np.ndarray)
                else f"a {type(values).__name__}")
        raise OutputError(f"{head} {kind}, expected a float array of shape {want}")
    if values.shape != want:
        raise OutputError(f"{head} shape {values.shape}, expected {want}")
    covered = np.asarray(covered, dtype=bool)
    finite = np.isfinite(values)
    bad = covered & ~finite.all(axis=1)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        what = "NaN" if np.isnan(values[k]).any() else "inf"
        raise OutputError(
            f"{head} {int((~finite[covered]).sum())} non-finite values in {int(bad.sum())} "
            f"of the {int(covered.sum())} months it covers (first {months[k]}: {what}), "
            "expected finite values there")
    stray = ~covered & ~np.isnan(values).all(axis=1)
    if stray.any():
        k = int(np.flatnonzero(stray)[0])
        raise OutputError(f"{head} values in {int(stray.sum())} months it does not cover "
                          f"(first {months[k]}), expected NaN there")
    return values.astype(np.float64, copy=False)


class Checked(Wrapper):
    """A downscaler whose every output is checked (:func:`check_output`) before anything of
    the harness uses it; named as the inner model, ``who`` says which fit it is."""

    def __init__(self, inner: Downscaler, who: str):
        super().__init__(inner)
        self.who = who

    def predict_cells(self, grids: Grids, months: np.ndarray) -> np.ndarray:
        months = np.asarray(months, dtype="datetime64[M]")
        return check_output(self.inner.predict_cells(grids, months), grids, months,
                            self.inner.covers(grids, months), self.who)


_WRAPPERS: dict[str, type[Wrapper]] = {RESIDUAL: WithResidual, CONSERVE: Conserved}


def wrap(model: Downscaler, steps: Sequence[str]) -> Downscaler:
    """``model`` (fitted or not) followed by ``steps`` (from :func:`split_name`)."""
    for step in steps:
        model = _WRAPPERS[step](model)
    return model
