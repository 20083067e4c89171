"""Reader for ERA5 and ERA5-Land monthly means from the Copernicus Climate Data Store.

Accepts the new-CDS layout (``valid_time``; the two stream files
``data_stream-moda_stepType-avgua.nc`` and ``…-avgad.nc``, a zip holding them, or one file)
and the legacy layout (``time`` in hours since 1900, packed int16, maybe an ``expver``
dimension). Returns storage in mm and fluxes in mm per month.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from twsbench.core import cache
from twsbench.core.errors import InputError
from twsbench.inputs import netcdf as nc

#: Soil layer thicknesses in metres (ERA5/ERA5-Land HTESSEL: 0–7, 7–28, 28–100, 100–289 cm).
LAYER_M = {"swvl1": 0.07, "swvl2": 0.21, "swvl3": 0.72, "swvl4": 1.89}
STORAGE_VARS = (*LAYER_M, "sd", "src")
FLUX_VARS = ("tp", "e", "ro")
ALL_VARS = (*STORAGE_VARS, *FLUX_VARS, "t2m")

#: Physically possible range of each field after conversion (mm, mm per month, K): soil water
#: up to the layer's full depth, snow up to ERA5's 10 m w.e. cap and beyond, monthly totals
#: far above the wettest months on record. Percent soil water, mm labelled m or °C labelled K
#: land outside.
PLAUSIBLE = {**{k: (0.0, 1000.0 * v) for k, v in LAYER_M.items()}, "sd": (0.0, 20_000.0),
             "src": (0.0, 100.0), "tp": (-1.0, 20_000.0), "ro": (-1.0, 20_000.0),
             "e": (-2_000.0, 2_000.0), "t2m": (150.0, 350.0)}
_VOLUMETRIC = {"m3 m-3", "m3/m3", "m3m-3", "1", "fraction"}
_METRES_WE = {"m of water equivalent", "m", "m w.e.", "m of water"}
_KELVIN = {"k", "kelvin"}


def read_era5(
    paths: str | Path | Sequence[str | Path], *, chunks: Mapping[str, int] | None = None,
    check_values: bool = True,
) -> xr.Dataset:
    """Read ERA5 (0.25°) or ERA5-Land (0.1°) monthly means.

    Parameters
    ----------
    paths
        One netCDF file, the two stream files, or a CDS zip holding them.
    chunks
        Dask chunks for a lazy read.
    check_values
        Check that no month is entirely missing (a pass over the data; callers that check
        their own subset turn it off).

    Returns
    -------
    xarray.Dataset
        On (time, lat, lon), time at month starts, lat ascending, lon in [-180, 180):
        ``storage`` (mm; soil layers + snow + canopy water), its parts ``soil``, ``snow``,
        ``canopy`` (mm), ``precip``, ``evap`` (evaporation positive), ``runoff``
        (mm per month) and ``t2m`` (K).

    Raises
    ------
    InputError
        Missing file or variable (e.g. a zip missing one stream), unknown units, an irregular
        grid, repeated months, or a month without any finite value.
    """
    files = _expand(paths)
    found: dict[str, tuple[xr.DataArray, Path]] = {}
    for path in files:
        ds = _canonical(nc.open_netcdf(path, chunks), path)
        for name in ALL_VARS:
            if name in ds.data_vars and name not in found:
                found[name] = (ds[name], path)
    label = files[0] if len(files) == 1 else Path(", ".join(str(p) for p in files))
    if isinstance(paths, (str, Path)) and Path(paths).suffix == ".zip":
        label = Path(paths)
    missing = [name for name in ALL_VARS if name not in found]
    if "sd" in missing and any("sde" in nc.open_netcdf(p).variables for p in files):
        raise InputError(label, "sd", "snow water equivalent 'sd' (m of water equivalent)",
                         "only 'sde', ERA5-Land's snow depth in metres of snow")
    if missing:
        raise InputError(label, missing[0], f"the variables {', '.join(ALL_VARS)}",
                         f"no {', '.join(missing)}")
    fields = {name: _convert(da, path, name) for name, (da, path) in found.items()}
    months = _common_months(found)
    fields = {k: v.sel(time=months) for k, v in fields.items()}
    for name, (da, path) in found.items() if check_values else ():
        nc.check_not_all_missing(fields[name], path, name, PLAUSIBLE[name],
                                 "K" if name == "t2m" else "mm", str(da.attrs.get("units")))
    soil = sum(fields[k] for k in LAYER_M)
    out = xr.Dataset({
        "storage": soil + fields["sd"] + fields["src"],
        "soil": soil, "snow": fields["sd"], "canopy": fields["src"],
        "precip": fields["tp"], "evap": fields["e"], "runoff": fields["ro"],
        "t2m": fields["t2m"],
    })
    units = {"storage": "mm", "soil": "mm", "snow": "mm", "canopy": "mm",
             "precip": "mm month-1", "evap": "mm month-1", "runoff": "mm month-1", "t2m": "K"}
    for name, unit in units.items():
        out[name].attrs = {"units": unit}
    out.attrs["source_files"] = ", ".join(str(p) for p in files)
    return out


def _expand(paths: str | Path | Sequence[str | Path]) -> list[Path]:
    """The netCDF files behind ``paths``: zips are unpacked into the cache, once."""
    items = [paths] if isinstance(paths, (str, Path)) else list(paths)
    if not items:
        raise InputError(Path("-"), "era5", "at least one ERA5 file", "none")
    files: list[Path] = []
    for item in items:
        path = Path(item)
        if nc.file_kind(path) == "zip":
            files.extend(_unzip(path))
        else:
            files.append(path)
    return files


def _unzip(path: Path) -> list[Path]:
    target = cache.cache_dir() / "era5-zip" / cache.sha256_file(path)[:16]
    try:
        with zipfile.ZipFile(path) as archive:
            members = [m for m in archive.namelist() if m.endswith(".nc")]
            if not members:
                raise InputError(path, "-", "a zip of ERA5 netCDF files",
                                 f"members {archive.namelist()[:4]}")
            out = []
            for member in members:
                dest = target / Path(member).name
                if not dest.exists():
                    tmp = cache.temp_path(dest)
                    try:
                        with archive.open(member) as src, open(tmp, "wb") as dst:
                            while block := src.read(1 << 20):
                                dst.write(block)
                        os.replace(tmp, dest)
                    finally:
                        tmp.unlink(missing_ok=True)
                out.append(dest)
    except zipfile.BadZipFile as err:
        raise InputError(path, "-", "a readable zip archive", str(err)) from err
    return sorted(out)


def _canonical(ds: xr.Dataset, path: Path) -> xr.Dataset:
    """Either layout to (time, lat, lon) with month-start times and normalised coordinates."""
    time_name = "valid_time" if "valid_time" in ds.dims else "time"
    if time_name not in ds.dims:
        raise InputError(path, "valid_time", "a time dimension valid_time or time",
                         f"dimensions {', '.join(map(str, ds.dims))}")
    if "expver" in ds.dims:  # legacy: ERA5 (1) and ERA5T (5) side by side, NaN where absent
        merged = ds.isel(expver=0)
        for k in range(1, ds.sizes["expver"]):
            merged = merged.combine_first(ds.isel(expver=k))
        ds = merged
    ds = ds.drop_vars([v for v in ("number", "expver") if v in ds.variables])
    months = nc.decode_time(ds[time_name], path, time_name).astype("datetime64[M]")
    order = nc.check_months(months, path, time_name)
    ds = ds.assign_coords({time_name: months.astype("datetime64[ns]")}).isel(
        {time_name: order})
    if time_name != "time":
        ds = ds.rename({time_name: "time"})
    return nc.normalise_grid(ds, path, res=None)


def _convert(da: xr.DataArray, path: Path, name: str) -> xr.DataArray:
    units = nc.norm_units(str(da.attrs.get("units", "")))
    days = da["time"].dt.days_in_month
    if name in LAYER_M:
        if units not in _VOLUMETRIC:
            raise InputError(path, name, "units m3 m-3", repr(da.attrs.get("units")))
        return (da * (LAYER_M[name] * 1000.0)).astype(np.float32)
    if name == "t2m":
        if units not in _KELVIN:
            raise InputError(path, name, "units K", repr(da.attrs.get("units")))
        return da
    if units not in _METRES_WE:
        raise InputError(path, name, "units m of water equivalent", repr(da.attrs.get("units")))
    if name in STORAGE_VARS:
        return (da * 1000.0).astype(np.float32)
    # monthly means of accumulations are metres per day: × days in month gives the total;
    # ERA5's evaporation is negative upward, the suite's is positive upward
    sign = -1.0 if name == "e" else 1.0
    return (da * (sign * 1000.0) * days).astype(np.float32)


def _common_months(found: Mapping[str, tuple[xr.DataArray, Path]]) -> np.ndarray:
    sets = [np.asarray(da["time"].values) for da, _ in found.values()]
    common = sets[0]
    for s in sets[1:]:
        common = np.intersect1d(common, s)
    if common.size == 0:
        name, (_, path) = next(iter(found.items()))
        raise InputError(path, "time", "months shared by all ERA5 variables", "none in common")
    return common
