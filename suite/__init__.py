"""twsbench: a benchmark suite for downscaling GRACE/GRACE-FO terrestrial water storage.

The package is laid out by stage, in the order data flows through a run; a stage imports
only from the stages before it (``tox -e lint`` checks this):

| stage | what it does |
|---|---|
| :mod:`twsbench.core` | foundations: errors, cache, array backend and kernels, grid, mascons,
months, config |
| :mod:`twsbench.inputs` | reading the real input files (GRACE, WaterGAP, ERA5, a truth) |
| :mod:`twsbench.twin` | the twin world, written in the real formats |
| :mod:`twsbench.prepare` | the identical 0.5° grids every downscaler sees, cached |
| :mod:`twsbench.downscaling` | the downscaler contract, the registry and ``+conserve`` |
| :mod:`twsbench.baselines`, :mod:`twsbench.models` | the built-in downscalers |
| :mod:`twsbench.scoring` | metrics, scores, significance, uncertainty, leaderboards, realism |
| :mod:`twsbench.running` | the plan, each (world, model, seed) fit as a task, the run's tables |
| :mod:`twsbench.report` | the comparison report, from a run folder's files only |
| :mod:`twsbench.release` | the released product and its validation |
| :mod:`twsbench.pipeline` | the whole run, and its scaling measurement |
| :mod:`twsbench.cli` | the ``twsbench`` command |

What a plug-in author needs is importable from here (loaded on first use, so that
``import twsbench`` stays light)::

    from twsbench import DOWNSCALERS, Base, Grids, kernels
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("twsbench")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

#: public name -> the module that defines it
_PUBLIC = {
    "Downscaler": "twsbench.downscaling.contract",
    "Base": "twsbench.downscaling.contract",
    "DOWNSCALERS": "twsbench.downscaling.contract",
    "Grids": "twsbench.prepare.grids",
    "ConfigError": "twsbench.core.errors",
    "InputError": "twsbench.core.errors",
    "kernels": "twsbench.core.kernels",
}

__all__ = ["__version__", "Downscaler", "Base", "DOWNSCALERS", "Grids", "ConfigError",
           "InputError", "kernels"]

if TYPE_CHECKING:
    from twsbench.core import kernels
    from twsbench.core.errors import ConfigError, InputError
    from twsbench.downscaling.contract import DOWNSCALERS, Base, Downscaler
    from twsbench.prepare.grids import Grids


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'twsbench' has no attribute {name!r}")
    loaded = importlib.import_module(module)
    value = loaded if module.endswith(f".{name}") else getattr(loaded, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
