"""Month bookkeeping on JPL's real Greenland mass series (tests/data, see its README)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import DATA
from twsbench.core import months as mo

SERIES = DATA / "jpl_greenland_mass_200204_202408.txt"
# the series gives epochs as decimal years with two decimals: ±0.005 yr = ±1.83 days
ROUNDING_DAYS = 0.005 * 366


@pytest.fixture(scope="module")
def epochs() -> tuple[np.ndarray, np.ndarray]:
    rows = [line.split() for line in SERIES.read_text().splitlines()
            if line.strip() and not line.startswith("HDR")]
    years = np.array([float(r[0]) for r in rows])
    return years, mo.decimal_year_to_datetime(years)


def test_series_has_one_row_per_solution(epochs):
    years, _ = epochs
    assert years.size == 236
    assert np.all(np.diff(years) > 0)


def test_records_map_to_calendar_months_less_the_missing(epochs):
    _, t = epochs
    months = mo.assign_records(t, mo.MISSING_MONTHS)
    calendar = mo.month_range("2002-04", "2024-08")
    assert calendar.size == 269
    expected = calendar[~np.isin(calendar, mo.MISSING_MONTHS)]
    assert expected.size == 236
    np.testing.assert_array_equal(months, expected)
    assert np.unique(months).size == months.size


def test_every_epoch_within_18_days_of_its_mid_month(epochs):
    _, t = epochs
    months = mo.assign_records(t, mo.MISSING_MONTHS)
    offset = np.abs(t - mo.mid_month(months)) / np.timedelta64(1, "D")
    # within 18 days up to the series' own rounding of the epochs
    assert offset.max() <= 18.0 + ROUNDING_DAYS
    assert np.median(offset) < 5.0


def test_flooring_would_make_duplicates_and_false_gaps(epochs):
    _, t = epochs
    floored = t.astype("datetime64[M]")
    months = mo.assign_records(t, mo.MISSING_MONTHS)
    values, counts = np.unique(floored, return_counts=True)
    duplicates = values[counts > 1].astype(str).tolist()
    assert duplicates == ["2011-10", "2012-01", "2015-04", "2017-04"]
    false_gaps = np.setdiff1d(months, floored).astype(str).tolist()
    assert false_gaps == ["2011-11", "2011-12", "2015-05", "2017-03"]


def test_neighbouring_month_solutions_land_in_their_own_month(epochs):
    _, t = epochs
    months = mo.assign_records(t, mo.MISSING_MONTHS).astype(str)
    epoch_of = dict(zip(months, t.astype("datetime64[D]").astype(str), strict=True))
    assert epoch_of["2011-11"].startswith("2011-10")
    assert epoch_of["2011-12"].startswith("2012-01") or epoch_of["2011-12"] == "2011-12-31"
    assert epoch_of["2015-05"].startswith("2015-04")


def test_missing_months_are_the_33_of_the_record():
    assert mo.MISSING_MONTHS.size == 33
    assert mo.parse_months_missing(mo.MISSING_TEXT).size == 33
    gap = mo.month_range("2017-07", "2018-05")
    assert np.isin(gap, mo.MISSING_MONTHS).all()
    period = mo.month_range(mo.GRACE_START, mo.PRODUCT_END)
    assert period.size == 249
    assert (~np.isin(period, mo.MISSING_MONTHS)).sum() == 216


@pytest.mark.parametrize("text, expected", [
    ("2002-06;2002-07", ["2002-06", "2002-07"]),
    ("2018-08-2018-09", ["2018-08", "2018-09"]),
    ("2017-07-2018-05", [str(m) for m in mo.month_range("2017-07", "2018-05")]),
    ("2002-06; 2011-01 ,2018-08-2018-09", ["2002-06", "2011-01", "2018-08", "2018-09"]),
    ("", []),
])
def test_months_missing_both_token_forms(text, expected):
    assert mo.parse_months_missing(text).astype(str).tolist() == expected


@pytest.mark.parametrize("text", ["2002-6", "June 2002", "2018-09-2018-08", "2002-06/2002-07"])
def test_months_missing_rejects_bad_tokens(text):
    with pytest.raises(ValueError):
        mo.parse_months_missing(text)


def test_format_writes_the_trailing_pair_as_one_token():
    text = mo.format_months_missing(mo.MISSING_MONTHS)
    assert text.endswith(";2018-05;2018-08-2018-09")
    np.testing.assert_array_equal(mo.parse_months_missing(text), mo.MISSING_MONTHS)


def test_count_disagreeing_with_missing_months_is_an_error(epochs):
    _, t = epochs
    fewer_missing = mo.MISSING_MONTHS[mo.MISSING_MONTHS != np.datetime64("2013-03")]
    with pytest.raises(mo.BookkeepingError, match="records"):
        mo.assign_records(t, fewer_missing)
    with pytest.raises(mo.BookkeepingError):
        mo.assign_records(np.delete(t, 100), mo.MISSING_MONTHS)


def test_repeated_record_time_is_an_error(epochs):
    _, t = epochs
    with pytest.raises(mo.BookkeepingError, match="increasing"):
        mo.assign_records(np.insert(t, 10, t[10]), mo.MISSING_MONTHS)
