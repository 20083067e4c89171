"""``twsbench run``: prepare → fit and predict every model (timed) → scores → report.

Each (world, model, seed) fit is a task (:func:`suite.tasks.fit_one`), run in-process or on a
``dask.distributed`` cluster (:mod:`suite.cluster`); the results are taken in the plan's
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from suite import __version__, backend, cache, uncertainty
from suite.cluster import InProcess, OnCluster, executor
from suite.config import Config, TwinWorld, as_plain
from suite.grids import Grids
from suite.plan import ModelRun, code_files, code_hash, plan
from suite.prepare import prepare, resolve_inputs
from suite.reference import truth_on_cells
from suite.scores import COLUMNS, MONTHLY_COLUMNS
from suite.tasks import FitResult, World

log = logging.getLogger(__name__)
Stage = Callable[[str], None]
Progress = Callable[[str, int, int], None]

DONE = "index.html"


def run_id(config: Config, runs: list[ModelRun] | None = None) -> str:
    """Hash of the config, what it runs (models, seeds, parameters, devices) and the code:
    the whole ``suite``, ``baselines`` and ``models`` packages and the plug-in modules used."""
    import hashlib

    runs = plan(config) if runs is None else runs
    plain = as_plain(config)
    plain.pop("source", None)
    for key in ("scheduler", "workers", "threads_per_task"):  # where it runs, not what
        plain["compute"].pop(key, None)
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
    """What one world's fits give: score rows, monthly rows, the fits' timings, and (with a
    truth) the uncertainty rows and each model's calibration of its σ."""

    rows: list = field(default_factory=list)
    monthly: list = field(default_factory=list)
    timing: list[dict[str, Any]] = field(default_factory=list)
    uncertainty: list = field(default_factory=list)
    calibrations: dict[str, dict] = field(default_factory=dict)


def _assemble(runs: list[ModelRun], world: World, results: Iterator[FitResult], rid: str,
              work: Path | None, stage: Stage, progress: Progress | None) -> WorldResult:
    """Take one world's fit results in the plan's order: their rows and timings; with a
    truth, each model's seed ensemble and its calibrated σ (:mod:`suite.uncertainty`,
    fitted on the validation months, scored on the tasks' months). Predictions, histories
    and σ are saved into ``work`` (the primary world) unless it is ``None``."""
    out = WorldResult()
    grids, truth = world.grids, world.truth
    last = {spec.name: k for k, spec in enumerate(runs)}  # a model's seeds are consecutive
    first = {spec.name: k for k, spec in reversed(list(enumerate(runs)))}
    ensembles: dict[str, uncertainty.Accumulator] = {}
    for k, (spec, result) in enumerate(zip(runs, results, strict=True)):
        name, seed, tag = spec.name, spec.seed, spec.tag
        if work is not None:
            save_prediction(result.cells, grids, work / "predictions" / f"{tag}.nc",
                            {"model": name, "seed": seed})
            if result.history:
                (work / "history" / f"{tag}.json").write_text(
                    json.dumps(result.history, indent=1))
        out.rows += result.rows
        out.monthly += result.monthly
        out.timing.append(result.timing)
        if truth is not None:
            ensembles.setdefault(name, uncertainty.Accumulator()).add(result.cells,
                                                                      result.hidden)
            if last[name] == k:
                stage(f"{name}: calibrating σ")
                cal, sigma, u_rows = uncertainty.evaluate(grids, ensembles.pop(name), truth,
                                                          world.hot)
                out.calibrations[name] = cal.as_dict()
                members = last[name] + 1 - first[name]
                if work is not None:
                    save_prediction(sigma, grids, work / "uncertainty" / f"{name}.nc",
                                    {"model": name, "members": members,
                                     "long_name": "1-sigma of the seed-ensemble mean"},
                                    var="sigma")
                out.uncertainty += [(rid, name, members, *u) for u in u_rows]
        if progress:
            progress("models", k + 1, len(runs))
    return out


def _results(ex: InProcess | OnCluster, load_world: Callable[[int], World], n_worlds: int,
             runs: list[ModelRun], config: Config, rid: str, epoch: float, stage: Stage
             ) -> Iterator[tuple[int, World, Iterator[FitResult]]]:
    """Each world with its fits' results in the plan's order. In-process, a world is
    prepared, fitted and let go before the next (one world in memory); on a cluster every
    world is prepared and every fit sent first, so fits of all worlds run at once."""
    if isinstance(ex, InProcess):
        for k in range(n_worlds):
            world = load_world(k)
            yield k, world, ex.results(world, runs, config, rid, epoch, stage,
                                       primary=k == 0)
        return
    worlds = [load_world(k) for k in range(n_worlds)]
    sent = [ex.results(w, runs, config, rid, epoch, stage, primary=k == 0)
            for k, w in enumerate(worlds)]
    for k, world in enumerate(worlds):
        yield k, world, sent[k]


def withheld(grids: Grids) -> tuple[Grids, np.ndarray]:
    """What downscalers see in a run: the held-out blocks' GRACE withheld (the ``gapfill``
    task), and the GRACE scoring compares with (see :meth:`suite.grids.Grids.withhold`)."""
    return grids.withhold(grids.splits["gapfill_withheld"])


def _remove_stale(out_root: Path) -> None:
    """Remove working folders left by killed runs (of any config or code version); those of
    runs still going are left alone."""
    for path in out_root.glob(".*.partial-*"):
        cache.remove_if_dead(path, path.name.rsplit("-", 1)[-1])


def run(config: Config, out_root: str | Path = "reports", *, force: bool = False,
        benchmark_json: list[Path] | None = None, stage: Stage | None = None,
        progress: Progress | None = None) -> tuple[Path, bool]:
    """Run the benchmark described by ``config``.

    Returns
    -------
    run_dir, reused
        The finished run folder and whether it already existed (nothing was run).
    """
    stage = stage or (lambda label: log.info("run: %s", label))
    out_root = Path(out_root)
    runs = plan(config)  # every name, parameter, plug-in and input checked before writing
    rid = run_id(config, runs)
    final = out_root / rid
    if (final / DONE).exists() and not force:
        stage(f"run {rid} already exists: {final}")
        return final, True
    if final.exists():
        rid = f"{rid}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}"
        final = out_root / rid
    _remove_stale(out_root)
    work = out_root / f".{rid}.partial-{os.getpid()}"
    if work.exists():
        shutil.rmtree(work)
    (work / "predictions").mkdir(parents=True)
    (work / "history").mkdir()
    started = time.time()
    try:
        stages: dict[str, float] = {}
        t0 = time.perf_counter()
        worlds: list[TwinWorld | None] = [None]  # None: the real files
        if config.worlds:
            worlds = list(config.worlds)
        labels = [w.label if w is not None else "files" for w in worlds]
        several = len(worlds) > 1
        rows: list = []
        monthly: list = []
        timing: list[dict[str, Any]] = []
        u_rows: list = []
        world_rows: list = []
        calibrations: dict[str, dict] = {}
        loaded: dict[str, Any] = {}

        def load_world(k: int) -> World:
            t0 = time.perf_counter()
            world = worlds[k]
            if k:
                stage(f"world {labels[k]}")
            cfg = config.for_world(world) if world is not None else config
            full, path, cached = prepare(cfg, stage=stage)
            grids, reference = withheld(full)
            truth_path = resolve_inputs(cfg).truth
            truth = truth_on_cells(truth_path, grids) if truth_path else None
            if k == 0:
                loaded.update(grids_path=path, cached=cached, grids=grids, truth=truth)
                save_grid(grids, truth, work / "grid.nc", reference)
            stages["prepare"] = stages.get("prepare", 0.0) + time.perf_counter() - t0
            return World.of(labels[k], grids, reference, truth, config.ranking.hotspot_trend)

        with executor(config, stage) as ex:
            for k, world, results in _results(ex, load_world, len(worlds), runs, config,
                                              rid, started, stage):
                got = _assemble(runs, world, results, rid, work if k == 0 else None, stage,
                                progress if k == 0 else None)
                if k == 0:
                    rows, monthly, calibrations = got.rows, got.monthly, got.calibrations
                tag = (lambda t: (labels[k], *t)) if several else (lambda t: t)  # noqa: B023
                if several:  # each row and fit tagged with its world
                    world_rows += [(labels[k], *r) for r in got.rows]
                timing += [{"world": labels[k], **t} if several else t for t in got.timing]
                u_rows += [tag(r) for r in got.uncertainty]
            where = ex.where
        grids, truth = loaded["grids"], loaded["truth"]
        grids_path, cached = loaded["grids_path"], loaded["cached"]
        stages["models"] = sum(t["fit_seconds"] + t["predict_seconds"] for t in timing)
        stages["scores"] = sum(t["score_seconds"] for t in timing)
        stage("writing the scores")
        scores = pd.DataFrame(rows, columns=list(COLUMNS))
        # True / False, or empty where the best value is an ideal in between (bias, ratios)
        scores["higher_is_better"] = scores["higher_is_better"].astype("boolean")
        scores.to_csv(work / "scores.csv", index=False)
        scores.to_parquet(work / "scores.parquet", index=False)
        pd.DataFrame(monthly, columns=list(MONTHLY_COLUMNS)).to_csv(work / "monthly.csv",
                                                                     index=False)
        pd.DataFrame(timing).to_csv(work / "timing.csv", index=False)
        if u_rows:  # with a truth: the calibrated σ's scores and (first world) its terms
            u_cols = [*(["world"] if len(worlds) > 1 else []), *uncertainty.UNCERTAINTY_COLUMNS]
            pd.DataFrame(u_rows, columns=u_cols).to_csv(work / "uncertainty.csv", index=False)
            (work / "uncertainty.json").write_text(json.dumps(calibrations, indent=1))
        if world_rows:
            worlds_table = pd.DataFrame(world_rows, columns=["world", *COLUMNS])
            worlds_table["higher_is_better"] = worlds_table["higher_is_better"].astype(
                "boolean")
            worlds_table.to_csv(work / "worlds.csv", index=False)
        for path in benchmark_json or []:
            (work / "benchmarks").mkdir(exist_ok=True)
            shutil.copy(path, work / "benchmarks" / Path(path).name)
        meta = {"run_id": rid, "config": as_plain(config), "config_source": config.source,
                "versions": versions(), "seeds": list(config.models.seeds),
                "grids": {"path": str(grids_path), "cached": cached, **grids.summary()},
                "has_truth": truth is not None, "started": datetime.fromtimestamp(
                    started, UTC).isoformat(timespec="seconds"),
                "stage_seconds": stages, "device": backend.resolve(config.compute.device),
                "runs": [r.as_dict() for r in runs],
                "plugins": list(config.models.plugins), "executor": where,
                "worlds": [w.label for w in worlds if w is not None]}
        (work / "meta.json").write_text(json.dumps(meta, indent=1, default=str))
        if Path(config.source).exists():
            shutil.copy(config.source, work / "config.toml")
        stage("building the report")
        from suite.report import build_report

        t0 = time.perf_counter()
        build_report(work)
        meta["stage_seconds"]["report"] = time.perf_counter() - t0
        (work / "meta.json").write_text(json.dumps(meta, indent=1, default=str))
        os.replace(work, final)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    return final, False
