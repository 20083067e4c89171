"""Month bookkeeping: calendar months, JPL's ``months_missing`` and record-to-month assignment.

GRACE/GRACE-FO solutions are dated at the middle of their data span, which is sometimes in the
neighbouring calendar month (the November 2011 solution is dated about 30 October 2011).
Flooring record times to months therefore produces duplicates and false gaps. JPL's rule, used
here, is that record *k* belongs to the *k*-th calendar month from the first one that is not
listed in ``months_missing``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import numpy as np

#: First calendar month of the GRACE record.
GRACE_START = np.datetime64("2002-04", "M")
#: Last month of the suite's product period.
PRODUCT_END = np.datetime64("2022-12", "M")
#: Baseline of every anomaly (JPL's ``time_mean_removed = "2004.000 to 2009.999"``).
BASELINE = (np.datetime64("2004-01", "M"), np.datetime64("2009-12", "M"))

#: The 33 calendar months of 2002-04 .. 2022-12 without a JPL solution.
MISSING_TEXT = (
    "2002-06;2002-07;2003-06;2011-01;2011-06;2012-05;2012-10;2013-03;2013-08;2013-09;2014-02;"
    "2014-07;2014-12;2015-06;2015-10;2015-11;2016-04;2016-09;2016-10;2017-02;2017-07;2017-08;"
    "2017-09;2017-10;2017-11;2017-12;2018-01;2018-02;2018-03;2018-04;2018-05;2018-08-2018-09"
)

#: Largest distance, in days, allowed between a record's epoch and the middle of its assigned
#: month. Real solutions lie within about 18 days (the May 2015 solution is centred on
#: 27 April); a record assigned one month off lies about 30 days away.
EPOCH_TOLERANCE_DAYS = 22.0

class BookkeepingError(ValueError):
    """Records that cannot be matched to months; carries what was expected and what was found."""

    def __init__(self, expected: str, found: str):
        self.expected, self.found = expected, found
        super().__init__(f"expected {expected}, found {found}")


_TOKEN = re.compile(r"^(\d{4})-(\d{2})(?:-(\d{4})-(\d{2}))?$")


def month_range(first: np.datetime64 | str, last: np.datetime64 | str) -> np.ndarray:
    """Calendar months ``first .. last`` inclusive, as ``datetime64[M]``."""
    # numpy's stubs have no (datetime64, unit) overload; the conversion works at runtime
    start = np.datetime64(first, "M")  # type: ignore[call-overload]
    stop = np.datetime64(last, "M")  # type: ignore[call-overload]
    return np.arange(start, stop + 1, dtype="datetime64[M]")


def parse_months_missing(text: str) -> np.ndarray:
    """Parse JPL's ``months_missing`` attribute.

    Tokens are separated by ``;`` (or commas/whitespace) and are either ``YYYY-MM`` or a range
    ``YYYY-MM-YYYY-MM`` (JPL writes the last gap as ``2018-08-2018-09``).

    Returns
    -------
    numpy.ndarray
        Sorted unique ``datetime64[M]`` months.

    Raises
    ------
    ValueError
        A token that is neither form, or a range that runs backwards.
    """
    months: list[np.ndarray] = []
    for token in re.split(r"[;,\s]+", text.strip()):
        if not token:
            continue
        match = _TOKEN.match(token)
        if match is None:
            raise ValueError(f"token {token!r} is neither YYYY-MM nor YYYY-MM-YYYY-MM")
        y0, m0, y1, m1 = match.groups()
        first = np.datetime64(f"{y0}-{m0}", "M")
        last = np.datetime64(f"{y1}-{m1}", "M") if y1 else first
        if last < first:
            raise ValueError(f"range {token!r} runs backwards")
        months.append(month_range(first, last))
    if not months:
        return np.array([], dtype="datetime64[M]")
    return np.unique(np.concatenate(months))


def format_months_missing(months: Iterable[np.datetime64]) -> str:
    """Write months the way JPL does: ``;``-separated ``YYYY-MM``; the final run of two or more
    consecutive months after the last single gap as one ``YYYY-MM-YYYY-MM`` token."""
    # numpy's stubs have no (datetime64, unit) overload; the conversion works at runtime
    months = sorted(np.datetime64(m, "M") for m in months)  # type: ignore[call-overload]
    tokens = [str(m) for m in months]
    # JPL writes only the trailing pair as a range; reproduce that quirk exactly.
    if len(months) >= 2 and months[-1] - months[-2] == 1 and (
        len(months) < 3 or months[-2] - months[-3] > 1
    ):
        tokens[-2:] = [f"{months[-2]}-{months[-1]}"]
    return ";".join(tokens)


MISSING_MONTHS = parse_months_missing(MISSING_TEXT)


def mid_month(months: np.ndarray) -> np.ndarray:
    """The middle of each calendar month as ``datetime64[s]``."""
    months = np.asarray(months, dtype="datetime64[M]")
    start = months.astype("datetime64[s]")
    end = (months + 1).astype("datetime64[s]")
    return start + (end - start) // 2


def nearest_month(epochs: np.ndarray) -> np.ndarray:
    """The calendar month whose middle is nearest to each epoch."""
    epochs = np.asarray(epochs, dtype="datetime64[s]")
    floor = epochs.astype("datetime64[M]")
    candidates = np.stack([floor - 1, floor, floor + 1])
    distance = np.abs(mid_month(candidates) - epochs[None, :])
    return candidates[np.argmin(distance, axis=0), np.arange(epochs.size)]


def assign_records(
    epochs: Sequence[np.datetime64] | np.ndarray,
    missing: np.ndarray,
    *,
    first: np.datetime64 | None = None,
    tolerance_days: float = EPOCH_TOLERANCE_DAYS,
) -> np.ndarray:
    """Assign GRACE records to calendar months by record order.

    Parameters
    ----------
    epochs
        Record times (the solutions' mid-span dates), in file order.
    missing
        Calendar months without a solution (from ``months_missing``).
    first
        Month of the first record; by default the month whose middle is nearest to the first
        epoch.
    tolerance_days
        Largest allowed distance between an epoch and the middle of its assigned month.

    Returns
    -------
    numpy.ndarray
        ``datetime64[M]`` month of each record.

    Raises
    ------
    BookkeepingError
        When the records disagree with ``months_missing``: a record then lies about a month
        away from the month it is assigned (the message says what was expected and found).
    """
    epochs = np.asarray(epochs, dtype="datetime64[s]")
    if epochs.size == 0:
        raise BookkeepingError("at least one record", "none")
    if np.any(np.diff(epochs) <= np.timedelta64(0, "s")):
        raise BookkeepingError("strictly increasing record times",
                               "a repeated or out-of-order time")
    missing = np.asarray(missing, dtype="datetime64[M]")
    # numpy's stubs have no (datetime64, unit) overload; the conversion works at runtime
    first = (nearest_month(epochs[:1])[0] if first is None
             else np.datetime64(first, "M"))  # type: ignore[call-overload]
    # record k is the k-th month from `first` not listed missing; a months_missing that
    # disagrees with the records shifts every later record by a month, which the distance
    # check below catches (the last record may be dated in the following month)
    calendar = month_range(first, first + epochs.size + missing.size)
    present = calendar[~np.isin(calendar, missing)][: epochs.size]
    offset = np.abs(epochs - mid_month(present)) / np.timedelta64(1, "D")
    worst = int(np.argmax(offset))
    if offset[worst] > tolerance_days:
        listed = int(np.isin(missing, month_range(first, present[-1])).sum())
        raise BookkeepingError(
            f"records in order over the months not listed in months_missing, each within "
            f"{tolerance_days:g} days of its month's middle ({epochs.size} records from "
            f"{first} with {listed} listed missing end in {present[-1]}, but the last record "
            f"is dated {epochs[-1].astype('datetime64[D]')})",
            f"record {worst + 1} dated {epochs[worst].astype('datetime64[D]')}, "
            f"{offset[worst]:.0f} days from {present[worst]}")
    return present


def decimal_year_to_datetime(years: np.ndarray) -> np.ndarray:
    """Decimal years (``2002.29``) to ``datetime64[s]``, as a fraction of that year's length."""
    years = np.asarray(years, dtype=float)
    whole = np.floor(years).astype(int)
    start = (whole - 1970).astype("datetime64[Y]").astype("datetime64[s]")
    end = (whole - 1969).astype("datetime64[Y]").astype("datetime64[s]")
    length = (end - start).astype(float)
    return start + np.round((years - whole) * length).astype("timedelta64[s]")


def months_to_datetime64(months: np.ndarray) -> np.ndarray:
    """``datetime64[M]`` months to ``datetime64[ns]`` month starts (the internal time axis)."""
    return np.asarray(months, dtype="datetime64[M]").astype("datetime64[ns]")
