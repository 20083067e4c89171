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
    if "bilinear" in cache:
        return cache["bilinear"]
    m = grids.mascons
    clat, clon = m.centroids(grids.cell_lat, grids.cell_lon)
    index = np.arange(m.n_mascons)
    if grids.is_global:
        clon = np.concatenate([clon, clon - 360.0, clon + 360.0])
        clat = np.concatenate([clat, clat, clat])
        index = np.concatenate([index, index, index])
    points = np.column_stack([clon, clat])
    cells = np.column_stack([grids.cell_lon, grids.cell_lat])
    n = grids.n_cells
    if m.n_mascons < 3:
        weights = sp.csr_matrix((np.ones(n), (np.arange(n), m.cell_mascon)),
                                shape=(n, m.n_mascons))
    else:
        tri = Delaunay(points)
        simplex = tri.find_simplex(cells)
        inside = simplex >= 0
        transform = tri.transform[simplex[inside]]
        delta = cells[inside] - transform[:, 2]
        bary = np.einsum("ijk,ik->ij", transform[:, :2], delta)
        bary = np.column_stack([bary, 1.0 - bary.sum(axis=1)])
        vertices = index[tri.simplices[simplex[inside]]]
        rows = np.concatenate([np.repeat(np.flatnonzero(inside), 3),
                               np.flatnonzero(~inside)])
        cols = np.concatenate([vertices.ravel(), m.cell_mascon[~inside]])
        vals = np.concatenate([bary.ravel(), np.ones((~inside).sum())])
        weights = sp.csr_matrix((vals, (rows, cols)), shape=(n, m.n_mascons))
        weights.sum_duplicates()
    cache["bilinear"] = weights
    return weights


def interpolate(grids: Grids, values: np.ndarray) -> np.ndarray:
    """Mascon values ``(months, mascons)`` to cells ``(months, cells)``."""
    return (interpolation_matrix(grids) @ np.asarray(values).T).T
