"""The computation of the grids from input files (no cache: :mod:`twsbench.prepare.store`).

Steps: read the inputs lazily (Dask chunks along time), choose the domain's mascons from the
GRACE file, cut every source to the domain's box before loading, regrid ERA5 conservatively to
0.5°, take anomalies against the baseline for every source, aggregate GRACE to mascons with
``A``, build the learners' feature stack (standardised with training-month statistics only)
and the month splits.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from twsbench.core import backend, kernels, landmask
from twsbench.core import geometry as grid
from twsbench.core import months as mo
from twsbench.core.config import Config
from twsbench.core.domains import Domain
from twsbench.core.errors import ConfigError, InputError
from twsbench.core.mascons import Mascons, mascons_on_grid
from twsbench.core.splits import make_splits
from twsbench.inputs import netcdf as nc
from twsbench.inputs import read_era5, read_grace, read_wghm
from twsbench.prepare import regrid
from twsbench.prepare.files import InputFiles
from twsbench.prepare.grids import FEATURES, FIELDS, Grids

log = logging.getLogger(__name__)
Stage = Callable[[str], None]


@dataclass(frozen=True)
class _Box:
    """The domain's cells inside the GRACE file: rows, (cyclic) columns, their coordinates,
    and the flat indices of the land cells within the box."""

    rows: slice
    cols: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    flat: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return self.lat.size, self.lon.size


def _domain_cells(g: xr.Dataset, domain: Domain, path: Path
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(cell mask on the GRACE grid, domain mascon IDs): the land cells of whole mascons whose
    land centroid lies in the domain."""
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
    from twsbench.inputs import era5, grace

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


def _months(config: Config) -> tuple[np.ndarray, np.ndarray]:
    """The product months and the baseline's mask over them."""
    p = config.period
    period = mo.month_range(p.start, p.end)
    base = (period >= np.datetime64(p.baseline_start, "M")) & (
        period <= np.datetime64(p.baseline_end, "M"))
    if not base.any():
        raise ConfigError(f"[period]: expected baseline months inside {p.start}..{p.end}, "
                          f"found none")
    return period, base


def _check_every_month(data: xr.Dataset | xr.DataArray, period: np.ndarray, path: Path,
                       config: Config) -> None:
    missing = np.setdiff1d(period, data["time"].values.astype("datetime64[M]"))
    if missing.size:
        p = config.period
        raise InputError(path, "time", f"every month of {p.start}..{p.end}",
                         f"{missing.size} missing, first {missing[0]}")


def _in_period(data: Any, period: np.ndarray) -> Any:
    return data.sel(time=slice(period[0].astype("datetime64[ns]"),
                               period[-1].astype("datetime64[ns]")))


def _wghm(files: InputFiles, config: Config, period: np.ndarray, box: _Box,
          chunks: dict | None) -> xr.DataArray:
    """WaterGAP's storage on the box's cells, every product month."""
    w = _in_period(read_wghm(files.wghm, chunks=chunks, check_values=False), period)
    _check_every_month(w, period, files.wghm, config)
    try:
        return w.sel(lat=box.lat, lon=box.lon, method="nearest", tolerance=1e-3)
    except KeyError as err:
        raise InputError(files.wghm, "lat/lon", "the domain's cells inside the file",
                         "a file that does not cover the domain") from err


def _era5(files: InputFiles, config: Config, period: np.ndarray, box: _Box,
          chunks: dict | None, xp: Any) -> tuple[xr.Dataset, Callable[[np.ndarray], np.ndarray]]:
    """ERA5's cells overlapping the box (longitudes compared cyclically), every product
    month, and the conservative regridding of a (months, lat, lon) block onto the box."""
    e = _in_period(read_era5(list(files.era5), chunks=chunks, check_values=False), period)
    _check_every_month(e, period, files.era5[0], config)
    e_lat, e_lon = e["lat"].values, e["lon"].values
    lat_keep = (e_lat >= box.lat[0] - 0.5) & (e_lat <= box.lat[-1] + 0.5)
    dist = np.abs((e_lon[:, None] - box.lon[None, :] + 180.0) % 360.0 - 180.0).min(axis=1)
    e = e.isel(lat=np.flatnonzero(lat_keep), lon=np.flatnonzero(dist <= 0.5))
    w_lat = regrid.lat_weights(e["lat"].values, box.lat)
    w_lon = regrid.lon_weights(e["lon"].values, box.lon)
    if (np.asarray(w_lat.sum(axis=1)).ravel() <= 0).any() or (
            np.asarray(w_lon.sum(axis=1)).ravel() <= 0).any():
        raise InputError(files.era5[0], "lat/lon", "a grid covering the domain",
                         "a grid that leaves some of the domain uncovered")
    w_lat_x, w_lon_x = backend.to_device(w_lat, xp), backend.to_device(w_lon, xp)

    def regrid_block(block: np.ndarray) -> np.ndarray:
        out = kernels.regrid(w_lat_x, w_lon_x, backend.to_device(block, xp), xp)
        return backend.to_numpy(out).astype(np.float32)

    return e, regrid_block


#: ERA5's variables behind the regridded fields
ERA5_FIELDS = {"era5_storage": "storage", "precip": "precip", "evap": "evap",
               "runoff": "runoff", "t2m": "t2m"}


def _cell_arrays(g: xr.Dataset, g_in_period: np.ndarray, w: xr.DataArray, e: xr.Dataset,
                 regrid_block: Callable[[np.ndarray], np.ndarray], box: _Box,
                 period: np.ndarray, use_dask: bool) -> dict[str, np.ndarray]:
    """Every source on the domain's land cells, ``(months, cells)``: computed in one pass
    over the files (Dask), then checked against the physical ranges."""
    lazy: dict[str, object] = {}
    gsel = g.isel(lat=box.rows, lon=box.cols).sel(time=g["time"][g_in_period])
    for name in ("lwe_thickness", "uncertainty"):
        lazy[name] = gsel[name].data.reshape(gsel.sizes["time"], -1)[:, box.flat]
    lazy["wghm"] = w.data.reshape(period.size, -1)[:, box.flat]
    for name, var in ERA5_FIELDS.items():
        da = e[var]
        if use_dask:
            data = da.data.rechunk({1: -1, 2: -1})
            out = data.map_blocks(regrid_block, dtype=np.float32,
                                  chunks=(data.chunks[0], (box.lat.size,), (box.lon.size,)))
        else:
            out = regrid_block(np.asarray(da.values))
        lazy[name] = out.reshape(period.size, -1)[:, box.flat]
    return _to_numpy(lazy)


def _anomalies(arrays: dict[str, np.ndarray], base: np.ndarray, period: np.ndarray,
               files: InputFiles, xp: Any) -> dict[str, np.ndarray]:
    """Each field's anomaly against the baseline months; a cell-month a source leaves empty
    (a few coastal cells) gets a zero anomaly."""
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
        if holes.any():
            log.warning("%s: %d of %d cell-months without data set to a zero anomaly", name,
                        int(holes.sum()), holes.size)
            anomalies[holes] = 0.0
        fields[name] = anomalies.astype(np.float32)
    return fields


def _grace_on_mascons(arrays: dict[str, np.ndarray], mascons: Mascons, period: np.ndarray,
                      g_months: np.ndarray, g_in_period: np.ndarray, files: InputFiles
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """GRACE and its σ aggregated to mascons with ``A`` over the product months (NaN in
    months without a solution), and whether each month has one."""
    if not np.all(np.isfinite(arrays["lwe_thickness"])):
        raise InputError(files.grace, "lwe_thickness", "values on every domain cell in every "
                         "month", "missing values")
    has_grace = np.isin(period, g_months)
    grace = np.full((period.size, mascons.n_mascons), np.nan)
    sigma = np.full_like(grace, np.nan)
    pos = np.searchsorted(period, g_months[g_in_period])
    grace[pos] = kernels.apply_A(mascons.A, np.nan_to_num(arrays["lwe_thickness"]))
    sigma[pos] = kernels.apply_A(mascons.A, np.nan_to_num(arrays["uncertainty"]))
    return grace, sigma, has_grace


def _features(fields: dict[str, np.ndarray], box: _Box, period: np.ndarray,
              train: np.ndarray, xp: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The learners' feature stack ``(months, features, cells)``: the anomaly fields, static
    fields (sin/cos of latitude and longitude, land fraction) and time (a normalised index,
    sin/cos of the month), standardised with the training months' mean and std."""
    cell_lat = box.lat[box.flat // box.lon.size]
    cell_lon = box.lon[box.flat % box.lon.size]
    frac = landmask.land_fraction(box.lat, box.lon, grid.RES).ravel()[box.flat]
    static = np.stack([np.sin(np.deg2rad(cell_lat)), np.cos(np.deg2rad(cell_lat)),
                       np.sin(np.deg2rad(cell_lon)), np.cos(np.deg2rad(cell_lon)), frac])
    moy = (period.astype(int) % 12).astype(float)
    temporal = np.stack([np.linspace(-1.0, 1.0, period.size), np.sin(2 * np.pi * moy / 12),
                         np.cos(2 * np.pi * moy / 12)], axis=1)
    n = box.flat.size
    stack = np.concatenate([
        np.stack([fields[k] for k in FIELDS], axis=1),
        np.broadcast_to(static[None], (period.size, *static.shape)),
        np.broadcast_to(temporal[:, :, None], (period.size, temporal.shape[1], n)),
    ], axis=1).astype(np.float32)
    mean = stack[train].mean(axis=(0, 2), dtype=np.float64)
    std = stack[train].std(axis=(0, 2), dtype=np.float64)
    std = np.where(std > 1e-12, std, 1.0)
    features = backend.to_numpy(kernels.standardise(
        xp.asarray(stack), xp.asarray(mean[None, :, None], dtype=xp.float32),
        xp.asarray(std[None, :, None], dtype=xp.float32))).astype(np.float32)
    assert len(FEATURES) == features.shape[1]
    return features, mean, std


def compute_grids(files: InputFiles, config: Config, *, use_dask: bool = True,
                  stage: Stage | None = None) -> Grids:
    """Compute the grids (no cache). See the module docstring for the steps."""
    stage = stage or (lambda label: None)
    t_start = time.perf_counter()
    domain = config.domain.resolve()
    period, base = _months(config)
    chunks = {"time": config.compute.chunk_months} if use_dask else None
    xp = backend.get_xp(config.compute.device)

    stage("reading GRACE")
    g = read_grace(files.grace, files.grace_companions, chunks=chunks, check_values=False)
    g_months = g["time"].values.astype("datetime64[M]")
    g_in_period = np.isin(g_months, period)
    if not g_in_period.any():
        p = config.period
        raise ConfigError(f"[period]: expected GRACE months in {p.start}..{p.end}, found "
                          f"{g_months[0]}..{g_months[-1]} in {files.grace.name}")
    mask, _ = _domain_cells(g, domain, files.grace)
    rows, cols = _box(mask)
    sub_mask = mask[rows][:, cols]
    box = _Box(rows, cols, g["lat"].values[rows], g["lon"].values[cols],
               np.flatnonzero(sub_mask))
    stage("reading WaterGAP")
    w = _wghm(files, config, period, box, chunks)
    stage("reading ERA5")
    e, regrid_block = _era5(files, config, period, box, chunks, xp)
    stage("computing (reading, regridding)")
    arrays = _cell_arrays(g, g_in_period, w, e, regrid_block, box, period, use_dask)
    _check_plausible(arrays, files)

    stage("anomalies, mascons and features")
    mascons, cell_flat = mascons_on_grid(g["mascon_id"].values[rows][:, cols], sub_mask,
                                         box.lat)
    assert np.array_equal(cell_flat, box.flat)
    fields = _anomalies(arrays, base, period, files, xp)
    grace, sigma, has_grace = _grace_on_mascons(arrays, mascons, period, g_months,
                                                g_in_period, files)
    splits = make_splits(period, has_grace, config.split)
    # the held-out blocks' GRACE is withheld from the models (Grids.withhold), so it takes no
    # part in GRACE's anomaly baseline either
    base_g = base & has_grace & ~splits["gapfill_withheld"]
    grace[has_grace] -= grace[base_g].mean(axis=0) if base_g.any() else 0.0
    features, mean, std = _features(fields, box, period, splits["train"], xp)

    p = config.period
    attrs = {"domain": domain.describe(), "domain_name": domain.name,
             "inputs": {"grace": str(files.grace), "wghm": str(files.wghm),
                        "era5": [str(f) for f in files.era5]},
             "is_twin": config.inputs.is_twin, "baseline": [p.baseline_start, p.baseline_end],
             "seconds": round(time.perf_counter() - t_start, 2),
             "device": backend.resolve(config.compute.device), "dask": use_dask}
    return Grids(lat=box.lat, lon=box.lon, cell_index=box.flat, mascon_ids=mascons.ids,
                 cell_mascon=mascons.cell_mascon, cell_area=mascons.weights, months=period,
                 has_grace=has_grace, grace=grace, grace_sigma=sigma, fields=fields,
                 features=features, feature_mean=mean, feature_std=std, splits=splits,
                 attrs=attrs)
