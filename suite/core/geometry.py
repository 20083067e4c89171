"""The 0.5° target grid: cell centres, bounds, areas and coordinate normalisation."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

#: Target resolution in degrees.
RES = 0.5
#: Mean Earth radius in metres (for cell areas).
EARTH_RADIUS_M = 6_371_008.8

#: Global 0.5° cell centres, latitude ascending and longitude in [-180, 180).
LAT = np.arange(-89.75, 90.0, RES)
LON = np.arange(-179.75, 180.0, RES)


def centres(start: float, stop: float, res: float = RES) -> np.ndarray:
    """Cell centres of the cells covering ``[start, stop]`` (edges on multiples of ``res``)."""
    lo = np.floor(start / res + 1e-9) * res
    hi = np.ceil(stop / res - 1e-9) * res
    return np.arange(lo + res / 2, hi, res)


def bounds(c: np.ndarray, res: float = RES) -> np.ndarray:
    """``(n, 2)`` cell edges of regularly spaced centres ``c``."""
    c = np.asarray(c, dtype=float)
    return np.stack([c - res / 2, c + res / 2], axis=-1)


def cell_area(lat: np.ndarray, res_lat: float = RES, res_lon: float = RES) -> np.ndarray:
    """Area in m² of a grid cell at each latitude centre, from the cell's bounds.

    ``R² · Δλ · (sin φ_north − sin φ_south)``, clipped at the poles.
    """
    lat = np.asarray(lat, dtype=float)
    north = np.deg2rad(np.clip(lat + res_lat / 2, -90, 90))
    south = np.deg2rad(np.clip(lat - res_lat / 2, -90, 90))
    return EARTH_RADIUS_M**2 * np.deg2rad(res_lon) * (np.sin(north) - np.sin(south))


def wrap_lon(lon: np.ndarray) -> np.ndarray:
    """Longitudes mapped to [-180, 180)."""
    return (np.asarray(lon, dtype=float) + 180.0) % 360.0 - 180.0


def is_aligned(c: np.ndarray, res: float = RES, atol: float = 1e-6) -> bool:
    """Whether centres sit on ``res``-cells with edges on multiples of ``res`` (±0.25, ±0.75…)."""
    c = np.asarray(c, dtype=float)
    frac = (c / res - 0.5) - np.round(c / res - 0.5)
    return bool(np.all(np.abs(frac) * res < atol))


def regular_spacing(c: np.ndarray) -> float | None:
    """The spacing of a regularly spaced 1-D coordinate, or None when it is not regular."""
    c = np.asarray(c, dtype=float)
    if c.size < 2:
        return None
    step = np.diff(c)
    if np.allclose(step, step[0], rtol=0, atol=1e-6 * max(1.0, abs(step[0]))):
        return float(abs(step[0]))
    return None


def cyclic_columns(used: npt.ArrayLike) -> np.ndarray:
    """The shortest run of columns (cyclic in longitude) covering every used column: the
    complement of the widest run of unused ones. Indices in order, possibly wrapping."""
    used = np.asarray(used, dtype=bool)
    if used.all() or not used.any():
        return np.arange(used.size)
    free = ~used
    best_len, best_end, run = 0, 0, 0
    for k in range(2 * free.size):
        run = run + 1 if free[k % free.size] else 0
        if best_len < run <= free.size:
            best_len, best_end = run, k % free.size
    start = (best_end + 1) % free.size
    return (start + np.arange(free.size - best_len)) % free.size
