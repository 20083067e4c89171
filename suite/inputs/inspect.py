"""Recognise input files and summarise what the readers make of them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from twsbench.core.errors import InputError
from twsbench.inputs import netcdf as nc
from twsbench.inputs import read_era5, read_grace, read_truth, read_wghm

KINDS = ("grace", "wghm", "era5", "truth")
_BY_VARIABLE = (("lwe_thickness", "grace"), ("tws", "wghm"), ("swvl1", "era5"),
                ("tp", "era5"), ("twsa", "truth"))


def kind_of(path: Path) -> str:
    """Which reader a file is for, from its name, else from its variables."""
    name = path.name
    if name.startswith("GRCTellus") or "MSCN" in name:
        return "grace"
    if name.startswith("watergap"):
        return "wghm"
    if name.startswith("data_stream-") or nc.file_kind(path) == "zip":
        return "era5"
    if name.startswith("truth"):
        return "truth"
    ds = nc.open_netcdf(path)
    with ds:
        for var, kind in _BY_VARIABLE:
            if var in ds.variables:
                return kind
    raise InputError(path, "-", "a JPL mascon, WaterGAP, ERA5 or truth file",
                     "none of their variables")


def group_inputs(paths: Sequence[Path]) -> list[tuple[str, list[Path]]]:
    """Files (directories expanded) grouped by kind; ERA5 stream files form one group."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.iterdir()
                           if p.suffix in (".nc", ".nc4", ".zip") and not p.name.startswith("."))
            if not found:
                raise InputError(path, "-", "netCDF or zip files in the directory", "none")
            files.extend(found)
        else:
            files.append(path)
    groups: dict[str, list[Path]] = {}
    out: list[tuple[str, list[Path]]] = []
    for path in files:
        kind = kind_of(path)
        if kind == "era5":
            if "era5" not in groups:
                groups["era5"] = []
                out.append(("era5", groups["era5"]))
            groups["era5"].append(path)
        else:
            out.append((kind, [path]))
    return out


def _range(da: xr.DataArray) -> str:
    values = np.asarray(da.values)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return "no finite values"
    return f"{finite.min():.4g} .. {finite.max():.4g} {da.attrs.get('units', '')}".strip()


def _grid(da: xr.DataArray) -> str:
    lat, lon = da["lat"].values, da["lon"].values
    return (f"{lat.size} × {lon.size}: lat {lat[0]:g}..{lat[-1]:g}, "
            f"lon {lon[0]:g}..{lon[-1]:g}")


def _months(da: xr.DataArray) -> str:
    t = da["time"].values.astype("datetime64[M]")
    return f"{t.size}: {t[0]} .. {t[-1]}"


def describe(kind: str, paths: list[Path]) -> dict[str, str]:
    """Read with the suite's reader and summarise (internal conventions, mm)."""
    if kind == "grace":
        ds = read_grace(paths[0])
        lwe = ds["lwe_thickness"]
        land = ds["land_mask"].values
        ids = np.unique(ds["mascon_id"].values[land & np.isfinite(lwe.isel(time=0).values)])
        return {"months": _months(lwe), "grid": _grid(lwe), "lwe_thickness": _range(lwe),
                "uncertainty": _range(ds["uncertainty"]),
                "land mascons with data": f"{ids.size}",
                "months_missing": ds.attrs["months_missing"],
                "time_mean_removed": str(ds.attrs.get("time_mean_removed", "-"))}
    if kind == "wghm":
        da = read_wghm(paths[0])
        return {"months": _months(da), "grid": _grid(da), "tws (absolute)": _range(da)}
    if kind == "era5":
        ds = read_era5(paths)
        out = {"months": _months(ds["storage"]), "grid": _grid(ds["storage"])}
        out.update({name: _range(ds[name]) for name in ("storage", "precip", "evap", "runoff",
                                                         "t2m")})
        return out
    if kind == "truth":
        da = read_truth(paths[0])
        return {"months": _months(da), "grid": _grid(da), "twsa": _range(da)}
    raise ValueError(f"unknown kind {kind!r}")
