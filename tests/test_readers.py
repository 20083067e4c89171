"""Readers of the real input formats, on tiny files written by ``tests/synth.py``.

Checks the internal conventions (lat ascending, lon in [-180, 180), month-start times, mm),
GRACE record-to-month bookkeeping, the WaterGAP and ERA5 layouts, and that every kind of bad
input raises a one-line :class:`twsbench.core.errors.InputError` naming the file and the variable.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import synth
from twsbench.core import geometry as grid
from twsbench.core import months as mo
from twsbench.core.errors import InputError
from twsbench.inputs import read_era5, read_grace, read_truth, read_wghm
from twsbench.inputs.wghm import parse_name

#: JPL-style tiny grid: 4 rows ascending, 12 columns in 0–360.
LAT4 = np.arange(-0.75, 1.0, 0.5)
LON12 = np.arange(0.25, 6.0, 0.5)
#: JPL's full longitude axis, 0.25 .. 359.75.
LON_GLOBAL = np.arange(0.25, 360.0, 0.5)
#: WaterGAP-style grid: lat descending, lon in ±180 across 0°.
WG_LAT = np.arange(1.75, -2.0, -0.5)
WG_LON = np.arange(-2.75, 3.0, 0.5)
WG_TIME = [1212, 1213, 1214]  # months since 1901-01: 2002-01 .. 2002-03
#: ERA5-style 0.25° grid: lat descending 1.75 .. 0, lon 178.5 .. 181.25 (crosses 180°).
ERA5_LAT = 1.75 - 0.25 * np.arange(8)
ERA5_LON = 178.5 + 0.25 * np.arange(12)
#: 2020 is a leap year: 31, 29, 31, 30 days.
ERA5_MONTHS = mo.month_range("2020-01", "2020-04")
GRACE_NAME = "GRCTellus.JPL.200204_201202.GLO.RL06.3M.MSCNv04CRI.nc"
WGHM_NAME = "watergap22e_gswp3-era5_tws_histsoc_monthly_1901_2022.nc"


# --------------------------------------------------------------------------- helpers


def assert_conventions(obj: xr.Dataset | xr.DataArray) -> None:
    """lat ascending, lon ascending in [-180, 180), times datetime64 at month starts."""
    lat, lon = np.asarray(obj["lat"]), np.asarray(obj["lon"])
    time = np.asarray(obj["time"])
    assert np.all(np.diff(lat) > 0)
    assert np.all(np.diff(lon) > 0)
    assert lon.min() >= -180.0 and lon.max() < 180.0
    assert np.issubdtype(time.dtype, np.datetime64)
    assert np.array_equal(time, time.astype("datetime64[M]").astype(time.dtype))
    assert np.all(np.diff(time) > np.timedelta64(0, "s"))


def assert_input_error(err: InputError, path: str | Path, variable: str) -> None:
    """One line naming the file and the variable, saying what was expected and found.

    ``"-"`` (the file as a whole) must be the error's variable exactly; other names must
    appear in it (GRACE bookkeeping errors name ``time/months_missing``).
    """
    text = str(err)
    assert "\n" not in text and "\r" not in text
    assert Path(path).name in text
    if variable == "-":
        assert err.variable == "-"
    else:
        assert variable in err.variable
    assert f": {err.variable}: " in text
    assert "expected" in text and "found" in text


def at(obj: xr.Dataset | xr.DataArray, lat: float, lon: float):
    """The value at a cell given by its *file* coordinates (lon possibly 0–360)."""
    return obj.sel(lat=lat, lon=float(grid.wrap_lon(lon)))


def to_internal(arr: np.ndarray, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """A (time, lat, lon) array in file order reordered to lat ascending, wrapped lon sorted."""
    arr = arr[:, np.argsort(lat, kind="stable")]
    return arr[:, :, np.argsort(grid.wrap_lon(lon), kind="stable")]


def days_in(months: np.ndarray) -> np.ndarray:
    months = np.asarray(months, dtype="datetime64[M]")
    return ((months + 1).astype("datetime64[D]") - months.astype("datetime64[D]")).astype(int)


def write_trap_jpl(path: Path, lat=LAT4, lon=LON12, missing_text=mo.MISSING_TEXT, **kw) -> Path:
    """The 2011-04 .. 2012-02 series with Nov/Dec 2011 dated in the neighbouring months."""
    months, epochs = synth.trap_series()
    return synth.write_jpl(path, lat, lon, months, missing_text, epochs=epochs, **kw)


def era5_expected(fields: dict[str, np.ndarray], months: np.ndarray) -> dict[str, np.ndarray]:
    """What the ERA5 reader should return, worked out from the file values (file order)."""
    f = {k: v.astype(float) for k, v in fields.items()}
    days = days_in(months)[:, None, None]
    soil = (0.07 * f["swvl1"] + 0.21 * f["swvl2"] + 0.72 * f["swvl3"] + 1.89 * f["swvl4"]) * 1e3
    return {
        "soil": soil, "snow": 1e3 * f["sd"], "canopy": 1e3 * f["src"],
        "storage": soil + 1e3 * (f["sd"] + f["src"]),
        "precip": 1e3 * f["tp"] * days, "evap": -1e3 * f["e"] * days,
        "runoff": 1e3 * f["ro"] * days, "t2m": f["t2m"],
    }


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    """Keep unpacked ERA5 zips out of the user's cache."""
    monkeypatch.setenv("TWSBENCH_CACHE_DIR", str(tmp_path / "cache"))


# --------------------------------------------------------------------------- GRACE


def test_grace_conventions_units_and_cell_placement(tmp_path):
    """Global 0–360 file: lon wrapped and sorted, cm → mm, cells keep their values."""
    path = write_trap_jpl(tmp_path / GRACE_NAME, lon=LON_GLOBAL)
    ds = read_grace(path)
    assert_conventions(ds)
    assert ds["lon"].size == 720 and ds["lon"][0] == -179.75 and ds["lon"][-1] == 179.75
    assert ds["lon"][359] == -0.25
    assert ds["lwe_thickness"].attrs["units"] == "mm"
    assert ds["uncertainty"].attrs["units"] == "mm"
    k = 3
    # the file's cell at lon 359.75 lands at -0.25, the one at 180.25 at -179.75
    for lat, lon_file in ((0.25, 359.75), (-0.75, 180.25), (0.75, 0.25), (-0.25, 179.75)):
        expected = 10.0 * synth.pattern(k, np.array([lat]), np.array([lon_file]))[0, 0]
        got = at(ds["lwe_thickness"].isel(time=k), lat, lon_file)
        assert float(got) == pytest.approx(expected, rel=1e-12)
    np.testing.assert_allclose(
        ds["lwe_thickness"].values,
        10.0 * to_internal(synth.pattern(np.arange(10), LAT4, LON_GLOBAL), LAT4, LON_GLOBAL))


def test_grace_uncertainty_in_mm_and_fill_is_nan(tmp_path):
    """uncertainty is cm × 10; the -99999 fill becomes NaN in both fields."""
    path = write_trap_jpl(tmp_path / GRACE_NAME, fill_at=[(2, 1, 4)])
    ds = read_grace(path)
    lat, lon = LAT4[1], LON12[4]
    assert np.isnan(float(at(ds["lwe_thickness"].isel(time=2), lat, lon)))
    assert np.isnan(float(at(ds["uncertainty"].isel(time=2), lat, lon)))
    assert int(np.isnan(ds["lwe_thickness"]).sum()) == 1
    mascon = synth.jpl_static_fields(LAT4, LON12)["mascon_ID"][0, 0]
    sigma_cm = 0.5 + (mascon % 7) * 0.3 + 0.01 * 5
    assert float(at(ds["uncertainty"].isel(time=5), LAT4[0], LON12[0])) == pytest.approx(
        10 * sigma_cm)
    assert float(ds["uncertainty"].min()) > 0


def test_grace_records_assigned_by_order_not_flooring(tmp_path):
    """Nov 2011 (dated 30 Oct) and Dec 2011 (dated 1 Jan) keep their own months."""
    months, epochs = synth.trap_series()
    floored = epochs.astype("datetime64[M]")
    assert np.unique(floored).size < floored.size  # the trap: flooring makes duplicates
    ds = read_grace(write_trap_jpl(tmp_path / GRACE_NAME))
    np.testing.assert_array_equal(ds["time"].values, months.astype("datetime64[ns]"))
    np.testing.assert_array_equal(ds["epoch"].values, epochs.astype("datetime64[ns]"))
    assert np.datetime64("2011-06-01") not in ds["time"].values  # listed missing
    assert ds.attrs["source_file"] == str(tmp_path / GRACE_NAME)
    assert ds.attrs["time_mean_removed"] == "2004.000 to 2009.999"
    np.testing.assert_array_equal(mo.parse_months_missing(ds.attrs["months_missing"]),
                                  mo.MISSING_MONTHS)
    nov = ds["lwe_thickness"].sel(time="2011-11-01")
    k_nov = int(np.flatnonzero(months == np.datetime64("2011-11"))[0])
    np.testing.assert_allclose(nov.values, 10 * synth.pattern(k_nov, LAT4, LON12))


@pytest.mark.parametrize("missing_text", [
    "2018-08-2018-09",
    "2018-08;2018-09",
    "2018-08, 2018-09",
    mo.MISSING_TEXT,
], ids=["range-token", "single-tokens", "comma-separated", "real-33-months"])
def test_grace_months_missing_token_forms(tmp_path, missing_text):
    """The GRACE-FO gap 2018-08..09 is read from a range token or from single tokens."""
    months = np.array(["2018-06", "2018-07", "2018-10", "2018-11", "2018-12", "2019-01"],
                      dtype="datetime64[M]")
    path = synth.write_jpl(tmp_path / GRACE_NAME, LAT4, LON12, months, missing_text)
    ds = read_grace(path)
    np.testing.assert_array_equal(ds["time"].values, months.astype("datetime64[ns]"))
    np.testing.assert_allclose(ds["lwe_thickness"].sel(time="2018-10-01").values,
                               10 * synth.pattern(2, LAT4, LON12))


@pytest.mark.parametrize(("first", "last", "shifted"), [
    ("2015-01", "2015-05", {"2015-05": "2015-04-27T12:00"}),
    ("2017-01", "2017-03", {"2017-03": "2017-04-01T00:00"}),
], ids=["ends-may-2015", "ends-mar-2017"])
def test_grace_time_subset_ending_on_shifted_record(tmp_path, first, last, shifted):
    """A time subset whose last solution is dated in the neighbouring month (May 2015 on
    27 April, March 2017 on 1 April) still gets its months by record order."""
    months = mo.month_range(first, last)
    months = months[~np.isin(months, mo.MISSING_MONTHS)]
    path = synth.write_jpl(tmp_path / GRACE_NAME, LAT4, LON12, months, mo.MISSING_TEXT,
                           epochs=synth.jpl_epochs(months, shifted))
    ds = read_grace(path)
    np.testing.assert_array_equal(ds["time"].values, months.astype("datetime64[ns]"))


def test_grace_without_months_missing_uses_jpl_list(tmp_path, caplog):
    """No ``months_missing`` attribute: JPL's 33 months are assumed, with a warning."""
    with caplog.at_level(logging.WARNING):
        ds = read_grace(write_trap_jpl(tmp_path / GRACE_NAME, missing_text=None))
    months, _ = synth.trap_series()
    np.testing.assert_array_equal(ds["time"].values, months.astype("datetime64[ns]"))
    assert "months_missing" in caplog.text


def test_grace_v02_companions(tmp_path):
    """land_mask and scale_factor from separate files (on a larger grid) are matched by cell."""
    main = write_trap_jpl(tmp_path / "GRCTellus.JPL.200204_201202.GLO.RL06M.MSCNv02CRI.nc",
                          static=("mascon_ID",))
    comp_lat, comp_lon = np.arange(-2.75, 3.0, 0.5), np.arange(0.25, 12.0, 0.5)
    land_file, scale_file = synth.write_jpl_companions(tmp_path, comp_lat, comp_lon)
    ds = read_grace(main, companions=[land_file, scale_file])
    reference = read_grace(write_trap_jpl(tmp_path / GRACE_NAME))
    assert ds["land_mask"].dtype == bool
    np.testing.assert_array_equal(ds["land_mask"].values, reference["land_mask"].values)
    np.testing.assert_array_equal(ds["scale_factor"].values, reference["scale_factor"].values)
    np.testing.assert_array_equal(ds["mascon_id"].values, reference["mascon_id"].values)
    xr.testing.assert_equal(ds["lwe_thickness"], reference["lwe_thickness"])
    expected_land = synth.land_of(LAT4, LON12)[:, np.argsort(grid.wrap_lon(LON12))]
    np.testing.assert_array_equal(ds["land_mask"].values, expected_land)


def test_grace_v02_without_companion_raises(tmp_path):
    """A v02 file read without its land-mask companion names land_mask."""
    path = write_trap_jpl(tmp_path / GRACE_NAME, static=("mascon_ID", "scale_factor"))
    with pytest.raises(InputError) as info:
        read_grace(path)
    assert_input_error(info.value, path, "land_mask")


def test_grace_regional_subset(tmp_path):
    """A Greenland-like box (lat 60–62, lon 300–306 in 0–360) reads onto lon -60 .. -54."""
    lat, lon = np.arange(60.25, 62.0, 0.5), np.arange(300.25, 306.0, 0.5)
    ds = read_grace(write_trap_jpl(tmp_path / GRACE_NAME, lat=lat, lon=lon))
    assert_conventions(ds)
    np.testing.assert_allclose(ds["lon"].values, lon - 360.0)
    np.testing.assert_allclose(ds["lat"].values, lat)
    expected = 10 * synth.pattern(np.array([4]), np.array([61.25]), np.array([302.75]))[0, 0]
    assert float(ds["lwe_thickness"].isel(time=4).sel(lat=61.25, lon=-57.25)) == pytest.approx(
        expected)
    mask = synth.land_of(lat, lon)
    np.testing.assert_array_equal(ds["land_mask"].values, mask)


def test_grace_subset_across_prime_meridian(tmp_path):
    """A subset written 357.25 .. 359.75, 0.25 .. 2.75 (as ncks cuts it) reads contiguous."""
    lon = np.r_[np.arange(357.25, 360.0, 0.5), np.arange(0.25, 3.0, 0.5)]
    ds = read_grace(write_trap_jpl(tmp_path / GRACE_NAME, lon=lon))
    np.testing.assert_allclose(ds["lon"].values, np.arange(-2.75, 3.0, 0.5))
    np.testing.assert_allclose(ds["lwe_thickness"].values,
                               10 * synth.pattern(np.arange(10), LAT4, lon))


def test_grace_gad_is_ignored(tmp_path):
    """A v04 ``GAD`` variable neither appears in the output nor changes it."""
    with_gad = read_grace(write_trap_jpl(tmp_path / GRACE_NAME, gad=True))
    (tmp_path / "plain").mkdir()
    plain = read_grace(write_trap_jpl(tmp_path / "plain" / GRACE_NAME))
    assert "GAD" not in with_gad.variables and "gad" not in with_gad.variables
    xr.testing.assert_identical(with_gad["lwe_thickness"], plain["lwe_thickness"])
    xr.testing.assert_identical(with_gad["uncertainty"], plain["uncertainty"])


def test_grace_scale_factor_variable_never_applied(tmp_path):
    """The ``scale_factor`` *variable* (2.0 on land) is returned but never multiplied in."""
    ds = read_grace(write_trap_jpl(tmp_path / GRACE_NAME))
    land = ds["land_mask"].values
    assert land.any() and (~land).any()
    np.testing.assert_array_equal(ds["scale_factor"].values[land], synth.JPL_SCALE)
    assert np.isnan(ds["scale_factor"].values[~land]).all()
    expected = 10 * synth.pattern(np.arange(10), LAT4, LON12)
    np.testing.assert_allclose(ds["lwe_thickness"].values, expected, rtol=1e-12)


def test_gracejpl_static_fields(tmp_path):
    """mascon_id is int64 and land_mask bool, both on the normalised grid."""
    ds = read_grace(write_trap_jpl(tmp_path / GRACE_NAME, lon=LON_GLOBAL))
    assert ds["mascon_id"].dtype == np.int64 and ds["mascon_id"].dims == ("lat", "lon")
    assert ds["land_mask"].dtype == bool
    ids = synth.jpl_static_fields(LAT4, LON_GLOBAL)["mascon_ID"]
    assert int(at(ds["mascon_id"], LAT4[2], 359.75)) == int(ids[2, -1])
    assert bool(at(ds["land_mask"], LAT4[2], 359.75)) == bool(
        synth.land_of(LAT4, LON_GLOBAL)[2, -1])


# --------------------------------------------------------------------------- WaterGAP


def test_wghm_conventions_and_cell_placement(tmp_path):
    """lat descending → ascending; kg m-2 stays mm; a corner cell keeps its value."""
    path = synth.write_wghm(tmp_path / WGHM_NAME, WG_LAT, WG_LON, WG_TIME)
    da = read_wghm(path)
    assert_conventions(da)
    assert da.attrs["units"] == "mm"
    np.testing.assert_allclose(da["lat"].values, WG_LAT[::-1])
    assert synth.land_of(WG_LAT, WG_LON)[0, 1]
    expected = 500 + synth.pattern(np.array([2]), WG_LAT[:1], WG_LON[1:2])[0, 0, 0]
    assert da.isel(time=2, lat=-1, lon=1).item() == pytest.approx(expected, rel=1e-6)
    values = 500 + synth.pattern(np.arange(3), WG_LAT, WG_LON)
    values = np.where(synth.land_of(WG_LAT, WG_LON), values, np.nan)
    np.testing.assert_allclose(da.values, to_internal(values, WG_LAT, WG_LON), rtol=1e-6)


@pytest.mark.parametrize(("values", "first", "last"), [
    ([0, 1, 2], "1901-01", "1901-03"),
    ([1212, 1213, 1214], "2002-01", "2002-03"),
    ([1451, 1452, 1453], "2021-12", "2022-02"),
], ids=["file-start", "subset-2002", "year-boundary"])
def test_wghm_months_since_decoded(tmp_path, values, first, last):
    """``months since 1901-01-01``: value n is month 1901-01 + n (xarray cannot decode it)."""
    da = read_wghm(synth.write_wghm(tmp_path / WGHM_NAME, WG_LAT, WG_LON, values))
    expected = mo.month_range(first, last).astype("datetime64[ns]")
    np.testing.assert_array_equal(da["time"].values, expected)


@pytest.mark.parametrize("calendar", ["365_day", "noleap", "360_day", "all_leap"])
def test_wghm_months_since_in_any_calendar(tmp_path, calendar):
    """WaterGAP 2.2e files say ``calendar = "365_day"``: counting months does not depend on
    the calendar, so the months are those of the Gregorian file."""
    path = synth.write_wghm(tmp_path / WGHM_NAME, WG_LAT, WG_LON, [1451, 1452, 1453],
                            calendar=calendar)
    da = read_wghm(path)
    np.testing.assert_array_equal(da["time"].values,
                                  mo.month_range("2021-12", "2022-02").astype("datetime64[ns]"))
    (tmp_path / "gregorian").mkdir()
    gregorian = read_wghm(synth.write_wghm(tmp_path / "gregorian" / WGHM_NAME, WG_LAT, WG_LON,
                                           [1451, 1452, 1453]))
    np.testing.assert_array_equal(da.values, gregorian.values)


def test_wghm_days_since_in_a_noleap_calendar_is_refused(tmp_path):
    """Days since a date name other days in a 365-day calendar: refused, not misread."""
    path = synth.write_wghm(tmp_path / WGHM_NAME, WG_LAT, WG_LON, [0.0, 31.0, 59.0],
                            time_units="days since 2002-01-01", calendar="noleap")
    with pytest.raises(InputError, match="Gregorian calendar.*'noleap'"):
        read_wghm(path)


def test_wghm_isimip_days_since(tmp_path):
    """ISIMIP-style ``days since 1901-1-1 00:00:00`` at mid-month also gives month starts."""
    months = mo.month_range("2002-01", "2002-03")
    days = (mo.mid_month(months) - np.datetime64("1901-01-01T00:00:00", "s")) / np.timedelta64(
        1, "D")
    da = read_wghm(synth.write_wghm(tmp_path / WGHM_NAME, WG_LAT, WG_LON, days,
                                    time_units="days since 1901-1-1 00:00:00"))
    np.testing.assert_array_equal(da["time"].values, months.astype("datetime64[ns]"))


def test_wghm_own_fill_value_masked(tmp_path):
    """The file's own ``_FillValue`` (-9999) is masked; land stays finite."""
    path = synth.write_wghm(tmp_path / WGHM_NAME, WG_LAT, WG_LON, WG_TIME, fill_value=-9999.0)
    da = read_wghm(path)
    land = to_internal(synth.land_of(WG_LAT, WG_LON)[None], WG_LAT, WG_LON)[0]
    assert np.isfinite(da.values[:, land]).all()
    assert np.isnan(da.values[:, ~land]).all()
    assert float(da.min()) > 0


def test_wghm_1e20_without_attribute_masked(tmp_path):
    """1e20 written without a ``_FillValue`` attribute is still masked."""
    path = synth.write_wghm(tmp_path / WGHM_NAME, WG_LAT, WG_LON, WG_TIME, fill_value=1e20,
                            fill_attr=False)
    with xr.open_dataset(path, decode_times=False) as raw:
        assert "_FillValue" not in raw["tws"].encoding
        assert float(raw["tws"].max()) > 1e19
    da = read_wghm(path)
    land = to_internal(synth.land_of(WG_LAT, WG_LON)[None], WG_LAT, WG_LON)[0]
    assert np.isnan(da.values[:, ~land]).all()
    assert float(da.max()) < 1e4


def test_wghm_unsorted_months_sorted(tmp_path):
    """Months written out of order come back sorted, each with its own values."""
    values = [1214, 1212, 1213]
    da = read_wghm(synth.write_wghm(tmp_path / WGHM_NAME, WG_LAT, WG_LON, values))
    np.testing.assert_array_equal(da["time"].values,
                                  mo.month_range("2002-01", "2002-03").astype("datetime64[ns]"))
    # file record 0 (value 1214 = 2002-03) holds 500 + pattern(0)
    i, j = 0, 1
    expected = 500 + synth.pattern(np.array([0]), WG_LAT[i:i + 1], WG_LON[j:j + 1])[0, 0, 0]
    got = da.sel(time="2002-03-01", lat=WG_LAT[i], lon=WG_LON[j]).item()
    assert got == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize(("units", "factor"), [("kg m-2", 1.0), ("mm", 1.0), ("m", 1000.0)])
def test_wghm_units(tmp_path, units, factor):
    """Storage units convert to mm."""
    values = np.full((3, WG_LAT.size, WG_LON.size), 0.25)
    da = read_wghm(synth.write_wghm(tmp_path / WGHM_NAME, WG_LAT, WG_LON, WG_TIME,
                                    values=values, units=units))
    assert float(da.max()) == pytest.approx(0.25 * factor)


@pytest.mark.parametrize(("name", "var"), [
    ("watergap22e_gswp3-era5_tws_histsoc_monthly_1901_2022.nc", "tws"),
    ("watergap2-2e_gswp3-w5e5_obsclim_histsoc_default_tws_global_monthly_1901_2019.nc", "tws"),
    ("watergap_22d_WFDEI-GPCC_histsoc_tws_monthly_1901_2016.nc4", "tws"),
    ("watergap22e_gswp3-era5_groundwstor_histsoc_monthly_1901_2022.nc", "groundwstor"),
])
def test_wghm_file_names(name, var):
    """The 2.2e, ISIMIP3a and 2.2d name patterns are recognised."""
    parts = parse_name(name)
    assert parts is not None and parts["var"] == var and parts["y0"] == "1901"


def test_wghm_unknown_file_name():
    """A name that fits no pattern gives None."""
    assert parse_name("tws_monthly.nc") is None


def test_wghm_compartment_variable(tmp_path):
    """A compartment file is read by naming its variable."""
    path = synth.write_wghm(tmp_path / WGHM_NAME.replace("tws", "groundwstor"), WG_LAT, WG_LON,
                            WG_TIME, variable="groundwstor")
    da = read_wghm(path, "groundwstor")
    assert da.name == "groundwstor" and da.attrs["units"] == "mm"


# --------------------------------------------------------------------------- ERA5


def test_era5_new_layout_two_files(tmp_path):
    """Two stream files: conventions, storage sum, fluxes × days in month, evaporation sign."""
    paths, fields = synth.write_era5_new(tmp_path, ERA5_LAT, ERA5_LON, ERA5_MONTHS)
    assert {p.name for p in paths} == set(synth.ERA5_STREAMS)
    ds = read_era5(paths)
    assert_conventions(ds)
    expected = era5_expected(fields, ERA5_MONTHS)
    for name, values in expected.items():
        np.testing.assert_allclose(ds[name].values, to_internal(values, ERA5_LAT, ERA5_LON),
                                   rtol=1e-5, err_msg=name)
    for name in ("storage", "soil", "snow", "canopy"):
        assert ds[name].attrs["units"] == "mm"
    for name in ("precip", "evap", "runoff"):
        assert ds[name].attrs["units"] == "mm month-1"
    land = np.isfinite(ds["storage"].values)
    assert land.any() and (~land).any()  # NaN over sea survives
    assert (ds["evap"].values[land] > 0).all()


def test_era5_specific_cells(tmp_path):
    """Hand-worked values at the file's cell (lat 1.75, lon 180.25) → (1.75, -179.75)."""
    paths, f = synth.write_era5_new(tmp_path, ERA5_LAT, ERA5_LON, ERA5_MONTHS)
    ds = read_era5(paths)
    i, j, k = 0, 7, 1  # February 2020: 29 days
    assert ERA5_LON[j] == 180.25 and synth.land_of(ERA5_LAT, ERA5_LON)[i, j]
    cell = ds.isel(time=k).sel(lat=1.75, lon=-179.75)
    v = {name: float(f[name][k, i, j]) for name in f}
    soil = 1000 * (0.07 * v["swvl1"] + 0.21 * v["swvl2"] + 0.72 * v["swvl3"]
                   + 1.89 * v["swvl4"])
    assert float(cell["soil"]) == pytest.approx(soil, rel=1e-5)
    assert float(cell["storage"]) == pytest.approx(soil + 1000 * (v["sd"] + v["src"]), rel=1e-5)
    assert float(cell["precip"]) == pytest.approx(v["tp"] * 29 * 1000, rel=1e-5)
    assert float(cell["evap"]) == pytest.approx(-v["e"] * 29 * 1000, rel=1e-5)
    assert float(cell["runoff"]) == pytest.approx(v["ro"] * 29 * 1000, rel=1e-5)
    assert float(cell["t2m"]) == pytest.approx(v["t2m"], rel=1e-6)
    assert ds["time"].values[k] == np.datetime64("2020-02-01", "ns")


def test_era5_one_file_matches_two(tmp_path):
    """One file holding every variable reads the same as the two stream files."""
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    one, _ = synth.write_era5_new(tmp_path / "one", ERA5_LAT, ERA5_LON, ERA5_MONTHS,
                                  one_file=True)
    two, _ = synth.write_era5_new(tmp_path / "two", ERA5_LAT, ERA5_LON, ERA5_MONTHS)
    assert len(one) == 1
    xr.testing.assert_allclose(read_era5(one[0]), read_era5(two))


def test_era5_zip_matches_files(tmp_path):
    """A CDS zip of the two stream files reads the same as the files themselves."""
    paths, _ = synth.write_era5_new(tmp_path, ERA5_LAT, ERA5_LON, ERA5_MONTHS)
    archive = synth.zip_files(tmp_path / "era5_download.zip", paths)
    from_zip = read_era5(archive)
    xr.testing.assert_allclose(from_zip, read_era5(paths))
    # a second read (from the unpacked cache) gives the same
    xr.testing.assert_allclose(read_era5(str(archive)), from_zip)


def test_era5_legacy_packed(tmp_path):
    """Legacy layout: ``time`` in hours since 1900, int16 with scale_factor/add_offset."""
    path, unpacked = synth.write_era5_legacy(tmp_path / "era5_legacy.nc", ERA5_LAT, ERA5_LON,
                                             ERA5_MONTHS)
    ds = read_era5(path)
    assert_conventions(ds)
    np.testing.assert_array_equal(ds["time"].values, ERA5_MONTHS.astype("datetime64[ns]"))
    expected = era5_expected(unpacked, ERA5_MONTHS)
    for name, values in expected.items():
        np.testing.assert_allclose(ds[name].values, to_internal(values, ERA5_LAT, ERA5_LON),
                                   rtol=1e-6, err_msg=name)


def test_era5_legacy_expver_merged(tmp_path):
    """An ``expver`` dimension (1 = ERA5, 5 = ERA5T) merges to one value per month."""
    path, unpacked = synth.write_era5_legacy(tmp_path / "era5_legacy.nc", ERA5_LAT, ERA5_LON,
                                             ERA5_MONTHS, expver=True)
    ds = read_era5(path)
    assert "expver" not in ds.dims and "expver" not in ds.coords
    assert ds.sizes["time"] == ERA5_MONTHS.size
    land = to_internal(synth.land_of(ERA5_LAT, ERA5_LON)[None], ERA5_LAT, ERA5_LON)[0]
    for k in range(ERA5_MONTHS.size):  # the last month comes from expver 5 only
        assert np.isfinite(ds["storage"].values[k][land]).all()
    expected = era5_expected(unpacked, ERA5_MONTHS)
    np.testing.assert_allclose(ds["storage"].values,
                               to_internal(expected["storage"], ERA5_LAT, ERA5_LON), rtol=1e-6)


def test_era5_longitude_0_360_and_180_agree(tmp_path):
    """The same box as lon 190 .. 192.75 and as -170 .. -167.25 reads identically."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a, _ = synth.write_era5_new(tmp_path / "a", ERA5_LAT, 190 + 0.25 * np.arange(12),
                                ERA5_MONTHS)
    b, _ = synth.write_era5_new(tmp_path / "b", ERA5_LAT, -170 + 0.25 * np.arange(12),
                                ERA5_MONTHS)
    ds_a, ds_b = read_era5(a), read_era5(b)
    np.testing.assert_allclose(ds_a["lon"].values, -170 + 0.25 * np.arange(12))
    xr.testing.assert_allclose(ds_a, ds_b)


def test_era5_global_0_360(tmp_path):
    """A global 0 .. 359.75 request (2 rows) comes back -180 .. 179.75 with cells in place."""
    lat, lon = np.array([0.25, 0.0]), np.arange(0.0, 360.0, 0.25)
    paths, f = synth.write_era5_new(tmp_path, lat, lon, ERA5_MONTHS[:2])
    ds = read_era5(paths)
    assert_conventions(ds)
    assert ds["lon"].values[0] == -180.0 and ds["lon"].values[-1] == 179.75
    j = int(np.flatnonzero(lon == 359.75)[0])
    assert synth.land_of(lat, lon)[1, j]
    got = float(ds["t2m"].isel(time=1).sel(lat=0.0, lon=-0.25))
    assert got == pytest.approx(float(f["t2m"][1, 1, j]))


def test_era5_land_01_degree_grid(tmp_path):
    """ERA5-Land's 0.1° grid is accepted and normalised."""
    lat = np.round(60.0 - 0.1 * np.arange(8), 1)
    lon = np.round(10.0 + 0.1 * np.arange(12), 1)
    paths, fields = synth.write_era5_new(tmp_path, lat, lon, ERA5_MONTHS)
    ds = read_era5(paths)
    assert_conventions(ds)
    np.testing.assert_allclose(np.diff(ds["lat"].values), 0.1, atol=1e-9)
    np.testing.assert_allclose(np.diff(ds["lon"].values), 0.1, atol=1e-9)
    expected = era5_expected(fields, ERA5_MONTHS)["storage"]
    np.testing.assert_allclose(ds["storage"].values, to_internal(expected, lat, lon), rtol=1e-5)


def test_era5_sde_instead_of_sd(tmp_path):
    """ERA5-Land ``sde`` (metres of snow) is refused with a message that names it."""
    paths, _ = synth.write_era5_new(tmp_path, ERA5_LAT, ERA5_LON, ERA5_MONTHS,
                                    rename={"sd": "sde"})
    with pytest.raises(InputError) as info:
        read_era5(paths)
    assert "sde" in str(info.value)
    assert_input_error(info.value, paths[0], "sd")


def test_era5_zip_missing_stream(tmp_path):
    """A zip holding only the avgua stream names the missing flux variable and the zip."""
    paths, _ = synth.write_era5_new(tmp_path, ERA5_LAT, ERA5_LON, ERA5_MONTHS)
    avgua = [p for p in paths if "avgua" in p.name]
    archive = synth.zip_files(tmp_path / "era5_download.zip", avgua)
    with pytest.raises(InputError) as info:
        read_era5(archive)
    assert_input_error(info.value, archive, "tp")


def test_era5_truncated_zip(tmp_path):
    """A half-downloaded zip is an InputError naming it."""
    paths, _ = synth.write_era5_new(tmp_path, ERA5_LAT, ERA5_LON, ERA5_MONTHS)
    archive = synth.zip_files(tmp_path / "era5_download.zip", paths)
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError) as info:
        read_era5(archive)
    assert_input_error(info.value, archive, "-")


# --------------------------------------------------------------------------- truth


def test_truth_conventions(tmp_path):
    """A truth file with lat descending and lon 0–360 reads in the conventions, in mm."""
    lat, lon = LAT4[::-1], np.arange(357.25, 360.0, 0.5)
    path = synth.write_truth(tmp_path / "truth.nc", lat, lon, ERA5_MONTHS)
    da = read_truth(path)
    assert_conventions(da)
    np.testing.assert_array_equal(da["time"].values, ERA5_MONTHS.astype("datetime64[ns]"))
    np.testing.assert_allclose(da.values, to_internal(
        synth.pattern(np.arange(4), lat, lon), lat, lon))
    assert float(at(da.isel(time=2), lat[0], 359.75)) == pytest.approx(
        synth.pattern(2, lat[:1], np.array([359.75]))[0, 0])


# --------------------------------------------------------------------------- bad input


def _good_grace(d: Path, **kw) -> Path:
    return write_trap_jpl(d / GRACE_NAME, **kw)


def _good_wghm(d: Path, **kw) -> Path:
    return synth.write_wghm(d / WGHM_NAME, WG_LAT, WG_LON, WG_TIME, **kw)


def _good_era5(d: Path, **kw) -> Path:
    return synth.write_era5_new(d, ERA5_LAT, ERA5_LON, ERA5_MONTHS, one_file=True, **kw)[0][0]


def _good_truth(d: Path, **kw) -> Path:
    return synth.write_truth(d / "truth.nc", LAT4, LON12, ERA5_MONTHS, **kw)


READERS = {
    "grace": (_good_grace, read_grace),
    "wghm": (_good_wghm, read_wghm),
    "era5": (_good_era5, read_era5),
    "truth": (_good_truth, read_truth),
}
#: Writer options leaving out the main variable, and the name the error must give.
MISSING_VARIABLE = {
    "grace": ({"rename": {"lwe_thickness": "lwe_thick"}}, "lwe_thickness"),
    "wghm": ({"variable": "qtot"}, "tws"),
    "era5": ({"drop": ("tp",)}, "tp"),
    "truth": ({"variable": "tws"}, "twsa"),
}
#: Writer options giving the main variable units of furlongs, and the variable named.
BAD_UNITS = {
    "grace": ({"units": "furlongs"}, "lwe_thickness"),
    "wghm": ({"units": "furlongs"}, "tws"),
    "era5": ({"units": {"swvl1": "furlongs"}}, "swvl1"),
    "truth": ({"units": "furlongs"}, "twsa"),
}


@pytest.mark.parametrize("kind", list(READERS))
def test_missing_file(tmp_path, kind):
    """A path that does not exist."""
    path = tmp_path / "GRCTellus_absent.nc"
    with pytest.raises(InputError) as info:
        READERS[kind][1](path)
    assert_input_error(info.value, path, "-")


@pytest.mark.parametrize("kind", list(READERS))
def test_not_netcdf(tmp_path, kind):
    """A text file (an HTML error page saved as .nc)."""
    path = tmp_path / "download.nc"
    path.write_text("<html><body>401 Unauthorized</body></html>\n")
    with pytest.raises(InputError) as info:
        READERS[kind][1](path)
    assert_input_error(info.value, path, "-")


@pytest.mark.parametrize("kind", list(READERS))
def test_truncated_netcdf4(tmp_path, kind):
    """A good netCDF4 file cut to half its bytes."""
    writer, reader = READERS[kind]
    path = writer(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError) as info:
        reader(path)
    assert_input_error(info.value, path, "-")


def test_truncated_netcdf3_legacy_era5_half(tmp_path):
    """A legacy (netCDF3 64-bit offset) ERA5 file cut to half its bytes: an InputError naming
    the file (today only because the zeroed record times repeat; see the report)."""
    path, _ = synth.write_era5_legacy(tmp_path / "era5_legacy.nc", ERA5_LAT, ERA5_LON,
                                      ERA5_MONTHS)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError) as info:
        read_era5(path)
    text = str(info.value)
    assert "\n" not in text and path.name in text and "expected" in text and "found" in text


def test_truncated_netcdf3_legacy_era5_tail(tmp_path):
    """A legacy ERA5 file missing its last 10 % (an interrupted download)."""
    path, _ = synth.write_era5_legacy(tmp_path / "era5_legacy.nc", ERA5_LAT, ERA5_LON,
                                      ERA5_MONTHS)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.9)])
    with pytest.raises(InputError) as info:
        read_era5(path)
    assert_input_error(info.value, path, "-")


@pytest.mark.parametrize("kind", list(READERS))
def test_missing_variable(tmp_path, kind):
    """The main variable is absent (named otherwise)."""
    writer, reader = READERS[kind]
    options, variable = MISSING_VARIABLE[kind]
    path = writer(tmp_path, **options)
    with pytest.raises(InputError) as info:
        reader(path)
    assert_input_error(info.value, path, variable)


@pytest.mark.parametrize("kind", list(READERS))
def test_unknown_units(tmp_path, kind):
    """Units the reader does not know (furlongs)."""
    writer, reader = READERS[kind]
    options, variable = BAD_UNITS[kind]
    path = writer(tmp_path, **options)
    with pytest.raises(InputError) as info:
        reader(path)
    assert_input_error(info.value, path, variable)
    assert "furlongs" in str(info.value)


@pytest.mark.parametrize("kind", ["grace", "wghm"])
@pytest.mark.parametrize(("lat", "lon", "variable"), [
    (np.arange(0.0, 2.0, 0.5), np.arange(0.0, 6.0, 0.5), "lat"),  # centres on the edges
    (LAT4, np.arange(0.0, 6.0, 0.5), "lon"),
    (np.arange(-1.25, 2.0, 1.0), LON12, "lat"),  # 1° spacing, 0.5°-aligned centres
    (LAT4, np.arange(0.25, 12.0, 1.0), "lon"),
], ids=["lat-unaligned", "lon-unaligned", "lat-1deg", "lon-1deg"])
def test_grid_not_half_degree(tmp_path, kind, lat, lon, variable):
    """GRACE and WaterGAP must be on 0.5° cells centred at ±0.25, ±0.75, …."""
    if kind == "grace":
        path = write_trap_jpl(tmp_path / GRACE_NAME, lat=lat, lon=lon)
        reader = read_grace
    else:
        path = synth.write_wghm(tmp_path / WGHM_NAME, lat[::-1], lon, WG_TIME)
        reader = read_wghm
    with pytest.raises(InputError) as info:
        reader(path)
    assert_input_error(info.value, path, variable)
    assert info.value.variable == variable


def test_wghm_duplicate_months(tmp_path):
    """A repeated WaterGAP time value."""
    path = synth.write_wghm(tmp_path / WGHM_NAME, WG_LAT, WG_LON, [1212, 1212, 1213])
    with pytest.raises(InputError) as info:
        read_wghm(path)
    assert_input_error(info.value, path, "time")
    assert "2002-01" in str(info.value)


def test_grace_duplicate_record_time(tmp_path):
    """A repeated GRACE record time."""
    months, epochs = synth.trap_series()
    epochs = epochs.copy()
    epochs[3] = epochs[2]
    path = synth.write_jpl(tmp_path / GRACE_NAME, LAT4, LON12, months, mo.MISSING_TEXT,
                           epochs=epochs)
    with pytest.raises(InputError) as info:
        read_grace(path)
    assert_input_error(info.value, path, "time")


def test_era5_duplicate_months(tmp_path):
    """A repeated ERA5 valid_time."""
    months = np.array(["2020-01", "2020-02", "2020-02"], dtype="datetime64[M]")
    paths, _ = synth.write_era5_new(tmp_path, ERA5_LAT, ERA5_LON, months)
    with pytest.raises(InputError) as info:
        read_era5(paths)
    assert_input_error(info.value, paths[0], "valid_time")


def test_truth_duplicate_months(tmp_path):
    """A repeated month in a truth file."""
    months = np.array(["2020-01", "2020-01", "2020-02"], dtype="datetime64[M]")
    path = synth.write_truth(tmp_path / "truth.nc", LAT4, LON12, months)
    with pytest.raises(InputError) as info:
        read_truth(path)
    assert_input_error(info.value, path, "time")


def test_grace_months_missing_token_dropped(tmp_path):
    """``months_missing`` without 2011-06: 11 months for 10 records."""
    text = mo.MISSING_TEXT.replace("2011-06;", "")
    path = write_trap_jpl(tmp_path / GRACE_NAME, missing_text=text)
    with pytest.raises(InputError) as info:
        read_grace(path)
    assert_input_error(info.value, path, "months_missing")


def test_grace_extra_record(tmp_path):
    """A record for 2011-06 although ``months_missing`` lists it."""
    months = mo.month_range("2011-04", "2012-02")
    epochs = synth.jpl_epochs(months, {"2011-11": "2011-10-30T12:00",
                                       "2011-12": "2012-01-01T00:00"})
    path = synth.write_jpl(tmp_path / GRACE_NAME, LAT4, LON12, months, mo.MISSING_TEXT,
                           epochs=epochs)
    with pytest.raises(InputError) as info:
        read_grace(path)
    assert_input_error(info.value, path, "months_missing")


def test_grace_range_token_half_dropped(tmp_path):
    """``months_missing`` listing 2018-08 but not 2018-09: one record short."""
    months = np.array(["2018-06", "2018-07", "2018-10", "2018-11"], dtype="datetime64[M]")
    path = synth.write_jpl(tmp_path / GRACE_NAME, LAT4, LON12, months, "2018-08")
    with pytest.raises(InputError) as info:
        read_grace(path)
    assert_input_error(info.value, path, "months_missing")


def test_grace_bad_months_missing_token(tmp_path):
    """A ``months_missing`` token in neither form."""
    path = write_trap_jpl(tmp_path / GRACE_NAME, missing_text="2011-6;2018-08-2018-09")
    with pytest.raises(InputError) as info:
        read_grace(path)
    assert_input_error(info.value, path, "months_missing")


def test_grace_all_nan_month(tmp_path):
    """A record that is fill everywhere."""
    values = synth.pattern(np.arange(10), LAT4, LON12)
    values[4] = synth.JPL_FILL
    path = write_trap_jpl(tmp_path / GRACE_NAME, values=values)
    with pytest.raises(InputError) as info:
        read_grace(path)
    assert_input_error(info.value, path, "lwe_thickness")
    assert "2011-09" in str(info.value)  # record 4: 2011-04, -05, -07, -08, -09


def test_wghm_all_nan_month(tmp_path):
    """A WaterGAP month that is fill everywhere."""
    values = 500 + synth.pattern(np.arange(3), WG_LAT, WG_LON)
    values[1] = 1e20
    path = synth.write_wghm(tmp_path / WGHM_NAME, WG_LAT, WG_LON, WG_TIME, values=values)
    with pytest.raises(InputError) as info:
        read_wghm(path)
    assert_input_error(info.value, path, "tws")
    assert "2002-02" in str(info.value)


@pytest.mark.parametrize("variable", [
    "swvl1",
    "tp",
])
def test_era5_all_nan_month(tmp_path, variable):
    """An ERA5 variable with no finite value in one month."""
    paths, _ = synth.write_era5_new(tmp_path, ERA5_LAT, ERA5_LON, ERA5_MONTHS,
                                    nan_months={variable: 2})
    with pytest.raises(InputError) as info:
        read_era5(paths)
    text = str(info.value)
    assert "\n" not in text and "expected" in text and "found" in text
    assert any(p.name in text for p in paths)
    assert "2020-03" in text


# --------------------------------------------------------------------------- CLI


def test_cli_inspect_bad_file(tmp_path):
    """``twsbench inspect BAD`` exits 2 with exactly one line on stderr naming the file."""
    pytest.importorskip("twsbench.cli")
    bad = tmp_path / "GRCTellus.JPL.broken.nc"
    bad.write_text("not a netCDF file\n")
    env = {**os.environ, "TWSBENCH_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-m", "twsbench.cli", "inspect", str(bad)],
                          capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert bad.name in lines[0]


# --------------------------------------------------------------------------- properties

PROPERTY_SETTINGS = settings(max_examples=25, deadline=None,
                             suppress_health_check=[HealthCheck.function_scoped_fixture])


@PROPERTY_SETTINGS
@given(start=st.integers(0, 719), n_lon=st.integers(1, 30), lat0=st.integers(-40, 40),
       n_lat=st.integers(1, 4))
def test_property_grace_lon_subsets(tmp_path_factory, start, n_lon, lat0, n_lat):
    """Any run of 0.5° columns in 0–360 (even across 0°) comes back wrapped, sorted and with
    every value in its own cell."""
    lon = ((start + np.arange(n_lon)) % 720) * 0.5 + 0.25
    lat = (lat0 + np.arange(n_lat)) * 0.5 + 0.25
    months = mo.month_range("2004-01", "2004-03")
    path = synth.write_jpl(tmp_path_factory.mktemp("jpl") / GRACE_NAME, lat, lon, months,
                           mo.MISSING_TEXT)
    ds = read_grace(path)
    wrapped = grid.wrap_lon(lon)
    np.testing.assert_allclose(ds["lon"].values, np.sort(wrapped))
    assert ds["lon"].min() >= -180 and ds["lon"].max() < 180
    values = 10 * synth.pattern(np.arange(3), lat, lon)
    for j in range(n_lon):
        got = ds["lwe_thickness"].sel(lon=wrapped[j]).values
        np.testing.assert_allclose(got, values[:, :, j])


@PROPERTY_SETTINGS
@given(top=st.integers(-20, 20), n_lat=st.integers(1, 6),
       offsets=st.lists(st.integers(0, 40), min_size=1, max_size=6, unique=True))
def test_property_wghm_lat_and_month_order(tmp_path_factory, top, n_lat, offsets):
    """Descending lat runs and months in any order come back ascending, each value with its
    own cell and month."""
    lat = (top - np.arange(n_lat)) * 0.5 + 0.25
    time_values = [1212 + o for o in offsets]
    path = synth.write_wghm(tmp_path_factory.mktemp("wghm") / WGHM_NAME, lat, WG_LON,
                            time_values)
    da = read_wghm(path)
    assert_conventions(da)
    land = synth.land_of(lat, WG_LON)
    for k, n in enumerate(time_values):
        month = (np.datetime64("1901-01", "M") + n).astype("datetime64[ns]")
        expected = np.where(land, 500 + synth.pattern(np.array([k]), lat, WG_LON)[0], np.nan)
        got = da.sel(time=month).sel(lat=lat).values
        np.testing.assert_allclose(got, expected, rtol=1e-6)
