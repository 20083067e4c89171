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
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from suite import __version__, backend, cache
from suite.config import Config, as_plain
from suite.downscaler import CONSERVE, make
from suite.grids import Grids
from suite.prepare import code_hash, prepare, resolve_inputs
from suite.reference import truth_on_cells
from suite.scores import COLUMNS, MONTHLY_COLUMNS, score_prediction
from suite.timing import measure

log = logging.getLogger(__name__)
Stage = Callable[[str], None]
Progress = Callable[[str, int, int], None]

_CODE = ("suite.run", "suite.scores", "suite.metrics", "suite.downscaler", "suite.prepare",
         "baselines.simple", "baselines.learned", "baselines.interpolation",
         "models.soft_cnn", "models.training", "models.network", "models.losses")
DONE = "index.html"


def run_id(config: Config) -> str:
    """Hash of the config and the code version."""
    import hashlib

    plain = as_plain(config)
    plain.pop("source", None)
    plain["compute"].pop("scheduler", None)  # where it runs does not change the results
    text = json.dumps({"config": plain, "version": __version__, "code": code_hash(_CODE)},
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _model_runs(config: Config) -> list[tuple[str, int, dict]]:
    runs = []
    for name in config.models.names:
        base = name.removesuffix(CONSERVE)
        params = dict(config.models.params.get(base, {}))
        params.update(config.models.params.get(name, {}) if name != base else {})
        probe = make(name, seed=0, params=params)
        seeds = config.models.seeds if probe.stochastic else config.models.seeds[:1]
        runs.extend((name, int(seed), params) for seed in seeds)
    return runs


def save_grid(grids: Grids, truth: np.ndarray | None, path: Path) -> None:
    """What the report needs of the grids and the references, in one small file."""
    ds = xr.Dataset(
        {"cell_index": ("cell", grids.cell_index), "cell_mascon": ("cell", grids.cell_mascon),
         "cell_area": ("cell", grids.cell_area),
         "has_grace": ("month", grids.has_grace.astype("i1")),
         "grace": (("month", "mascon"), grids.grace.astype(np.float32)),
         **{f"split_{k}": ("month", v.astype("i1")) for k, v in grids.splits.items()}},
        coords={"lat": grids.lat, "lon": grids.lon,
                "month": grids.months.astype("datetime64[ns]")})
    if truth is not None:
        ds["truth"] = (("month", "cell"), truth.astype(np.float32))
    ds.to_netcdf(path, engine="netcdf4")


def save_prediction(cells: np.ndarray, grids: Grids, path: Path, attrs: dict) -> None:
    da = xr.DataArray(cells.astype(np.float32), dims=("month", "cell"), name="twsa",
                      coords={"month": grids.months.astype("datetime64[ns]")},
                      attrs={"units": "mm", **attrs})
    da.to_netcdf(path, engine="netcdf4",
                 encoding={"twsa": {"zlib": True, "complevel": 1}})


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
    rid = run_id(config)
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
        grids, grids_path, cached = prepare(config, stage=stage)
        stages["prepare"] = time.perf_counter() - t0
        files = resolve_inputs(config)
        truth = truth_on_cells(files.truth, grids) if files.truth else None
        save_grid(grids, truth, work / "grid.nc")
        rows, monthly, timing = [], [], []
        runs = _model_runs(config)
        train = grids.split_months("train")
        device = backend.resolve(config.compute.device)
        for k, (name, seed, params) in enumerate(runs):
            stage(f"{name} (seed {seed}): fit")
            model = make(name, seed=seed, params=params)
            with measure() as fit_m:
                model.fit(grids, train)
            stage(f"{name} (seed {seed}): predict")
            with measure() as pred_m:
                out = model.predict(grids, grids.months)
            cells = grids.from_grid(out.values)
            tag = f"{name}__seed{seed}"
            save_prediction(cells, grids, work / "predictions" / f"{tag}.nc",
                            {"model": name, "seed": seed})
            history = getattr(model, "history", None)
            if history:
                (work / "history" / f"{tag}.json").write_text(json.dumps(history, indent=1))
            t1 = time.perf_counter()
            r, m = score_prediction(grids, cells, truth, name, seed, rid)
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
                "device": device if "cuda" in getattr(model, "devices", ()) else "cpu",
            })
            if progress:
                progress("models", k + 1, len(runs))
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
        for path in benchmark_json or []:
            (work / "benchmarks").mkdir(exist_ok=True)
            shutil.copy(path, work / "benchmarks" / Path(path).name)
        meta = {"run_id": rid, "config": as_plain(config), "config_source": config.source,
                "versions": versions(), "seeds": list(config.models.seeds),
                "grids": {"path": str(grids_path), "cached": cached, **grids.summary()},
                "has_truth": truth is not None, "started": datetime.fromtimestamp(
                    started, UTC).isoformat(timespec="seconds"),
                "stage_seconds": stages, "device": device}
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
