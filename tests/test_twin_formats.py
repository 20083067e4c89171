"""The twin world's files against the real-file formats of docs/formats.md.

Every check opens the files with plain ``netCDF4.Dataset`` (not this project's readers, not
xarray), so a reader bug cannot hide a writer bug. Expected values are copied from
docs/formats.md, not imported from ``twsbench``.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import netCDF4
import numpy as np
import pytest

pytestmark = pytest.mark.slow  # the default-domain world's files

ROOT = Path(__file__).resolve().parent.parent

GRACE = "GRCTellus.JPL.200204_202212.GLO.RL06.3M.MSCNv04CRI.nc"
WGHM = "watergap22e_gswp3-era5_tws_histsoc_monthly_1901_2022.nc"
AVGUA = "data_stream-moda_stepType-avgua.nc"
AVGAD = "data_stream-moda_stepType-avgad.nc"
TRUTH = "truth.nc"
ALL_FILES = (GRACE, WGHM, AVGUA, AVGAD, TRUTH)

JPL_FILL = -99999.0
DAY = np.timedelta64(1, "D")
EPOCH_2002 = np.datetime64("2002-01-01T00:00:00", "s")

# docs/formats.md, "Missing months": the 33 months without a solution, 2002-04 .. 2022-12
MISSING = (
    "2002-06 2002-07 2003-06 2011-01 2011-06 2012-05 2012-10 2013-03 2013-08 2013-09 2014-02 "
    "2014-07 2014-12 2015-06 2015-10 2015-11 2016-04 2016-09 2016-10 2017-02 "
    "2017-07 2017-08 2017-09 2017-10 2017-11 2017-12 2018-01 2018-02 2018-03 2018-04 2018-05 "
    "2018-08 2018-09"
).split()
GRACE_MONTHS = np.arange(np.datetime64("2002-04", "M"), np.datetime64("2023-01", "M"))

# docs/formats.md, "ERA5": which stream holds which variable, and the units attribute each may
# carry. The physical units are "m3 m-3", "m per day (monthly mean)", ...; the attribute
# spelling in new-CDS files is ecCodes' ("m**3 m**-3", "m").
ERA5_STREAMS = {
    AVGUA: ("avgua", ("swvl1", "swvl2", "swvl3", "swvl4", "sd", "src", "t2m")),
    AVGAD: ("avgad", ("tp", "e", "ro")),
}
ERA5_UNITS = {
    **{f"swvl{i}": {"m**3 m**-3", "m3 m-3"} for i in range(1, 5)},
    "sd": {"m of water equivalent"},
    "src": {"m of water equivalent"},
    "tp": {"m"},
    "e": {"m of water equivalent"},
    "ro": {"m"},
    "t2m": {"K"},
}
ERA5_LAYERS = {"swvl1": 0.07, "swvl2": 0.21, "swvl3": 0.72, "swvl4": 1.89}


# --------------------------------------------------------------------------------------------
# fixtures


def _world_cmd(out: Path, *where: str) -> list[str]:
    return [sys.executable, "-m", "twsbench.cli", "world", *where, "--out", str(out), "-q"]


@pytest.fixture(scope="module")
def world_dir(south_asia_world) -> Path:
    """The default twin world (south-asia, seed 0), the session's (read only)."""
    return south_asia_world.grace.parent


def _open(path: Path) -> netCDF4.Dataset:
    ds = netCDF4.Dataset(path)
    ds.set_auto_mask(False)  # raw values: fill values stay visible
    return ds


@pytest.fixture(scope="module")
def grace(world_dir) -> Iterator[netCDF4.Dataset]:
    with _open(world_dir / GRACE) as ds:
        yield ds


@pytest.fixture(scope="module")
def wghm(world_dir) -> Iterator[netCDF4.Dataset]:
    with _open(world_dir / WGHM) as ds:
        yield ds


@pytest.fixture(scope="module")
def truth(world_dir) -> Iterator[netCDF4.Dataset]:
    with _open(world_dir / TRUTH) as ds:
        yield ds


@pytest.fixture(scope="module")
def era5(world_dir) -> Iterator[dict[str, netCDF4.Dataset]]:
    with _open(world_dir / AVGUA) as ua, _open(world_dir / AVGAD) as ad:
        yield {AVGUA: ua, AVGAD: ad}


@pytest.fixture(scope="module")
def grace_window(grace) -> dict[str, np.ndarray]:
    """The domain's rectangle of the JPL grid (the rest is fill), read once."""
    valid0 = grace["lwe_thickness"][0] != JPL_FILL
    rows, cols = np.flatnonzero(valid0.any(axis=1)), np.flatnonzero(valid0.any(axis=0))
    assert rows.size and cols.size, "no valid JPL cell at all"
    win = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    return {
        "lwe": grace["lwe_thickness"][:, win[0], win[1]],
        "unc": grace["uncertainty"][:, win[0], win[1]],
        "ids": grace["mascon_ID"][win],
        "land": grace["land_mask"][win],
        "sf": grace["scale_factor"][win],
        "valid": valid0[win],
    }


def _months_of(seconds: np.ndarray) -> np.ndarray:
    return np.asarray(seconds, "datetime64[s]").astype("datetime64[M]")


def _days_since_2002(stamp: str) -> float:
    return float((np.datetime64(stamp, "s") - EPOCH_2002) / DAY)


def _attrs(var) -> dict:
    return {a: var.getncattr(a) for a in var.ncattrs()}


# --------------------------------------------------------------------------------------------
# file names


def test_the_five_files_and_their_names(world_dir, grace, wghm):
    assert sorted(p.name for p in world_dir.glob("*.nc")) == sorted(ALL_FILES)
    assert not list(world_dir.glob("*.tmp*")), "a temporary file was left behind"

    # GRCTellus.JPL.200204_YYYYMM.GLO.RL06.3M.MSCNv04CRI.nc, YYYYMM = last month
    m = re.fullmatch(r"GRCTellus\.JPL\.200204_(\d{4})(\d{2})\.GLO\.RL06\.3M\.MSCNv04CRI\.nc",
                     GRACE)
    assert m
    last_month = GRACE_MONTHS[~np.isin(GRACE_MONTHS.astype(str), MISSING)][-1]
    assert f"{m[1]}-{m[2]}" == str(last_month) == "2022-12"
    assert grace.dimensions["time"].size == len(GRACE_MONTHS) - len(MISSING)

    # watergap22e_<forcing>_<var>_<soc>_monthly_<y0>_<y1>.nc, y0..y1 = the time axis
    m = re.fullmatch(r"watergap22e_([a-z0-9-]+)_(tws)_([a-z]+)_monthly_(\d{4})_(\d{4})\.nc", WGHM)
    assert m and m[1] == "gswp3-era5" and m[3] == "histsoc"
    assert wghm.dimensions["time"].size == 12 * (int(m[5]) - int(m[4]) + 1)


# --------------------------------------------------------------------------------------------
# JPL mascons (docs/formats.md, "JPL GRACE/GRACE-FO mascons")


def test_jpl_dimensions(grace):
    assert {k: d.size for k, d in grace.dimensions.items()} == {
        "lon": 720, "lat": 360, "time": 216, "bounds": 2}
    assert "bounds" not in grace.variables  # a dimension only
    expected = {
        "lon": ("lon",), "lat": ("lat",), "time": ("time",),
        "lat_bounds": ("lat", "bounds"), "lon_bounds": ("lon", "bounds"),
        "time_bounds": ("time", "bounds"),
        "land_mask": ("lat", "lon"), "scale_factor": ("lat", "lon"), "mascon_ID": ("lat", "lon"),
        "lwe_thickness": ("time", "lat", "lon"), "uncertainty": ("time", "lat", "lon"),
    }
    for name, dims in expected.items():
        assert name in grace.variables, name
        assert grace[name].dimensions == dims, name
        assert grace[name].dtype == np.float64, name


@pytest.mark.parametrize(("name", "units", "first", "last", "size"), [
    ("lon", "degrees_east", 0.25, 359.75, 720),
    ("lat", "degrees_north", -89.75, 89.75, 360),
])
def test_jpl_lat_lon(grace, name, units, first, last, size):
    v = grace[name]
    values = v[:]
    assert v.dtype == np.float64
    assert v.units == units
    assert v.bounds == f"{name}_bounds"
    assert values.size == size
    assert values[0] == first and values[-1] == last
    np.testing.assert_allclose(np.diff(values), 0.5)  # ascending, 0.5°
    np.testing.assert_array_equal(values, np.linspace(first, last, size))
    b = grace[f"{name}_bounds"][:]
    np.testing.assert_allclose(b, np.stack([values - 0.25, values + 0.25], axis=1))


def test_jpl_time_axis(grace):
    t = grace["time"]
    assert t.dtype == np.float64
    assert t.units == "days since 2002-01-01T00:00:00Z"
    assert t.calendar == "gregorian"
    assert t.bounds == "time_bounds"
    values = t[:]
    assert values.shape == (216,)
    # mid-points of the solution spans, not mid-month; half days occur
    np.testing.assert_array_equal(values[:3], [_days_since_2002("2002-04-17T12:00"),
                                               _days_since_2002("2002-05-10T12:00"),
                                               _days_since_2002("2002-08-16T12:00")])
    assert list(values[:3]) == [106.5, 129.5, 227.5]
    assert np.any(values % 1 == 0.5) and np.all(np.isin(values % 1, (0.0, 0.5)))
    assert np.all(np.diff(values) > 0)
    # CF-decodable with the file's own units and calendar
    dates = netCDF4.num2date(values[:3], t.units, t.calendar)
    assert [d.isoformat()[:16] for d in dates] == [
        "2002-04-17T12:00", "2002-05-10T12:00", "2002-08-16T12:00"]

    tb = grace["time_bounds"]
    bounds = tb[:]
    assert bounds.shape == (216, 2)
    assert tb.units == t.units  # days since 2002-01-01
    assert np.all(bounds[:, 0] < values) and np.all(values < bounds[:, 1])
    np.testing.assert_allclose(bounds.mean(axis=1), values)  # time = mid-point of the span
    assert np.all(bounds[:, 1] - bounds[:, 0] <= 40)
    assert np.all(np.diff(bounds[:, 0]) > 0)


def test_jpl_records_are_the_non_missing_months(grace):
    """Record k is the k-th month from 2002-04 that is not missing; flooring would mislead."""
    keep = ~np.isin(GRACE_MONTHS.astype(str), MISSING)
    months = GRACE_MONTHS[keep]
    assert months.size == 249 - 33 == grace.dimensions["time"].size
    epochs = EPOCH_2002 + np.rint(grace["time"][:] * 86400).astype("timedelta64[s]")
    mid = months.astype("datetime64[s]") + (
        (months + 1).astype("datetime64[s]") - months.astype("datetime64[s]")) // 2
    assert np.max(np.abs(epochs - mid)) <= np.timedelta64(18, "D")
    # the solutions dated in the neighbouring month (docs/formats.md, "Missing months")
    by_month = dict(zip(months.astype(str), epochs, strict=True))
    for month, near in (("2011-11", "2011-10-30"), ("2011-12", "2012-01-01"),
                        ("2015-05", "2015-04-27"), ("2017-03", "2017-03-31T12:00")):
        assert abs(by_month[month] - np.datetime64(near, "s")) <= np.timedelta64(2, "D"), month
    # no solution since GRACE-FO's start except the two 2018 gaps
    assert str(months[-1]) == "2022-12" and "2018-06" in by_month and "2018-10" in by_month


def test_jpl_flooring_time_gives_the_spec_duplicates(grace):
    """Flooring the epochs to months gives the four duplicates of docs/formats.md (and four
    false gaps)."""
    floored = _months_of(EPOCH_2002 + np.rint(grace["time"][:] * 86400).astype(
        "timedelta64[s]"))
    dups = sorted(m for m, n in Counter(floored.astype(str)).items() if n > 1)
    assert dups == ["2011-10", "2012-01", "2015-04", "2017-04"]
    present = GRACE_MONTHS[~np.isin(GRACE_MONTHS.astype(str), MISSING)].astype(str)
    assert sorted(set(present) - set(floored.astype(str))) == [
        "2011-11", "2011-12", "2015-05", "2017-03"]


def test_jpl_global_attributes(grace):
    a = {k: grace.getncattr(k) for k in grace.ncattrs()}
    assert a["Conventions"] == "CF-1.6, ACDD-1.3, ISO 8601"
    assert a["title"] == "JPL GRACE and GRACE-FO MASCON RL06.3Mv04 CRI"
    assert a["institution"] == "NASA/JPL"
    assert a["time_epoch"] == "2002-01-01T00:00:00Z"
    assert a["time_mean_removed"] == "2004.000 to 2009.999"
    for key in ("time_coverage_start", "time_coverage_end", "GIA_removed", "processing_level",
                "product_version", "id", "source", "license", "date_created", "months_missing"):
        assert isinstance(a.get(key), str) and a[key].strip(), key
    assert "10.5067/TEMSC-3JC634" in a["id"]  # the collection DOI
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z?", a["date_created"])
    # the coverage is the span of the records
    bounds = grace["time_bounds"][:]
    start = np.datetime64(a["time_coverage_start"].rstrip("Z"), "s")
    end = np.datetime64(a["time_coverage_end"].rstrip("Z"), "s")
    assert abs(start - (EPOCH_2002 + int(bounds[0, 0] * 86400))) <= np.timedelta64(1, "D")
    assert abs(end - (EPOCH_2002 + int(bounds[-1, 1] * 86400))) <= np.timedelta64(1, "D")


def test_jpl_months_missing_attribute(grace):
    text = grace.getncattr("months_missing")
    tokens = text.split(";")
    assert all(re.fullmatch(r"\d{4}-\d{2}(-\d{4}-\d{2})?", tok) for tok in tokens), tokens
    assert tokens[-1] == "2018-08-2018-09"  # a range written as one token
    months = []
    for tok in tokens:
        first, last = tok[:7], tok[8:] or tok[:7]
        months += list(np.arange(np.datetime64(first, "M"), np.datetime64(last, "M") + 1))
    assert [str(m) for m in months] == MISSING
    assert len(months) == 33


def test_jpl_data_variables(grace):
    for name in ("lwe_thickness", "uncertainty"):
        v = grace[name]
        attrs = _attrs(v)
        assert v.dtype == np.float64
        assert attrs["units"] == "cm"
        assert isinstance(attrs["_FillValue"], np.float64) and attrs["_FillValue"] == JPL_FILL
    lwe = _attrs(grace["lwe_thickness"])
    assert lwe["long_name"] == lwe["standard_name"] == "Liquid_Water_Equivalent_Thickness"
    assert grace["land_mask"].units == "binary"
    assert "scale_factor" in grace.variables and grace["scale_factor"].dtype == np.float64
    # a variable named scale_factor, but no packing attribute on the data
    assert "scale_factor" not in lwe and "add_offset" not in lwe


def test_jpl_static_fields(grace, grace_window):
    land = grace["land_mask"][:]
    assert set(np.unique(land)) == {0.0, 1.0}
    assert 0.2 < land.mean() < 0.4  # about 29 % of the globe is land
    sf = grace["scale_factor"][:]
    assert np.isnan(sf).any() and np.isfinite(sf).any()  # NaN where undefined
    assert np.all((sf[np.isfinite(sf)] > 0) & (sf[np.isfinite(sf)] < 10))
    w = grace_window
    assert np.all(np.isfinite(w["sf"][w["valid"] & (w["land"] == 1)]))  # defined on land
    ids = grace["mascon_ID"][:]
    assert np.all(ids == np.rint(ids)) and ids.min() == 1


def test_jpl_mascon_ids_are_whole_numbers_from_1(grace):
    """Real files number JPL's 4,551 caps; the twin numbers its own JPL-like tiling (docs/twin.md:
    3° bands of round(120·cos φ) tiles, 4,584 in all), contiguously from 1."""
    ids = grace["mascon_ID"][:]
    assert ids.min() == 1
    assert np.unique(ids).size == ids.max()
    assert 4500 <= ids.max() <= 4650


def test_jpl_fill_outside_the_domain_only(grace, grace_window):
    """Fill (not NaN) outside the domain's whole mascons, values (land and ocean) inside, the
    same cells in every record."""
    valid0 = grace["lwe_thickness"][0] != JPL_FILL
    for name in ("lwe_thickness", "uncertainty"):
        v = grace[name]
        for k in range(v.shape[0]):
            frame = v[k]
            assert not np.isnan(frame).any(), (name, k)
            np.testing.assert_array_equal(frame != JPL_FILL, valid0, err_msg=f"{name}[{k}]")
    assert 0 < valid0.sum() < valid0.size / 10  # a regional twin
    w = grace_window
    valid, ids, land = w["valid"], w["ids"], w["land"]
    # whole mascons: a mascon with one valid cell has all its cells valid
    inside = np.unique(ids[valid])
    assert not np.any(np.isin(ids, inside) & ~valid)
    assert np.isin(grace["mascon_ID"][:], inside).sum() == valid0.sum()
    # a global-style field: ocean parts of the domain's mascons hold values too
    assert (valid & (land == 0)).sum() > 0 and (valid & (land == 1)).sum() > 0


def test_jpl_values_are_per_mascon_part(grace_window):
    """Values repeat over each mascon's cells; CRI splits coastal mascons into land and ocean."""
    w = grace_window
    valid, ids, land = w["valid"], w["ids"], w["land"]
    lwe, unc = w["lwe"][:, valid], w["unc"][:, valid]
    part = ids[valid] * 2 + land[valid]
    order = np.argsort(part, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(part[order]) != 0])
    for values in (lwe, unc):
        sorted_v = values[:, order]
        first = np.repeat(sorted_v[:, starts], np.diff(np.r_[starts, order.size]), axis=1)
        np.testing.assert_array_equal(sorted_v, first)
    assert np.unique(part).size > 50  # many mascons, not one constant
    # 1-σ per mascon, ~0.16–53 cm
    assert unc.min() > 0.1 and unc.max() < 60
    assert np.all(np.isfinite(lwe)) and np.abs(lwe).max() < 500


def test_jpl_mean_2004_2009_removed(grace, grace_window):
    """time_mean_removed = 2004.000 to 2009.999: the baseline records average to zero."""
    keep = ~np.isin(GRACE_MONTHS.astype(str), MISSING)
    months = GRACE_MONTHS[keep]
    base = (months >= np.datetime64("2004-01", "M")) & (months <= np.datetime64("2009-12", "M"))
    assert base.sum() == 72
    w = grace_window
    lwe = w["lwe"][:, w["valid"]]
    assert np.abs(lwe[base].mean(axis=0)).max() < 0.01  # cm
    assert lwe.std() > 1.0  # and the field is not trivially zero


# --------------------------------------------------------------------------------------------
# WaterGAP 2.2e (docs/formats.md, "WaterGAP 2.2e")


def test_wghm_layout(wghm):
    assert set(wghm.dimensions) == {"time", "lat", "lon"}
    tws = wghm["tws"]
    assert tws.dimensions == ("time", "lat", "lon")
    assert tws.units == "kg m-2"
    assert "_FillValue" in tws.ncattrs()

    lat, lon = wghm["lat"][:], wghm["lon"][:]
    assert wghm["lat"].units == "degrees_north" and wghm["lon"].units == "degrees_east"
    assert np.all(np.diff(lat) == -0.5)  # descending, 0.5°
    assert np.all(np.diff(lon) == 0.5)  # ascending, 0.5°
    assert lat.max() <= 89.75 and lat.min() >= -89.75
    assert lon.min() >= -179.75 and lon.max() <= 179.75
    # cells of the global 0.5° grid (centres at .25/.75)
    assert np.all((lat - 0.25) % 0.5 == 0) and np.all((lon - 0.25) % 0.5 == 0)
    assert 0 < lat.size < 360 and 0 < lon.size < 720  # a regional subset


def test_wghm_time_axis(wghm):
    t = wghm["time"]
    assert t.units == "months since 1901-01-01"
    assert t.calendar == "proleptic_gregorian"
    values = t[:]
    assert values.size == 12 * (2022 - 1901 + 1) == 1464
    np.testing.assert_array_equal(values, np.arange(1464))


def test_wghm_values_and_fill(wghm, grace):
    tws = wghm["tws"]
    fill = tws.getncattr("_FillValue")
    data = tws[:]
    assert not np.isnan(data).any()  # masked with the file's own fill value
    valid = data != fill
    assert np.all(valid == valid[0])
    # ocean masked, land filled: the JPL land mask on the same cells
    lat, lon = wghm["lat"][:], wghm["lon"][:] % 360
    rows = np.searchsorted(grace["lat"][:], lat)
    cols = np.searchsorted(grace["lon"][:], lon)
    land = grace["land_mask"][:][np.ix_(rows, cols)] == 1
    np.testing.assert_array_equal(valid[0], land)
    # absolute storage (not an anomaly): positive everywhere on land
    assert data[:, valid[0]].min() > 0 and np.isfinite(data[:, valid[0]]).all()
    assert data[:, valid[0]].max() < 1e5


# --------------------------------------------------------------------------------------------
# ERA5 new-CDS monthly means (docs/formats.md, "ERA5 and ERA5-Land monthly means")


@pytest.mark.parametrize("fname", [AVGUA, AVGAD])
def test_era5_coordinates(era5, fname):
    ds = era5[fname]
    assert set(ds.dimensions) == {"valid_time", "latitude", "longitude"}

    vt = ds["valid_time"]
    assert vt.dimensions == ("valid_time",) and vt.dtype == np.int64
    assert vt.units == "seconds since 1970-01-01"
    assert vt.calendar == "proleptic_gregorian"
    stamps = np.asarray(vt[:], "datetime64[s]")
    months = stamps.astype("datetime64[M]")
    np.testing.assert_array_equal(stamps, months.astype("datetime64[s]"))  # 1st, 00:00
    np.testing.assert_array_equal(np.diff(months).astype(int), 1)  # consecutive months
    assert months[0] <= np.datetime64("2002-04", "M") and months[-1] >= np.datetime64("2022-12",
                                                                                      "M")
    dates = netCDF4.num2date(vt[:2], vt.units, vt.calendar)
    assert dates[0].day == 1 and dates[0].hour == 0

    number = ds["number"]
    assert number.dimensions == () and number.shape == ()
    assert np.issubdtype(number.dtype, np.integer)
    ex = ds["expver"]
    assert ex.dimensions == ("valid_time",) and ex.dtype is str
    values = ex[:]
    assert values.size == months.size
    assert all(isinstance(s, str) and re.fullmatch(r"\d{4}", s) for s in values)

    lat, lon = ds["latitude"], ds["longitude"]
    assert lat.dtype == np.float64 and lat.units == "degrees_north"
    assert lon.units == "degrees_east"
    la, lo = lat[:], lon[:]
    np.testing.assert_array_equal(np.diff(la), -0.25)  # descending, 0.25°
    np.testing.assert_array_equal(np.diff(lo), 0.25)  # ascending, 0.25°
    assert -90 <= la.min() and la.max() <= 90
    assert -180 <= lo.min() and lo.max() < 360
    assert np.all(la % 0.25 == 0) and np.all(lo % 0.25 == 0)  # on the 0.25° ERA5 grid


def test_era5_streams_share_the_grid(era5):
    ua, ad = era5[AVGUA], era5[AVGAD]
    for name in ("valid_time", "latitude", "longitude", "expver"):
        np.testing.assert_array_equal(ua[name][:], ad[name][:], err_msg=name)


@pytest.mark.parametrize("fname", [AVGUA, AVGAD])
def test_era5_variables_by_stream(era5, fname):
    ds = era5[fname]
    step, names = ERA5_STREAMS[fname]
    data_vars = {n for n, v in ds.variables.items() if v.dimensions == (
        "valid_time", "latitude", "longitude")}
    assert data_vars == set(names)
    for name in names:
        v = ds[name]
        a = _attrs(v)
        assert v.dtype == np.float32, name
        assert a["units"] in ERA5_UNITS[name], (name, a["units"])
        assert a["GRIB_shortName"] == name
        assert a["GRIB_stepType"] == step
        assert isinstance(a["long_name"], str) and a["long_name"], name
        assert "scale_factor" not in a and "add_offset" not in a  # new layout: not packed
        if "_FillValue" in a:
            assert np.isnan(a["_FillValue"])


def test_era5_nan_where_masked(era5, grace):
    ua = era5[AVGUA]
    sea = np.isnan(ua["swvl1"][0])
    assert sea.any() and not sea.all()
    for ds in era5.values():
        for name in ERA5_STREAMS[AVGUA][1] if ds is ua else ERA5_STREAMS[AVGAD][1]:
            data = ds[name][:]
            assert not np.isinf(data).any(), name
            np.testing.assert_array_equal(np.isnan(data), np.broadcast_to(sea, data.shape),
                                          err_msg=name)
    # the mask is land/sea: mostly land where the JPL mask says land (0.25° in 0.5° cells)
    lat, lon = ua["latitude"][:], ua["longitude"][:] % 360
    rows = np.clip(np.searchsorted(grace["lat"][:] + 0.25, lat), 0, 359)
    cols = np.clip(np.searchsorted(grace["lon"][:] + 0.25, lon), 0, 719)
    jpl_land = grace["land_mask"][:][np.ix_(rows, cols)] == 1
    agree = np.mean(jpl_land == ~sea)
    assert agree > 0.9, agree


@pytest.fixture(scope="module")
def era5_land(era5) -> dict[str, np.ndarray]:
    """ERA5 variables on their unmasked cells, (months, cells)."""
    land = np.isfinite(era5[AVGUA]["swvl1"][0])
    out = {}
    for fname, (_, names) in ERA5_STREAMS.items():
        for name in names:
            out[name] = era5[fname][name][:][:, land].astype(np.float64)
    out["months"] = _months_of(era5[AVGUA]["valid_time"][:])
    return out


def test_era5_physical_ranges(era5_land):
    e5 = era5_land
    for i in range(1, 5):
        assert 0 <= e5[f"swvl{i}"].min() and e5[f"swvl{i}"].max() <= 1
    assert e5["sd"].min() >= 0 and e5["src"].min() >= 0
    assert 180 < e5["t2m"].min() and e5["t2m"].max() < 340  # K, not °C
    assert e5["tp"].min() >= 0 and e5["ro"].min() >= 0
    assert e5["e"].max() <= 0  # negative = evaporation
    # monthly-mean rates in m per day, not monthly totals
    assert e5["tp"].max() < 0.1 and e5["tp"].mean() > 1e-4


def test_era5_storage_and_water_balance(era5_land):
    """0.07·swvl1 + 0.21·swvl2 + 0.72·swvl3 + 1.89·swvl4 + sd + src is positive and finite on
    land, and its change follows P + E − R (rates × days in month)."""
    e5 = era5_land
    storage = sum(th * e5[n] for n, th in ERA5_LAYERS.items()) + e5["sd"] + e5["src"]
    assert np.isfinite(storage).all() and storage.min() > 0
    assert storage.max() < 3.0  # m of water: at most the 2.89 m column plus snow
    months = e5["months"]
    days = ((months + 1).astype("datetime64[D]") - months.astype("datetime64[D]")).astype(float)
    flux = (e5["tp"] + e5["e"] - e5["ro"]) * days[:, None]  # m per month
    ds = np.diff(storage, axis=0).mean(axis=1)
    f = 0.5 * (flux[1:] + flux[:-1]).mean(axis=1)
    slope, _ = np.polyfit(f, ds, 1)
    assert np.corrcoef(f, ds)[0, 1] > 0.9
    assert 0.8 < slope < 1.25, slope


# --------------------------------------------------------------------------------------------
# truth.nc (docs/twin.md, "Files")


def test_truth_layout(truth, wghm):
    assert set(truth.dimensions) == {"time", "lat", "lon"}
    v = truth["twsa"]
    assert v.dimensions == ("time", "lat", "lon")
    assert v.units == "mm"
    assert np.issubdtype(v.dtype, np.floating)
    lat, lon = truth["lat"][:], truth["lon"][:]
    np.testing.assert_array_equal(np.diff(lat), 0.5)  # ascending
    np.testing.assert_array_equal(np.diff(lon), 0.5)  # ascending
    assert -180 <= lon.min() and lon.max() < 180
    assert np.all((lat - 0.25) % 0.5 == 0) and np.all((lon - 0.25) % 0.5 == 0)
    # the same 0.5° cells as the WaterGAP subset
    np.testing.assert_array_equal(lat, wghm["lat"][:][::-1])
    np.testing.assert_array_equal(lon, wghm["lon"][:])


def test_truth_time(truth):
    t = truth["time"]
    assert t.units.startswith(("days since", "hours since", "seconds since"))
    dates = netCDF4.num2date(t[:], t.units, getattr(t, "calendar", "standard"))
    assert len(dates) == 249
    assert all(d.day == 1 and d.hour == 0 and d.minute == 0 for d in dates)
    ym = [f"{d.year:04d}-{d.month:02d}" for d in dates]
    assert ym == [str(m) for m in GRACE_MONTHS]


def test_truth_values(truth, grace):
    twsa = truth["twsa"][:]
    finite = np.isfinite(twsa)
    assert np.all(finite == finite[0])
    # NaN off land: the land cells of the JPL mask (south-asia holds no excluded ice sheet)
    rows = np.searchsorted(grace["lat"][:], truth["lat"][:])
    cols = np.searchsorted(grace["lon"][:], truth["lon"][:] % 360)
    land = grace["land_mask"][:][np.ix_(rows, cols)] == 1
    np.testing.assert_array_equal(finite[0], land)
    # an anomaly against 2004-01 .. 2009-12
    base = (GRACE_MONTHS >= np.datetime64("2004-01", "M")) & (
        GRACE_MONTHS <= np.datetime64("2009-12", "M"))
    assert np.abs(twsa[base][:, land].mean(axis=0)).max() < 0.05  # mm
    assert 10 < np.nanstd(twsa) < 1000


# --------------------------------------------------------------------------------------------
# determinism


def _raw(v, k: int | None = None) -> np.ndarray:
    values = np.ascontiguousarray(v[...] if k is None else v[k])
    return values.view(np.uint8).ravel()


def _differing(dir_a: Path, dir_b: Path) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """Variables whose raw arrays differ, and variables missing from one side (the files
    themselves differ anyway: they hold a creation date)."""
    differ, unmatched = set(), set()
    for fname in ALL_FILES:
        with _open(dir_a / fname) as a, _open(dir_b / fname) as b:
            unmatched |= {(fname, n) for n in set(a.variables) ^ set(b.variables)}
            for name in set(a.variables) & set(b.variables):
                va, vb = a[name], b[name]
                if va.dtype != vb.dtype or va.shape != vb.shape:
                    differ.add((fname, name))
                elif va.dtype is str:
                    if list(va[:]) != list(vb[:]):
                        differ.add((fname, name))
                elif va.ndim == 3:  # frame by frame: the JPL cubes are ~450 MB each
                    if any(not np.array_equal(_raw(va, k), _raw(vb, k))
                           for k in range(va.shape[0])):
                        differ.add((fname, name))
                elif not np.array_equal(_raw(va), _raw(vb)):
                    differ.add((fname, name))
    return differ, unmatched


@pytest.mark.slow
def test_same_seed_same_arrays_other_seed_differs(tmp_path):
    where = ("--bbox", "24", "30", "76", "84")
    runs = {"a": "3", "b": "3", "c": "4"}
    procs = {key: subprocess.Popen(_world_cmd(tmp_path / key, *where, "--seed", seed), cwd=ROOT,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for key, seed in runs.items()}
    for key, proc in procs.items():
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, (key, err.decode(errors="replace")[-2000:])
    differ, unmatched = _differing(tmp_path / "a", tmp_path / "b")
    assert not unmatched and not differ, (unmatched, differ)

    differ, unmatched = _differing(tmp_path / "a", tmp_path / "c")
    assert not unmatched
    # the random fields change with the seed ...
    assert {(GRACE, "lwe_thickness"), (GRACE, "uncertainty"), (WGHM, "tws"), (AVGUA, "swvl1"),
            (AVGUA, "t2m"), (AVGAD, "tp"), (AVGAD, "e"), (AVGAD, "ro"), (TRUTH, "twsa")} <= differ
    # ... the geometry and the axes do not
    assert not {(f, n) for f, n in differ if n in {
        "lat", "lon", "time", "time_bounds", "land_mask", "mascon_ID", "latitude",
        "longitude", "valid_time", "expver", "number"}}, differ
