"""Shared plumbing of the readers: opening files, finding variables, units, time and grids.

Everything here raises :class:`twsbench.core.errors.InputError` with the file, the variable, what
was expected and what was found.
"""

from __future__ import annotations

import gc
import re
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from twsbench.core import geometry as grid
from twsbench.core.errors import InputError

_MAGIC = {
    b"CDF\x01": "netCDF3", b"CDF\x02": "netCDF3", b"CDF\x05": "netCDF3",
    b"\x89HDF": "netCDF4/HDF5",
}
ZIP_MAGIC = b"PK\x03\x04"


def file_kind(path: Path) -> str:
    """``"netcdf"`` or ``"zip"``; raises for a missing file or any other content."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "-", "an existing file", "no such file")
    if not path.is_file():
        raise InputError(path, "-", "a file", "a directory" if path.is_dir() else "not a file")
    with open(path, "rb") as f:
        head = f.read(8)
    if head[:4] in _MAGIC:
        if _MAGIC[head[:4]] == "netCDF3":
            _check_netcdf3_complete(path)
        return "netcdf"
    if head[:4] == ZIP_MAGIC:
        return "zip"
    found = "an empty file" if not head else f"content starting {head[:8]!r}"
    raise InputError(path, "-", "a netCDF file (netCDF3 or netCDF4/HDF5)", found)


def _check_netcdf3_complete(path: Path) -> None:
    """netCDF-C reads zeros past the end of a truncated netCDF3 file; scipy's parser maps each
    variable's extent at open and fails instead."""
    from scipy.io import netcdf_file

    problem = None
    with warnings.catch_warnings():  # a failed open leaves mapped arrays for the collector
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            f = netcdf_file(path, "r", mmap=True, maskandscale=False)
            f.variables.clear()
            f.close()
        except (ValueError, TypeError, OSError, IndexError) as err:
            problem = f"a truncated or corrupt file ({type(err).__name__}: {err})"
        gc.collect()
    if problem:
        raise InputError(path, "-", "a complete netCDF3 file", problem)


def open_netcdf(path: Path, chunks: Mapping[str, int] | None = None) -> xr.Dataset:
    """Open a netCDF file without decoding times (the readers decode them).

    ``chunks`` opens it lazily with Dask; otherwise values are read when first used.
    """
    path = Path(path)
    if file_kind(path) != "netcdf":
        raise InputError(path, "-", "a netCDF file", "a zip archive")
    for attempt in (1, 2):
        try:
            ds = xr.open_dataset(path, engine="netcdf4", decode_times=False,
                                 decode_timedelta=False)
            break
        except RuntimeError as err:
            # HDF5 is not thread-safe: a file handle closed by the garbage collector on
            # another thread while this one opens gives a one-off "HDF error" on a sound
            # file. Collect, then try once more; a corrupt file fails again.
            if attempt == 2 or "HDF error" not in str(err):
                raise InputError(path, "-", "a readable netCDF file",
                                 f"{type(err).__name__}: {err}") from err
            gc.collect()
        except Exception as err:  # corrupt or truncated HDF5 raises OSError, RuntimeError, …
            raise InputError(path, "-", "a readable netCDF file",
                             f"{type(err).__name__}: {err}") from err
    if chunks is not None:
        # "time" names whichever time dimension the file has (ERA5: valid_time); other
        # dimensions stay whole so that a chunk is a block of complete months
        wanted = {dim: -1 for dim in ds.dims}
        for dim in ("time", "valid_time"):
            if dim in ds.dims and "time" in chunks:
                wanted[dim] = chunks["time"]
        wanted.update({k: v for k, v in chunks.items() if k in ds.dims})
        ds = ds.chunk(wanted)
    return ds


def find_var(ds: xr.Dataset, path: Path, names: Iterable[str]) -> str:
    """The first of ``names`` present in ``ds``; raises naming all candidates otherwise."""
    names = list(names)
    for name in names:
        if name in ds.variables:
            return name
    present = ", ".join(sorted(str(v) for v in ds.data_vars)) or "no data variables"
    raise InputError(path, names[0], f"a variable named {' or '.join(names)}",
                     f"only {present}")


def norm_units(units: str) -> str:
    """Units text folded for comparison: lower case, ``**`` and ``^`` dropped, single spaces."""
    text = units.strip().lower().replace("**", "").replace("^", "")
    return " ".join(text.split())


def unit_factor(da: xr.DataArray, path: Path, var: str, table: Mapping[str, float]) -> float:
    """The factor that converts ``da`` to the suite's unit, from its ``units`` attribute."""
    units = da.attrs.get("units")
    if units is None:
        raise InputError(path, var, f"a units attribute (one of {', '.join(table)})",
                         "none")
    key = norm_units(str(units))
    if key not in table:
        raise InputError(path, var, f"units in {{{', '.join(table)}}}", repr(str(units)))
    return table[key]


_SINCE = re.compile(r"^\s*(\w+)\s+since\s+(.+?)\s*$", re.IGNORECASE)
_SECONDS = {"days": 86400, "day": 86400, "d": 86400, "hours": 3600, "hour": 3600, "h": 3600,
            "minutes": 60, "minute": 60, "seconds": 1, "second": 1, "s": 1}
_CALENDARS = {"gregorian", "standard", "proleptic_gregorian", "julian"}
#: every CF calendar: counting months does not depend on which
_CF_CALENDARS = _CALENDARS | {"noleap", "365_day", "all_leap", "366_day", "360_day", "none"}


def decode_time(var: xr.DataArray, path: Path, name: str) -> np.ndarray:
    """CF time values to ``datetime64[s]``; ``months since`` gives month starts.

    ``months since`` counts calendar months whatever the calendar (WaterGAP 2.2e files say
    ``365_day``); other units are decoded on the Gregorian calendar, the only one in which
    days since a date name the real months between 1901 and now.
    """
    units = var.attrs.get("units")
    if units is None:
        raise InputError(path, name, "CF time units ('<unit> since <date>')", "none")
    match = _SINCE.match(str(units))
    if match is None:
        raise InputError(path, name, "CF time units ('<unit> since <date>')", repr(units))
    unit, ref = match.group(1).lower(), match.group(2)
    calendar = str(var.attrs.get("calendar", "standard")).lower()
    months = unit in ("months", "month")
    if calendar not in (_CF_CALENDARS if months else _CALENDARS):
        allowed = "a CF calendar" if months else "a Gregorian calendar"
        names = _CF_CALENDARS if months else _CALENDARS
        raise InputError(path, name, f"{allowed} ({', '.join(sorted(names))})",
                         repr(calendar))
    try:
        origin = pd.Timestamp(ref.replace("Z", "").strip()).tz_localize(None)
    except (ValueError, TypeError) as err:
        raise InputError(path, name, "a reference date in the time units", repr(ref)) from err
    values = np.asarray(var.values, dtype=float)
    if not np.all(np.isfinite(values)):
        raise InputError(path, name, "finite time values", "missing time values")
    if months:
        if np.any(np.abs(values - np.round(values)) > 1e-6):
            raise InputError(path, name, "whole numbers of months", f"{values[:3]} …")
        start = np.datetime64(origin.strftime("%Y-%m"), "M")
        return (start + np.round(values).astype(int)).astype("datetime64[s]")
    if unit not in _SECONDS:
        raise InputError(path, name, "time units of days, hours, minutes, seconds or months",
                         repr(unit))
    seconds = np.round(values * _SECONDS[unit]).astype("int64")
    return np.datetime64(origin.to_datetime64(), "s") + seconds.astype("timedelta64[s]")


def normalise_grid(
    ds: xr.Dataset, path: Path, *, res: float | None = grid.RES
) -> xr.Dataset:
    """Rename to ``lat``/``lon``, make lat ascending and lon in [-180, 180) ascending.

    ``res`` (degrees) demands cell centres aligned to that grid (0.5°: ±0.25, ±0.75, …);
    ``None`` demands only regular spacing (ERA5's 0.25° and 0.1° point grids).
    """
    rename = {}
    for internal, names in (("lat", ("lat", "latitude")), ("lon", ("lon", "longitude"))):
        found = [n for n in names if n in ds.dims]
        if not found:
            raise InputError(path, internal, f"a dimension named {' or '.join(names)}",
                             f"dimensions {', '.join(map(str, ds.dims)) or 'none'}")
        if found[0] != internal:
            rename[found[0]] = internal
    ds = ds.rename(rename)
    for name in ("lat", "lon"):
        if name not in ds.coords:
            raise InputError(path, name, f"a coordinate variable {name}", "none")
    lat = np.asarray(ds["lat"].values, dtype=float)
    lon = np.asarray(ds["lon"].values, dtype=float)
    if lat.size == 0 or lon.size == 0:
        raise InputError(path, "lat/lon", "a non-empty grid", f"{lat.size} × {lon.size} cells")
    if np.any(np.abs(lat) > 90) or np.any(lon < -180) or np.any(lon > 360):
        raise InputError(path, "lat/lon", "lat in -90..90 and lon in -180..360",
                         f"lat {lat.min():g}..{lat.max():g}, lon {lon.min():g}..{lon.max():g}")
    wrapped = grid.wrap_lon(lon)
    if np.unique(np.round(wrapped, 6)).size != wrapped.size:
        both = bool((lon < 0).any() and (lon > 180).any())
        raise InputError(path, "lon", "distinct longitudes after wrapping to [-180, 180)",
                         "duplicates (values in both 0–360 and ±180)" if both else
                         "duplicates (the grid overlaps itself)")
    if np.unique(lat).size != lat.size:
        raise InputError(path, "lat", "distinct latitudes", "duplicates")
    for name, values in (("lat", lat), ("lon", wrapped)):
        step = _step(values)
        if step is None:
            raise InputError(path, name, "regularly spaced values (gaps of whole steps allowed)",
                             f"spacings {np.unique(np.round(np.diff(np.sort(values)), 6))[:4]}")
        if res is not None:
            if values.size > 1 and abs(step - res) > 1e-6:
                raise InputError(path, name, f"a {res:g}° grid", f"a {step:g}° spacing")
            if not grid.is_aligned(values, res):
                raise InputError(path, name, f"{res:g}° cell centres (±{res / 2:g}, "
                                 f"±{1.5 * res:g}, …)", f"values {values[0]:g}, …")
    ds = ds.assign_coords(lon=("lon", wrapped, ds["lon"].attrs),
                          lat=("lat", lat, ds["lat"].attrs))
    order_lon = np.argsort(wrapped, kind="stable")
    order_lat = np.argsort(lat, kind="stable")
    if not np.array_equal(order_lon, np.arange(lon.size)):
        ds = ds.isel(lon=order_lon)
    if not np.array_equal(order_lat, np.arange(lat.size)):
        ds = ds.isel(lat=order_lat)
    return ds


def _step(values: np.ndarray) -> float | None:
    """The grid step of sorted ``values`` when every gap is a whole number of steps (a subset
    across the antimeridian has one wider gap), else None; 0.0 for a single value."""
    gaps = np.diff(np.sort(np.asarray(values, dtype=float)))
    if gaps.size == 0:
        return 0.0
    step = float(gaps.min())
    if step <= 0:
        return None
    ratio = gaps / step
    return step if np.allclose(ratio, np.round(ratio), rtol=0, atol=1e-4) else None


def check_months(months: np.ndarray, path: Path, name: str) -> np.ndarray:
    """Raise on duplicate months; return the order that sorts them."""
    months = np.asarray(months, dtype="datetime64[M]")
    uniq, counts = np.unique(months, return_counts=True)
    if np.any(counts > 1):
        dup = ", ".join(str(m) for m in uniq[counts > 1][:3])
        raise InputError(path, name, "one record per month", f"repeated months {dup}")
    return np.argsort(months, kind="stable")


def check_not_all_missing(da: xr.DataArray, path: Path, name: str,
                          plausible: tuple[float, float] | None = None, unit: str = "mm",
                          units_attr: str | None = None) -> None:
    """Raise when a month (or the whole variable) holds no finite value, or, with
    ``plausible`` (low, high), when values leave that range (see :func:`check_range`); one
    pass over the data for both."""
    import dask

    if da.sizes.get("time", 0) == 0:
        raise InputError(path, name, "at least one month", "none")
    # np.isfinite of a DataArray is a DataArray (__array_ufunc__); numpy's stubs say ndarray
    finite = np.isfinite(da).any(dim=[d for d in da.dims if d != "time"])  # type: ignore[call-overload]
    if plausible is None:
        (finite,) = dask.compute(finite)
    else:
        finite, lo, hi = dask.compute(finite, da.min(), da.max())
    finite = np.asarray(finite)
    if not finite.any():
        raise InputError(path, name, "finite values", "only missing values")
    if not finite.all():
        bad = da["time"].values[~finite][:3].astype("datetime64[M]")
        raise InputError(path, name, "finite values in every month",
                         f"all-missing months {', '.join(map(str, bad))}")
    if plausible is not None:
        _check_bounds(float(lo), float(hi), path, name, *plausible, unit, units_attr)


def check_range(values: np.ndarray | xr.DataArray, path: Path, name: str, low: float,
                high: float, unit: str, units_attr: str | None = None) -> None:
    """Raise when finite values leave the physically possible ``low..high`` (in the suite's
    ``unit``): the sign of a units attribute that does not match the data (cm labelled m,
    percent labelled m3 m-3, mm labelled m, °C labelled K)."""
    import dask

    if isinstance(values, xr.DataArray):
        lo, hi = dask.compute(values.min(), values.max())
    else:
        lo, hi = np.nanmin(values), np.nanmax(values)
    _check_bounds(float(lo), float(hi), path, name, low, high, unit, units_attr)


def _check_bounds(lo: float, hi: float, path: Path, name: str, low: float, high: float,
                  unit: str, units_attr: str | None) -> None:
    if lo < low or hi > high:
        said = f" once converted from its units attribute {units_attr!r}" if units_attr else ""
        raise InputError(path, name, f"values within {low:g}..{high:g} {unit}{said} (are the "
                         "units right?)", f"{lo:.6g}..{hi:.6g} {unit}")
