"""Which downscalers exist: the built-ins, installed packages' entry points and a config's
plug-in modules, looked up by name.

Downscalers outside twsbench are found through ``[models] plugins`` in the run config (module
names, imported before the names are checked) and the entry-point group
``twsbench.downscalers`` (an entry point names a module that registers, or a class that is
registered under the entry point's name).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from twsbench.core.errors import ConfigError
from twsbench.downscaling.contract import DOWNSCALERS, Downscaler
from twsbench.downscaling.wrappers import SPELLINGS, split_name, wrap

log = logging.getLogger(__name__)

ENTRY_POINTS = "twsbench.downscalers"

#: What a plug-in written for twsbench 0.1 (three top-level packages) imports instead now
MOVED = {
    "suite": "twsbench",
    "suite.downscaler": "twsbench (DOWNSCALERS, Base, Downscaler)",
    "suite.grids": "twsbench (Grids)",
    "suite.kernels": "twsbench (kernels)",
    "suite.errors": "twsbench (ConfigError, InputError)",
    "suite.registry": "twsbench.core.registry",
    "suite.mascons": "twsbench.core.mascons",
    "suite.months": "twsbench.core.months",
    "suite.grid": "twsbench.core.geometry",
    "suite.metrics": "twsbench.scoring.metrics",
    "baselines": "twsbench.baselines",
    "baselines.interpolation": "twsbench.downscaling.interpolation",
    "models": "twsbench.models",
}


def moved(err: ModuleNotFoundError, source: str | None = None) -> tuple[str, str] | None:
    """(the old module, what to import instead) when ``err`` is an import of twsbench 0.1's
    module names; ``source``, the importing module's file, names the submodule when the
    error names only the missing top package."""
    name = err.name or ""
    if name.split(".")[0] not in {"suite", "baselines", "models"}:
        return None
    if "." not in name and source:  # `from suite.downscaler import …`: the error says `suite`
        import re

        text = Path(source).read_text(errors="replace")
        found = re.search(rf"^\s*(?:from|import)\s+({name}(?:\.\w+)*)", text, re.M)
        name = found.group(1) if found else name
    if name in MOVED:
        return name, MOVED[name]
    if name.split(".")[0] == "suite":
        return name, "twsbench (see the README, 'Adding a downscaler', for the layout by stage)"
    return None


_broken: dict[str, str] = {}  # entry points that failed to load: name -> why
_discovered = False


def discover() -> None:
    """Register the built-in downscalers and those of installed packages' entry points
    (group ``twsbench.downscalers``), once per process.

    An entry point that fails to load is remembered (:func:`broken`); naming it in a config
    gives the reason as a :class:`ConfigError`.
    """
    global _discovered
    if _discovered:
        return
    import twsbench.baselines  # noqa: F401  (registers the classical downscalers)
    import twsbench.models  # noqa: F401  (registers the CNNs; torch is needed only to fit them)

    _discovered = True
    for ep in importlib.metadata.entry_points(group=ENTRY_POINTS):
        try:
            obj = ep.load()
        except Exception as err:  # a broken third-party package must not stop other runs
            old = moved(err) if isinstance(err, ModuleNotFoundError) else None
            found = (f"an import of {old[0]}, a module of twsbench 0.1 (import {old[1]} "
                     f"instead)" if old else f"{type(err).__name__}: {err}")
            _broken[ep.name] = (f"entry point {ep.name} = {ep.value} (group {ENTRY_POINTS}): "
                                f"expected an importable downscaler, found {found}")
            log.info("%s", _broken[ep.name])
            continue
        if isinstance(obj, type) and ep.name not in DOWNSCALERS:
            DOWNSCALERS.register(ep.name)(obj)


def broken() -> dict[str, str]:
    """Entry points that failed to load: name → the reason."""
    discover()
    return dict(_broken)


def load_plugins(modules: Sequence[str], search: Sequence[Path] = ()) -> list[ModuleType]:
    """Import the plug-in ``modules`` (dotted names), which register downscalers.

    ``search`` folders (the run config's folder) are put in front of ``sys.path``, so a
    ``my_downscalers.py`` beside the config is found without installing it.

    Raises
    ------
    ConfigError
        For a module that cannot be imported, naming it and why.
    """
    discover()
    for folder in reversed([str(Path(p).resolve()) for p in search]):
        if folder not in sys.path:
            sys.path.insert(0, folder)
    out = []
    for name in modules:
        try:
            out.append(importlib.import_module(name))
        except ModuleNotFoundError as err:
            spec = importlib.util.find_spec(name) if err.name != name else None
            old = moved(err, spec.origin if spec else None)
            if old is not None:
                raise ConfigError(f"[models] plugins: {name} imports {old[0]}, a module of "
                                  f"twsbench 0.1: expected it to import {old[1]}, found "
                                  f"{old[0]}") from err
            raise ConfigError(f"[models] plugins: expected an importable module, found no "
                              f"module named {err.name!r} (importing {name!r})") from err
        except Exception as err:
            raise ConfigError(f"[models] plugins: expected module {name!r} to import, found "
                              f"{type(err).__name__}: {err}") from err
    return out


def get_class(name: str) -> type[Downscaler]:
    """The registered class of ``name`` (``NAME+residual+conserve`` and the other wrapped
    names: of ``NAME``).

    Raises
    ------
    ConfigError
        For an unknown name (listing the known ones) or an entry point that failed to load.
    """
    discover()
    base, _ = split_name(name)
    if base in _broken and base not in DOWNSCALERS:
        raise ConfigError(_broken[base])
    if base not in DOWNSCALERS:
        raise ConfigError(f"[models] names: expected names among {', '.join(DOWNSCALERS)} "
                          f"(spelled {SPELLINGS}), found {name!r}")
    return DOWNSCALERS.get(base)


def make(name: str, seed: int = 0, params: dict[str, Any] | None = None,
         device: str = "cpu") -> Downscaler:
    """A downscaler by registered name; ``NAME+residual`` and ``NAME+conserve`` wrap it
    (:mod:`twsbench.downscaling.wrappers`).

    Raises
    ------
    ConfigError
        For an unknown name (the message lists the known names), an unknown parameter or a
        parameter of the wrong type.
    """
    base, steps = split_name(name)
    return wrap(get_class(base)(seed=seed, device=device, **(params or {})), steps)


def known_names() -> list[str]:
    """Every registered name (built-in, entry points and plug-ins loaded so far): the
    baselines, the CNNs, then other packages' in the order they were registered."""
    discover()

    def group(name: str) -> int:
        module = DOWNSCALERS.get(name).__module__
        return (0 if module.startswith("twsbench.baselines.") else
                1 if module.startswith("twsbench.models.") else 2)

    return sorted(DOWNSCALERS.registered(), key=group)
