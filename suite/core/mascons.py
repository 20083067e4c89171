"""Mascon geometry and the aggregation operator ``A``.

``A`` is a sparse (mascons × land cells) matrix whose rows hold the area weights of each
mascon's land cells, normalised to sum to 1, so ``A @ x`` gives mascon means. Two operators go
the other way:

- ``A.T`` (:attr:`Mascons.AT`), the exact transpose: the adjoint, for gradients and normal
  equations (``A.T @ g`` puts ``w_i · g_m`` on cell *i*).
- ``E`` (:attr:`Mascons.E`), the transpose of ``A``'s sparsity pattern: it repeats each mascon
  value over the mascon's cells. This is what "spreading back" means in docs/architecture.md, and
  ``A @ E = I``. The sub-mascon deviation ``D = I − E A`` removes mascon means exactly
  (``A D = 0`` and ``D² = D``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from twsbench.core import geometry as grid

#: Height of the twin's mascon bands in degrees (JPL's caps are about 3°).
BAND_DEG = 3.0
#: Tiles per band at the equator (3° tiles); ``round(N · cos φ)`` elsewhere.
TILES_AT_EQUATOR = 120


def twin_tiling(lat: np.ndarray = grid.LAT, lon: np.ndarray = grid.LON) -> np.ndarray:
    """JPL-like mascon IDs for 0.5° cells: 3° latitude bands, each cut into
    ``round(120·cos φ)`` tiles of whole 0.5° cells.

    IDs run from 1, band by band from the south, west to east from -180° within a band. The
    tiling is defined on the global grid; ``lat`` and ``lon`` pick cells out of it.

    Returns
    -------
    numpy.ndarray
        ``(lat, lon)`` int32 mascon IDs (about 4,580 distinct over the globe).
    """
    ncol = grid.LON.size
    band_lat = np.arange(-90 + BAND_DEG / 2, 90, BAND_DEG)
    tiles = np.maximum(1, np.round(TILES_AT_EQUATOR * np.cos(np.deg2rad(band_lat)))).astype(int)
    first_id = np.concatenate([[1], 1 + np.cumsum(tiles)[:-1]])

    lat = np.asarray(lat, dtype=float)
    band = np.clip(((lat + 90.0) // BAND_DEG).astype(int), 0, band_lat.size - 1)
    col = np.rint((grid.wrap_lon(lon) + 180.0 - grid.RES / 2) / grid.RES).astype(int) % ncol
    ids = np.empty((lat.size, col.size), dtype=np.int32)
    for b in np.unique(band):
        # tile k of the band holds columns round(k·ncol/n) .. round((k+1)·ncol/n) - 1
        edges = np.rint(np.arange(tiles[b] + 1) * ncol / tiles[b]).astype(int)
        tile = np.searchsorted(edges, col, side="right") - 1
        ids[band == b] = first_id[b] + tile
    return ids


@dataclass(frozen=True)
class Mascons:
    """The mascons of a domain and their aggregation operator.

    Attributes
    ----------
    ids
        ``(m,)`` mascon IDs (as in the source file), sorted.
    cell_mascon
        ``(n,)`` index into ``ids`` of each land cell (cells in the order of the caller).
    weights
        ``(n,)`` area of each land cell in m².
    A
        ``(m, n)`` CSR matrix, rows = area weights of the mascon's land cells summing to 1.
    """

    ids: np.ndarray
    cell_mascon: np.ndarray
    weights: np.ndarray
    A: sp.csr_matrix

    @property
    def n_mascons(self) -> int:
        return self.ids.size

    @property
    def n_cells(self) -> int:
        return self.cell_mascon.size

    @property
    def AT(self) -> sp.csr_matrix:
        """``(n, m)`` exact transpose of ``A`` (CSR)."""
        return self.A.T.tocsr()

    @property
    def E(self) -> sp.csr_matrix:
        """``(n, m)`` indicator of each cell's mascon: ``E @ g`` spreads mascon values."""
        n, m = self.n_cells, self.n_mascons
        return sp.csr_matrix(
            (np.ones(n), (np.arange(n), self.cell_mascon)), shape=(n, m)
        )

    def mean(self, x: np.ndarray) -> np.ndarray:
        """Mascon means of ``x`` with cells on the first axis (``A @ x``)."""
        return self.A @ x

    def spread(self, g: np.ndarray) -> np.ndarray:
        """Mascon values ``g`` (mascons on the first axis) repeated onto their cells."""
        return np.asarray(g)[self.cell_mascon]

    def deviation(self, x: np.ndarray) -> np.ndarray:
        """Sub-mascon deviation ``x − E A x``: the part of ``x`` with zero mascon means."""
        return x - self.spread(self.mean(x))

    def area(self) -> np.ndarray:
        """``(m,)`` land area of each mascon in m²."""
        return np.bincount(self.cell_mascon, weights=self.weights, minlength=self.n_mascons)

    def centroids(self, lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Area-weighted centroid (lat, lon) of each mascon's land cells.

        ``lat``/``lon`` are the cells' coordinates; longitudes are averaged as unit vectors so
        that a mascon across the antimeridian gets a sensible centre.
        """
        w = self.weights
        area = self.area()
        clat = np.bincount(self.cell_mascon, weights=w * lat, minlength=self.n_mascons) / area
        rad = np.deg2rad(lon)
        x = np.bincount(self.cell_mascon, weights=w * np.cos(rad), minlength=self.n_mascons)
        y = np.bincount(self.cell_mascon, weights=w * np.sin(rad), minlength=self.n_mascons)
        return clat, np.rad2deg(np.arctan2(y, x))


def build_mascons(cell_ids: np.ndarray, weights: np.ndarray) -> Mascons:
    """Build the operator from each land cell's mascon ID and area weight.

    Parameters
    ----------
    cell_ids
        ``(n,)`` mascon ID of each land cell (any integer labels).
    weights
        ``(n,)`` non-negative area weight of each cell (m², or any proportional unit).

    Returns
    -------
    Mascons
    """
    cell_ids = np.asarray(cell_ids)
    weights = np.asarray(weights, dtype=float)
    if cell_ids.shape != weights.shape or cell_ids.ndim != 1:
        raise ValueError(f"expected two equal 1-D arrays, found {cell_ids.shape} and "
                         f"{weights.shape}")
    if np.any(weights < 0) or not np.all(np.isfinite(weights)):
        raise ValueError("expected finite non-negative cell weights")
    ids, cell_mascon = np.unique(cell_ids, return_inverse=True)
    totals = np.bincount(cell_mascon, weights=weights, minlength=ids.size)
    if np.any(totals <= 0):
        raise ValueError("expected every mascon to have positive land area")
    n = cell_ids.size
    A = sp.csr_matrix(
        (weights / totals[cell_mascon], (cell_mascon, np.arange(n))), shape=(ids.size, n)
    )
    A.sort_indices()
    return Mascons(ids=ids, cell_mascon=cell_mascon.astype(np.int64), weights=weights, A=A)


def mascons_on_grid(
    mascon_id: np.ndarray, land: np.ndarray, lat: np.ndarray, res: float = grid.RES
) -> tuple[Mascons, np.ndarray]:
    """Mascons of the land cells of a ``(lat, lon)`` grid.

    Parameters
    ----------
    mascon_id
        ``(lat, lon)`` mascon ID of every cell (JPL's ``mascon_ID`` or :func:`twin_tiling`).
    land
        ``(lat, lon)`` boolean land mask; only these cells enter ``A``.
    lat
        Latitude centres (for the cell areas).

    Returns
    -------
    mascons, flat_index
        The operator and the flat (row-major) index of each land cell in the grid.
    """
    land = np.asarray(land, dtype=bool)
    flat = np.flatnonzero(land)
    area = np.broadcast_to(grid.cell_area(lat, res, res)[:, None], land.shape).ravel()[flat]
    ids = np.asarray(mascon_id).ravel()[flat]
    if not np.all(np.isfinite(ids)):
        raise ValueError("expected a mascon ID on every land cell, found missing IDs")
    return build_mascons(ids.astype(np.int64), area), flat
