"""Reader for a fine-scale truth (the twin's ``truth.nc`` or any file of that shape)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import xarray as xr

from twsbench.inputs import netcdf as nc
from twsbench.inputs.wghm import STORAGE_TO_MM


def read_truth(path: str | Path, *, chunks: Mapping[str, int] | None = None) -> xr.DataArray:
    """Read ``twsa`` (mm anomaly) on (time, lat, lon) in the internal conventions.

    Only scoring code calls this: no downscaler may see the truth.
    """
    path = Path(path)
    ds = nc.open_netcdf(path, chunks)
    var = nc.find_var(ds, path, ["twsa"])
    factor = nc.unit_factor(ds[var], path, var, STORAGE_TO_MM)
    out = xr.Dataset({"twsa": ds[var] * factor}, coords=ds[var].coords)
    out = nc.normalise_grid(out, path)
    months = nc.decode_time(ds["time"], path, "time").astype("datetime64[M]")
    order = nc.check_months(months, path, "time")
    out = out.assign_coords(time=("time", months.astype("datetime64[ns]"))).isel(time=order)
    result = out["twsa"]
    result.attrs = {"units": "mm", "source_file": str(path)}
    return result
