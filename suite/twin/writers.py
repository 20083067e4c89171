"""Write the twin world in the exact real file formats (see docs/formats.md).

Each file is written to a temporary name beside its target and renamed when complete.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import netCDF4
import numpy as np

from twsbench import __version__
from twsbench.core import geometry as grid
from twsbench.core import months as mo
from twsbench.core.cache import temp_path
from twsbench.twin import products
from twsbench.twin.world import MONTHS, WGHM_MONTHS, World

GRACE_NAME = "GRCTellus.JPL.200204_202212.GLO.RL06.3M.MSCNv04CRI.nc"
WGHM_NAME = "watergap22e_gswp3-era5_tws_histsoc_monthly_1901_2022.nc"
ERA5_NAMES = {"avgua": "data_stream-moda_stepType-avgua.nc",
              "avgad": "data_stream-moda_stepType-avgad.nc"}
TRUTH_NAME = "truth.nc"
JPL_FILL = -99999.0
WGHM_FILL = np.float32(1e20)
SYNTHETIC = ("SYNTHETIC twin-world data written by twsbench {version} (domain {domain}, seed "
             "{seed}, realism {realism}{axes}); it follows the real file format but holds no "
             "observations.")

Progress = Callable[[str, int, int], None]


@contextlib.contextmanager
def _atomic(path: Path) -> Iterator[Path]:
    tmp = temp_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _comment(world: World) -> str:
    return SYNTHETIC.format(version=__version__, domain=world.domain.name, seed=world.seed,
                            realism=world.realism,
                            axes=f", {world.axes.describe()}" if world.axes.any else "")


def _days_since_2002(t: np.ndarray) -> np.ndarray:
    return (np.asarray(t, "datetime64[s]") - np.datetime64("2002-01-01T00:00:00", "s")
            ).astype(float) / 86400.0


def write_grace(world: World, path: Path, progress: Progress | None = None) -> None:
    """The JPL RL06.3Mv04 CRI file: global 0.5° grid, lon 0–360, cm, fill outside the domain's
    whole mascons."""
    lon = np.arange(0.25, 360.0, 0.5)
    lat = grid.LAT
    # extent columns in the file's 0–360 order
    col_360 = np.rint((grid.wrap_lon(world.lon) % 360.0 - 0.25) / 0.5).astype(int)
    rows = world.rows
    n = world.grace_months.size
    with _atomic(path) as tmp, netCDF4.Dataset(tmp, "w", format="NETCDF4") as ds:
        ds.createDimension("lon", lon.size)
        ds.createDimension("lat", lat.size)
        ds.createDimension("time", n)
        ds.createDimension("bounds", 2)
        v = ds.createVariable("lon", "f8", ("lon",))
        v.setncatts({"units": "degrees_east", "long_name": "longitude",
                     "standard_name": "longitude", "axis": "X", "bounds": "lon_bounds",
                     "valid_min": 0.25, "valid_max": 359.75})
        v[:] = lon
        v = ds.createVariable("lat", "f8", ("lat",))
        v.setncatts({"units": "degrees_north", "long_name": "latitude",
                     "standard_name": "latitude", "axis": "Y", "bounds": "lat_bounds",
                     "valid_min": -89.75, "valid_max": 89.75})
        v[:] = lat
        v = ds.createVariable("time", "f8", ("time",))
        v.setncatts({"units": "days since 2002-01-01T00:00:00Z", "long_name": "time",
                     "standard_name": "time", "axis": "T", "calendar": "gregorian",
                     "bounds": "time_bounds"})
        v[:] = _days_since_2002(world.epochs)
        ds.createVariable("lat_bounds", "f8", ("lat", "bounds"))[:] = grid.bounds(lat)
        ds.createVariable("lon_bounds", "f8", ("lon", "bounds"))[:] = grid.bounds(lon)
        v = ds.createVariable("time_bounds", "f8", ("time", "bounds"))
        v.setncatts({"units": "days since 2002-01-01T00:00:00Z", "calendar": "gregorian"})
        v[:] = _days_since_2002(world.epoch_bounds)

        land = np.zeros((lat.size, lon.size))
        ids = np.zeros((lat.size, lon.size))
        gains = np.full((lat.size, lon.size), np.nan)
        # outside the extent the twin defines nothing but the geometry
        from twsbench.core.landmask import LAND_THRESHOLD, land_fraction
        from twsbench.core.mascons import twin_tiling
        land[:] = land_fraction(lat, lon, 0.5) >= LAND_THRESHOLD
        ids[:] = twin_tiling(lat, lon)
        gains[np.ix_(rows, col_360)] = np.where(world.jpl_land, 1.0 + 0.1 * np.tanh(
            world.latent["era5_share"] - 0.55), np.nan)
        for name, data, units, long_name in (
                ("land_mask", land, "binary", "land_mask"),
                ("scale_factor", gains, "scale_factor", "CLM4_Scale_Factor"),
                ("mascon_ID", ids, "mascon_ID", "mascon_ID")):
            v = ds.createVariable(name, "f8", ("lat", "lon"), zlib=True, complevel=4)
            v.setncatts({"units": units, "long_name": long_name})
            v[:] = data

        for name, values, long_name in (("lwe_thickness", world.grace,
                                         "Liquid_Water_Equivalent_Thickness"),
                                        ("uncertainty", world.sigma, "uncertainty")):
            v = ds.createVariable(name, "f8", ("time", "lat", "lon"), fill_value=JPL_FILL,
                                  zlib=True, complevel=1, shuffle=True,
                                  chunksizes=(1, lat.size, lon.size))
            v.setncatts({"units": "cm", "long_name": long_name,
                         "standard_name": long_name, "coordinates": "time lat lon",
                         "grid_mapping": "WGS84", "valid_min": -10000.0, "valid_max": 10000.0})
            frame = np.full((lat.size, lon.size), JPL_FILL)
            for k in range(n):
                block = values[k].astype(np.float64) / 10.0  # mm -> cm
                frame[np.ix_(rows, col_360)] = np.where(np.isfinite(block), block, JPL_FILL)
                v[k] = frame
                if progress:
                    progress(name, k + 1, n)
        ds.setncatts(_jpl_attrs(world))


def _jpl_attrs(world: World) -> dict[str, str | float | int]:
    first, last = world.epoch_bounds[0, 0], world.epoch_bounds[-1, 1]
    return {
        "Conventions": "CF-1.6, ACDD-1.3, ISO 8601",
        "Metadata_Conventions": "Unidata Dataset Discovery v1.0",
        "standard_name_vocabulary": "NetCDF Climate and Forecast (CF) Metadata Convention",
        "title": "JPL GRACE and GRACE-FO MASCON RL06.3Mv04 CRI",
        "summary": "Monthly gravity solutions from GRACE and GRACE-FO as determined from the "
                   "JPL RL06.3Mv04 mascon solution - with CRI filter applied",
        "keywords": "Solid Earth, Geodetics/Gravity, Gravity, liquid_water_equivalent_thickness",
        "keywords_vocabulary": "NASA Global Change Master Directory (GCMD) Science Keywords",
        "platform": "GRACE, GRACE-FO",
        "institution": "NASA/JPL",
        "creator_name": "David Wiese", "creator_email": "grace@podaac.jpl.nasa.gov",
        "creator_url": "https://grace.jpl.nasa.gov", "creator_type": "group",
        "creator_institution": "NASA/JPL",
        "publisher_name": "Physical Oceanography Distributed Active Archive Center",
        "publisher_email": "podaac@podaac.jpl.nasa.gov",
        "publisher_url": "https://podaac.jpl.nasa.gov", "publisher_type": "institution",
        "publisher_institution": "NASA/JPL",
        "project": "NASA Gravity Recovery and Climate Experiment (GRACE) and NASA Gravity "
                   "Recovery and Climate Experiment Follow-On (GRACE-FO)",
        "program": "NASA MEaSUREs", "id": "10.5067/TEMSC-3JC634",
        "naming_authority": "org.doi.dx",
        "source": "GRACE and GRACE-FO JPL RL06.3Mv04 mascon solution",
        "processing_level": "2 and 3", "product_version": "v4.0",
        "acknowledgement": "GRACE and GRACE-FO are joint missions of NASA and DLR/GFZ",
        "license": "https://science.nasa.gov/earth-science/earth-science-data/"
                   "data-information-policy",
        "references": "Watkins et al. 2015, doi:10.1002/2014JB011547; Wiese et al. 2016, "
                      "doi:10.1002/2016WR019344",
        "date_created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "time_epoch": "2002-01-01T00:00:00Z",
        "time_coverage_start": str(first) + "Z", "time_coverage_end": str(last) + "Z",
        "time_mean_removed": "2004.000 to 2009.999",
        "months_missing": mo.format_months_missing(mo.MISSING_MONTHS),
        "GIA_removed": "ICE6G-D; Peltier, W. R., D. F. Argus, and R. Drummond (2018)",
        "geospatial_lat_min": -89.75, "geospatial_lat_max": 89.75,
        "geospatial_lat_units": "degrees_north", "geospatial_lat_resolution": "0.5 degree grid",
        "geospatial_lon_min": 0.25, "geospatial_lon_max": 359.75,
        "geospatial_lon_units": "degrees_east", "geospatial_lon_resolution": "0.5 degree grid",
        "comment": "; ".join(["land_mask and scale_factor are inside the file",
                              "GAD not included"]),
        "history": _comment(world),
    }


def write_wghm(world: World, path: Path, progress: Progress | None = None,
               block: int = 120) -> None:
    """The WaterGAP 2.2e ``tws`` file on the extent: lat descending, lon ±180, kg m-2,
    ``months since 1901-01-01``, absolute storage."""
    order_lon = np.argsort(world.lon, kind="stable")
    lat, lon = world.lat[::-1], world.lon[order_lon]
    n = WGHM_MONTHS.size
    with _atomic(path) as tmp, netCDF4.Dataset(tmp, "w", format="NETCDF4") as ds:
        ds.createDimension("time", None)
        ds.createDimension("lat", lat.size)
        ds.createDimension("lon", lon.size)
        v = ds.createVariable("time", "f8", ("time",))
        v.setncatts({"standard_name": "time", "long_name": "Time", "axis": "T",
                     "units": "months since 1901-01-01", "calendar": "proleptic_gregorian"})
        v[:] = np.arange(n, dtype=float)
        v = ds.createVariable("lat", "f8", ("lat",))
        v.setncatts({"standard_name": "latitude", "long_name": "Latitude", "axis": "Y",
                     "units": "degrees_north"})
        v[:] = lat
        v = ds.createVariable("lon", "f8", ("lon",))
        v.setncatts({"standard_name": "longitude", "long_name": "Longitude", "axis": "X",
                     "units": "degrees_east"})
        v[:] = lon
        v = ds.createVariable("tws", "f4", ("time", "lat", "lon"), fill_value=WGHM_FILL,
                              zlib=True, complevel=1, shuffle=True,
                              chunksizes=(1, lat.size, lon.size))
        v.setncatts({"standard_name": "lwe_thickness_of_water_storage",
                     "long_name": "Total water storage", "units": "kg m-2",
                     "missing_value": WGHM_FILL})
        for start in range(0, n, block):
            months = WGHM_MONTHS[start:start + block]
            values = products.wghm_block(world, months)[:, ::-1][:, :, order_lon]
            v[start:start + months.size] = np.where(np.isfinite(values), values, WGHM_FILL)
            if progress:
                progress("watergap tws", start + months.size, n)
        ds.setncatts({
            "title": "WaterGAP 2.2e total water storage, GSWP3-ERA5 forcing, histsoc",
            "institution": "Goethe University Frankfurt, Institute of Physical Geography",
            "contact": "Hannes Müller Schmied <hannes.mueller.schmied@em.uni-frankfurt.de>",
            "model": "WaterGAP 2.2e", "forcing": "gswp3-era5", "soc": "histsoc",
            "references": "Müller Schmied et al. 2024, doi:10.5194/gmd-17-8817-2024",
            "Conventions": "CF-1.6", "comment": _comment(world),
        })


_ERA5_META = {
    # name: (stream, paramId, long_name, units, typeOfLevel, dataType)
    "swvl1": ("avgua", 39, "Volumetric soil water layer 1", "m**3 m**-3",
              "depthBelowLandLayer", "an"),
    "swvl2": ("avgua", 40, "Volumetric soil water layer 2", "m**3 m**-3",
              "depthBelowLandLayer", "an"),
    "swvl3": ("avgua", 41, "Volumetric soil water layer 3", "m**3 m**-3",
              "depthBelowLandLayer", "an"),
    "swvl4": ("avgua", 42, "Volumetric soil water layer 4", "m**3 m**-3",
              "depthBelowLandLayer", "an"),
    "sd": ("avgua", 141, "Snow depth", "m of water equivalent", "surface", "an"),
    "src": ("avgua", 198, "Skin reservoir content", "m of water equivalent", "surface", "an"),
    "t2m": ("avgua", 167, "2 metre temperature", "K", "surface", "an"),
    "tp": ("avgad", 228, "Total precipitation", "m", "surface", "fc"),
    "e": ("avgad", 182, "Evaporation", "m of water equivalent", "surface", "fc"),
    "ro": ("avgad", 205, "Runoff", "m", "surface", "fc"),
}


def write_era5(world: World, out_dir: Path, progress: Progress | None = None) -> list[Path]:
    """The two new-CDS monthly-means stream files at 0.25° (``valid_time``, lat descending)."""
    lat, lon = products.era5_axes(world)
    order_lon = np.argsort(lon, kind="stable") if not world.is_global else np.arange(lon.size)
    lon_sorted = lon[order_lon]
    months = MONTHS
    seconds = (months.astype("datetime64[s]") - np.datetime64("1970-01-01T00:00:00", "s")
               ).astype("int64")
    paths = [out_dir / name for name in ERA5_NAMES.values()]
    with contextlib.ExitStack() as stack:
        handles = {}
        for stream, path in zip(ERA5_NAMES, paths, strict=True):
            tmp = stack.enter_context(_atomic(path))
            ds = stack.enter_context(netCDF4.Dataset(tmp, "w", format="NETCDF4"))
            handles[stream] = ds
            ds.createDimension("valid_time", months.size)
            ds.createDimension("latitude", lat.size)
            ds.createDimension("longitude", lon_sorted.size)
            v = ds.createVariable("number", "i8", ())
            v.setncatts({"long_name": "ensemble member numerical id", "units": "1",
                         "standard_name": "realization"})
            v.assignValue(0)
            v = ds.createVariable("valid_time", "i8", ("valid_time",))
            v.setncatts({"long_name": "time", "standard_name": "time",
                         "units": "seconds since 1970-01-01", "calendar": "proleptic_gregorian"})
            v[:] = seconds
            v = ds.createVariable("latitude", "f8", ("latitude",))
            v.setncatts({"units": "degrees_north", "standard_name": "latitude",
                         "long_name": "latitude", "stored_direction": "decreasing"})
            v[:] = lat
            v = ds.createVariable("longitude", "f8", ("longitude",))
            v.setncatts({"units": "degrees_east", "standard_name": "longitude",
                         "long_name": "longitude"})
            v[:] = lon_sorted
            v = ds.createVariable("expver", str, ("valid_time",))
            v.setncatts({"long_name": "model experiment version", "units": "1"})
            for k in range(months.size):
                v[k] = "0001"
            ds.setncatts({
                "GRIB_centre": "ecmf",
                "GRIB_centreDescription": "European Centre for Medium-Range Weather Forecasts",
                "GRIB_subCentre": 0, "Conventions": "CF-1.7",
                "institution": "European Centre for Medium-Range Weather Forecasts",
                "history": _comment(world),
            })
        variables = {}
        for name, (stream, param, long_name, units, level, dtype) in _ERA5_META.items():
            v = handles[stream].createVariable(
                name, "f4", ("valid_time", "latitude", "longitude"), fill_value=np.nan,
                zlib=True, complevel=1, shuffle=True,
                chunksizes=(1, lat.size, lon_sorted.size))
            v.setncatts({
                "GRIB_paramId": param, "GRIB_dataType": dtype,
                "GRIB_numberOfPoints": lat.size * lon_sorted.size,
                "GRIB_typeOfLevel": level, "GRIB_stepUnits": 1, "GRIB_stepType": stream,
                "GRIB_gridType": "regular_ll", "GRIB_units": units, "GRIB_shortName": name,
                "GRIB_name": long_name, "long_name": long_name, "units": units,
                "standard_name": "unknown",
                "coordinates": "number valid_time latitude longitude expver",
            })
            variables[name] = v
        step = 12
        for start in range(0, months.size, step):
            block = products.era5_block(world, months[start:start + step])
            for name, values in block.items():
                variables[name][start:start + values.shape[0]] = values[:, :, order_lon]
            if progress:
                progress("era5 monthly means", min(start + step, months.size), months.size)
    return paths


def write_truth(world: World, path: Path) -> None:
    """The hidden 0.5° truth: ``twsa`` (mm anomaly), internal conventions, 2002-04..2022-12."""
    keep = MONTHS >= mo.GRACE_START
    order_lon = np.argsort(world.lon, kind="stable")
    with _atomic(path) as tmp, netCDF4.Dataset(tmp, "w", format="NETCDF4") as ds:
        ds.createDimension("time", int(keep.sum()))
        ds.createDimension("lat", world.lat.size)
        ds.createDimension("lon", world.lon.size)
        v = ds.createVariable("time", "f8", ("time",))
        v.setncatts({"units": "days since 2002-01-01", "calendar": "standard",
                     "standard_name": "time"})
        v[:] = _days_since_2002(MONTHS[keep])
        v = ds.createVariable("lat", "f8", ("lat",))
        v.setncatts({"units": "degrees_north", "standard_name": "latitude"})
        v[:] = world.lat
        v = ds.createVariable("lon", "f8", ("lon",))
        v.setncatts({"units": "degrees_east", "standard_name": "longitude"})
        v[:] = world.lon[order_lon]
        v = ds.createVariable("twsa", "f4", ("time", "lat", "lon"), fill_value=np.nan,
                              zlib=True, complevel=1, chunksizes=(1, world.lat.size,
                                                                  world.lon.size))
        v.setncatts({"units": "mm", "long_name": "terrestrial water storage anomaly (truth)",
                     "comment": "anomaly against 2004-01..2009-12; for scoring only"})
        v[:] = world.truth[keep][:, :, order_lon]
        ds.setncatts({"title": "twsbench twin world: hidden 0.5 degree truth",
                      "comment": _comment(world), "Conventions": "CF-1.8"})
