"""``twsbench run``: prepare → fit and predict every model (timed) → scores → report.

Each (world, model, seed) fit is a task (:func:`twsbench.running.tasks.fit_one`) that also
predicts and scores the model's variants sharing it (``X+residual``), run in-process or on a
``dask.distributed`` cluster (:mod:`twsbench.running.cluster`); the results are taken in the plan's
order, so the tables do not depend on where the tasks ran.

A run writes into a hidden working folder and renames it to ``reports/<run_id>/`` only when
everything is written, so a killed run leaves no partial report. ``run_id`` hashes the config
and the code; a finished run is never overwritten (``force`` writes a new, suffixed folder).
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from twsbench import __version__
from twsbench.core import backend, cache
from twsbench.core.config import Config, TwinWorld, as_plain
from twsbench.core.errors import ConfigError
from twsbench.prepare.files import resolve_inputs
from twsbench.prepare.grids import Grids
from twsbench.prepare.store import prepare
from twsbench.running.cluster import Job, Tasks, executor
from twsbench.running.plan import ModelRun, code_files, code_hash, fit_groups, plan
from twsbench.running.records import FOLDER, Failure, Records, task_key
from twsbench.running.tasks import FitResult, World
from twsbench.scoring import uncertainty
from twsbench.scoring.comparisons import (
    MAP_REFERENCE,
    MONTHLY_LOSSES,
    VERDICT_MAP,
    WORLDS_MONTHLY,
    compare,
)
from twsbench.scoring.reference import truth_on_cells
from twsbench.scoring.table import COLUMNS, MONTHLY_COLUMNS

log = logging.getLogger(__name__)
Stage = Callable[[str], None]
Progress = Callable[[str, int, int], None]

DONE = "index.html"
FAILURES = "failures.csv"
FAILURES_LOG = "failures.log"


def run_id(config: Config, runs: list[ModelRun] | None = None) -> str:
    """Hash of the config, what it runs (models, seeds, parameters, devices) and the code
    (every module of twsbench and the plug-in modules used). The models' names and parameter
    tables enter only as ``runs`` resolves them, and the domain as it resolves, so a config
    spelling out the defaults is the same run as one leaving them out."""
    import hashlib

    runs = plan(config) if runs is None else runs
    plain = as_plain(config)
    plain.pop("source", None)
    plain.pop("layers", None)  # where parameters came from; they are in runs, [tuning] here
    for key in ("scheduler", "workers", "threads_per_task", "task_timeout"):  # how, not what
        plain["compute"].pop(key, None)
    for key in ("names", "params", "params_files"):  # what they resolve to is in runs
        plain["models"].pop(key, None)
    plain["domain"] = as_plain(config.domain.resolve())
    text = json.dumps({"config": plain, "version": __version__,
                       "runs": [r.as_dict() for r in runs],
                       "code": code_hash(code_files(config, runs))}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def save_grid(grids: Grids, truth: np.ndarray | None, path: Path,
              reference: np.ndarray | None = None) -> None:
    """What the report needs of the grids and the references, in one small file: ``grace``
    is every month's GRACE (the withheld months' included, from ``reference``),
    ``has_grace`` whether a solution exists, ``grace_visible`` whether models saw it."""
    reference = grids.grace if reference is None else reference
    ds = xr.Dataset(
        {"cell_index": ("cell", grids.cell_index), "cell_mascon": ("cell", grids.cell_mascon),
         "cell_area": ("cell", grids.cell_area),
         "has_grace": ("month", np.isfinite(reference).all(axis=1).astype("i1")),
         "grace_visible": ("month", grids.has_grace.astype("i1")),
         "grace": (("month", "mascon"), reference.astype(np.float32)),
         **{f"split_{k}": ("month", v.astype("i1")) for k, v in grids.splits.items()}},
        coords={"lat": grids.lat, "lon": grids.lon,
                "month": grids.months.astype("datetime64[ns]")})
    if truth is not None:
        ds["truth"] = (("month", "cell"), truth.astype(np.float32))
    ds.to_netcdf(path, engine="netcdf4")


def save_prediction(cells: np.ndarray, grids: Grids, path: Path, attrs: dict,
                    var: str = "twsa") -> None:
    path.parent.mkdir(exist_ok=True)
    da = xr.DataArray(cells.astype(np.float32), dims=("month", "cell"), name=var,
                      coords={"month": grids.months.astype("datetime64[ns]")},
                      attrs={"units": "mm", **attrs})
    da.to_netcdf(path, engine="netcdf4",
                 encoding={var: {"zlib": True, "complevel": 1}})


def versions() -> dict[str, str]:
    out = {"twsbench": __version__, "python": platform.python_version()}
    for name in ("numpy", "scipy", "xarray", "dask", "netCDF4", "sklearn", "lightgbm",
                 "torch"):
        try:
            module = __import__(name)
            out[name] = getattr(module, "__version__", "?")
        except ImportError:
            continue
    return out


@dataclass
class WorldResult:
    """What one world's fits give: score rows, monthly rows, the fits' timings, with a truth
    the uncertainty rows and each model's calibration of its σ, and the failed tasks."""

    rows: list = field(default_factory=list)
    monthly: list = field(default_factory=list)
    timing: list[dict[str, Any]] = field(default_factory=list)
    uncertainty: list = field(default_factory=list)
    calibrations: dict[str, dict] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)


def _retag(rows: list, rid: str) -> list:
    """Score rows with this run's id (a record may come from a run before a plug-in fix)."""
    return [(rid, *row[1:]) for row in rows]


def _assemble(runs: list[ModelRun], world: World, results: Iterable[FitResult],
              failed: set[str], rid: str, work: Path | None, stage: Stage) -> WorldResult:
    """Take one world's fit results in the plan's order: their rows and timings; with a
    truth, each model's seed ensemble (its seeds that did not fail) and its calibrated σ
    (:mod:`twsbench.scoring.uncertainty`, fitted on the validation months, scored on the
    tasks' months). Predictions, histories and σ are saved into ``work`` (the primary world)
    unless it is ``None``. A failed result (its tag in ``failed``) adds its failure and
    nothing else."""
    out = WorldResult()
    grids, truth = world.grids, world.truth
    ok = [k for k, spec in enumerate(runs) if spec.tag not in failed]
    last = {runs[k].name: k for k in ok}  # a model's seeds are consecutive
    members = {name: sum(runs[k].name == name for k in ok) for name in last}
    ensembles: dict[str, uncertainty.Accumulator] = {}
    seen: set[int] = set()
    for k, (spec, result) in enumerate(zip(runs, results, strict=True)):
        name, seed, tag = spec.name, spec.seed, spec.tag
        if result.failure is not None:
            if id(result.failure) not in seen:  # one failure per fit, not per variant
                seen.add(id(result.failure))
                out.failures.append(result.failure)
            continue
        cells = result.cells
        assert cells is not None
        if work is not None:
            save_prediction(cells, grids, work / "predictions" / f"{tag}.nc",
                            {"model": name, "seed": seed})
            if result.history:
                (work / "history" / f"{tag}.json").write_text(
                    json.dumps(result.history, indent=1))
        out.rows += _retag(result.rows, rid)
        out.monthly += result.monthly
        out.timing.append(result.timing)
        if truth is not None:
            ensembles.setdefault(name, uncertainty.Accumulator()).add(cells, result.hidden)
            if last[name] == k:
                stage(f"{name}: calibrating σ")
                cal, sigma, u_rows = uncertainty.evaluate(grids, ensembles.pop(name), truth,
                                                          world.hot)
                out.calibrations[name] = cal.as_dict()
                if work is not None:
                    save_prediction(sigma, grids, work / "uncertainty" / f"{name}.nc",
                                    {"model": name, "members": members[name],
                                     "long_name": "1-sigma of the seed-ensemble mean"},
                                    var="sigma")
                out.uncertainty += [(rid, name, members[name], *u) for u in u_rows]
    return out


def _jobs(config: Config, runs: list[ModelRun], world: World, primary: bool) -> list[Job]:
    return [Job(world, group, task_key(config, world.label, group), primary)
            for group in fit_groups(runs)]


def _in_plan_order(runs: list[ModelRun], jobs: list[Job], records: Records
                   ) -> Iterator[FitResult]:
    """Each run's result, in the plan's order, from its task's record (one record in memory
    at a time: a model's variants and seeds are consecutive)."""
    where = {id(spec): (k, j) for k, job in enumerate(jobs) for j, spec in enumerate(job.group)}
    held: dict[int, list[FitResult]] = {}
    left = [len(job.group) for job in jobs]
    for spec in runs:
        k, j = where[id(spec)]
        if k not in held:
            held[k] = records.load(jobs[k].key).results
        yield held[k][j]
        left[k] -= 1
        if not left[k]:
            del held[k]


def withheld(grids: Grids) -> tuple[Grids, np.ndarray]:
    """What downscalers see in a run: the held-out blocks' GRACE withheld (the ``gapfill``
    task), and the GRACE scoring compares with (see
    :meth:`twsbench.prepare.grids.Grids.withhold`)."""
    return grids.withhold(grids.splits["gapfill_withheld"])


def _pid_of(path: Path) -> int | None:
    pid = path.name.rsplit("-", 1)[-1]
    return int(pid) if pid.isdigit() else None


def _dead(path: Path) -> bool:
    pid = _pid_of(path)
    return pid is not None and (pid == os.getpid() or not cache.alive(pid))


def _remove_stale(out_root: Path, taken: set[str] = frozenset()) -> None:  # type: ignore[assignment]
    """Remove working folders of killed runs (of any config or code version) that hold
    nothing to resume: no task records, or only records in ``taken`` (this run's). Those of
    runs still going are left alone."""
    for path in out_root.glob(".*.partial-*"):
        if not path.is_dir() or not _dead(path) or _pid_of(path) == os.getpid():
            continue
        keys = {p.stem for p in (path / FOLDER).glob("*.pkl")}
        if keys <= taken:
            shutil.rmtree(path, ignore_errors=True)


def has_failures(run_dir: Path) -> bool:
    """Whether a run folder's run finished with failed tasks."""
    return (run_dir / FAILURES).exists()


@dataclass
class RunFolder:
    """Where a run goes: ``final`` (``reports/<run_id>/``), written only through the hidden
    ``work`` folder, which :meth:`finish` renames into place.

    A run of the same id whose folder exists and finished without failures is ``done``. One
    that finished with failed tasks is run again into the same id: its finished tasks'
    records are taken (``resume``), the failed tasks run again, and the new folder replaces
    the old. The working folder of a killed run of the same id is taken over with its
    records. ``force`` writes a new, time-suffixed id and takes no records."""

    rid: str
    final: Path
    work: Path
    runs: list[ModelRun]
    done: bool
    resume: bool = True

    @classmethod
    def open(cls, config: Config, out_root: str | Path, force: bool = False) -> RunFolder:
        """Plan the run (every name, parameter, plug-in and input checked before anything is
        written) and find its folder."""
        out_root = Path(out_root)
        runs = plan(config)
        rid = run_id(config, runs)
        final = out_root / rid
        finished = (final / DONE).exists()
        done = finished and not force and not has_failures(final)
        if final.exists() and (force or not finished):
            rid = f"{rid}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}"
            final = out_root / rid
        return cls(rid, final, out_root / f".{rid}.partial-{os.getpid()}", runs, done,
                   resume=not force)

    def start(self) -> None:
        """Make this run's working folder, with the records of a killed run of the same id.

        Raises
        ------
        ConfigError
            When a run of the same id is under way in another process.
        """
        out_root = self.final.parent
        out_root.mkdir(parents=True, exist_ok=True)
        killed = []
        for path in sorted(out_root.glob(f".{self.rid}.partial-*"), key=os.path.getmtime):
            if path == self.work:
                continue
            if not _dead(path):
                raise ConfigError(f"run {self.rid}: expected no other run of it, found one "
                                  f"under way in process {_pid_of(path)} ({path})")
            killed.append(path)
        if self.work.exists():
            shutil.rmtree(self.work)
        (self.work / "predictions").mkdir(parents=True)
        (self.work / "history").mkdir()
        for path in killed:  # the newest last: its records win
            if self.resume and (path / FOLDER).is_dir():
                (self.work / FOLDER).mkdir(exist_ok=True)
                for record in (path / FOLDER).glob("*.pkl"):
                    os.replace(record, self.work / FOLDER / record.name)
            shutil.rmtree(path, ignore_errors=True)

    def finish(self) -> None:
        """Put the finished run in place (replacing the same id's run with failed tasks)
        and remove what killed runs left that this run has taken. Without failed tasks the
        records go: the tables and predictions hold what they held."""
        out_root = self.final.parent
        taken = {p.stem for p in (self.work / FOLDER).glob("*.pkl")}
        if not has_failures(self.work):
            shutil.rmtree(self.work / FOLDER, ignore_errors=True)
        if self.final.exists():
            old = out_root / f".{self.rid}.replaced-{os.getpid()}"
            os.replace(self.final, old)
            os.replace(self.work, self.final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(self.work, self.final)
        _remove_stale(out_root, taken)

    def discard(self) -> None:
        """Remove the working folder of a run that stopped, unless it holds task records
        (a later run of the same id takes them)."""
        if self.work.exists() and not any((self.work / FOLDER).glob("*.pkl")):
            shutil.rmtree(self.work, ignore_errors=True)


@dataclass
class Tables:
    """What a run's worlds give, gathered for the run folder's tables."""

    labels: list[str]
    rows: list = field(default_factory=list)
    monthly: list = field(default_factory=list)
    timing: list[dict[str, Any]] = field(default_factory=list)
    uncertainty: list = field(default_factory=list)
    world_rows: list = field(default_factory=list)
    world_monthly: list = field(default_factory=list)
    calibrations: dict[str, dict] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)

    @property
    def several(self) -> bool:
        return len(self.labels) > 1

    def add(self, k: int, got: WorldResult) -> None:
        """World ``k``'s results: the first world's make the scores; with several worlds
        every row and fit is tagged with its world."""
        label = self.labels[k]
        if k == 0:
            self.rows, self.monthly, self.calibrations = got.rows, got.monthly, got.calibrations
        if self.several:
            self.world_rows += [(label, *r) for r in got.rows]
            # the monthly losses the comparisons test, for each world's verdict
            self.world_monthly += [(label, *r) for r in got.monthly if r[4] in MONTHLY_LOSSES]
        self.timing += [{"world": label, **t} if self.several else t for t in got.timing]
        self.uncertainty += [(label, *r) if self.several else r for r in got.uncertainty]
        self.failures += got.failures

    def write(self, work: Path) -> None:
        """``scores.csv``/``.parquet``, ``monthly.csv``, ``timing.csv``, with a truth
        ``uncertainty.csv`` and ``uncertainty.json``, with several worlds ``worlds.csv``."""
        scores = _long_table(self.rows, list(COLUMNS))
        scores.to_csv(work / "scores.csv", index=False)
        scores.to_parquet(work / "scores.parquet", index=False)
        pd.DataFrame(self.monthly, columns=list(MONTHLY_COLUMNS)).to_csv(
            work / "monthly.csv", index=False)
        pd.DataFrame(self.timing).to_csv(work / "timing.csv", index=False)
        if self.uncertainty:  # with a truth: the calibrated σ's scores and (first world) terms
            columns = [*(["world"] if self.several else []), *uncertainty.UNCERTAINTY_COLUMNS]
            pd.DataFrame(self.uncertainty, columns=columns).to_csv(work / "uncertainty.csv",
                                                                   index=False)
            (work / "uncertainty.json").write_text(json.dumps(self.calibrations, indent=1))
        if self.world_rows:
            _long_table(self.world_rows, ["world", *COLUMNS]).to_csv(work / "worlds.csv",
                                                                     index=False)
            pd.DataFrame(self.world_monthly, columns=["world", *MONTHLY_COLUMNS]).to_csv(
                work / WORLDS_MONTHLY, index=False)
        if self.failures:
            pd.DataFrame([f.as_row() for f in self.failures]).to_csv(work / FAILURES,
                                                                     index=False)
            (work / FAILURES_LOG).write_text("\n".join(
                f"== {f.model} seed {f.seed}, world {f.world}: {f.stage} ({f.kind})\n"
                f"{f.reason}\n\n{f.traceback}" for f in self.failures))


def _long_table(rows: list, columns: list[str]) -> pd.DataFrame:
    table = pd.DataFrame(rows, columns=columns)
    # True / False, or empty where the best value is an ideal in between (bias, ratios)
    table["higher_is_better"] = table["higher_is_better"].astype("boolean")
    return table


def execute(config: Config, folder: RunFolder, *, benchmark_json: list[Path] | None = None,
            stage: Stage | None = None, progress: Progress | None = None,
            fail_fast: bool = False) -> dict[str, Any]:
    """Fit, predict and score every (world, model, seed) of the run and write the run's
    tables, ``grid.nc``, predictions, histories, the comparisons between models and
    ``meta.json`` into ``folder.work``. Returns the meta.

    Each task's record is saved in ``folder.work`` as it finishes; finished tasks' records
    of earlier runs (:mod:`twsbench.running.records`) are taken instead of running them
    again. A failed task is a row of ``failures.csv`` (its traceback in ``failures.log``);
    with ``fail_fast`` the first one raises :class:`twsbench.core.errors.TaskFailed`."""
    stage = stage or (lambda label: log.info("run: %s", label))
    work, runs, rid = folder.work, folder.runs, folder.rid
    started = time.time()
    stages: dict[str, float] = {}
    worlds: list[TwinWorld | None] = list(config.worlds) if config.worlds else [None]
    tables = Tables([w.label if w is not None else "files" for w in worlds])
    loaded: dict[str, Any] = {}

    def load_world(k: int) -> World:
        t0 = time.perf_counter()
        world = worlds[k]
        if k:
            stage(f"world {tables.labels[k]}")
        cfg = config.for_world(world) if world is not None else config
        full, path, cached = prepare(cfg, stage=stage)
        grids, reference = withheld(full)
        truth_path = resolve_inputs(cfg).truth
        truth = truth_on_cells(truth_path, grids) if truth_path else None
        if k == 0:
            loaded.update(grids_path=path, cached=cached, grids=grids, truth=truth)
            save_grid(grids, truth, work / "grid.nc", reference)
        stages["prepare"] = stages.get("prepare", 0.0) + time.perf_counter() - t0
        return World.of(tables.labels[k], grids, reference, truth,
                        config.ranking.hotspot_trend)

    records = Records(work, folder.final.parent, search=folder.resume)
    reused: list[str] = []
    ran: list[str] = []
    with executor(config, stage) as ex:
        # in-process one world at a time (one in memory); on a cluster every world's tasks
        # are sent at once
        batches = ([[k] for k in range(len(worlds))] if ex.where == "in-process"
                   else [list(range(len(worlds)))])
        for batch in batches:
            loaded_worlds = {k: load_world(k) for k in batch}
            jobs = {k: _jobs(config, runs, w, k == 0) for k, w in loaded_worlds.items()}
            todo = []
            for k in batch:
                for job in jobs[k]:
                    if records.finished(job.key):
                        reused.append(job.label)
                    else:
                        todo.append(job)
                        ran.append(job.label)
            if reused:
                stage(f"{len(reused)} finished tasks taken from earlier runs")
            tasks = Tasks(records, stage, progress, len(todo), fail_fast)
            ex.run(todo, config, rid, started, tasks)
            for k in batch:
                label = loaded_worlds[k].label
                failed = {tag for world, tag in records.failed if world == label}
                tables.add(k, _assemble(runs, loaded_worlds[k],
                                        _in_plan_order(runs, jobs[k], records), failed, rid,
                                        work if k == 0 else None, stage))
            del loaded_worlds, jobs
        where = ex.where
    # a fit shared by a model's variants counts once
    fits = {(t.get("world"), t["task"]): t["fit_seconds"] for t in tables.timing}
    stages["models"] = sum(fits.values()) + sum(t["predict_seconds"] for t in tables.timing)
    stages["scores"] = sum(t["score_seconds"] for t in tables.timing)
    stage("writing the scores")
    tables.write(work)
    for path in benchmark_json or []:
        (work / "benchmarks").mkdir(exist_ok=True)
        shutil.copy(path, work / "benchmarks" / Path(path).name)
    grids = loaded["grids"]
    meta = {"run_id": rid, "config": as_plain(config), "config_source": config.source,
            "versions": versions(), "seeds": list(config.models.seeds),
            "grids": {"path": str(loaded["grids_path"]), "cached": loaded["cached"],
                      **grids.summary()},
            "has_truth": loaded["truth"] is not None,
            "started": datetime.fromtimestamp(started, UTC).isoformat(timespec="seconds"),
            "stage_seconds": stages, "device": backend.resolve(config.compute.device),
            "runs": [r.as_dict() for r in runs], "plugins": list(config.models.plugins),
            "executor": where, "worlds": [w.label for w in worlds if w is not None],
            "world_axes": [{"world": w.label, "realism": w.realism, "seed": w.seed,
                            **as_plain(w.axes)} for w in worlds if w is not None],
            "params_layers": list(config.layers), "tuning": config.tuning,
            "tuning_status": tuning_status(config, runs),
            "failed_tasks": [f.as_row() for f in tables.failures],
            "reused_tasks": reused, "ran_tasks": ran}
    write_meta(work, meta)
    if Path(config.source).exists():
        shutil.copy(config.source, work / "config.toml")
    stage("comparing the models (block bootstrap)")
    t0 = time.perf_counter()
    compare(work)
    stages["comparisons"] = time.perf_counter() - t0
    if config.report.verdict_map:
        stage("locating the inputs on the verdict map")
        meta["located"] = _place_on_map(config, work)
    write_meta(work, meta)
    return meta


def _place_on_map(config: Config, work: Path) -> list[dict[str, Any]]:
    """Where the run's inputs (the primary world's, for a twin) sit on the twin's axes
    (:mod:`twsbench.scoring.locate`, no truth read), and a copy of the verdict map of
    ``[report] verdict_map`` in the run folder for the report to draw them on."""
    from dataclasses import asdict

    from twsbench.scoring.locate import locate_files

    files = resolve_inputs(config)
    located = locate_files(files.grace, files.wghm, files.era5)
    shutil.copy(map_source(config), work / MAP_REFERENCE)
    return [asdict(a) for a in located]


def map_source(config: Config) -> Path:
    """The ``verdict_map.csv`` that ``[report] verdict_map`` names (a file or a run folder)."""
    path = Path(str(config.report.verdict_map))
    return path / VERDICT_MAP if path.is_dir() else path


def tuning_status(config: Config, runs: list[ModelRun]) -> dict[str, dict[str, Any]]:
    """Each learned model of the run (by registered name): whether its parameters were
    tuned (``[tuning]`` provenance of a parameter layer) or why not."""
    from twsbench.downscaling.contract import learns, search_space
    from twsbench.running.catalog import get_class

    out: dict[str, dict[str, Any]] = {}
    for base in dict.fromkeys(r.base for r in runs):
        cls = get_class(base)
        if not learns(cls):
            continue  # nothing to tune
        space = bool(search_space(cls))
        provenance = config.tuning.get(base)
        if isinstance(provenance, dict):
            out[base] = {"tuned": True, **provenance,
                         "world": config.tuning.get("world"),
                         "objective": config.tuning.get("objective")}
        else:
            out[base] = {"tuned": False, "why": (
                "its settings as configured (no tuned parameters given)" if space
                else "it declares no search space")}
    return out


def write_meta(work: Path, meta: dict[str, Any]) -> None:
    (work / "meta.json").write_text(json.dumps(meta, indent=1, default=str))
