"""Tiny synthetic input files in the real formats of ``docs/formats.md``.

Every writer builds its file with the netCDF4 library, so the tests carry no binary fixtures.
Values are returned (or computable with :func:`pattern`) in *file* order, so a test can check
that a cell's value lands where it should after the reader reorders lat and lon.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import netCDF4
import numpy as np

from twsbench.core import months as mo

#: JPL's fill value for ``lwe_thickness`` and ``uncertainty``.
JPL_FILL = -99999.0
JPL_TIME_UNITS = "days since 2002-01-01T00:00:00Z"
JPL_EPOCH = np.datetime64("2002-01-01T00:00:00", "s")
JPL_STATIC = ("land_mask", "scale_factor", "mascon_ID")
#: The value written into the ``scale_factor`` *variable* (never to be applied by a reader).
JPL_SCALE = 2.0

#: Names of the two CDS stream files and the variables each holds.
ERA5_STREAMS = {
    "data_stream-moda_stepType-avgua.nc": ("swvl1", "swvl2", "swvl3", "swvl4", "sd", "src",
                                           "t2m"),
    "data_stream-moda_stepType-avgad.nc": ("tp", "e", "ro"),
}
ERA5_UNITS = {"swvl1": "m**3 m**-3", "swvl2": "m**3 m**-3", "swvl3": "m**3 m**-3",
              "swvl4": "m**3 m**-3", "sd": "m of water equivalent",
              "src": "m of water equivalent", "t2m": "K", "tp": "m",
              "e": "m of water equivalent", "ro": "m", "sde": "m"}
#: Plausible (low, high) of each ERA5 variable, in its file units.
ERA5_RANGE = {"swvl1": (0.05, 0.45), "swvl2": (0.05, 0.45), "swvl3": (0.05, 0.45),
              "swvl4": (0.05, 0.45), "sd": (0.0, 0.3), "src": (0.0, 5e-4),
              "t2m": (240.0, 305.0), "tp": (1e-4, 1.5e-2), "e": (-6e-3, -1e-5),
              "ro": (1e-5, 3e-3), "sde": (0.0, 1.0)}


def pattern(k: int | np.ndarray, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """A value unique to record ``k`` and cell (lat, lon) on 0.5° grids: ``100k + lat + lon/1000``.

    ``lon`` is the longitude *as written in the file* (0–360 for JPL).
    """
    k = np.asarray(k, dtype=float)
    lat = np.asarray(lat, dtype=float)
    lon = np.asarray(lon, dtype=float)
    return 100.0 * k[..., None, None] + lat[:, None] + lon[None, :] / 1000.0


def land_of(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """A land/sea pattern on (lat, lon) fixed by the coordinates (the same for any subset,
    and for lon and lon ± 360): sea on every third diagonal of 0.05° steps."""
    a = np.round(np.asarray(lat, dtype=float) * 20).astype(np.int64)
    b = np.round(np.asarray(lon, dtype=float) * 20).astype(np.int64)
    return (a[:, None] + b[None, :]) % 3 != 0


def jpl_epochs(months: Iterable[np.datetime64],
               shifted: Mapping[str, str] | None = None) -> np.ndarray:
    """Solution epochs (``datetime64[s]``): mid-month, except ``shifted`` (month → date)."""
    months = np.asarray(list(months), dtype="datetime64[M]")
    epochs = mo.mid_month(months)
    for month, date in (shifted or {}).items():
        epochs[months == np.datetime64(month, "M")] = np.datetime64(date, "s")
    return epochs


def trap_series() -> tuple[np.ndarray, np.ndarray]:
    """Months and epochs 2011-04 .. 2012-02 without 2011-06 (as in the real record).

    November 2011 is dated 30 October and December 2011 on 1 January 2012 (as JPL does), so
    flooring the epochs gives 2011-10 and 2012-01 twice and loses 2011-11 and 2011-12.
    """
    months = mo.month_range("2011-04", "2012-02")
    months = months[months != np.datetime64("2011-06", "M")]
    epochs = jpl_epochs(months, {"2011-11": "2011-10-30T12:00", "2011-12": "2012-01-01T00:00"})
    return months, epochs


def _days(epochs: np.ndarray) -> np.ndarray:
    return (np.asarray(epochs, dtype="datetime64[s]") - JPL_EPOCH) / np.timedelta64(1, "D")


def _bounds(c: np.ndarray) -> np.ndarray:
    c = np.asarray(c, dtype=float)
    half = abs(c[1] - c[0]) / 2 if c.size > 1 else 0.25
    return np.stack([c - half, c + half], axis=-1)


def jpl_static_fields(lat: np.ndarray, lon: np.ndarray) -> dict[str, np.ndarray]:
    """JPL's static fields on (lat, lon): land_mask, scale_factor (NaN at sea), mascon_ID."""
    land = land_of(lat, lon)
    row = np.floor((np.asarray(lat) + 90) / 1.5)[:, None]
    col = np.floor((np.asarray(lon) % 360) / 3.0)[None, :]
    return {
        "land_mask": land.astype(float),
        "scale_factor": np.where(land, JPL_SCALE, np.nan),
        "mascon_ID": 1 + row * 1000 + col,
    }


def write_jpl(
    path: str | Path,
    lat: Sequence[float],
    lon: Sequence[float],
    months_present: Sequence[np.datetime64] | np.ndarray,
    missing_text: str | None,
    *,
    epochs: np.ndarray | None = None,
    values: np.ndarray | None = None,
    units: str = "cm",
    static: Iterable[str] = JPL_STATIC,
    gad: bool = False,
    rename: Mapping[str, str] | None = None,
    fill_at: Iterable[tuple[int, int, int]] = (),
) -> Path:
    """Write a JPL RL06.3Mv04 CRI mascon file.

    ``lat``/``lon`` are written as given (JPL: lat ascending, lon 0–360 ascending);
    ``months_present`` are the solution months, dated at ``epochs`` (default mid-month);
    ``values`` (cm, file order; default :func:`pattern`); ``static`` lists the static
    variables to include (v02 kept ``land_mask`` and ``scale_factor`` in companions);
    ``rename`` renames variables (to test a missing one); ``fill_at`` cells (k, i, j) get the
    fill value.
    """
    path = Path(path)
    lat = np.asarray(lat, dtype=float)
    lon = np.asarray(lon, dtype=float)
    months_present = np.asarray(months_present, dtype="datetime64[M]")
    epochs = mo.mid_month(months_present) if epochs is None else np.asarray(epochs, "M8[s]")
    n = len(epochs)
    if values is None:
        values = pattern(np.arange(n), lat, lon)
    values = np.array(values, dtype=float)
    static_fields = jpl_static_fields(lat, lon)
    sigma = 0.5 + (static_fields["mascon_ID"] % 7) * 0.3
    sigma = np.broadcast_to(sigma, values.shape) + 0.01 * np.arange(n)[:, None, None]
    sigma = np.array(sigma)
    for k, i, j in fill_at:
        values[k, i, j] = JPL_FILL
        sigma[k, i, j] = JPL_FILL
    names = dict(rename or {})
    with netCDF4.Dataset(path, "w", format="NETCDF4") as ds:
        ds.createDimension("lon", lon.size)
        ds.createDimension("lat", lat.size)
        ds.createDimension("time", None)
        ds.createDimension("bounds", 2)
        v = ds.createVariable("lon", "f8", ("lon",))
        v.units, v.long_name, v.bounds = "degrees_east", "longitude", "lon_bounds"
        v[:] = lon
        v = ds.createVariable("lat", "f8", ("lat",))
        v.units, v.long_name, v.bounds = "degrees_north", "latitude", "lat_bounds"
        v[:] = lat
        v = ds.createVariable("time", "f8", ("time",))
        v.units, v.calendar, v.bounds = JPL_TIME_UNITS, "gregorian", "time_bounds"
        v.long_name = "time"
        v[:] = _days(epochs)
        ds.createVariable("lon_bounds", "f8", ("lon", "bounds"))[:] = _bounds(lon)
        ds.createVariable("lat_bounds", "f8", ("lat", "bounds"))[:] = _bounds(lat)
        days = _days(epochs)
        ds.createVariable("time_bounds", "f8", ("time", "bounds"))[:] = np.stack(
            [np.floor(days) - 14, np.floor(days) + 14], axis=-1)
        for name, data in (("lwe_thickness", values), ("uncertainty", sigma)):
            v = ds.createVariable(names.get(name, name), "f8", ("time", "lat", "lon"),
                                  fill_value=JPL_FILL)
            v.units = units
            v.long_name = v.standard_name = ("Liquid_Water_Equivalent_Thickness"
                                             if name == "lwe_thickness" else "uncertainty")
            v[:] = data
        for name in static:
            v = ds.createVariable(names.get(name, name), "f8", ("lat", "lon"))
            v.units = "binary" if name == "land_mask" else "1"
            v[:] = static_fields[name]
        if gad:
            v = ds.createVariable("GAD", "f8", ("time", "lat", "lon"), fill_value=JPL_FILL)
            v.units = "cm"
            v[:] = np.full(values.shape, 1234.5)
        attrs = {
            "Conventions": "CF-1.6, ACDD-1.3, ISO 8601",
            "title": "JPL GRACE and GRACE-FO MASCON RL06.3Mv04 CRI",
            "institution": "NASA/JPL",
            "time_epoch": "2002-01-01T00:00:00Z",
            "time_coverage_start": str(epochs[0]),
            "time_coverage_end": str(epochs[-1]),
            "time_mean_removed": "2004.000 to 2009.999",
            "GIA_removed": "ICE6G-D",
            "product_version": "v04",
        }
        if missing_text is not None:
            attrs["months_missing"] = missing_text
        ds.setncatts(attrs)
    return path


def write_jpl_companions(directory: str | Path, lat: Sequence[float],
                         lon: Sequence[float]) -> tuple[Path, Path]:
    """The v02 companions ``LAND_MASK.CRI.nc`` and ``CLM4.SCALE_FACTOR.JPL.MSCNv02CRI.nc``."""
    directory = Path(directory)
    lat = np.asarray(lat, dtype=float)
    lon = np.asarray(lon, dtype=float)
    fields = jpl_static_fields(lat, lon)
    out = []
    for name, var in (("LAND_MASK.CRI.nc", "land_mask"),
                      ("CLM4.SCALE_FACTOR.JPL.MSCNv02CRI.nc", "scale_factor")):
        with netCDF4.Dataset(directory / name, "w", format="NETCDF4") as ds:
            ds.createDimension("lon", lon.size)
            ds.createDimension("lat", lat.size)
            v = ds.createVariable("lon", "f8", ("lon",))
            v.units = "degrees_east"
            v[:] = lon
            v = ds.createVariable("lat", "f8", ("lat",))
            v.units = "degrees_north"
            v[:] = lat
            ds.createVariable(var, "f8", ("lat", "lon"))[:] = fields[var]
        out.append(directory / name)
    return out[0], out[1]


def write_wghm(
    path: str | Path,
    lat: Sequence[float],
    lon: Sequence[float],
    time_values: Sequence[int],
    *,
    values: np.ndarray | None = None,
    variable: str = "tws",
    units: str = "kg m-2",
    fill_value: float = 1e20,
    fill_attr: bool = True,
    time_units: str = "months since 1901-01-01",
    calendar: str = "proleptic_gregorian",
) -> Path:
    """Write a WaterGAP 2.2e storage file (float32, lat as given, usually descending).

    ``values`` (mm, file order; default ``500 + pattern``) are written with ``fill_value``
    over sea (:func:`land_of` false); ``fill_attr=False`` writes the fill without a
    ``_FillValue`` attribute.
    """
    path = Path(path)
    lat = np.asarray(lat, dtype=float)
    lon = np.asarray(lon, dtype=float)
    time_values = np.asarray(time_values)
    if values is None:
        values = 500.0 + pattern(np.arange(time_values.size), lat, lon)
    data = np.where(land_of(lat, lon), values, fill_value).astype(np.float32)
    with netCDF4.Dataset(path, "w", format="NETCDF4") as ds:
        ds.createDimension("lon", lon.size)
        ds.createDimension("lat", lat.size)
        ds.createDimension("time", None)
        v = ds.createVariable("lon", "f8", ("lon",))
        v.units, v.standard_name = "degrees_east", "longitude"
        v[:] = lon
        v = ds.createVariable("lat", "f8", ("lat",))
        v.units, v.standard_name = "degrees_north", "latitude"
        v[:] = lat
        v = ds.createVariable("time", "f8", ("time",))
        v.units, v.calendar = time_units, calendar
        v[:] = time_values
        fill = np.float32(fill_value) if fill_attr else False
        v = ds.createVariable(variable, "f4", ("time", "lat", "lon"), fill_value=fill)
        v.units, v.long_name = units, "total water storage"
        v[:] = data
        ds.setncatts({"title": "WaterGAP 2.2e", "institution": "Goethe University Frankfurt"})
    return path


def era5_fields(lat: Sequence[float], lon: Sequence[float], n_time: int,
                variables: Iterable[str], *, sea: bool = True,
                seed: int = 0) -> dict[str, np.ndarray]:
    """Plausible float32 ERA5 fields (time, lat, lon) in file units, NaN over sea."""
    rng = np.random.default_rng(seed)
    shape = (n_time, len(lat), len(lon))
    land = land_of(np.asarray(lat), np.asarray(lon))
    out = {}
    for name in variables:
        lo, hi = ERA5_RANGE[name]
        data = rng.uniform(lo, hi, shape).astype(np.float32)
        out[name] = np.where(land, data, np.nan).astype(np.float32) if sea else data
    return out


def _seconds_since_1970(months: np.ndarray) -> np.ndarray:
    starts = np.asarray(months, dtype="datetime64[M]").astype("datetime64[s]")
    return (starts - np.datetime64("1970-01-01T00:00:00", "s")).astype(np.int64)


def write_era5_new(
    directory: str | Path,
    lat: Sequence[float],
    lon: Sequence[float],
    months: Sequence[np.datetime64] | np.ndarray,
    *,
    one_file: bool = False,
    drop: Iterable[str] = (),
    rename: Mapping[str, str] | None = None,
    units: Mapping[str, str] | None = None,
    nan_months: Mapping[str, int] | None = None,
    scale: Mapping[str, float] | None = None,
    shift: Mapping[str, float] | None = None,
    seed: int = 0,
) -> tuple[list[Path], dict[str, np.ndarray]]:
    """Write a new-CDS (2024) ERA5 monthly-means download.

    Two stream files (avgua: swvl1-4, sd, src, t2m; avgad: tp, e, ro) or, with
    ``one_file``, ``era5_monthly.nc`` holding all; ``drop`` leaves variables out, ``rename``
    renames them (``{"sd": "sde"}``), ``units`` overrides units, ``nan_months`` (variable →
    month index) blanks a whole month, ``scale`` and ``shift`` (variable → number) change
    the values but not their units attribute (percent written as m3 m-3, °C as K). Returns the
    paths and the values written (float32, file order, keyed by the original short names).
    """
    directory = Path(directory)
    lat = np.asarray(lat, dtype=float)
    lon = np.asarray(lon, dtype=float)
    months = np.asarray(months, dtype="datetime64[M]")
    drop, rename = set(drop), dict(rename or {})
    allvars = [v for names in ERA5_STREAMS.values() for v in names]
    fields = era5_fields(lat, lon, months.size, allvars, seed=seed)
    for short, k in (nan_months or {}).items():
        fields[short][k] = np.nan
    for short, factor in (scale or {}).items():
        fields[short] = (fields[short] * factor).astype(np.float32)
    for short, offset in (shift or {}).items():
        fields[short] = (fields[short] + offset).astype(np.float32)
    units = {**ERA5_UNITS, **(units or {})}
    groups = ({"era5_monthly.nc": tuple(allvars)} if one_file else ERA5_STREAMS)
    paths = []
    for name, variables in groups.items():
        path = directory / name
        with netCDF4.Dataset(path, "w", format="NETCDF4") as ds:
            ds.createDimension("valid_time", months.size)
            ds.createDimension("latitude", lat.size)
            ds.createDimension("longitude", lon.size)
            v = ds.createVariable("number", "i8", ())
            v.long_name, v.units = "ensemble member numerical id", "1"
            v.assignValue(0)
            v = ds.createVariable("valid_time", "i8", ("valid_time",))
            v.units, v.calendar = "seconds since 1970-01-01", "proleptic_gregorian"
            v.long_name, v.standard_name = "time", "time"
            v[:] = _seconds_since_1970(months)
            v = ds.createVariable("latitude", "f8", ("latitude",))
            v.units, v.standard_name = "degrees_north", "latitude"
            v[:] = lat
            v = ds.createVariable("longitude", "f8", ("longitude",))
            v.units, v.standard_name = "degrees_east", "longitude"
            v[:] = lon
            v = ds.createVariable("expver", str, ("valid_time",))
            v.long_name = "model experiment version"
            v[:] = np.array(["0001"] * (months.size - 1) + ["0005"], dtype=object)
            for short in variables:
                if short in drop:
                    continue
                out_name = rename.get(short, short)
                v = ds.createVariable(out_name, "f4", ("valid_time", "latitude", "longitude"),
                                      fill_value=np.float32(np.nan))
                v.units = units.get(out_name, units[short])
                v.long_name = out_name
                v.GRIB_shortName = out_name
                v.GRIB_stepType = "avgad" if short in ("tp", "e", "ro") else "avgua"
                v.coordinates = "number expver"
                v[:] = fields[short]
            ds.setncatts({"GRIB_centre": "ecmf", "Conventions": "CF-1.7",
                          "institution": "European Centre for Medium-Range Weather Forecasts"})
        paths.append(path)
    return paths, fields


def zip_files(path: str | Path, files: Iterable[str | Path]) -> Path:
    """A CDS-style zip holding ``files`` under their own names."""
    path = Path(path)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for f in files:
            archive.write(f, arcname=Path(f).name)
    return path


def _pack(data: np.ndarray) -> tuple[np.ndarray, float, float]:
    """ECMWF-style int16 packing (extremes at ±32766, -32767 left for the fill); returns
    (packed, scale_factor, add_offset)."""
    lo, hi = float(np.nanmin(data)), float(np.nanmax(data))
    scale = (hi - lo) / (2**16 - 4) or 1.0
    offset = (hi + lo) / 2
    packed = np.round((data - offset) / scale)
    return np.where(np.isnan(data), -32767, packed).astype(np.int16), scale, offset


def write_era5_legacy(
    path: str | Path,
    lat: Sequence[float],
    lon: Sequence[float],
    months: Sequence[np.datetime64] | np.ndarray,
    *,
    expver: bool = False,
    seed: int = 0,
) -> tuple[Path, dict[str, np.ndarray]]:
    """Write a legacy-CDS ERA5 file: ``time`` in hours since 1900, int16 packed variables.

    With ``expver`` the variables are (time, expver, latitude, longitude) with expver 1 and 5;
    the last month is valid only in expver 5 (ERA5T), the others only in expver 1. Returns the
    path and the unpacked values (float64, time, lat, lon, file order).
    """
    path = Path(path)
    lat = np.asarray(lat, dtype=np.float32)
    lon = np.asarray(lon, dtype=np.float32)
    months = np.asarray(months, dtype="datetime64[M]")
    allvars = [v for names in ERA5_STREAMS.values() for v in names]
    fields = era5_fields(lat, lon, months.size, allvars, seed=seed)
    hours = ((months.astype("datetime64[h]") - np.datetime64("1900-01-01T00", "h"))
             .astype(np.int32))
    unpacked = {}
    with netCDF4.Dataset(path, "w", format="NETCDF3_64BIT_OFFSET") as ds:
        ds.createDimension("longitude", lon.size)
        ds.createDimension("latitude", lat.size)
        if expver:
            ds.createDimension("expver", 2)
        ds.createDimension("time", None)  # grib_to_netcdf writes time UNLIMITED
        v = ds.createVariable("longitude", "f4", ("longitude",))
        v.units, v.long_name = "degrees_east", "longitude"
        v[:] = lon
        v = ds.createVariable("latitude", "f4", ("latitude",))
        v.units, v.long_name = "degrees_north", "latitude"
        v[:] = lat
        if expver:
            v = ds.createVariable("expver", "i4", ("expver",))
            v.long_name = "expver"
            v[:] = [1, 5]
        v = ds.createVariable("time", "i4", ("time",))
        v.units, v.calendar = "hours since 1900-01-01 00:00:00.0", "gregorian"
        v.long_name = "time"
        v[:] = hours
        dims = ("time", "expver", "latitude", "longitude") if expver else (
            "time", "latitude", "longitude")
        for name in allvars:
            packed, scale, offset = _pack(fields[name].astype(float))
            unpacked[name] = np.where(packed == -32767, np.nan, packed * scale + offset)
            v = ds.createVariable(name, "i2", dims, fill_value=np.int16(-32767))
            v.set_auto_maskandscale(False)
            v.scale_factor, v.add_offset = scale, offset
            v.missing_value = np.int16(-32767)
            v.units, v.long_name = ERA5_UNITS[name], name
            if expver:
                both = np.full((months.size, 2, lat.size, lon.size), -32767, np.int16)
                both[:-1, 0] = packed[:-1]
                both[-1, 1] = packed[-1]
                v[:] = both
            else:
                v[:] = packed
        ds.setncatts({"Conventions": "CF-1.6",
                      "history": "2023-05-01 12:00:00 GMT by grib_to_netcdf-2.25.1"})
    return path, unpacked


def write_truth(
    path: str | Path,
    lat: Sequence[float],
    lon: Sequence[float],
    months: Sequence[np.datetime64] | np.ndarray,
    *,
    values: np.ndarray | None = None,
    variable: str = "twsa",
    units: str = "mm",
) -> Path:
    """Write a truth file: ``twsa`` (time, lat, lon) in mm, time mid-month in days since
    2002-01-01."""
    path = Path(path)
    lat = np.asarray(lat, dtype=float)
    lon = np.asarray(lon, dtype=float)
    months = np.asarray(months, dtype="datetime64[M]")
    if values is None:
        values = pattern(np.arange(months.size), lat, lon)
    with netCDF4.Dataset(path, "w", format="NETCDF4") as ds:
        ds.createDimension("time", months.size)
        ds.createDimension("lat", lat.size)
        ds.createDimension("lon", lon.size)
        v = ds.createVariable("time", "f8", ("time",))
        v.units, v.calendar = "days since 2002-01-01", "proleptic_gregorian"
        v[:] = _days(mo.mid_month(months))
        v = ds.createVariable("lat", "f8", ("lat",))
        v.units = "degrees_north"
        v[:] = lat
        v = ds.createVariable("lon", "f8", ("lon",))
        v.units = "degrees_east"
        v[:] = lon
        v = ds.createVariable(variable, "f8", ("time", "lat", "lon"), fill_value=np.nan)
        v.units = units
        v[:] = values
    return path
