"""What a run runs: one resolution of (model, seed, parameters, device) shared by
``twsbench run`` and ``twsbench release``, and the checks of a config against the registries
and the file system that parsing alone cannot make.

A config is parsed (:mod:`twsbench.core.config`: values and shapes), then planned here: plug-ins are
imported, every name is looked up in the registry, every model is constructed once with its
parameters (which checks them), the ranking metric is looked up among the scores and the input
files are checked to exist. All of this happens before anything is written.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twsbench.core import backend, codehash
from twsbench.core.config import DEFAULT_MODELS, Config
from twsbench.core.errors import ConfigError
from twsbench.downscaling.contract import Downscaler
from twsbench.downscaling.wrappers import split_name
from twsbench.prepare.files import check_inputs
from twsbench.running.catalog import get_class, known_names, load_plugins, make

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelRun:
    """One scored model of a run: the registered ``name`` (``NAME+residual``,
    ``NAME+conserve`` and ``NAME+residual+conserve`` allowed), its ``seed``, its ``params``
    (the model's defaults updated by the config's tables) and the ``device`` it runs on.
    Runs of one name's variants with the same seed, parameters and device share one fit
    (:attr:`fit_key`)."""

    name: str
    seed: int
    params: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"

    @property
    def tag(self) -> str:
        return f"{self.name}__seed{self.seed}"

    @property
    def base(self) -> str:
        """The registered model this wraps (the name itself when it wraps nothing)."""
        return split_name(self.name)[0]

    @property
    def fit_key(self) -> str:
        """What decides the fitted model: runs with the same key share one fit."""
        import json

        return json.dumps([self.base, self.seed, self.params, self.device], sort_keys=True,
                          default=str)

    def make(self) -> Downscaler:
        return make(self.name, seed=self.seed, params=self.params, device=self.device)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "seed": self.seed, "params": self.params,
                "device": self.device}


def config_folder(config: Config) -> list[Path]:
    """The folder of the config file (searched for plug-ins), when it came from a file."""
    source = Path(config.source)
    return [source.parent] if source.suffix == ".toml" and source.is_file() else []


def load(config: Config) -> list:
    """Import the config's plug-in modules (and discover the entry points)."""
    return load_plugins(config.models.plugins, config_folder(config))


def model_names(config: Config) -> tuple[str, ...]:
    """The config's model names; when it names none, the default run's models
    (:data:`twsbench.core.config.DEFAULT_MODELS`) that this machine can run (the CNN needs
    torch)."""
    load(config)
    if config.models.names is not None:
        return config.models.names
    names = tuple(n for n in DEFAULT_MODELS if get_class(n).available())
    skipped = [n for n in DEFAULT_MODELS if n not in names]
    if skipped:
        log.warning("models not run (missing requirements, e.g. torch for the CNNs): %s",
                    ", ".join(skipped))
    return names


def params_for(config: Config, name: str) -> dict[str, Any]:
    """``[models.params.NAME]``, updated for a wrapped variant by the tables of its longer
    names in turn (``"NAME+residual"``, then ``"NAME+residual+conserve"``): what ``run``
    scores and ``release`` refits alike."""
    base, steps = split_name(name)
    params = dict(config.models.params.get(base, {}))
    for k in range(1, len(steps) + 1):
        params.update(config.models.params.get(base + "".join(steps[:k]), {}))
    return params


def plan(config: Config) -> list[ModelRun]:
    """Every (model, seed, params, device) of ``config``, in order, checked against this
    machine before anything is written.

    A stochastic model runs once per seed of ``[models] seeds``, the others once (with the
    first seed). The device is ``[compute] device`` resolved once for the machine: a model
    that lists it in ``devices`` runs there, the others on the CPU.

    Raises
    ------
    ConfigError, InputError
        For what the config names but this machine does not have: unknown models,
        parameter tables or metrics, parameters of the wrong type, missing plug-ins, torch
        for a CNN, missing or empty input files.
    """
    names = model_names(config)
    for table in config.models.params:
        if split_name(table)[0] not in known_names():
            raise ConfigError(f"[models.params.{table}]: expected a table named after a "
                              f"registered model (among {', '.join(known_names())}), found "
                              f"{table!r}")
    device = backend.resolve(config.compute.device)
    runs: list[ModelRun] = []
    for name in names:
        cls = get_class(name)
        seeds = config.models.seeds if cls.stochastic else config.models.seeds[:1]
        where = device if device in cls.devices else "cpu"
        given = params_for(config, name)
        # building one model checks its parameters (and torch); its merged parameters, the
        # defaults included, are what every seed runs with and what the records say
        params = dict(getattr(ModelRun(name, 0, given, where).make(), "params", given))
        runs.extend(ModelRun(name, int(seed), params, where) for seed in seeds)
    for task in ("downscale", "gapfill"):
        _check_metric(task, getattr(config.ranking, task))
    check_inputs(config)
    return runs


def fit_groups(runs: Sequence[ModelRun]) -> list[list[ModelRun]]:
    """``runs`` gathered by :attr:`ModelRun.fit_key`, in the order each key first comes:
    one task, one fit, per group."""
    groups: dict[str, list[ModelRun]] = {}
    for run in runs:
        groups.setdefault(run.fit_key, []).append(run)
    return list(groups.values())


def _check_metric(task: str, metric: str) -> None:
    from twsbench.scoring.table import SCORES

    valid = ["auto", *(s.name for s in SCORES), "r_submascon_truth"]
    if metric not in valid:
        raise ConfigError(f"[ranking] {task}: expected auto or a score name (e.g. "
                          f"nse_submascon_truth, nse_fine_truth), found {metric!r}")


def code_files(config: Config, runs: Sequence[ModelRun]) -> list[Path]:
    """Source files outside twsbench that ``runs`` of ``config`` use: its plug-in modules and
    the modules defining its models (entry points included)."""
    modules = {m.__name__ for m in load(config)}
    for run in runs:
        modules.add(get_class(run.name).__module__)
    files = []
    for module in sorted(modules):
        if module.split(".")[0] == codehash.ROOT:
            continue
        path = getattr(sys.modules.get(module), "__file__", None)
        if path:
            files.append(Path(path))
    return files


def code_hash(extra: Sequence[Path] = ()) -> str:
    """Hash of every module a run imports (:data:`twsbench.core.codehash.RUN` and its
    imports), plus ``extra`` files (plug-ins)."""
    return codehash.digest(codehash.RUN, extra)
