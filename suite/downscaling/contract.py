"""The ``Downscaler`` contract and the registry of downscalers.

A downscaler sees only :class:`twsbench.prepare.grids.Grids` (never the twin's truth). It is fitted
on some months and predicts any months as a (months, cells) array in mm on the domain's 0.5°
land cells. :class:`Downscaler` lists everything the harness (``twsbench run`` and
``twsbench release``) calls; :class:`Base` supplies the defaults, so a new downscaler is a
subclass with ``predict_cells`` (and ``fit`` when it learns), registered by name::

    @DOWNSCALERS.register("my_model")
    class MyModel(Base):
        defaults = {"alpha": 1.0}

        def predict_cells(self, grids, months): ...

Downscalers outside twsbench are found through ``[models] plugins`` in the run config and the
entry-point group ``twsbench.downscalers`` (:mod:`twsbench.running.catalog`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
import xarray as xr

from twsbench.core.errors import ConfigError
from twsbench.core.registry import Registry
from twsbench.prepare.grids import Grids


@runtime_checkable
class Downscaler(Protocol):
    """Everything the harness needs of a downscaler.

    Construction
        ``cls(seed=0, device="cpu", **params)``. ``seed`` seeds anything random (a model
        whose output does not depend on it says ``stochastic = False``); ``device`` is
        ``"cpu"`` or ``"cuda"``, one of ``devices``, chosen by the run's ``[compute] device``;
        ``params`` come from the config's ``[models.params.NAME]`` table. Unknown parameters
        and values of the wrong type raise :class:`twsbench.core.errors.ConfigError`.

    Attributes
    ----------
    name
        The registered name (set by :meth:`twsbench.core.registry.Registry.register`).
    devices
        Devices the model can run on (``("cpu",)`` or ``("cpu", "cuda")``).
    needs_grace
        True when the model predicts only months with GRACE (NaN in the others).
    stochastic
        True when the output depends on ``seed``: the harness runs it once per seed of the
        config and releases the seed ensemble; otherwise once.
    history
        Per-epoch training records (dicts) for the report; empty for other models.
    search_space
        Optional: the parameters ``twsbench tune`` searches, each a :class:`Range` or a
        :class:`Choice` (:class:`Base`: empty). A model without one is not tuned, and the
        run's report says so; every model with one gets the same number of trials.
    """

    # class attributes: set by the registry (name) or the class body, read from the class by
    # the harness (twsbench.running.plan, twsbench.release.product)
    name: ClassVar[str]
    devices: ClassVar[tuple[str, ...]]
    needs_grace: ClassVar[bool]
    stochastic: ClassVar[bool]

    def __init__(self, seed: int = 0, device: str = "cpu", **params: Any) -> None: ...

    @classmethod
    def available(cls) -> bool:
        """Whether this machine has what the model needs (e.g. torch); a config that leaves
        out ``names`` runs only the available models."""
        ...

    @property
    def history(self) -> list[dict]: ...

    def fit(self, grids: Grids, months: np.ndarray) -> None:
        """Learn from ``months`` (``datetime64[M]``, all with grids; GRACE where
        ``grids.has_grace``)."""

    def covers(self, grids: Grids, months: np.ndarray) -> np.ndarray:
        """Boolean per month: which of ``months`` are predicted (the others are NaN)."""
        ...

    def predict_cells(self, grids: Grids, months: np.ndarray) -> np.ndarray:
        """``(months, cells)`` float64 predictions in mm, NaN exactly where not covered."""
        ...

    def predict(self, grids: Grids, months: np.ndarray) -> xr.DataArray:
        """The same on the (time, lat, lon) grid, NaN off land, ``units = "mm"``."""
        ...


@dataclass(frozen=True)
class Range:
    """A numeric parameter's search range for tuning (``twsbench tune``): ``low`` to
    ``high``, on a log scale with ``log``, integers with ``integer``."""

    low: float
    high: float
    log: bool = False
    integer: bool = False


@dataclass(frozen=True)
class Choice:
    """A parameter's options for tuning (values a TOML file can hold)."""

    options: tuple[Any, ...]


#: A model's search space: parameter name → its range or options
SearchSpace = dict[str, Range | Choice]

DOWNSCALERS: Registry[type[Downscaler]] = Registry("downscaler", names_classes=True)


def search_space(cls: type) -> SearchSpace:
    """What ``twsbench tune`` searches for a model class (empty: not tuned)."""
    return dict(getattr(cls, "search_space", {}) or {})


def learns(cls: type) -> bool:
    """Whether a model class learns anything: it declares a search space or has a ``fit`` of
    its own (not :class:`Base`'s, which learns nothing)."""
    return bool(search_space(cls)) or getattr(cls, "fit", None) is not Base.fit

_KINDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string",
          tuple: "a list", list: "a list", type(None): "nothing"}


def _expected(types: tuple[type, ...]) -> str:
    if float in types:  # a number covers the integers
        types = tuple(t for t in types if t is not int)
    return " or ".join(dict.fromkeys(_KINDS.get(t, t.__name__) for t in types))


def check_params(name: str, defaults: dict[str, Any], params: dict[str, Any],
                 types: dict[str, tuple[type, ...]] | None = None) -> dict[str, Any]:
    """``defaults`` updated with ``params``, each checked against its default's type.

    An int is a valid float; a list is a valid tuple (TOML has no tuples); a default of
    ``None`` accepts anything unless ``types`` names the accepted types.

    Raises
    ------
    ConfigError
        For an unknown parameter or a value of the wrong type, naming the config table.
    """
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        known = ", ".join(sorted(defaults)) or "none"
        raise ConfigError(f"[models.params.{name}]: expected parameters among {known}, found "
                          f"unknown {', '.join(unknown)}")
    out = dict(defaults)
    for key, value in params.items():
        default = defaults[key]
        if value is None and default is None:  # left at its default (a resolved plan)
            continue
        allowed = (types or {}).get(key)
        if allowed is None:
            if default is None:
                out[key] = value
                continue
            allowed = {bool: (bool,), int: (int,), float: (float, int), str: (str,),
                       tuple: (tuple, list)}.get(type(default), (type(default),))
        ok = isinstance(value, allowed) and not (isinstance(value, bool) and bool not in allowed)
        if ok and isinstance(value, (list, tuple)) and isinstance(default, tuple):
            ok = len(value) == len(default) and all(
                isinstance(v, type(d)) or (isinstance(d, float) and isinstance(v, int)
                                           and not isinstance(v, bool))
                for v, d in zip(value, default, strict=True))
            if ok:
                value = tuple(float(v) if isinstance(d, float) else v
                              for v, d in zip(value, default, strict=True))
        elif ok and isinstance(default, float) and isinstance(value, int):
            value = float(value)
        if not ok:
            want = _expected(allowed)
            if isinstance(default, tuple):
                want = f"a list of {len(default)} like {list(default)}"
            raise ConfigError(f"[models.params.{name}] {key}: expected {want}, found "
                              f"{value!r}")
        out[key] = value
    return out


class Base:
    """The defaults of the :class:`Downscaler` contract: parameters, month bookkeeping and
    the output array. Subclasses set ``defaults`` (their parameters) and implement
    ``predict_cells``, and ``fit`` when they learn.

    Parameters
    ----------
    seed
        Random seed.
    device
        ``"cpu"`` or ``"cuda"`` (one of ``devices``).
    **params
        Values for the keys of ``defaults``; the merged set is ``self.params``.
    """

    name: ClassVar[str] = "base"
    devices: ClassVar[tuple[str, ...]] = ("cpu",)
    needs_grace: ClassVar[bool] = False
    stochastic: ClassVar[bool] = False
    #: parameters and their defaults; the type of each default is the type accepted
    defaults: ClassVar[dict[str, Any]] = {}
    #: accepted types where the default's type does not say (e.g. a default of ``None``)
    param_types: ClassVar[dict[str, tuple[type, ...]]] = {}
    #: what ``twsbench tune`` searches (empty: not tuned)
    search_space: ClassVar[SearchSpace] = {}

    def __init__(self, seed: int = 0, device: str = "cpu", **params: Any):
        if device not in self.devices:
            raise ConfigError(f"{self.name}: expected a device among "
                              f"{', '.join(self.devices)}, found {device!r}")
        self.seed = int(seed)
        self.device = device
        self.params = check_params(self.name, self.defaults, params, self.param_types)

    @classmethod
    def available(cls) -> bool:
        return True

    @property
    def history(self) -> list[dict]:
        return []

    def fit(self, grids: Grids, months: np.ndarray) -> None:
        """Most baselines learn nothing."""

    def covers(self, grids: Grids, months: np.ndarray) -> np.ndarray:
        pos = grids.month_index(months)
        return grids.has_grace[pos] if self.needs_grace else np.ones(pos.size, dtype=bool)

    def predict(self, grids: Grids, months: np.ndarray) -> xr.DataArray:
        months = np.asarray(months, dtype="datetime64[M]")
        values = np.asarray(self.predict_cells(grids, months), dtype=np.float64)
        out = grids.to_dataarray(values, months)
        out.attrs.update(model=self.name, needs_grace=int(self.needs_grace))
        return out

    def predict_cells(self, grids: Grids, months: np.ndarray) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} must implement predict_cells")
