"""Reading inputs: readers for the real input files (each returns the internal conventions),
the summary of what they hold (`inspect`), and the requests that fetch them."""

from __future__ import annotations

from twsbench.inputs.era5 import read_era5
from twsbench.inputs.grace import read_grace
from twsbench.inputs.truth import read_truth
from twsbench.inputs.wghm import read_wghm

__all__ = ["read_era5", "read_grace", "read_truth", "read_wghm"]
