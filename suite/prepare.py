"""``prepare``: real-format inputs (or the twin world) to identical 0.5° grids, cached.

Steps: read the inputs lazily (Dask chunks along time), choose the domain's mascons from the
GRACE file, cut every source to the domain's box before loading, regrid ERA5 conservatively to
0.5°, take anomalies against the baseline for every source, aggregate GRACE to mascons with
``A``, build the learners' feature stack (standardised with training-month statistics only)
and the month splits. The result is saved under a key that hashes the input files' contents,
the grid-relevant config and this code, and loaded from there next time.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from suite import backend, cache, grid, kernels, landmask, regrid
from suite import months as mo
from suite.config import Config
from suite.domains import Domain
from suite.errors import ConfigError, InputError
from suite.grids import FEATURES, FIELDS, Grids
from suite.mascons import mascons_on_grid
from suite.readers import _netcdf as nc
from suite.readers import read_era5, read_grace, read_wghm
from suite.splits import make_splits

log = logging.getLogger(__name__)
Stage = Callable[[str], None]

@dataclass(frozen=True)
class InputFiles:
    grace: Path
    wghm: Path
    era5: tuple[Path, ...]
    truth: Path | None = None
    grace_companions: tuple[Path, ...] = ()

    def for_key(self) -> list[Path]:
        return [self.grace, *self.grace_companions, self.wghm, *self.era5]


def file_hash(path: Path) -> str:
    """SHA-256 of a file's content, remembered per (path, size, mtime) in the cache."""
    path = Path(path).resolve()
    stat = path.stat()
    memo_dir = cache.cache_dir() / "hashes"
    memo_key = hashlib.sha256(f"{path}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()
    memo = memo_dir / memo_key[:32]
    if memo.exists():
        return memo.read_text().strip()
    value = cache.sha256_file(path)
    memo_dir.mkdir(parents=True, exist_ok=True)
    cache.write_text(memo, value)
    return value


def twin_inputs(domain: Domain, seed: int, realism: str = "realistic",
                stage: Stage | None = None) -> InputFiles:
    """The twin world's files for ``domain``, ``seed`` and ``realism``, generated once into
    the cache."""
    from suite.twin import WorldFiles, make_world

    name = f"{domain.name}-{realism}-seed{seed}-{cache.source_hash(('suite',))}"  # all it imports
    target = cache.cache_dir() / "twin" / name
    files = WorldFiles.in_dir(target)
    if not all(p.exists() for p in files.all()):
        if stage:
            stage(f"generating the twin world ({domain.describe()}, {realism}, seed {seed})")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.temp_dir(target)
        try:
            make_world(domain, seed, tmp, realism=realism)
            if target.exists():  # another process finished first
                shutil.rmtree(tmp)
            else:
                os.replace(tmp, target)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return InputFiles(grace=files.grace, wghm=files.wghm, era5=tuple(files.era5),
                      truth=files.truth)


def check_inputs(config: Config) -> None:
    """Each file of ``[inputs]`` exists, is a file and is not empty."""
    i = config.inputs
    if i.is_twin:
        return
    named: list[tuple[str, str | None]] = [("grace", i.grace), ("wghm", i.wghm),
                                           *(("era5", p) for p in i.era5),
                                           ("truth", i.truth),
                                           *(("grace_companions", p)
                                             for p in i.grace_companions)]
    for key, value in named:
        if value is None:
            continue
        path = Path(value)
        if not path.exists():
            raise InputError(path, f"[inputs] {key}", "an existing file", "no such file")
        if path.is_dir():
            raise InputError(path, f"[inputs] {key}", "a file", "a directory")
        if path.stat().st_size == 0:
            raise InputError(path, f"[inputs] {key}", "a netCDF or zip file",
                             "an empty file (0 bytes)")


def resolve_inputs(config: Config, stage: Stage | None = None) -> InputFiles:
    """Input files of a config: its ``[inputs]`` or the (cached) twin world."""
    if config.inputs.is_twin:
        world = config.twin.primary
        return twin_inputs(config.domain.resolve(), world.seed, world.realism, stage)
    check_inputs(config)
    i = config.inputs
    assert i.grace is not None and i.wghm is not None  # not the twin: validated in suite.config
    return InputFiles(grace=Path(i.grace), wghm=Path(i.wghm), era5=tuple(map(Path, i.era5)),
                      truth=Path(i.truth) if i.truth else None,
                      grace_companions=tuple(map(Path, i.grace_companions)))


def cache_key(files: InputFiles, config: Config) -> str:
    """Key of prepared grids: input contents, the grid-relevant config and the code."""
    key = config.grids_key()
    key["inputs"] = {"files": [file_hash(p) for p in files.for_key()]}
    key["code"] = cache.source_hash(cache.PACKAGES)  # suite, baselines and models, whole
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:20]


def grids_path(key: str) -> Path:
    return cache.cache_dir() / "grids" / f"grids-{key}.nc"


@contextlib.contextmanager
def _scheduler(address: str | None) -> Iterator[object | None]:
    if not address:
        yield None
        return
    from distributed import Client

    with Client(address) as client:
        yield client


def prepare(config: Config, *, use_cache: bool = True, use_dask: bool = True,
            stage: Stage | None = None) -> tuple[Grids, Path, bool]:
    """Prepared grids for ``config``: loaded from the cache, or computed and saved.

    Returns
    -------
    grids, path, cached
        The grids, their cache file and whether they came from the cache.
    """
    stage = stage or (lambda label: log.info("prepare: %s", label))
    files = resolve_inputs(config, stage)
    stage("hashing inputs")
    key = cache_key(files, config)
    path = grids_path(key)
    if use_cache and path.exists():
        stage(f"loading cached grids {path.name}")
        return Grids.load(path), path, True
    with _scheduler(config.compute.scheduler):
        grids = compute_grids(files, config, use_dask=use_dask, stage=stage)
    grids.attrs["cache_key"] = key
    path.parent.mkdir(parents=True, exist_ok=True)
    stage(f"saving {path.name}")
    grids.save(path)
    return grids, path, False


# ------------------------------------------------------------------------------------------


def _domain_cells(g: xr.Dataset, domain: Domain, path: Path
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(cell mask on the GRACE grid, domain mascon IDs): suite land of whole mascons whose land
    centroid lies in the domain."""
    lat, lon = g["lat"].values, g["lon"].values
    first = np.isfinite(np.asarray(g["lwe_thickness"].isel(time=0).values))
    land = g["land_mask"].values & landmask.land_mask(lat, lon) & first
    ids = g["mascon_id"].values
    land &= ids > 0
    if not land.any():
        raise InputError(path, "lwe_thickness", "land cells with data", "none")
    mascons, flat = mascons_on_grid(ids, land, lat)
    lat2, lon2 = np.meshgrid(lat, lon, indexing="ij")
    clat, clon = mascons.centroids(lat2.ravel()[flat], lon2.ravel()[flat])
    chosen = mascons.ids[domain.contains(clat, clon)]
    full_lon = lon.size * grid.RES >= 360.0
    if lat.size < grid.LAT.size or not full_lon:  # a regional file: drop mascons cut at its edge
        edge = np.zeros(ids.shape, dtype=bool)
        edge[[0, -1], :] = lat.size < grid.LAT.size
        if not full_lon:
            edge[:, [0, -1]] = True
        chosen = chosen[~np.isin(chosen, np.unique(ids[edge]))]
    if chosen.size == 0:
        raise ConfigError(f"[domain]: expected land mascons of {domain.describe()} in "
                          f"{path.name}, found none")
    return land & np.isin(ids, chosen), chosen


def _box(mask: np.ndarray) -> tuple[slice, np.ndarray]:
    """Rows (a slice) and columns (indices, cyclic) covering the True cells."""
    rows = np.flatnonzero(mask.any(axis=1))
    return slice(rows[0], rows[-1] + 1), grid.cyclic_columns(mask.any(axis=0))


def _to_numpy(arrays: dict[str, object]) -> dict[str, np.ndarray]:
    """Compute Dask arrays together (one pass over the files), pass NumPy through."""
    import dask

    lazy = {k: v for k, v in arrays.items() if dask.is_dask_collection(v)}
    done = dict(zip(lazy, dask.compute(*lazy.values()), strict=True)) if lazy else {}
    return {k: np.asarray(done.get(k, v)) for k, v in arrays.items()}


def _check_plausible(arrays: dict[str, np.ndarray], files: InputFiles) -> None:
    """The readers' physical ranges on the domain's values (the readers skip their own pass
    over the whole files here): mislabelled units stop the run instead of skewing it."""
    from suite.readers import era5, grace

    soil = sum(high for name, (_, high) in era5.PLAUSIBLE.items() if name in era5.LAYER_M)
    storage_high = soil + era5.PLAUSIBLE["sd"][1] + era5.PLAUSIBLE["src"][1]
    checks = {**{name: (files.grace, name, *grace.PLAUSIBLE_MM[name], "mm")
                 for name in grace.PLAUSIBLE_MM},
              "era5_storage": (files.era5[0], "swvl1..4 + sd + src", 0.0, storage_high, "mm"),
              "precip": (files.era5[0], "tp", *era5.PLAUSIBLE["tp"], "mm"),
              "evap": (files.era5[0], "e", *era5.PLAUSIBLE["e"], "mm"),
              "runoff": (files.era5[0], "ro", *era5.PLAUSIBLE["ro"], "mm"),
              "t2m": (files.era5[0], "t2m", *era5.PLAUSIBLE["t2m"], "K")}
    for key, (path, name, low, high, unit) in checks.items():
        if np.isfinite(arrays[key]).any():
            nc.check_range(arrays[key], path, name, low, high, unit)


def compute_grids(files: InputFiles, config: Config, *, use_dask: bool = True,
                  stage: Stage | None = None) -> Grids:
    """Compute the grids (no cache). See the module docstring for the steps."""
    stage = stage or (lambda label: None)
    t_start = time.perf_counter()
    domain = config.domain.resolve()
    p = config.period
    period = mo.month_range(p.start, p.end)
    base = (period >= np.datetime64(p.baseline_start, "M")) & (
        period <= np.datetime64(p.baseline_end, "M"))
    if not base.any():
        raise ConfigError(f"[period]: expected baseline months inside {p.start}..{p.end}, "
                          f"found none")
    chunks = {"time": config.compute.chunk_months} if use_dask else None
    xp = backend.get_xp(config.compute.device)

    stage("reading GRACE")
    g = read_grace(files.grace, files.grace_companions, chunks=chunks, check_values=False)
    g_months = g["time"].values.astype("datetime64[M]")
    in_period = np.isin(g_months, period)
    if not in_period.any():
        raise ConfigError(f"[period]: expected GRACE months in {p.start}..{p.end}, found "
                          f"{g_months[0]}..{g_months[-1]} in {files.grace.name}")
    mask, chosen = _domain_cells(g, domain, files.grace)
    rows, cols = _box(mask)
    lat, lon = g["lat"].values[rows], g["lon"].values[cols]
    sub_mask = mask[rows][:, cols]

    stage("reading WaterGAP")
    w = read_wghm(files.wghm, chunks=chunks, check_values=False)
    w = w.sel(time=slice(period[0].astype("datetime64[ns]"), period[-1].astype("datetime64[ns]")))
    missing = np.setdiff1d(period, w["time"].values.astype("datetime64[M]"))
    if missing.size:
        raise InputError(files.wghm, "time", f"every month of {p.start}..{p.end}",
                         f"{missing.size} missing, first {missing[0]}")
    try:
        w = w.sel(lat=lat, lon=lon, method="nearest", tolerance=1e-3)
    except KeyError as err:
        raise InputError(files.wghm, "lat/lon", "the domain's cells inside the file",
                         "a file that does not cover the domain") from err

    stage("reading ERA5")
    e = read_era5(list(files.era5), chunks=chunks, check_values=False)
    e = e.sel(time=slice(period[0].astype("datetime64[ns]"), period[-1].astype("datetime64[ns]")))
    missing = np.setdiff1d(period, e["time"].values.astype("datetime64[M]"))
    if missing.size:
        raise InputError(files.era5[0], "time", f"every month of {p.start}..{p.end}",
                         f"{missing.size} missing, first {missing[0]}")
    # ERA5 cells overlapping the box (longitudes compared cyclically)
    e_lat, e_lon = e["lat"].values, e["lon"].values
    lat_keep = (e_lat >= lat[0] - 0.5) & (e_lat <= lat[-1] + 0.5)
    dist = np.abs((e_lon[:, None] - lon[None, :] + 180.0) % 360.0 - 180.0).min(axis=1)
    lon_keep = dist <= 0.5
    e = e.isel(lat=np.flatnonzero(lat_keep), lon=np.flatnonzero(lon_keep))
    w_lat = regrid.lat_weights(e["lat"].values, lat)
    w_lon = regrid.lon_weights(e["lon"].values, lon)
    if (np.asarray(w_lat.sum(axis=1)).ravel() <= 0).any() or (
            np.asarray(w_lon.sum(axis=1)).ravel() <= 0).any():
        raise InputError(files.era5[0], "lat/lon", "a grid covering the domain",
                         "a grid that leaves some of the domain uncovered")
    w_lat_x, w_lon_x = backend.to_device(w_lat, xp), backend.to_device(w_lon, xp)

    def regrid_block(block: np.ndarray) -> np.ndarray:
        out = kernels.regrid(w_lat_x, w_lon_x, backend.to_device(block, xp), xp)
        return backend.to_numpy(out).astype(np.float32)

    flat = np.flatnonzero(sub_mask)
    lazy: dict[str, object] = {}
    gsel = g.isel(lat=rows, lon=cols).sel(time=g["time"][in_period])
    for name in ("lwe_thickness", "uncertainty"):
        lazy[name] = gsel[name].data.reshape(gsel.sizes["time"], -1)[:, flat]
    lazy["wghm"] = w.data.reshape(period.size, -1)[:, flat]
    sources = {"era5_storage": "storage", "precip": "precip", "evap": "evap",
               "runoff": "runoff", "t2m": "t2m"}
    for name, var in sources.items():
        da = e[var]
        if use_dask:
            data = da.data.rechunk({1: -1, 2: -1})
            out = data.map_blocks(regrid_block, dtype=np.float32,
                                  chunks=(data.chunks[0], (lat.size,), (lon.size,)))
        else:
            out = regrid_block(np.asarray(da.values))
        lazy[name] = out.reshape(period.size, -1)[:, flat]
    stage("computing (reading, regridding)")
    arrays = _to_numpy(lazy)
    _check_plausible(arrays, files)

    stage("anomalies, mascons and features")
    land = np.zeros(sub_mask.shape, bool)
    land.ravel()[flat] = True
    mascons, cell_flat = mascons_on_grid(g["mascon_id"].values[rows][:, cols], land, lat)
    assert np.array_equal(cell_flat, flat)
    fields = {}
    for name in FIELDS:
        values = arrays[name].astype(np.float64)
        empty = ~np.isfinite(values).any(axis=1)
        if empty.any():
            raise InputError(files.wghm if name == "wghm" else files.era5[0], name,
                             "values on the domain's land cells in every month",
                             f"none in {', '.join(map(str, period[empty][:3]))}")
        anomalies = backend.to_numpy(kernels.anomaly(xp.asarray(values), xp.asarray(base), xp))
        holes = ~np.isfinite(anomalies)
        if holes.any():  # a few coastal cells a source leaves empty: no anomaly there
            log.warning("%s: %d of %d cell-months without data set to a zero anomaly", name,
                        int(holes.sum()), holes.size)
            anomalies[holes] = 0.0
        fields[name] = anomalies.astype(np.float32)

    has_grace = np.isin(period, g_months)
    grace = np.full((period.size, mascons.n_mascons), np.nan)
    sigma = np.full_like(grace, np.nan)
    pos = np.searchsorted(period, g_months[in_period])
    grace[pos] = kernels.apply_A(mascons.A, np.nan_to_num(arrays["lwe_thickness"]))
    sigma[pos] = kernels.apply_A(mascons.A, np.nan_to_num(arrays["uncertainty"]))
    if not np.all(np.isfinite(arrays["lwe_thickness"])):
        raise InputError(files.grace, "lwe_thickness", "values on every domain cell in every "
                         "month", "missing values")
    splits = make_splits(period, has_grace, config.split)
    # the held-out blocks' GRACE is withheld from the models (Grids.withhold), so it takes no
    # part in GRACE's anomaly baseline either
    base_g = base & has_grace & ~splits["gapfill_withheld"]
    grace[has_grace] -= grace[base_g].mean(axis=0) if base_g.any() else 0.0
    cell_lat = lat[flat // lon.size]
    cell_lon = lon[flat % lon.size]
    frac = landmask.land_fraction(lat, lon, grid.RES).ravel()[flat]
    static = np.stack([np.sin(np.deg2rad(cell_lat)), np.cos(np.deg2rad(cell_lat)),
                       np.sin(np.deg2rad(cell_lon)), np.cos(np.deg2rad(cell_lon)), frac])
    moy = (period.astype(int) % 12).astype(float)
    temporal = np.stack([np.linspace(-1.0, 1.0, period.size), np.sin(2 * np.pi * moy / 12),
                         np.cos(2 * np.pi * moy / 12)], axis=1)
    stack = np.concatenate([
        np.stack([fields[k] for k in FIELDS], axis=1),
        np.broadcast_to(static[None], (period.size, *static.shape)),
        np.broadcast_to(temporal[:, :, None], (period.size, temporal.shape[1], flat.size)),
    ], axis=1).astype(np.float32)
    train = stack[splits["train"]]
    mean = train.mean(axis=(0, 2), dtype=np.float64)
    std = train.std(axis=(0, 2), dtype=np.float64)
    std = np.where(std > 1e-12, std, 1.0)
    features = backend.to_numpy(kernels.standardise(
        xp.asarray(stack), xp.asarray(mean[None, :, None], dtype=xp.float32),
        xp.asarray(std[None, :, None], dtype=xp.float32))).astype(np.float32)
    assert len(FEATURES) == features.shape[1]

    attrs = {"domain": domain.describe(), "domain_name": domain.name,
             "inputs": {"grace": str(files.grace), "wghm": str(files.wghm),
                        "era5": [str(f) for f in files.era5]},
             "is_twin": config.inputs.is_twin, "baseline": [p.baseline_start, p.baseline_end],
             "seconds": round(time.perf_counter() - t_start, 2),
             "device": backend.resolve(config.compute.device), "dask": use_dask}
    return Grids(lat=lat, lon=lon, cell_index=flat, mascon_ids=mascons.ids,
                 cell_mascon=mascons.cell_mascon, cell_area=mascons.weights, months=period,
                 has_grace=has_grace, grace=grace, grace_sigma=sigma, fields=fields,
                 features=features, feature_mean=mean, feature_std=std, splits=splits,
                 attrs=attrs)
