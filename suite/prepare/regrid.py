"""Conservative regridding weights between regular latitude–longitude grids.

Weights are separable: the overlap of cells in ``sin(latitude)`` (proportional to area) and in
longitude (degrees, periodic). With them, :func:`twsbench.core.kernels.regrid` returns the
area-weighted mean of the source cells inside each target cell, so area-weighted means are
preserved.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from twsbench.core import geometry as grid


def _edges(centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    step = grid.regular_spacing(np.sort(centres)) if centres.size > 1 else None
    if step is None:
        diffs = np.diff(np.sort(centres))
        step = float(diffs.min()) if diffs.size else grid.RES
    return centres - step / 2, centres + step / 2


def lat_weights(src: np.ndarray, dst: np.ndarray) -> sp.csr_matrix:
    """``(len(dst), len(src))`` overlap of latitude bands in ``sin φ`` (area) units."""
    s_lo, s_hi = (np.sin(np.deg2rad(np.clip(e, -90, 90))) for e in _edges(np.asarray(src)))
    d_lo, d_hi = (np.sin(np.deg2rad(np.clip(e, -90, 90))) for e in _edges(np.asarray(dst)))
    overlap = np.minimum(d_hi[:, None], s_hi[None]) - np.maximum(d_lo[:, None], s_lo[None])
    return sp.csr_matrix(np.where(overlap > 1e-15, overlap, 0.0))


def lon_weights(src: np.ndarray, dst: np.ndarray) -> sp.csr_matrix:
    """``(len(dst), len(src))`` overlap of longitude intervals in degrees, periodic."""
    s_lo, s_hi = _edges(np.asarray(src, dtype=float))
    d_lo, d_hi = _edges(np.asarray(dst, dtype=float))
    total = np.zeros((d_lo.size, s_lo.size))
    for shift in (-360.0, 0.0, 360.0):
        overlap = (np.minimum(d_hi[:, None], s_hi[None] + shift)
                   - np.maximum(d_lo[:, None], s_lo[None] + shift))
        total += np.clip(overlap, 0.0, None)
    return sp.csr_matrix(np.where(total > 1e-12, total, 0.0))
