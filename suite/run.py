"""``twsbench run``: prepare → fit and predict every model (timed) → scores → report.

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
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from suite import __version__, backend, cache, uncertainty
from suite.config import Config, TwinWorld, as_plain
from suite.grids import Grids
from suite.plan import ModelRun, code_files, code_hash, plan
from suite.prepare import prepare, resolve_inputs
from suite.reference import truth_on_cells
from suite.scores import COLUMNS, MONTHLY_COLUMNS, hotspots, score_prediction
from suite.timing import measure

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
    plain["compute"].pop("scheduler", None)  # where it runs does not change the results
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


def _fit_and_score(runs: list[ModelRun], grids: Grids, reference: np.ndarray,
                   truth: np.ndarray | None, rid: str, work: Path | None, stage: Stage,
                   progress: Progress | None, hotspot_trend: float) -> WorldResult:
    """Fit, predict and score every run on one world's grids (the view with the withheld
    months' GRACE removed); ``reference`` is the GRACE scoring compares with. Predictions
    and histories are saved into ``work`` (the primary world) unless it is ``None``. With a
    truth, each model's seed ensemble gets a calibrated σ (:mod:`suite.uncertainty`), fitted
    on the validation months and scored on the tasks' months."""
    out = WorldResult()
    rows, monthly, timing = out.rows, out.monthly, out.timing
    last = {spec.name: k for k, spec in enumerate(runs)}  # a model's seeds are consecutive
    first = {spec.name: k for k, spec in reversed(list(enumerate(runs)))}
    ensembles: dict[str, uncertainty.Accumulator] = {}
    hidden_view = uncertainty.hide_validation(grids) if truth is not None else None
    val_months = grids.split_months("validation")
    hot = hotspots(grids, truth, hotspot_trend) if truth is not None else None
    train = grids.split_months("train")
    for k, spec in enumerate(runs):
        name, seed, tag = spec.name, spec.seed, spec.tag
        stage(f"{name} (seed {seed}): fit")
        model = spec.make()
        with measure() as fit_m:
            model.fit(grids, train)
        stage(f"{name} (seed {seed}): predict")
        with measure() as pred_m:
            cells = np.asarray(model.predict_cells(grids, grids.months), dtype=np.float64)
        if work is not None:
            save_prediction(cells, grids, work / "predictions" / f"{tag}.nc",
                            {"model": name, "seed": seed})
            history = model.history
            if history:
                (work / "history" / f"{tag}.json").write_text(json.dumps(history, indent=1))
        t1 = time.perf_counter()
        if truth is not None and hidden_view is not None:
            hidden = None
            if not model.needs_grace:  # the validation months without their GRACE
                hidden = np.asarray(model.predict_cells(hidden_view, val_months),
                                    dtype=np.float64)
            ensembles.setdefault(name, uncertainty.Accumulator()).add(cells, hidden)
            if last[name] == k:
                stage(f"{name}: calibrating σ")
                cal, sigma, u_rows = uncertainty.evaluate(grids, ensembles.pop(name), truth,
                                                          hot)
                out.calibrations[name] = cal.as_dict()
                if work is not None:
                    save_prediction(sigma, grids, work / "uncertainty" / f"{name}.nc",
                                    {"model": name, "members": last[name] + 1 - first[name],
                                     "long_name": "1-sigma of the seed-ensemble mean"},
                                    var="sigma")
                members = last[name] + 1 - first[name]
                out.uncertainty += [(rid, name, members, *u) for u in u_rows]
        r, m = score_prediction(grids, cells, truth, name, seed, rid, reference,
                                hotspot_trend)
        rows += r
        monthly += m
        covered = int(model.covers(grids, grids.months).sum())
        timing.append({
            "model": name, "seed": seed, "fit_seconds": fit_m.seconds,
            "predict_seconds": pred_m.seconds,
            "cells_months_per_second": grids.n_cells * covered / max(pred_m.seconds, 1e-9),
            "fit_peak_rss_gib": fit_m.peak_rss / 2**30,
            "predict_peak_rss_gib": pred_m.peak_rss / 2**30,
            "score_seconds": time.perf_counter() - t1,
            "device": spec.device,
        })
        if progress:
            progress("models", k + 1, len(runs))
    return out


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
        primary = config.for_world(worlds[0]) if worlds[0] is not None else config
        full, grids_path, cached = prepare(primary, stage=stage)
        grids, reference = withheld(full)
        stages["prepare"] = time.perf_counter() - t0
        files = resolve_inputs(primary)
        truth = truth_on_cells(files.truth, grids) if files.truth else None
        save_grid(grids, truth, work / "grid.nc", reference)
        hot = config.ranking.hotspot_trend
        first = _fit_and_score(runs, grids, reference, truth, rid, work, stage, progress, hot)
        rows, monthly, timing = first.rows, first.monthly, first.timing
        u_rows = first.uncertainty
        world_rows = []
        if len(worlds) > 1:  # each row and fit tagged with its world
            world_rows = [(labels[0], *r) for r in rows]
            timing = [{"world": labels[0], **t} for t in timing]
            u_rows = [(labels[0], *r) for r in u_rows]
        for world in worlds[1:]:  # the verdict's stability: scores only
            assert world is not None
            stage(f"world {world.label}")
            t0 = time.perf_counter()
            other = config.for_world(world)
            w_full, _, _ = prepare(other, stage=stage)
            w_grids, w_reference = withheld(w_full)
            w_truth_path = resolve_inputs(other).truth
            w_truth = truth_on_cells(w_truth_path, w_grids) if w_truth_path else None
            stages["prepare"] += time.perf_counter() - t0
            other_result = _fit_and_score(runs, w_grids, w_reference, w_truth, rid, None,
                                          stage, None, hot)
            world_rows += [(world.label, *r) for r in other_result.rows]
            timing += [{"world": world.label, **t} for t in other_result.timing]
            u_rows += [(world.label, *r) for r in other_result.uncertainty]
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
            (work / "uncertainty.json").write_text(json.dumps(first.calibrations, indent=1))
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
                "plugins": list(config.models.plugins),
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
