"""Property-based tests (hypothesis) of the readers' coordinate and time handling.

Each property states what must hold for *any* input of a kind the real files can take:
record-to-month assignment under any set of missing months and any epoch jitter JPL's
solutions show, CF time decoding for any reference date and unit, and grids in any
orientation, longitude convention and order.
"""

from __future__ import annotations

import calendar
from datetime import datetime

import numpy as np
import pytest
import xarray as xr
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests import synth
from twsbench.core import geometry as grid
from twsbench.core import months as mo
from twsbench.core.errors import InputError
from twsbench.inputs import netcdf as nc
from twsbench.inputs import read_era5, read_grace

FAST = settings(max_examples=200, deadline=None)
FILES = settings(max_examples=25, deadline=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture])
GRACE_NAME = "GRCTellus.JPL.200204_201202.GLO.RL06.3M.MSCNv04CRI.nc"
DAY = np.timedelta64(86400, "s")


def _month(k: int) -> np.datetime64:
    return mo.GRACE_START + k


@st.composite
def record_series(draw, jitter_days: float = 18.0):
    """A GRACE-like series: a span of months, some of them missing (never the first or last),
    and increasing epochs within ``jitter_days`` of each present month's middle (the first
    within 14 d, so that its month is the nearest one)."""
    n = draw(st.integers(3, 60))
    span = mo.month_range(_month(0), _month(n - 1))
    inner = draw(st.sets(st.integers(1, n - 2), max_size=max(0, n // 3)))
    missing = span[sorted(inner)]
    present = span[~np.isin(span, missing)]
    limits = np.full(present.size, jitter_days)
    limits[0] = min(jitter_days, 14.0)
    jitter = np.array([draw(st.floats(-lim, lim)) for lim in limits])
    epochs = mo.mid_month(present) + np.round(jitter * 86400).astype("timedelta64[s]")
    for k in range(1, epochs.size):  # solution spans do not overlap: times increase
        epochs[k] = max(epochs[k], epochs[k - 1] + DAY)
    return present, missing, epochs


# --------------------------------------------------------------------------- months_missing


@FAST
@given(st.sets(st.integers(0, 300), max_size=40))
def test_months_missing_round_trip(offsets):
    """Writing any set of months JPL's way and parsing it back gives the same months."""
    months = np.array(sorted(_month(k) for k in offsets), dtype="datetime64[M]")
    text = mo.format_months_missing(months)
    np.testing.assert_array_equal(mo.parse_months_missing(text), months)
    assert text.count(";") <= max(0, months.size - 1)


@FAST
@given(st.lists(st.integers(0, 300), min_size=1, max_size=12),
       st.sampled_from([";", ",", " ", " ; "]))
def test_months_missing_any_separator_and_order(offsets, sep):
    """Tokens in any order, repeated, with any of the separators seen in the wild."""
    text = sep.join(str(_month(k)) for k in offsets)
    expected = np.unique(np.array([_month(k) for k in offsets], dtype="datetime64[M]"))
    np.testing.assert_array_equal(mo.parse_months_missing(text), expected)


# --------------------------------------------------------------------------- record order


@FAST
@given(record_series())
def test_assign_records_recovers_every_month(series):
    """Any missing set and any epoch within 18 days of its month's middle: each record gets
    its own month, although flooring the epochs would misplace those dated in a neighbour."""
    present, missing, epochs = series
    np.testing.assert_array_equal(mo.assign_records(epochs, missing), present)


@FAST
@given(record_series(jitter_days=7.0), st.data())
def test_assign_records_rejects_a_wrong_months_missing(series, data):
    """A months_missing that leaves out a real gap, or lists a month that has a record,
    is caught (records then sit a month from their assigned month), never silently shifted."""
    present, missing, epochs = series
    inner_present = present[1:-1]
    choices = (["drop"] if missing.size else []) + (["add"] if inner_present.size else [])
    assume(choices)
    how = data.draw(st.sampled_from(choices))
    if how == "drop":
        wrong = np.delete(missing, data.draw(st.integers(0, missing.size - 1)))
    else:
        extra = inner_present[data.draw(st.integers(0, inner_present.size - 1))]
        wrong = np.sort(np.append(missing, extra))
    with pytest.raises(mo.BookkeepingError, match="expected records in order"):
        mo.assign_records(epochs, wrong)


@FAST
@given(record_series(), st.data())
def test_assign_records_rejects_repeated_or_unordered_times(series, data):
    present, missing, epochs = series
    assume(epochs.size >= 2)
    k = data.draw(st.integers(1, epochs.size - 1))
    bad = epochs.copy()
    bad[k] = bad[k - 1] - data.draw(st.integers(0, 40)) * DAY
    with pytest.raises(mo.BookkeepingError, match="strictly increasing"):
        mo.assign_records(bad, missing)


@FAST
@given(st.integers(-600, 600), st.floats(-14.0, 14.0))
def test_nearest_month_of_any_epoch_near_mid_month(k, days):
    month = _month(k)
    epoch = mo.mid_month(np.array([month]))[0] + np.timedelta64(int(days * 86400), "s")
    assert mo.nearest_month(np.array([epoch]))[0] == month


@FAST
@given(st.integers(1900, 2100), st.integers(0, 365 * 86400 - 1))
def test_decimal_years_to_dates(year, second):
    """Decimal years as JPL prints them (2 decimals, ±1.8 days) land within 1.9 days."""
    start = np.datetime64(f"{year}-01-01T00:00:00", "s")
    when = start + np.timedelta64(second, "s")
    length = 366 if calendar.isleap(year) else 365
    decimal = round(year + second / (length * 86400), 2)
    got = mo.decimal_year_to_datetime(np.array([decimal]))[0]
    assert abs((got - when) / DAY) <= 1.9


# --------------------------------------------------------------------------- CF time decoding


def _time_var(values, units, cal="proleptic_gregorian") -> xr.DataArray:
    return xr.DataArray(np.asarray(values), dims="time", attrs={"units": units,
                                                                "calendar": cal})


@FAST
@given(ref=st.datetimes(min_value=datetime(1850, 1, 1), max_value=datetime(2030, 12, 31)),
       offsets=st.lists(st.integers(-3_000_000_000, 3_000_000_000), min_size=1, max_size=8),
       unit=st.sampled_from(["days", "hours", "minutes", "seconds"]),
       cal=st.sampled_from(["standard", "gregorian", "proleptic_gregorian"]),
       z=st.booleans())
def test_decode_any_cf_time(ref, offsets, unit, cal, z):
    """Any '<unit> since <date>' and any times to the second decode exactly."""
    ref = np.datetime64(ref.replace(microsecond=0), "s")
    scale = {"days": 86400, "hours": 3600, "minutes": 60, "seconds": 1}[unit]
    seconds = np.array(offsets, dtype=np.int64)
    text = str(ref).replace("T", " ") + ("Z" if z else "")
    got = nc.decode_time(_time_var(seconds / scale, f"{unit} since {text}", cal), "f.nc", "t")
    np.testing.assert_array_equal(got, ref + seconds.astype("timedelta64[s]"))


@FAST
@given(year=st.integers(1800, 2030), month=st.integers(1, 12), day=st.integers(1, 28),
       offsets=st.lists(st.integers(-2000, 2000), min_size=1, max_size=8))
def test_decode_months_since(year, month, day, offsets):
    """'months since' (WaterGAP's axis) counts calendar months from the reference's month."""
    origin = np.datetime64(f"{year:04d}-{month:02d}", "M")
    var = _time_var(np.array(offsets, dtype=float),
                    f"months since {year:04d}-{month:02d}-{day:02d}")
    got = nc.decode_time(var, "f.nc", "time")
    np.testing.assert_array_equal(got, (origin + np.array(offsets)).astype("datetime64[s]"))


@FAST
@given(offsets=st.lists(st.integers(0, 400), min_size=1, max_size=8),
       frac=st.floats(0.01, 0.99))
def test_decode_rejects_fractional_months(offsets, frac):
    values = np.array(offsets, dtype=float)
    values[-1] += frac
    with pytest.raises(InputError, match="whole numbers of months"):
        nc.decode_time(_time_var(values, "months since 1901-01-01"), "f.nc", "time")


@FAST
@given(st.lists(st.integers(0, 100), min_size=2, max_size=12))
def test_check_months_sorts_or_names_the_repeat(offsets):
    months = np.array([_month(k) for k in offsets], dtype="datetime64[M]")
    if np.unique(months).size < months.size:
        with pytest.raises(InputError, match="repeated months"):
            nc.check_months(months, "f.nc", "time")
    else:
        order = nc.check_months(months, "f.nc", "time")
        assert np.all(np.diff(months[order]) > np.timedelta64(0, "M"))


# --------------------------------------------------------------------------- grids


@st.composite
def half_degree_grid(draw):
    """A 0.5° block at any place, lat ascending or descending, lon in 0–360 or ±180 (crossing
    0° or 180° as it may), the columns and rows in file order or shuffled."""
    n_lat, n_lon = draw(st.integers(1, 5)), draw(st.integers(1, 8))
    i0, j0 = draw(st.integers(0, 360 - n_lat)), draw(st.integers(0, 719))
    lat = -89.75 + 0.5 * (i0 + np.arange(n_lat))
    lon = ((j0 + np.arange(n_lon)) % 720) * 0.5 + 0.25
    if draw(st.booleans()):
        lat = lat[::-1]
    if draw(st.booleans()):
        lon = grid.wrap_lon(lon)
    if draw(st.booleans()):
        lat = lat[draw(st.permutations(range(n_lat)))]
        lon = lon[draw(st.permutations(range(n_lon)))]
    return lat, lon


def _grid_ds(lat, lon, names=("lat", "lon")) -> xr.Dataset:
    values = synth.pattern(np.arange(2), lat, grid.wrap_lon(lon))
    return xr.Dataset({"v": (("time", *names), values)},
                      coords={names[0]: lat, names[1]: lon})


@FAST
@given(half_degree_grid(), st.sampled_from([("lat", "lon"), ("latitude", "longitude")]))
def test_normalise_any_half_degree_grid(g, names):
    """Output is lat ascending and lon ascending in [-180, 180); every value keeps its cell."""
    lat, lon = g
    out = nc.normalise_grid(_grid_ds(lat, lon, names), "f.nc")
    olat, olon = out["lat"].values, out["lon"].values
    assert np.all(np.diff(olat) > 0) and np.all(np.diff(olon) > 0)
    assert olon.min() >= -180 and olon.max() < 180
    np.testing.assert_array_equal(np.sort(olat), np.sort(lat))
    np.testing.assert_allclose(olon, np.sort(grid.wrap_lon(lon)))
    np.testing.assert_array_equal(out["v"].values, synth.pattern(np.arange(2), olat, olon))


@FAST
@given(half_degree_grid(), st.floats(0.01, 0.24), st.booleans())
def test_normalise_rejects_misaligned_half_degree_grids(g, shift, on_lat):
    """A 0.5° grid whose centres are off the ±0.25, ±0.75 … positions is refused, not snapped."""
    lat, lon = g
    if on_lat:
        assume(np.all(np.abs(lat + shift) <= 90))
        lat = lat + shift
    else:
        lon = lon + shift
    with pytest.raises(InputError, match="cell centres|0.5° grid"):
        nc.normalise_grid(_grid_ds(lat, lon), "f.nc")


@FAST
@given(half_degree_grid(), st.data())
def test_normalise_rejects_a_column_in_both_conventions(g, data):
    """A grid holding one column twice, as x and x ± 360, is refused with what was found."""
    lat, lon = g
    k = data.draw(st.integers(0, lon.size - 1))
    twin = lon[k] + 360 if lon[k] < 0 else lon[k] - 360 if lon[k] >= 180 else None
    assume(twin is not None and -180 <= twin <= 360)
    with pytest.raises(InputError, match="duplicates .values in both 0–360 and ±180"):
        nc.normalise_grid(_grid_ds(lat, np.append(lon, twin)), "f.nc")


@FAST
@given(st.sampled_from([0.1, 0.25, 1.0, 2.0]), st.integers(2, 6), st.integers(-60, 60))
def test_normalise_rejects_other_resolutions(step, n, start):
    lat = start + 0.25 + step * np.arange(n)
    lon = 10.25 + 0.5 * np.arange(3)
    with pytest.raises(InputError, match="0.5° grid"):
        nc.normalise_grid(_grid_ds(lat, lon), "f.nc")


# --------------------------------------------------------------------------- whole readers


@FILES
@given(record_series(), st.integers(0, 719), st.booleans())
def test_property_grace_months_and_columns(tmp_path_factory, series, j0, wrap):
    """A JPL file with any gaps and epoch jitter, in either longitude convention: each record
    comes back at its month with its own values; the original epochs are kept."""
    present, missing, epochs = series
    lat = np.array([10.25, 10.75])
    lon = ((j0 + np.arange(3)) % 720) * 0.5 + 0.25
    file_lon = grid.wrap_lon(lon) if wrap else lon
    values = synth.pattern(np.arange(present.size), lat, file_lon) / 10  # cm, within ±10 m
    path = synth.write_jpl(tmp_path_factory.mktemp("jpl") / GRACE_NAME, lat, file_lon,
                           present, mo.format_months_missing(missing), epochs=epochs,
                           values=values)
    ds = read_grace(path)
    np.testing.assert_array_equal(ds["time"].values.astype("datetime64[M]"), present)
    np.testing.assert_array_equal(ds["epoch"].values.astype("datetime64[s]"), epochs)
    for j, x in enumerate(file_lon):
        got = ds["lwe_thickness"].sel(lon=grid.wrap_lon(x)).values  # mm
        np.testing.assert_allclose(got, 10 * values[:, :, j])


@FILES
@given(record_series(jitter_days=7.0))
def test_property_grace_wrong_months_missing_is_one_line(tmp_path_factory, series):
    """Leaving a real gap out of months_missing gives one InputError naming the file."""
    present, missing, epochs = series
    assume(missing.size > 0)
    path = synth.write_jpl(tmp_path_factory.mktemp("jpl") / GRACE_NAME, [0.25], [0.25],
                           present, mo.format_months_missing(missing[1:]), epochs=epochs)
    with pytest.raises(InputError) as info:
        read_grace(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    assert info.value.variable == "time/months_missing"


@FILES
@given(n_lat=st.integers(1, 5), i0=st.integers(0, 600), n_lon=st.integers(1, 6),
       j0=st.integers(0, 1439), wrap=st.booleans(),
       offsets=st.lists(st.integers(0, 120), min_size=1, max_size=6, unique=True))
def test_property_era5_grid_and_months(tmp_path_factory, n_lat, i0, n_lon, j0, wrap, offsets):
    """An ERA5 0.25° download over any area (lat descending as CDS writes it, lon in 0–360 or
    ±180) with months in any order: coordinates normalised, each value at its cell and
    month, and accumulations scaled by that month's own length (leap Februaries included)."""
    lat = 90.0 - 0.25 * (i0 + np.arange(n_lat))
    lon = ((j0 + np.arange(n_lon)) % 1440) * 0.25
    if wrap:
        lon = grid.wrap_lon(lon)
    assume(synth.land_of(lat, lon).any())
    months = np.array([np.datetime64("2012-01", "M") + k for k in offsets])
    (path,), fields = synth.write_era5_new(tmp_path_factory.mktemp("era5"), lat, lon, months,
                                           one_file=True)
    ds = read_era5(path)
    assert np.all(np.diff(ds["lat"].values) > 0) and np.all(np.diff(ds["lon"].values) > 0)
    np.testing.assert_array_equal(ds["time"].values.astype("datetime64[M]"), np.sort(months))
    for k, month in enumerate(months):
        days = calendar.monthrange(int(str(month)[:4]), int(str(month)[5:]))[1]
        at = ds.sel(time=month.astype("datetime64[ns]"))
        for i, y in enumerate(lat):
            for j, x in enumerate(lon):
                cell = at.sel(lat=y, lon=grid.wrap_lon(x))
                np.testing.assert_array_equal(cell["t2m"].values, fields["t2m"][k, i, j])
                np.testing.assert_allclose(cell["precip"].values,
                                           fields["tp"][k, i, j] * 1000 * days, rtol=1e-6,
                                           equal_nan=True)
