"""Run configuration: TOML into frozen dataclasses, validated once.

Leaving out ``[inputs]`` uses the built-in twin world (generated and cached). Unknown keys
and values that make no sense raise :class:`twsbench.core.errors.ConfigError` naming the key.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from twsbench.core.domains import Domain, get_domain
from twsbench.core.errors import ConfigError


@dataclass(frozen=True)
class Inputs:
    """Paths of real-format input files; ``None`` everywhere means the twin world."""

    grace: str | None = None
    wghm: str | None = None
    era5: tuple[str, ...] = ()
    truth: str | None = None
    grace_companions: tuple[str, ...] = ()

    @property
    def is_twin(self) -> bool:
        return self.grace is None


#: How strongly the twin's inputs relate to its truth (see README, "Realism levels").
REALISM = ("optimistic", "realistic", "pessimistic")


#: The twin's axes: what no source pins down, each set explicitly (``None``: the realism
#: level's own construction). See :class:`Axes`.
AXES = ("submascon_skill", "submascon_share", "human_ratio", "submascon_structure")
#: Short names of the axes in world labels.
AXIS_TAGS = {"submascon_skill": "skill", "submascon_share": "share", "human_ratio": "human",
             "submascon_structure": "seasonal"}
#: Allowed values of each axis (inclusive bounds).
AXIS_RANGES = {"submascon_skill": (0.0, 0.95), "submascon_share": (0.01, 0.6),
               "human_ratio": (0.0, 3.0), "submascon_structure": (0.0, 1.0)}


@dataclass(frozen=True)
class Axes:
    """Where a twin world sits on what no source pins down.

    ``submascon_skill``: the correlation of WaterGAP's sub-mascon departures with the truth's
    (median over cells of the correlation over months); ERA5's is a set share of it.
    ``submascon_share``: the truth's share of variance below the mascon scale.
    ``human_ratio``: how much of the truth's depletion and reservoir trends WaterGAP carries.
    ``submascon_structure``: the share of the truth's sub-mascon variance in its seasonal cycle
    (the rest is variability of its own). ``None`` keeps the realism level's construction.
    """

    submascon_skill: float | None = None
    submascon_share: float | None = None
    human_ratio: float | None = None
    submascon_structure: float | None = None

    @property
    def any(self) -> bool:
        return any(getattr(self, k) is not None for k in AXES)

    @property
    def label(self) -> str:
        """``-skill0.5-human1`` for the axes that are set; empty for none."""
        return "".join(f"-{AXIS_TAGS[k]}{getattr(self, k):g}" for k in AXES
                       if getattr(self, k) is not None)

    def describe(self) -> str:
        return ", ".join(f"{k} {getattr(self, k):g}" for k in AXES
                         if getattr(self, k) is not None)


@dataclass(frozen=True)
class TwinWorld:
    """One twin world: its seed, realism level and axes."""

    seed: int
    realism: str
    axes: Axes = Axes()

    @property
    def label(self) -> str:
        return f"{self.realism}{self.axes.label}-seed{self.seed}"


@dataclass(frozen=True)
class Twin:
    """The twin world(s) used when ``[inputs]`` is absent.

    ``seeds`` (several worlds) takes the place of ``seed``; ``realism`` is one level or a list.
    Every (realism, seed) pair is a world; the first is the *primary* world, whose scores make
    the leaderboard and whose model is released; the others test the verdict's stability.
    """

    seed: int = 0
    seeds: tuple[int, ...] = ()
    realism: tuple[str, ...] = ("realistic",)
    submascon_skill: tuple[float, ...] = ()
    submascon_share: tuple[float, ...] = ()
    human_ratio: tuple[float, ...] = ()
    submascon_structure: tuple[float, ...] = ()

    @property
    def axes(self) -> list[Axes]:
        """Every combination of the axes' values (the first axis varying slowest)."""
        import itertools

        values = [getattr(self, k) or (None,) for k in AXES]
        return [Axes(**dict(zip(AXES, combo, strict=True)))
                for combo in itertools.product(*values)]

    @property
    def worlds(self) -> list[TwinWorld]:
        seeds = self.seeds or (self.seed,)
        return [TwinWorld(s, r, a) for r in self.realism for a in self.axes for s in seeds]

    @property
    def primary(self) -> TwinWorld:
        return self.worlds[0]


@dataclass(frozen=True)
class DomainConfig:
    name: str | None = None
    bbox: tuple[float, float, float, float] | None = None

    def resolve(self) -> Domain:
        return get_domain(self.name, self.bbox)


@dataclass(frozen=True)
class Period:
    """Months of the product and the anomaly baseline (inclusive, ``YYYY-MM``)."""

    start: str = "2002-04"
    end: str = "2022-12"
    baseline_start: str = "2004-01"
    baseline_end: str = "2009-12"


@dataclass(frozen=True)
class Split:
    """Month split: held-out gap-like blocks and scattered months for test, scattered months
    for validation, the rest of the months with GRACE for training."""

    seed: int = 0
    test_blocks: int = 2
    block_length: int = 11
    test_scattered: int = 24
    validation: int = 24


@dataclass(frozen=True)
class Compute:
    """Where the work runs: ``device`` for the kernels and the CNNs; ``scheduler`` a Dask
    address, or ``workers`` the size of a ``LocalCluster``, for preprocessing and the fits
    (neither: in-process, see :mod:`twsbench.running.cluster`); ``threads_per_task`` the torch,
    BLAS and OpenMP threads of each fit (0: the default of where it runs); ``chunk_months`` the Dask
    chunk along time; ``task_timeout`` the seconds after which a (world, model, seed) task
    still running is stopped and recorded as failed (0: no limit)."""

    device: str = "auto"
    scheduler: str | None = None
    workers: int = 0
    threads_per_task: int = 0
    chunk_months: int = 12
    task_timeout: float = 0.0


#: The default run's models: the baselines and the dynamic CNN, the learned ones also with the
#: month's GRACE residual (``+residual``, from the same fit); the CNN's ablations run from
#: ``configs/twin-ablations.toml``.
DEFAULT_MODELS = ("mascon", "bilinear", "pattern_transfer", "wghm_anomaly", "mascon_regression",
                  "random_forest", "random_forest+residual", "lightgbm", "lightgbm+residual",
                  "soft_cnn", "soft_cnn+residual")


@dataclass(frozen=True)
class Models:
    """Which downscalers run, with which seeds, and their parameters
    (``[models.params.NAME]`` tables).

    ``names`` left out runs the default run's models (:data:`DEFAULT_MODELS`, those this
    machine can run: the CNN needs torch); ``seeds`` are the stochastic models' seeds (three
    by default); ``plugins`` are modules imported first, which register downscalers of their
    own (searched beside the config file too); ``params_files`` are parameter layers
    (``twsbench tune``'s output, paths relative to the config file) applied on top of the
    config's own ``[models.params]`` tables, before ``run --params`` layers.
    Names, parameters and plug-ins are checked against the registry by the harness
    (:mod:`twsbench.running.plan`), not here.
    """

    names: tuple[str, ...] | None = None
    seeds: tuple[int, ...] = (0, 1, 2)
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    plugins: tuple[str, ...] = ()
    params_files: tuple[str, ...] = ()


@dataclass(frozen=True)
class Ranking:
    """How each task's leaderboard ranks, and how the release picks its model.

    ``downscale`` and ``gapfill`` name each task's primary score; ``"auto"`` is, with a truth
    (the twin), ``nse_submascon_truth`` (skill below the mascon scale) and ``nse_fine_truth``;
    on real files ``gapfill`` ranks on ``nse_mascon_grace`` against the withheld GRACE and
    ``downscale`` is not ranked (sub-mascon skill cannot be scored without a truth). The
    release takes the first model of ``release_task``'s leaderboard among those that predict
    every month. ``hotspot_trend`` (mm/yr) sets the hotspot cells of
    ``trend_error_hotspot_truth``. ``resamples`` is the number of paired block-bootstrap
    resamples behind every significance verdict. ``against`` names models every other model
    is also tested against, on both tasks, beside each task's reference models (an ablation
    against its full model).
    """

    downscale: str = "auto"
    gapfill: str = "auto"
    region: str = "domain"
    release_task: str = "gapfill"
    hotspot_trend: float = 5.0
    resamples: int = 2000
    against: tuple[str, ...] = ()


@dataclass(frozen=True)
class Report:
    """Months shown as maps (``YYYY-MM``; empty: one test month and one gap month), and a
    verdict map (a map run's ``verdict_map.csv``, or its folder) on which a run on real
    files shows where its inputs sit."""

    map_months: tuple[str, ...] = ()
    verdict_map: str | None = None


@dataclass(frozen=True)
class Config:
    inputs: Inputs = Inputs()
    twin: Twin = Twin()
    domain: DomainConfig = DomainConfig()
    period: Period = Period()
    split: Split = Split()
    compute: Compute = Compute()
    models: Models = Models()
    ranking: Ranking = Ranking()
    report: Report = Report()
    #: provenance of tuned parameters (``twsbench tune``'s ``[tuning]`` table), by model
    tuning: dict[str, Any] = field(default_factory=dict)
    #: parameter layers applied on top of the config file (``twsbench run --params``)
    layers: tuple[str, ...] = ()
    source: str = "<defaults>"

    @property
    def worlds(self) -> list[TwinWorld] | None:
        """The twin worlds of this config; ``None`` for real input files."""
        return self.twin.worlds if self.inputs.is_twin else None

    def for_world(self, world: TwinWorld) -> Config:
        """This config with ``world`` as its one twin world."""
        one = {k: (getattr(world.axes, k),) if getattr(world.axes, k) is not None else ()
               for k in AXES}
        return replace(self, twin=Twin(seed=world.seed, realism=(world.realism,), **one))

    def grids_key(self) -> dict[str, Any]:
        """The parts of the config that decide the prepared grids (of the primary world)."""
        return {"inputs": asdict(self.inputs), "twin": asdict(self.twin.primary),
                "domain": asdict(self.domain), "period": asdict(self.period),
                "split": asdict(self.split)}

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("source")
        return out

    def digest(self) -> str:
        """A short hash of the whole config."""
        text = json.dumps(self.to_dict(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


_SECTIONS = {"inputs": Inputs, "twin": Twin, "domain": DomainConfig, "period": Period,
             "split": Split, "compute": Compute, "models": Models, "ranking": Ranking,
             "report": Report}


_ELEMENT = {"str": (str,), "int": (int,), "float": (float, int)}
_WORDS = {"str": "strings", "int": "integers", "float": "numbers"}


def _build(cls, table: dict[str, Any], where: str):
    """One section from its TOML table, each value checked against the field's type."""
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise ConfigError(f"[{where}]: expected keys among {', '.join(known)}, found "
                          f"unknown {', '.join(unknown)}")
    values = {}
    for name, value in table.items():
        kind = str(known[name].type)  # e.g. "tuple[str, ...] | None", "int", "str | None"
        if name == "params":
            if not isinstance(value, dict) or not all(isinstance(v, dict)
                                                      for v in value.values()):
                raise ConfigError(f"[{where}] params: expected tables [models.params.NAME], "
                                  f"found {value!r}")
        elif kind.startswith("tuple["):
            element = kind[len("tuple["):].split(",")[0].strip()
            if isinstance(value, str) and element == "str":
                value = [value]
            if element == "float" and isinstance(value, int | float) and not isinstance(
                    value, bool):
                value = [value]
            if not isinstance(value, list):
                what = "a number or a list of numbers" if element == "float" else "a list"
                raise ConfigError(f"[{where}] {name}: expected {what}, found {value!r}")
            allowed = _ELEMENT.get(element, (object,))
            bad = [v for v in value if not isinstance(v, allowed) or isinstance(v, bool)]
            if bad:
                raise ConfigError(f"[{where}] {name}: expected a list of {_WORDS[element]}, "
                                  f"found {bad[0]!r}")
            value = tuple(float(v) for v in value) if element == "float" else tuple(value)
        elif kind == "int":
            if not isinstance(value, int) or isinstance(value, bool):
                raise ConfigError(f"[{where}] {name}: expected an integer, found {value!r}")
        elif kind == "float":
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise ConfigError(f"[{where}] {name}: expected a number, found {value!r}")
            value = float(value)
        elif kind.startswith("str"):
            if not isinstance(value, str):
                raise ConfigError(f"[{where}] {name}: expected a string, found {value!r}")
        values[name] = value
    return cls(**values)


def parse(table: dict[str, Any], source: str = "<dict>", base: Path | None = None,
          layers: tuple[str | Path, ...] = (), sets: tuple[str, ...] = ()) -> Config:
    """Build and validate a :class:`Config` from a parsed TOML table.

    Parameter layers go on top of the table in turn: its ``[models] params_files``
    (relative to ``base``), then ``layers``; the ``sets`` (``KEY=VALUE``, see
    :func:`override`) go last, and decide ``params_files`` too.
    """
    for text in sets:
        table = merge(table, override(text))
    files = table.get("models", {}).get("params_files", [])
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        raise ConfigError(f"[models] params_files: expected a list of file names, found "
                          f"{files!r}")
    applied = [str(((base or Path.cwd()) / f).resolve()) for f in files]
    applied += [str(Path(p).resolve()) for p in layers]
    for path in applied:
        table = merge(table, read_layer(path))
    for text in sets:
        table = merge(table, override(text))
    return _parse(table, source, base, tuple(applied))


def _parse(table: dict[str, Any], source: str, base: Path | None, layers: tuple[str, ...]
           ) -> Config:
    unknown = sorted(set(table) - set(_SECTIONS) - {"tuning"})
    if unknown:
        raise ConfigError(f"{source}: expected sections among {', '.join(_SECTIONS)}, "
                          f"tuning, found unknown {', '.join(unknown)}")
    tuning = table.get("tuning", {})
    if not isinstance(tuning, dict):
        raise ConfigError(f"{source}: [tuning]: expected a table, found {tuning!r}")
    parts = {}
    for name, cls in _SECTIONS.items():
        section = table.get(name, {})
        if not isinstance(section, dict):
            raise ConfigError(f"{source}: [{name}]: expected a table, found {section!r}")
        parts[name] = _build(cls, section, name)
    inputs = parts["inputs"]
    if base is not None:  # relative paths are relative to the config file
        rel = lambda p: str((base / p).resolve()) if p else p  # noqa: E731
        inputs = Inputs(grace=rel(inputs.grace), wghm=rel(inputs.wghm),
                        era5=tuple(rel(p) for p in inputs.era5), truth=rel(inputs.truth),
                        grace_companions=tuple(rel(p) for p in inputs.grace_companions))
    parts["inputs"] = inputs
    if base is not None and parts["report"].verdict_map:
        parts["report"] = replace(parts["report"], verdict_map=str(
            (base / parts["report"].verdict_map).resolve()))
    config = Config(**parts, tuning=dict(tuning), layers=tuple(layers), source=source)
    validate(config)
    return config


def _read(path: Path, what: str) -> dict[str, Any]:
    if not path.exists():
        raise ConfigError(f"{path}: expected a TOML {what}, found no such file")
    try:
        return tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: expected valid TOML, found {err}") from err


def merge(base: dict[str, Any], layer: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``layer``'s values put in, tables merged key by key (a copy)."""
    out = dict(base)
    for key, value in layer.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


#: what a parameter layer may set: model parameters and their tuning's provenance
LAYER_KEYS = {"models": {"params"}, "tuning": None}


def read_layer(path: str | Path) -> dict[str, Any]:
    """A parameter layer (``twsbench tune``'s output): ``[models.params.NAME]`` tables and a
    ``[tuning]`` table, nothing else."""
    path = Path(path)
    table = _read(path, "parameter layer")
    for section, value in table.items():
        if section not in LAYER_KEYS:
            raise ConfigError(f"{path}: [{section}]: expected only [models.params.NAME] and "
                              f"[tuning] tables in a parameter layer, found [{section}]")
        allowed = LAYER_KEYS[section]
        extra = sorted(set(value) - allowed) if allowed is not None else []
        if extra:
            raise ConfigError(f"{path}: [{section}] {extra[0]}: expected only "
                              f"[models.params.NAME] and [tuning] tables in a parameter "
                              f"layer, found {extra[0]}")
    return table


def override(text: str) -> dict[str, Any]:
    """``--set KEY=VALUE`` as a table: ``models.params.soft_cnn_grace.grace_dropout=0.6`` →
    ``{"models": {"params": {"soft_cnn_grace": {"grace_dropout": 0.6}}}}``. The value is
    TOML (a bare word is taken as a string); the key may quote parts
    (``models.params."lightgbm+residual".n_estimators=100``)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set: expected KEY=VALUE (e.g. models.seeds=[0]), found {text!r}")
    for candidate in (value.strip(), json.dumps(value.strip())):
        try:
            return tomllib.loads(f"{key.strip()} = {candidate}")
        except tomllib.TOMLDecodeError:
            continue
    raise ConfigError(f"--set: expected KEY=VALUE with a TOML key, found {text!r}")


#: The default run's tuned parameters: ``configs/tuned-south-asia.toml``, carried by the
#: package beside this module
TUNED_DEFAULT = Path(__file__).with_name("tuned-south-asia.toml")
BUILT_IN = "<built-in twin config>"


def load(path: str | Path | None, layers: tuple[str | Path, ...] = (),
         sets: tuple[str, ...] = ()) -> Config:
    """Read a TOML config file (``None``: the built-in twin config, the default run with its
    tuned parameters), with parameter ``layers`` (:func:`read_layer`) and ``sets``
    (:func:`override`) applied (see :func:`parse`)."""
    if path is None:
        table: dict[str, Any] = {"models": {"params_files": [str(TUNED_DEFAULT)]}}
        source, base = BUILT_IN, None
    else:
        path = Path(path)
        table = _read(path, "config file")
        source, base = str(path), path.parent
    return parse(table, source, base=base, layers=layers, sets=sets)


def validate(config: Config) -> None:
    """Raise :class:`ConfigError` for a config that makes no sense."""
    inputs = config.inputs
    if not inputs.is_twin and (inputs.wghm is None or not inputs.era5):
        raise ConfigError("[inputs]: expected grace, wghm and era5 together, found "
                          f"grace={'set' if inputs.grace else 'missing'} "
                          f"wghm={'set' if inputs.wghm else 'missing'} "
                          f"era5={'set' if inputs.era5 else 'missing'}")
    if inputs.is_twin and (inputs.wghm or inputs.era5 or inputs.truth):
        raise ConfigError("[inputs]: expected grace with wghm and era5 (or no [inputs] for the "
                          "twin world), found no grace")
    validate_twin(config.twin)
    bbox = config.domain.bbox
    if bbox is not None and len(bbox) != 4:
        raise ConfigError(f"[domain] bbox: expected [south, north, west, east], found "
                          f"{list(bbox)!r}")
    config.domain.resolve()
    months = {}
    for key in ("start", "end", "baseline_start", "baseline_end"):
        value = getattr(config.period, key)
        try:
            months[key] = np.datetime64(value, "M")
        except ValueError as err:
            raise ConfigError(f"[period] {key}: expected YYYY-MM, found {value!r}") from err
    if months["end"] < months["start"]:
        raise ConfigError(f"[period]: expected start <= end, found {config.period.start} > "
                          f"{config.period.end}")
    if months["baseline_end"] < months["baseline_start"]:
        raise ConfigError("[period]: expected baseline_start <= baseline_end, found "
                          f"{config.period.baseline_start} > {config.period.baseline_end}")
    s = config.split
    for key in ("test_blocks", "test_scattered", "validation"):
        if getattr(s, key) < 0:
            raise ConfigError(f"[split] {key}: expected >= 0, found {getattr(s, key)}")
    if s.block_length < 1:
        raise ConfigError(f"[split] block_length: expected >= 1, found {s.block_length}")
    if config.compute.device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"[compute] device: expected auto, cpu or cuda, found "
                          f"{config.compute.device!r}")
    _validate_models(config.models)
    _validate_ranking(config)
    if config.compute.chunk_months < 1:
        raise ConfigError(f"[compute] chunk_months: expected >= 1, found "
                          f"{config.compute.chunk_months}")
    for key in ("workers", "threads_per_task"):
        if getattr(config.compute, key) < 0:
            raise ConfigError(f"[compute] {key}: expected >= 0, found "
                              f"{getattr(config.compute, key)}")
    if config.compute.task_timeout < 0:
        raise ConfigError(f"[compute] task_timeout: expected seconds >= 0 (0: no limit), found "
                          f"{config.compute.task_timeout:g}")
    if config.compute.scheduler and config.compute.workers:
        raise ConfigError(f"[compute]: expected scheduler or workers, found both "
                          f"({config.compute.scheduler!r} and {config.compute.workers})")


def validate_twin(twin: Twin) -> None:
    if not twin.realism:
        raise ConfigError(f"[twin] realism: expected one of {', '.join(REALISM)} or a list of "
                          "them, found none")
    bad = [r for r in twin.realism if r not in REALISM]
    if bad:
        raise ConfigError(f"[twin] realism: expected one of {', '.join(REALISM)}, found "
                          f"{bad[0]!r}")
    if len(set(twin.realism)) != len(twin.realism):
        raise ConfigError("[twin] realism: expected each level once, found repeats")
    seeds = twin.seeds or (twin.seed,)
    if any(s < 0 for s in seeds):
        raise ConfigError(f"[twin] seeds: expected non-negative integers, found "
                          f"{[s for s in seeds if s < 0][0]!r}")
    if len(set(seeds)) != len(seeds):
        raise ConfigError("[twin] seeds: expected each seed once, found repeats")
    for key in AXES:
        values = getattr(twin, key)
        lo, hi = AXIS_RANGES[key]
        bad = [v for v in values if not lo <= v <= hi]
        if bad:
            raise ConfigError(f"[twin] {key}: expected numbers in [{lo:g}, {hi:g}], found "
                              f"{bad[0]:g}")
        if len(set(values)) != len(values):
            raise ConfigError(f"[twin] {key}: expected each value once, found repeats")
        if values and "optimistic" in twin.realism:
            raise ConfigError(f"[twin] {key}: expected realism realistic or pessimistic (the "
                              "optimistic level has no axes), found optimistic")


def _validate_models(models: Models) -> None:
    """Shapes only; the names are checked against the registry by :mod:`twsbench.running.plan`."""
    names = models.names
    if names is not None:
        if not names:
            raise ConfigError("[models] names: expected at least one model (or leave names "
                              "out for the default run's models), found none")
        if len(set(names)) != len(names):
            raise ConfigError("[models] names: expected each model once, found repeats")
    if not models.seeds:
        raise ConfigError("[models] seeds: expected at least one seed, found none")
    bad_seeds = [s for s in models.seeds if s < 0]  # integers: checked by _build
    if bad_seeds:
        raise ConfigError(f"[models] seeds: expected non-negative integers, found "
                          f"{bad_seeds[0]!r}")
    if len(set(models.seeds)) != len(models.seeds):
        raise ConfigError("[models] seeds: expected each seed once, found repeats")
    bad = [p for p in models.plugins if not all(part.isidentifier() for part in p.split("."))]
    if bad:
        raise ConfigError(f"[models] plugins: expected module names (e.g. "
                          f"'my_package.my_module'), found {bad[0]!r}")


def _validate_ranking(config: Config) -> None:
    from twsbench.core.splits import TASKS

    ranking = config.ranking
    if ranking.release_task not in TASKS:
        raise ConfigError(f"[ranking] release_task: expected one of {', '.join(TASKS)}, found "
                          f"{ranking.release_task!r}")
    if ranking.resamples < 20:
        raise ConfigError(f"[ranking] resamples: expected at least 20 bootstrap resamples, "
                          f"found {ranking.resamples}")
    if not ranking.hotspot_trend > 0:
        raise ConfigError(f"[ranking] hotspot_trend: expected a positive number of mm/yr, "
                          f"found {ranking.hotspot_trend!r}")
    for month in config.report.map_months:
        try:
            np.datetime64(month, "M")
        except (ValueError, TypeError) as err:
            raise ConfigError(f"[report] map_months: expected YYYY-MM, found {month!r}") from err


def toml_value(value: Any, digits: int | None = None) -> str:
    """A scalar or list as TOML text; floats to ``digits`` significant digits if given."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v, digits) for v in value) + "]"
    if isinstance(value, float):
        return repr(float(f"{value:.{digits}g}") if digits else value)
    if isinstance(value, int):
        return str(value)
    return json.dumps(str(value))  # a TOML basic string


def from_plain(plain: dict[str, Any], source: str) -> Config:
    """A config back from :func:`as_plain` (as saved in a run's ``meta.json``)."""
    table = {section: {k: v for k, v in values.items() if v is not None}
             for section, values in plain.items()
             if section not in ("source", "layers") and isinstance(values, dict)}
    # the layers' parameters are in the tables already: not read again
    table.get("models", {}).pop("params_files", None)
    return _parse(table, source, None, tuple(plain.get("layers", ())))


def as_plain(obj: Any) -> Any:
    """Dataclasses and tuples to JSON-friendly dicts and lists."""
    if is_dataclass(obj) and not isinstance(obj, type):  # an instance, not a dataclass type
        return {k: as_plain(v) for k, v in asdict(obj).items()}
    if isinstance(obj, (list, tuple)):
        return [as_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {k: as_plain(v) for k, v in obj.items()}
    return obj
