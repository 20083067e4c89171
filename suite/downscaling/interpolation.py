"""Linear interpolation from mascon centroids to 0.5° cell centres.

Centroids are scattered points, so "bilinear" interpolation here is its natural form for
scattered data: linear (barycentric) interpolation on the Delaunay triangulation of the
centroids in (lon, lat) degrees. On a global domain the centroids are repeated at ±360° so
that longitude wraps. A cell outside the triangulation takes its own mascon's value. The
result is a sparse (cells × mascons) matrix applied to every month at once.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.spatial import Delaunay

from twsbench.prepare.grids import Grids


def interpolation_matrix(grids: Grids) -> sp.csr_matrix:
    """``(cells, mascons)`` weights: row *i* interpolates mascon values at cell *i*."""
    cache = grids.__dict__.setdefault("_interp_cache", {})
    if "bilinear" not in cache:
        m = grids.mascons
        clat, clon = m.centroids(grids.cell_lat, grids.cell_lon)
        cache["bilinear"] = centroid_weights(clat, clon, grids.cell_lat, grids.cell_lon,
                                             m.cell_mascon, grids.is_global)
    return cache["bilinear"]


def centroid_weights(clat: np.ndarray, clon: np.ndarray, cell_lat: np.ndarray,
                     cell_lon: np.ndarray, cell_mascon: np.ndarray, wrap: bool
                     ) -> sp.csr_matrix:
    """``(cells, mascons)`` linear-interpolation weights from the centroids ``clat``/``clon``
    to the cells; a cell outside the triangulation takes its own mascon's value
    (``cell_mascon``); ``wrap``: longitude is periodic (global grids)."""
    n_mascons = clat.size
    index = np.arange(n_mascons)
    if wrap:
        clon = np.concatenate([clon, clon - 360.0, clon + 360.0])
        clat = np.concatenate([clat, clat, clat])
        index = np.concatenate([index, index, index])
    points = np.column_stack([clon, clat])
    cells = np.column_stack([cell_lon, cell_lat])
    n = cell_lat.size
    if n_mascons < 3:
        return sp.csr_matrix((np.ones(n), (np.arange(n), cell_mascon)), shape=(n, n_mascons))
    tri = Delaunay(points)
    simplex = tri.find_simplex(cells)
    inside = simplex >= 0
    transform = tri.transform[simplex[inside]]
    delta = cells[inside] - transform[:, 2]
    bary = np.einsum("ijk,ik->ij", transform[:, :2], delta)
    bary = np.column_stack([bary, 1.0 - bary.sum(axis=1)])
    vertices = index[tri.simplices[simplex[inside]]]
    rows = np.concatenate([np.repeat(np.flatnonzero(inside), 3), np.flatnonzero(~inside)])
    cols = np.concatenate([vertices.ravel(), cell_mascon[~inside]])
    vals = np.concatenate([bary.ravel(), np.ones((~inside).sum())])
    weights = sp.csr_matrix((vals, (rows, cols)), shape=(n, n_mascons))
    weights.sum_duplicates()
    return weights


def interpolate(grids: Grids, values: np.ndarray) -> np.ndarray:
    """Mascon values ``(months, mascons)`` to cells ``(months, cells)``."""
    return (interpolation_matrix(grids) @ np.asarray(values).T).T
