"""Hot array kernels, written once against an array module ``xp`` (NumPy or CuPy).

Arrays put cells (or mascons) on the *last* axis and months on the first, so a month is a
contiguous row: ``x`` is ``(months, cells)``. Sparse operators are SciPy/CuPy CSR matrices.
"""

from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType

import numpy as np

#: Months per block on the CPU: SciPy needs cells first, and transposing a few months at a time
#: keeps the transpose in cache (about 1.8× faster than transposing all months at once); the
#: blocks run on a small thread pool.
MONTH_BLOCK = 16


def _blocked(x) -> bool:
    return isinstance(x, np.ndarray) and x.ndim == 2 and x.shape[0] > MONTH_BLOCK


@functools.cache
def _pool() -> ThreadPoolExecutor:
    # SciPy's sparse products release the GIL: month blocks run in parallel
    return ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1)))


def _over_blocks(n: int, work) -> None:
    list(_pool().map(work, range(0, n, MONTH_BLOCK)))


def apply_A(A, x):
    """Mascon means: ``(months, cells) -> (months, mascons)`` with ``A`` (mascons × cells)."""
    if not _blocked(x):
        return (A @ x.T).T
    out = np.empty((x.shape[0], A.shape[0]), dtype=np.result_type(A.dtype, x.dtype))

    def work(i: int) -> None:
        out[i:i + MONTH_BLOCK] = (A @ x[i:i + MONTH_BLOCK].T).T

    _over_blocks(x.shape[0], work)
    return out


def apply_AT(AT, g):
    """Adjoint: ``(months, mascons) -> (months, cells)`` with ``AT`` = ``A.T`` in CSR."""
    return (AT @ g.T).T


def spread(cell_mascon, g):
    """Repeat mascon values over their cells: ``(months, mascons) -> (months, cells)``."""
    return g[..., cell_mascon]


def deviation(A, cell_mascon, x):
    """Sub-mascon deviation ``D x = x − E A x``: removes each mascon's mean exactly."""
    if not _blocked(x):
        return x - spread(cell_mascon, apply_A(A, x))
    out = np.empty(x.shape, dtype=np.result_type(A.dtype, x.dtype))

    def work(i: int) -> None:
        block = x[i:i + MONTH_BLOCK]
        np.subtract(block, spread(cell_mascon, (A @ block.T).T), out=out[i:i + MONTH_BLOCK])

    _over_blocks(x.shape[0], work)
    return out


def regrid(w_lat, w_lon, x, xp: ModuleType = np):
    """Conservative regridding of ``(months, lat, lon)`` by separable overlap weights.

    ``w_lat`` (out_lat × in_lat) and ``w_lon`` (out_lon × in_lon) are sparse overlap weights
    (area in each direction). Missing input (NaN) is left out of each output cell's weighted
    mean; an output cell with no valid input is NaN.
    """
    valid = xp.isfinite(x)
    # a mask that is the same every month (a sea mask) needs its weights summed only once
    static = bool((valid == valid[:1]).all())
    den_static = _separable(w_lat, w_lon, valid[:1].astype(xp.float64)) if static else None
    out = xp.empty((x.shape[0], w_lat.shape[0], w_lon.shape[0]), dtype=xp.float64)
    for i in range(0, x.shape[0], 12):  # blocks of months bound the temporaries
        vb = valid[i:i + 12]
        num = _separable(w_lat, w_lon, xp.where(vb, x[i:i + 12], 0.0).astype(xp.float64))
        den = (den_static if den_static is not None  # i.e. static
               else _separable(w_lat, w_lon, vb.astype(xp.float64)))
        with np.errstate(invalid="ignore", divide="ignore"):
            out[i:i + 12] = xp.where(den > 1e-12, num / den, xp.nan)
    return out


def _separable(w_lat, w_lon, x):
    t, ny, nx = x.shape
    # latitude: (out_lat, in_lat) @ (in_lat, t·nx)
    y = w_lat @ x.transpose(1, 0, 2).reshape(ny, t * nx)
    y = y.reshape(-1, t, nx).transpose(1, 0, 2)  # (t, out_lat, nx)
    oy = y.shape[1]
    # longitude: (t·out_lat, in_lon) @ (in_lon, out_lon)
    z = (w_lon @ y.reshape(t * oy, nx).T).T
    return z.reshape(t, oy, -1)


def anomaly(x, baseline_mask, xp: ModuleType = np):
    """Subtract the mean over baseline months (``baseline_mask`` over the first axis)."""
    mean = xp.nanmean(x[baseline_mask], axis=0)
    return x - mean[None]


def standardise(x, mean, std):
    """``(x − mean) / std`` with statistics broadcast over the last axes."""
    return (x - mean) / std
