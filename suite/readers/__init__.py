"""Readers for the real input files; each returns the suite's internal conventions."""

from __future__ import annotations

from suite.readers.era5 import read_era5
from suite.readers.grace import read_grace
from suite.readers.truth import read_truth
from suite.readers.wghm import read_wghm

__all__ = ["read_era5", "read_grace", "read_truth", "read_wghm"]
