"""``twsbench release`` and ``twsbench validate``: the best model's monthly 0.5° product.

The release takes the first model of the run's ``[ranking] release_task`` leaderboard (the
task's primary score, mean over seeds, on the task's test months) among the models that
predict every month (the product covers the GRACE gap months too). It refits that model on
every month with GRACE with the parameters it was scored with — for a seeded model, once per
seed of the run; a CNN for the epoch count its scored fit chose — predicts every month of
2002-04..2022-12 and writes one CF-1.8 / ACDD-1.3 NetCDF4 file, atomically, with a SHA-256
sidecar.

``twsa_uncertainty`` is the run's calibrated 1-σ (:mod:`twsbench.scoring.uncertainty`: the
seeds' spread, GRACE's σ in months whose GRACE the model uses, and the disaggregation term
fitted on the run's validation months), with the coverage the run measured in its
attributes. A run without a truth has no fitted term: the σ is then the seeds' spread and
GRACE's σ combined in quadrature, and ``uncertainty_calibration`` says so.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import netCDF4
import numpy as np
import pandas as pd

from twsbench import __version__
from twsbench.core import cache
from twsbench.core import geometry as grid
from twsbench.core import months as mo
from twsbench.core.config import Config, from_plain
from twsbench.core.errors import ConfigError, InputError
from twsbench.core.splits import TASKS
from twsbench.prepare.store import prepare
from twsbench.release.ensemble import Ensemble
from twsbench.running.choice import release_choice
from twsbench.running.plan import ModelRun, load, plan
from twsbench.scoring import metrics
from twsbench.scoring import uncertainty as unc
from twsbench.scoring.leaderboards import TASK_SCORES

log = logging.getLogger(__name__)

FILL = np.float32(np.nan)
REFERENCES = (
    "Uz, M., Atman, K. G., Akyilmaz, O., Shum, C. K. (2026), J. Hydrol., "
    "doi:10.1016/j.jhydrol.2026.135015; "
    "Wiese et al. (2022), JPL GRACE and GRACE-FO Mascon RL06.3M CRI v4.0, "
    "doi:10.5067/TEMSC-3JC634; "
    "Mueller Schmied et al. (2024), WaterGAP v2.2e, doi:10.5194/gmd-17-8817-2024; "
    "Hersbach et al. (2023), ERA5 monthly single levels, doi:10.24381/cds.f17050d7")


def run_config(run_dir: Path, meta: dict) -> Config:
    """The config a run was made with (its plug-ins searched beside the original file)."""
    source = meta.get("config_source") or str(run_dir / "meta.json")
    config = from_plain(meta["config"], source)
    load(config)
    return config


def scored_runs(config: Config, meta: dict, name: str) -> list[ModelRun]:
    """The seeds and parameters ``name`` was scored with, resolved by
    :func:`twsbench.running.plan.plan`
    as ``run`` did; a run folder that recorded something else (an older version of the code)
    is refused rather than released with other settings."""
    runs = [r for r in plan(config) if r.name == name]
    recorded = [{k: v for k, v in r.items() if k != "device"} for r in meta.get("runs", [])
                if r["name"] == name]
    now = [json.loads(json.dumps({"name": r.name, "seed": r.seed, "params": r.params},
                                 default=str)) for r in runs]
    if recorded and recorded != now:
        raise ConfigError(f"{name}: expected the seeds and parameters the run scored "
                          f"({json.dumps(recorded)}), found {json.dumps(now)} resolved now")
    return runs


def choose_model(run_dir: Path, meta: dict | None = None) -> tuple[str, dict]:
    """The first model of the run's ``release_task`` leaderboard among those that predict
    every month (mean over seeds): :func:`twsbench.running.choice.release_choice`."""
    if meta is None:
        meta = json.loads((run_dir / "meta.json").read_text())
        run_config(run_dir, meta)  # its plug-ins registered
    return release_choice(pd.read_csv(run_dir / "scores.csv"), meta, str(run_dir))


def refit_runs(run_dir: Path, runs: list[ModelRun]) -> list[ModelRun]:
    """The scored fits' choices carried into the refit: a fit that stopped early on its
    validation months (its history has ``val_obs``) is refit for the epoch count it chose,
    the epoch of the lowest validation loss plus one; the refit has no validation months."""
    out = []
    for r in runs:
        path = run_dir / "history" / f"{r.tag}.json"
        params = dict(r.params)
        if path.exists() and "epochs" in params:
            history = json.loads(path.read_text())
            val = [(e["val_obs"], e["epoch"]) for e in history if "val_obs" in e]
            if val:
                params["epochs"] = int(min(val)[1]) + 1
        out.append(dataclasses.replace(r, params=params))
    return out


def release(run_dir: str | Path, out: str | Path | None = None, *, force: bool = False,
            stage=None) -> Path:
    """Write the product of a run's best model (see the module docstring)."""
    stage = stage or (lambda label: log.info("release: %s", label))
    run_dir = Path(run_dir)
    if not (run_dir / "meta.json").exists():
        raise InputError(run_dir / "meta.json", "-", "a run folder written by twsbench run",
                         "no such file")
    meta = json.loads((run_dir / "meta.json").read_text())
    config = run_config(run_dir, meta)
    name, choice = choose_model(run_dir, meta)
    runs = refit_runs(run_dir, scored_runs(config, meta, name))
    out = Path(out) if out else run_dir / f"twsbench_{meta['run_id']}_{name}_200204_202212.nc"
    if out.exists() and not force:
        raise InputError(out, "-", "no product at the target (or --force)", "an existing file")
    # a checksum without its product is what a release killed between the two renames leaves
    out.with_name(out.name + ".sha256").unlink(missing_ok=True)
    stage(f"first on the {choice['task']} leaderboard: {name} ({choice['metric']} "
          f"{choice['value']:.4f})")
    prepared, _, _ = prepare(config, stage=stage)
    # the product uses every GRACE month, so its anomalies are against every baseline month
    # with GRACE (the run left its withheld blocks out of the baseline)
    grids, _ = prepared.withhold(np.zeros(prepared.months.size, dtype=bool))
    with_grace = grids.months[grids.has_grace]
    ensemble = Ensemble(runs)
    # every month with GRACE trains: no validation months are left, so a model that stopped
    # early trains for the epochs its scored fit chose (refit_runs)
    ensemble.fit(grids, with_grace, stage=stage)
    mean = ensemble.predict_cells(grids, grids.months)
    spread = ensemble.spread
    assert spread is not None  # set by predict_cells
    seeds = ensemble.seeds
    calibration, measured = _calibration(run_dir, meta, name, seeds)
    if calibration is not None:
        uncertainty = calibration.sigma(grids, unc.predictors(grids), spread)
    else:  # a run without a truth: the seed spread and GRACE's σ, not calibrated
        sigma = grids.grace_sigma[:, grids.cell_mascon]
        sigma = np.where(np.isfinite(sigma), sigma, np.nanmean(grids.grace_sigma, axis=0)[
            grids.cell_mascon])
        uncertainty = np.sqrt(spread**2 + sigma**2)
    has = grids.has_grace
    conservation = (metrics.conservation_residual(mean[has], grids.grace[has], grids.mascons.A),
                    metrics.conservation_residual_max(mean[has], grids.grace[has],
                                                      grids.mascons.A))
    headline = _headline(run_dir, meta, name)
    stage(f"writing {out}")
    write_product(out, grids, mean, uncertainty, meta, name, choice, headline, seeds,
                  conservation=conservation,
                  params=runs[0].params, device=runs[0].device,
                  refit={str(r.seed): r.params["epochs"] for r in runs if "epochs" in r.params},
                  uncertainty_attrs=measured)
    return out


def _calibration(run_dir: Path, meta: dict, name: str, seeds: list[int]
                 ) -> tuple[unc.Calibration | None, dict]:
    """The run's calibration of ``name``'s σ and the attributes of ``twsa_uncertainty``
    that state it and its measured coverage (:mod:`twsbench.scoring.uncertainty`); ``(None, attrs)``
    for a run without a truth, which has none."""
    path = run_dir / "uncertainty.json"
    if not path.exists() or name not in (table := json.loads(path.read_text())):
        return None, {
            "uncertainty_formula": "sqrt(s^2 + sigma_G^2): the seed spread and GRACE's "
                                   "1-sigma of the mascon (its mean sigma in months without "
                                   "GRACE)",
            "uncertainty_calibration": "none: the run had no truth to calibrate against, so "
                                       "the error of disaggregating a mascon is not in it"}
    calibration = unc.Calibration.from_dict(table[name])
    scores = pd.read_csv(run_dir / "uncertainty.csv")
    if "world" in scores:  # the first world: the one the calibration belongs to
        scores = scores[scores["world"] == scores["world"].iloc[0]]
    sel = scores[scores["model"] == name].set_index(["split", "region", "metric"])["value"]
    world = (meta.get("worlds") or [str(meta["config"]["twin"]["realism"])])[0]
    attrs: dict = {
        "uncertainty_formula": unc.FORMULA,
        "uncertainty_calibration": (
            f"fitted on the {calibration.fitted_on} validation months of twsbench run "
            f"{meta['run_id']} against its twin world's truth: "
            + json.dumps({k: v for k, v in calibration.as_dict().items() if k != "formula"})),
        "coverage_measured_on": (
            f"twsbench run {meta['run_id']}: the {name} ensemble of seeds {seeds} on twin "
            f"world {world}, on each task's test months "
            f"(not the validation months the calibration was fitted on); cell-area weighted "
            f"fractions of cell-months"),
    }
    for task in TASKS:
        for region, suffix in (("domain", ""), ("hotspots", "_hotspots")):
            for metric, label in (("coverage_1sigma", "coverage_1sigma"),
                                  ("coverage_2sigma", "coverage_2sigma"),
                                  ("spread_skill", "spread_skill_ratio"), ("crps", "crps_mm")):
                value = sel.get((task, region, metric))
                if value is not None and np.isfinite(value):
                    attrs[f"{label}{suffix}_{task}"] = round(float(value), 4)
    return calibration, attrs


def _headline(run_dir: Path, meta: dict, name: str) -> dict:
    """The released model's scores in the run, by task (mean over seeds, the ranking region):
    ``{"run_id": ..., "downscale": {score: value}, "gapfill": {...}}``."""
    scores = pd.read_csv(run_dir / "scores.csv")
    region = meta["config"]["ranking"]["region"]
    sel = scores[(scores["model"] == name) & (scores["region"] == region)]
    out: dict = {"run_id": meta["run_id"]}
    for task in TASKS:
        keep = TASK_SCORES[task] + (("conservation_residual",) if task == "downscale" else ())
        part = sel[(sel["split"] == task) & sel["metric"].isin(keep)]
        table = part.groupby("metric")["value"].mean()
        out[task] = {m: round(float(v), 6) for m, v in table.items() if np.isfinite(v)}
    return out


def write_product(path: Path, grids, twsa: np.ndarray, uncertainty: np.ndarray, meta: dict,
                  model: str, choice: dict, headline: dict, seeds: list[int],
                  conservation: tuple[float, float], params: dict | None = None,
                  device: str = "cpu", refit: dict | None = None,
                  uncertainty_attrs: dict | None = None) -> None:
    """The CF-1.8 / ACDD-1.3 NetCDF4 file, written to a temporary name and renamed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.temp_path(path)
    synthetic = meta["config"]["inputs"]["grace"] is None
    months = grids.months
    epoch = np.datetime64("2002-01-01", "D")
    starts = (months.astype("datetime64[D]") - epoch).astype(float)
    ends = ((months + 1).astype("datetime64[D]") - epoch).astype(float)
    try:
        with netCDF4.Dataset(tmp, "w", format="NETCDF4") as ds:
            ds.createDimension("time", months.size)
            ds.createDimension("lat", grids.lat.size)
            ds.createDimension("lon", grids.lon.size)
            ds.createDimension("nv", 2)
            t = ds.createVariable("time", "f8", ("time",))
            t.setncatts({"standard_name": "time", "long_name": "time", "axis": "T",
                         "units": "days since 2002-01-01 00:00:00", "calendar": "standard",
                         "bounds": "time_bounds"})
            t[:] = (starts + ends) / 2
            tb = ds.createVariable("time_bounds", "f8", ("time", "nv"))
            tb[:] = np.stack([starts, ends], axis=1)
            # columns in ascending longitude (CF): a domain across the antimeridian, or the
            # globe, starts its cyclic grid elsewhere
            order = np.argsort(grids.lon, kind="stable")
            for name, values, std, units, axis in (
                    ("lat", grids.lat, "latitude", "degrees_north", "Y"),
                    ("lon", grids.lon[order], "longitude", "degrees_east", "X")):
                v = ds.createVariable(name, "f8", (name,))
                v.setncatts({"standard_name": std, "long_name": std, "units": units,
                             "axis": axis, "bounds": f"{name}_bnds"})
                v[:] = values
                ds.createVariable(f"{name}_bnds", "f8", (name, "nv"))[:] = grid.bounds(values)
            # the field is at the land surface: a scalar vertical coordinate says so (CF
            # 5.7), and gives ACDD's geospatial_vertical_* a variable to match
            z = ds.createVariable("height", "f8", ())
            z.setncatts({"standard_name": "height", "long_name": "height above the surface",
                         "units": "m", "axis": "Z", "positive": "up"})
            z.assignValue(0.0)
            chunks = (1, grids.lat.size, grids.lon.size)
            v = ds.createVariable("twsa", "f4", ("time", "lat", "lon"), zlib=True, complevel=4,
                                  shuffle=True, chunksizes=chunks, fill_value=FILL)
            # CF's land_water_amount ("terrestrial water storage") is in kg m-2, which for
            # water is numerically mm of water equivalent
            v.setncatts({"long_name": "terrestrial water storage anomaly",
                         "standard_name": "land_water_amount", "units": "kg m-2",
                         "coverage_content_type": "modelResult",
                         "comment": "anomaly against 2004-01..2009-12 (2004.000 to 2009.999) in "
                                    "mm of water equivalent (1 kg m-2 = 1 mm); land only "
                                    "(Greenland and Antarctica excluded)",
                         "ancillary_variables": "twsa_uncertainty grace_available",
                         "cell_methods": "time: mean area: mean", "coordinates": "height",
                         "valid_min": np.float32(-1e4), "valid_max": np.float32(1e4)})
            v[:] = grids.to_grid(twsa)[..., order].astype(np.float32)
            u = ds.createVariable("twsa_uncertainty", "f4", ("time", "lat", "lon"), zlib=True,
                                  complevel=4, shuffle=True, chunksizes=chunks, fill_value=FILL)
            u.setncatts({"long_name": "1-sigma uncertainty of twsa",
                         "standard_name": "land_water_amount standard_error",
                         "units": "kg m-2", "coverage_content_type": "qualityInformation",
                         "comment": "1-sigma of the seed-ensemble mean: the seeds' spread, "
                                    "GRACE's 1-sigma of the cell's mascon in months whose "
                                    "GRACE the model uses, and a disaggregation term fitted "
                                    "on validation months (uncertainty_formula); its "
                                    "measured coverage is in coverage_* "
                                    "(coverage_measured_on)",
                         "valid_min": np.float32(0.0), "valid_max": np.float32(1e4),
                         "coordinates": "height", **(uncertainty_attrs or {})})
            u[:] = grids.to_grid(uncertainty)[..., order].astype(np.float32)
            f = ds.createVariable("grace_available", "i1", ("time",))
            f.setncatts({"long_name": "a GRACE/GRACE-FO solution exists for the month",
                         "coverage_content_type": "auxiliaryInformation",
                         "flag_values": np.array([0, 1], dtype="i1"),
                         "flag_meanings": "no_grace_solution grace_solution",
                         "valid_range": np.array([0, 1], dtype="i1")})
            f[:] = grids.has_grace.astype("i1")
            ds.setncatts(_global_attrs(grids, meta, model, choice, headline, seeds,
                                       conservation, synthetic))
            ds.setncatts({"model_params": json.dumps(params or {}, sort_keys=True,
                                                     default=str),
                          "model_device": device,
                          "refit_epochs": json.dumps(refit or {}, sort_keys=True)})
        # the sidecar goes in first: a product in place always has its checksum beside it
        cache.write_text(path.with_name(path.name + ".sha256"),
                         f"{cache.sha256_file(tmp)}  {path.name}\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _global_attrs(grids, meta, model, choice, headline, seeds, conservation, synthetic):
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    kind = "SYNTHETIC twin-world " if synthetic else ""
    title = (f"{kind}downscaled GRACE/GRACE-FO terrestrial water storage anomalies, 0.5 degree, "
             f"monthly 2002-04 to 2022-12 ({model})")
    warning = "SYNTHETIC: made from the twsbench twin world, not from observations. "
    summary = (f"{warning if synthetic else ''}"
               f"Monthly terrestrial water storage anomalies on a 0.5 degree land grid, "
               f"downscaled from JPL GRACE/GRACE-FO RL06.3Mv04 CRI mascons by the '{model}' "
               f"model of twsbench run {meta['run_id']}, first on the run's {choice['task']} "
               f"leaderboard by {choice['metric']}. Months with a GRACE solution are the "
               f"downscale task; months without one (grace_available = 0) are the gapfill "
               f"task, predicted from WaterGAP 2.2e and ERA5 inputs alone. headline_scores "
               f"gives the run's scores of this model for each task.")
    return {
        "Conventions": "CF-1.8, ACDD-1.3",
        "title": title, "summary": summary,
        "keywords": "GRACE, GRACE-FO, terrestrial water storage, downscaling, hydrology, "
                    "mascons",
        "keywords_vocabulary": "free text",
        "id": f"twsbench-{meta['run_id']}-{model}",
        "naming_authority": "org.twsbench",
        "product_version": __version__,
        "twsbench_version": __version__,
        "creator_name": "twsbench", "creator_type": "group",
        "creator_email": "twsbench@users.noreply.github.com",
        "creator_url": "https://github.com/twsbench/twsbench",
        "publisher_name": "twsbench", "publisher_type": "group",
        "publisher_email": "twsbench@users.noreply.github.com",
        "publisher_url": "https://github.com/twsbench/twsbench",
        "institution": "twsbench",
        "source": ("twin world (synthetic)" if synthetic else
                   "JPL GRACE/GRACE-FO RL06.3Mv04 CRI mascons; WaterGAP 2.2e; ERA5"),
        "license": "CC-BY-4.0 (https://creativecommons.org/licenses/by/4.0/)",
        "references": REFERENCES,
        "project": "twsbench",
        "processing_level": "L4",
        "date_created": now, "date_modified": now, "date_issued": now,
        "history": f"{now}: written by twsbench {__version__} release of run {meta['run_id']}",
        "time_coverage_start": str(mo.mid_month(grids.months[:1])[0]) + "Z",
        "time_coverage_end": str(mo.mid_month(grids.months[-1:])[0]) + "Z",
        "time_coverage_resolution": "P1M",
        "time_coverage_duration": _duration(grids.months.size),
        "standard_name_vocabulary": "CF Standard Name Table v84",
        # a field at the land surface: no vertical extent
        "geospatial_vertical_min": 0.0, "geospatial_vertical_max": 0.0,
        "geospatial_vertical_units": "m", "geospatial_vertical_positive": "up",
        "geospatial_bounds_vertical_crs": "EPSG:5829",
        "time_mean_removed": "2004.000 to 2009.999",
        "geospatial_lat_min": float(grids.lat[0]), "geospatial_lat_max": float(grids.lat[-1]),
        "geospatial_lon_min": float(grids.lon[0]), "geospatial_lon_max": float(grids.lon[-1]),
        "geospatial_bounds": (f"POLYGON(({grids.lat[0]} {grids.lon[0]}, {grids.lat[0]} "
                              f"{grids.lon[-1]}, {grids.lat[-1]} {grids.lon[-1]}, "
                              f"{grids.lat[-1]} {grids.lon[0]}, {grids.lat[0]} {grids.lon[0]}))"),
        "geospatial_bounds_crs": "EPSG:4326",
        "acknowledgement": "GRACE and GRACE-FO are joint missions of NASA and DLR/GFZ; ERA5 "
                           "is from the Copernicus Climate Change Service; WaterGAP 2.2e from "
                           "Goethe University Frankfurt.",
        "geospatial_lat_units": "degrees_north", "geospatial_lon_units": "degrees_east",
        "geospatial_lat_resolution": "0.5 degree", "geospatial_lon_resolution": "0.5 degree",
        "model": model, "ensemble_seeds": json.dumps(seeds),
        "run_id": meta["run_id"],
        "run_config": json.dumps(meta["config"], default=str),
        "model_choice": json.dumps(choice),
        "headline_scores": json.dumps(headline),
        "headline_run": meta["run_id"],
        "headline_tasks": ("downscale: months with GRACE, scored below the mascon scale; "
                           "gapfill: months whose GRACE was withheld or missing"),
        "conservation_residual_mean_mm": conservation[0],
        "conservation_residual_max_mm": conservation[1],
        "comment": ("Mascon means of twsa on months with GRACE agree with GRACE within "
                    f"conservation_residual_max_mm = {conservation[1]:.4g} mm."),
    }


def _duration(n_months: int) -> str:
    """ISO 8601 duration of ``n_months`` whole months (the time bounds' span)."""
    years, months = divmod(n_months, 12)
    return "P" + (f"{years}Y" if years else "") + (f"{months}M" if months or not years else "")


# ---- validate ------------------------------------------------------------------------------

UNCERTAINTY_ATTRS = tuple(f"{label}_{task}" for task in TASKS for label in (
    "coverage_1sigma", "coverage_2sigma", "spread_skill_ratio", "crps_mm"))


def _check_uncertainty(var) -> list[str]:
    """``twsa_uncertainty``'s attributes: how it is built and, when calibrated, the coverage
    measured (fractions in 0..1, positive spread–skill and CRPS)."""
    names = var.ncattrs()
    problems = [f"twsa_uncertainty: attribute {a} missing"
                for a in ("uncertainty_formula", "uncertainty_calibration") if a not in names]
    if problems or str(var.uncertainty_calibration).startswith("none"):
        return problems
    for attr in ("coverage_measured_on", *UNCERTAINTY_ATTRS):
        if attr not in names:
            problems.append(f"twsa_uncertainty: attribute {attr} missing")
            continue
        if attr == "coverage_measured_on":
            continue
        value = float(var.getncattr(attr))
        ok = 0.0 <= value <= 1.0 if attr.startswith("coverage") else value > 0
        if not ok:
            want = "a fraction in 0..1" if attr.startswith("coverage") else "a positive value"
            problems.append(f"twsa_uncertainty: attribute {attr}: expected {want}, found "
                            f"{value}")
    return problems


# ---- validate ------------------------------------------------------------------------------

def validate(path: str | Path) -> list[str]:
    """Check a product; return the failures (empty when it passes)."""
    path = Path(path)
    problems: list[str] = []
    if not path.exists():
        return [f"{path}: no such file"]
    side = path.with_name(path.name + ".sha256")
    if not side.exists():
        problems.append(f"{side.name}: missing checksum sidecar")
    elif side.read_text().split()[0] != cache.sha256_file(path):
        problems.append(f"{side.name}: checksum does not match the file")
    try:
        ds = netCDF4.Dataset(path)
    except OSError as err:
        return problems + [f"{path}: not a readable netCDF file ({err})"]
    n_file = len(problems)  # the sidecar's
    with ds:
        for name in ("twsa", "twsa_uncertainty", "grace_available", "time", "time_bounds",
                     "lat", "lon", "lat_bnds", "lon_bnds"):
            if name not in ds.variables:
                problems.append(f"variable {name}: missing")
        for attr in ("Conventions", "title", "summary", "keywords", "license", "references",
                     "history", "twsbench_version", "run_config", "headline_scores",
                     "headline_run", "model_choice",
                     "time_mean_removed", "conservation_residual_max_mm", "creator_name",
                     "standard_name_vocabulary", "time_coverage_duration"):
            if attr not in ds.ncattrs():
                problems.append(f"global attribute {attr}: missing")
        if len(problems) > n_file:  # variables or attributes missing: nothing more to read
            return problems
        problems += _check_uncertainty(ds["twsa_uncertainty"])
        try:
            headline = json.loads(ds.headline_scores)
            tasks = [t for t in TASKS if isinstance(headline.get(t), dict)]
        except (ValueError, AttributeError):
            tasks = []
        if tasks != list(TASKS):
            problems.append(f"headline_scores: expected scores by task ({', '.join(TASKS)}), "
                            f"found {ds.headline_scores[:80]!r}")
        if "CF-1.8" not in ds.Conventions or "ACDD-1.3" not in ds.Conventions:
            problems.append(f"Conventions: expected CF-1.8 and ACDD-1.3, found {ds.Conventions}")
        if "CC-BY-4.0" not in ds.license:
            problems.append(f"license: expected CC-BY-4.0, found {ds.license}")
        n = ds.dimensions["time"].size
        if n != 249:
            problems.append(f"time: expected 249 months 2002-04..2022-12, found {n}")
        # netCDF4's stubs return datetime | ndarray; an array of times gives an array
        times = cast(np.ndarray, netCDF4.num2date(ds["time"][:], ds["time"].units,
                                                  ds["time"].calendar,
                                                  only_use_cftime_datetimes=False,
                                                  only_use_python_datetimes=True))
        months = np.array([np.datetime64(f"{t.year:04d}-{t.month:02d}", "M") for t in times])
        expected = mo.month_range("2002-04", "2022-12")
        if months.size != expected.size or not np.array_equal(months, expected):
            problems.append("time: expected one value in each month of 2002-04..2022-12")
        lat, lon = ds["lat"][:], ds["lon"][:]
        if not (np.all(np.diff(lat) > 0) and np.all(np.diff(lon) > 0)):
            problems.append("lat/lon: expected ascending coordinates")
        if getattr(ds["twsa"], "units", "") not in ("kg m-2", "mm"):
            problems.append("twsa: expected units kg m-2 (= mm of water), found "
                            f"{getattr(ds['twsa'], 'units', 'none')!r}")
        if ds["twsa"].dtype != np.float32:
            problems.append(f"twsa: expected float32, found {ds['twsa'].dtype}")
        flag = ds["grace_available"][:]
        missing = ~np.isin(expected, mo.MISSING_MONTHS)
        if flag.size == expected.size and not np.array_equal(flag.astype(bool), missing):
            problems.append("grace_available: expected 0 exactly in the 33 months without "
                            "a GRACE solution")
        first = np.ma.filled(ds["twsa"][0], np.nan)
        land = np.isfinite(first)
        if not land.any():
            problems.append("twsa: no values")
        for k in range(n):
            values = np.ma.filled(ds["twsa"][k], np.nan)
            sigma = np.ma.filled(ds["twsa_uncertainty"][k], np.nan)
            if not np.array_equal(np.isfinite(values), land):
                problems.append(f"twsa: month {k}: expected values on exactly the land cells")
                break
            if np.nanmax(np.abs(values)) > 1e4:
                problems.append(f"twsa: month {k}: values beyond ±10 m")
                break
            if not np.array_equal(np.isfinite(sigma), land) or np.nanmin(sigma) < 0:
                problems.append(f"twsa_uncertainty: month {k}: expected non-negative values "
                                "on the land cells")
                break
    return problems
