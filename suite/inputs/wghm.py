"""Reader for WaterGAP total water storage (2.2e; 2.2d and ISIMIP3a names too)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import xarray as xr

from twsbench.core.errors import InputError
from twsbench.inputs import netcdf as nc

#: Storage units and their factor to mm (1 kg m-2 of water = 1 mm).
STORAGE_TO_MM = {"kg m-2": 1.0, "kg/m2": 1.0, "kgm-2": 1.0, "mm": 1.0, "m": 1000.0}
#: File-name patterns of the releases the suite knows (2.2e, ISIMIP3a, 2.2d).
NAME_PATTERNS = (
    re.compile(r"^watergap22e_(?P<forcing>[\w-]+?)_(?P<var>\w+?)_(?P<soc>\w+?)_monthly_"
               r"(?P<y0>\d{4})_(?P<y1>\d{4})\.nc4?$"),
    re.compile(r"^watergap2-2e_(?P<forcing>[\w-]+?)_obsclim_(?P<soc>\w+?)_default_"
               r"(?P<var>\w+?)_global_monthly_(?P<y0>\d{4})_(?P<y1>\d{4})\.nc4?$"),
    re.compile(r"^watergap_22d_(?P<forcing>[\w-]+?)_(?P<soc>\w+?)_(?P<var>\w+?)_monthly_"
               r"(?P<y0>\d{4})_(?P<y1>\d{4})\.nc4?$"),
)
#: Values of this size or larger are fill values even without a ``_FillValue`` attribute.
FILL_THRESHOLD = 1e19


def parse_name(path: str | Path) -> dict[str, str] | None:
    """The parts of a WaterGAP file name (forcing, var, soc, y0, y1), or None if unknown."""
    for pattern in NAME_PATTERNS:
        match = pattern.match(Path(path).name)
        if match:
            return match.groupdict()
    return None


def read_wghm(
    path: str | Path, variable: str = "tws", *, chunks: Mapping[str, int] | None = None,
    check_values: bool = True,
) -> xr.DataArray:
    """Read a WaterGAP storage file.

    Parameters
    ----------
    path
        e.g. ``watergap22e_gswp3-era5_tws_histsoc_monthly_1901_2022.nc``.
    variable
        The storage variable (``tws``, or a compartment such as ``groundwstor``).
    chunks
        Dask chunks for a lazy read.
    check_values
        Check that no month is entirely missing (a pass over the data; callers that check
        their own subset turn it off).

    Returns
    -------
    xarray.DataArray
        Absolute storage in mm on (time, lat, lon): time at month starts, lat ascending, lon in
        [-180, 180); NaN off the model's land.

    Raises
    ------
    InputError
        Missing file or variable, unknown units, a grid that is not 0.5°-aligned, repeated
        months, or a month without any finite value.
    """
    path = Path(path)
    ds = nc.open_netcdf(path, chunks)
    var = nc.find_var(ds, path, [variable])
    da = ds[var]
    if set(da.dims) - {"time", "lat", "lon", "latitude", "longitude"} or da.ndim != 3:
        raise InputError(path, var, "dimensions (time, lat, lon)", f"{da.dims}")
    factor = nc.unit_factor(da, path, var, STORAGE_TO_MM)
    time_name = nc.find_var(ds, path, ["time"])
    field = da.where(np.abs(da) < FILL_THRESHOLD) * factor
    field = field.astype("float32") if da.dtype == np.float32 else field.astype("float64")
    out = xr.Dataset({variable: field}, coords={c: ds[c] for c in ds[var].coords})
    out = nc.normalise_grid(out, path)
    months = nc.decode_time(ds[time_name], path, time_name).astype("datetime64[M]")
    order = nc.check_months(months, path, time_name)
    out = out.assign_coords(time=("time", months.astype("datetime64[ns]"))).isel(time=order)
    result = out[variable]
    result.attrs = {"units": "mm", "long_name": da.attrs.get("long_name", variable),
                    "source_file": str(path)}
    if check_values:
        nc.check_not_all_missing(result, path, var)
    return result
