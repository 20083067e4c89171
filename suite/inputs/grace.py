"""Reader for JPL GRACE/GRACE-FO mascon grids (RL06.3Mv04 CRI; v03 and v02 layouts).

Returns the suite's conventions: lat ascending, lon in [-180, 180), records assigned to
calendar months by record order over the months not listed in ``months_missing``, mm.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from twsbench.core import months as mo
from twsbench.core.errors import InputError
from twsbench.inputs import netcdf as nc

log = logging.getLogger(__name__)

#: Units of ``lwe_thickness``/``uncertainty`` and their factor to mm.
LENGTH_TO_MM = {
    "cm": 10.0, "centimeter": 10.0, "centimeters": 10.0, "centimetre": 10.0,
    "centimetres": 10.0, "mm": 1.0, "millimeter": 1.0, "millimeters": 1.0, "m": 1000.0,
    "meter": 1000.0, "meters": 1000.0, "kg m-2": 1.0,
}
#: Physically possible range of each variable, mm: the largest mascon changes (ice-sheet and
#: glacier coasts) stay within a few metres of water; 30 m leaves a wide margin while cm data
#: labelled "m" (100× too large) is caught.
PLAUSIBLE_MM = {"lwe_thickness": (-30_000.0, 30_000.0), "uncertainty": (0.0, 30_000.0)}
_STATIC = {"land_mask": ("land_mask", "LO_val"), "scale_factor": ("scale_factor",),
           "mascon_id": ("mascon_ID", "mascon_id")}


def read_grace(
    path: str | Path,
    companions: Sequence[str | Path] = (),
    *,
    chunks: Mapping[str, int] | None = None,
    check_values: bool = True,
) -> xr.Dataset:
    """Read a JPL mascon file.

    Parameters
    ----------
    path
        ``GRCTellus.JPL.200204_YYYYMM.GLO.RL06.3M.MSCNv04CRI.nc`` (or a v03/v02 file, global or
        a regional subset).
    companions
        Optional files holding ``land_mask``, ``scale_factor`` or ``mascon_ID`` when the main
        file lacks them (the v02 release kept them apart: ``LAND_MASK.CRI.nc``,
        ``CLM4.SCALE_FACTOR.JPL.MSCNv02CRI.nc``).
    chunks
        Dask chunks for a lazy read (e.g. ``{"time": 12}``).
    check_values
        Check that no month is entirely missing (a pass over the data; callers that check
        their own subset turn it off).

    Returns
    -------
    xarray.Dataset
        ``lwe_thickness`` and ``uncertainty`` (time, lat, lon) in mm (NaN where the file has
        its fill value); ``mascon_id`` (lat, lon, int64, 0 where undefined), ``land_mask``
        (lat, lon, bool), ``scale_factor`` (lat, lon) when present (never applied); ``time``
        at month starts with the original record times in ``epoch``. Attributes keep the
        file's ``months_missing`` and ``time_mean_removed`` and add ``source_file``.

    Raises
    ------
    InputError
        Missing file or variable, unknown units, a grid that is not 0.5°-aligned, repeated
        record times, a record count that disagrees with ``months_missing``, or a month with
        no finite value.
    """
    path = Path(path)
    ds = nc.open_netcdf(path, chunks)
    out = xr.Dataset(attrs=dict(ds.attrs))
    for name in ("lwe_thickness", "uncertainty"):
        var = nc.find_var(ds, path, [name])
        if ds[var].ndim != 3:
            raise InputError(path, var, "dimensions (time, lat, lon)", f"{ds[var].dims}")
        factor = nc.unit_factor(ds[var], path, var, LENGTH_TO_MM)
        out[name] = (ds[var] * factor).astype("float64")
        out[name].attrs = {"units": "mm", "long_name": ds[var].attrs.get("long_name", name),
                           "file_units": str(ds[var].attrs.get("units"))}
    time_name = nc.find_var(ds, path, ["time"])
    out = out.assign_coords({time_name: ds[time_name]})
    for key, names in _STATIC.items():
        found = [n for n in names if n in ds.variables]
        if found:
            out[key] = ds[found[0]]
    out = out.assign_coords({c: ds[c] for c in ("lat", "lon", "latitude", "longitude")
                             if c in ds.coords})
    out = nc.normalise_grid(out, path)
    out = _merge_companions(out, path, companions)
    if "mascon_id" not in out:
        raise InputError(path, "mascon_ID", "a mascon_ID variable (in the file or a companion)",
                         "none")
    if "land_mask" not in out:
        raise InputError(path, "land_mask", "a land_mask variable (in the file or a companion)",
                         "none")
    ids = np.asarray(out["mascon_id"].values, dtype=float)
    out["mascon_id"] = (("lat", "lon"), np.where(np.isfinite(ids), ids, 0).astype(np.int64))
    out["land_mask"] = (("lat", "lon"), np.asarray(out["land_mask"].values) > 0.5)

    epochs = nc.decode_time(ds[time_name], path, time_name)
    missing = _missing_months(ds.attrs, path)
    try:
        months = mo.assign_records(epochs, missing)
    except mo.BookkeepingError as err:
        raise InputError(path, "time/months_missing", err.expected, err.found) from err
    out = out.assign_coords(time=(time_name, mo.months_to_datetime64(months)),
                            epoch=(time_name, epochs.astype("datetime64[ns]")))
    if time_name != "time":
        out = out.swap_dims({time_name: "time"})
    if check_values:
        lwe, sigma = out["lwe_thickness"], out["uncertainty"]
        nc.check_not_all_missing(lwe, path, "lwe_thickness", PLAUSIBLE_MM["lwe_thickness"],
                                 "mm", lwe.attrs["file_units"])
        nc.check_range(sigma, path, "uncertainty", *PLAUSIBLE_MM["uncertainty"], "mm",
                       sigma.attrs["file_units"])
    out.attrs.update(source_file=str(path), months_missing=mo.format_months_missing(missing))
    return out


def _missing_months(attrs: Mapping, path: Path) -> np.ndarray:
    text = attrs.get("months_missing")
    if text is None:
        log.warning("%s has no months_missing attribute; using JPL's 33 missing months of "
                    "2002-04..2022-12", path)
        return mo.MISSING_MONTHS
    try:
        return mo.parse_months_missing(str(text))
    except ValueError as err:
        raise InputError(path, "months_missing", "';'-separated YYYY-MM or YYYY-MM-YYYY-MM "
                         "tokens", str(err)) from err


def _merge_companions(out: xr.Dataset, path: Path, companions: Sequence[str | Path]
                      ) -> xr.Dataset:
    for companion in companions:
        cpath = Path(companion)
        cds = nc.normalise_grid(nc.open_netcdf(cpath), cpath)
        for key, names in _STATIC.items():
            found = [n for n in names if n in cds.variables]
            if key in out or not found:
                continue
            try:
                field = cds[found[0]].squeeze(drop=True).reindex_like(
                    out[["lat", "lon"]], method="nearest", tolerance=1e-6)
            except (KeyError, ValueError) as err:
                raise InputError(cpath, found[0], f"the grid of {path.name}",
                                 "another grid") from err
            if field.dims != ("lat", "lon") or np.isnan(field.values).all():
                raise InputError(cpath, found[0], f"(lat, lon) on the grid of {path.name}",
                                 f"dims {field.dims}")
            out[key] = field
    return out
