"""Random building blocks of the twin world: smooth fields, AR(1) series, blobs and lines."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def smooth_field(rng: np.random.Generator, shape: tuple[int, ...], length_cells: float,
                 *, wrap_lon: bool = False) -> np.ndarray:
    """Unit-variance Gaussian random field(s) with a Gaussian correlation of ``length_cells``.

    The last two axes are (lat, lon); leading axes are independent draws. ``wrap_lon`` makes
    the field periodic in longitude (global grids).
    """
    noise = rng.standard_normal(shape).astype(np.float32)
    sigma = [0.0] * (len(shape) - 2) + [length_cells, length_cells]
    modes = ["nearest"] * (len(shape) - 1) + ["wrap" if wrap_lon else "reflect"]
    field = ndimage.gaussian_filter(noise, sigma=sigma, mode=modes, truncate=3.0)
    axes = (-2, -1)
    field -= field.mean(axis=axes, keepdims=True)
    std = field.std(axis=axes, keepdims=True)
    return field / np.where(std > 0, std, 1.0)


def multiscale_field(rng: np.random.Generator, shape: tuple[int, ...],
                     lengths_cells: tuple[float, ...], *, wrap_lon: bool = False) -> np.ndarray:
    """Equal-weight sum of smooth fields at several correlation lengths, unit variance."""
    total = sum(smooth_field(rng, shape, length, wrap_lon=wrap_lon) for length in lengths_cells)
    return total / np.sqrt(len(lengths_cells))


def ar1_series(rng: np.random.Generator, n: int, rho: float, *, burn_in: int = 120
               ) -> np.ndarray:
    """A stationary unit-variance AR(1) series of length ``n``."""
    eps = rng.standard_normal(n + burn_in)
    x = np.empty_like(eps)
    x[0] = eps[0]
    scale = np.sqrt(1.0 - rho**2)
    for k in range(1, x.size):
        x[k] = rho * x[k - 1] + scale * eps[k]
    x = x[burn_in:]
    return (x - x.mean()) / x.std()


def ar1_fields(fields: np.ndarray, rho: float) -> np.ndarray:
    """Make independent unit-variance fields (time first) AR(1)-correlated in time."""
    out = np.empty_like(fields)
    out[0] = fields[0]
    scale = np.float32(np.sqrt(1.0 - rho**2))
    for k in range(1, fields.shape[0]):
        out[k] = np.float32(rho) * out[k - 1] + scale * fields[k]
    return out


def gaussian_blob(lat2: np.ndarray, lon2: np.ndarray, lat0: float, lon0: float,
                  radius_deg: float) -> np.ndarray:
    """``exp(-d²/2r²)`` with d the great-circle-ish distance in degrees (lon scaled by cos φ)."""
    dlon = (lon2 - lon0 + 180.0) % 360.0 - 180.0
    d2 = (lat2 - lat0) ** 2 + (dlon * np.cos(np.deg2rad(lat0))) ** 2
    return np.exp(-0.5 * d2 / radius_deg**2).astype(np.float32)


def random_paths(rng: np.random.Generator, land: np.ndarray, n_paths: int, steps: int
                 ) -> np.ndarray:
    """River-like corridors: random walks over land cells with persistent heading."""
    ny, nx = land.shape
    out = np.zeros(land.shape, dtype=np.float32)
    cells = np.argwhere(land)
    if cells.size == 0:
        return out
    for start in cells[rng.integers(0, len(cells), n_paths)]:
        y, x = (float(v) for v in start)
        heading = rng.uniform(0, 2 * np.pi)
        for _ in range(steps):
            iy, ix = int(round(y)), int(round(x)) % nx
            if not (0 <= iy < ny) or not land[iy, ix]:
                break
            out[iy, ix] = 1.0
            heading += rng.normal(0, 0.35)
            y += np.sin(heading)
            x += np.cos(heading)
    return out
