"""A real land mask for the twin world and the target grid.

Land fractions come from the 1-km GLOBE-based mask shipped in the ``global-land-mask`` package
(no download). They are reduced once to 1/8° and cached; any grid whose cell edges lie on
multiples of 1/8° (0.5°, and ERA5's 0.25° cells centred on multiples of 0.25°) is then an exact
block mean. Greenland and Antarctica (south of 60°S) are not part of the suite's land.
"""

from __future__ import annotations

import functools
import logging

import numpy as np

from twsbench.core import cache

log = logging.getLogger(__name__)

#: Resolution of the cached land-fraction grid in degrees.
FINE = 0.125
_PER_FINE = 15  # 1/120° source pixels per 1/8° cell

#: Greenland outline (lon, lat), coarse but clear of Ellesmere Island and Iceland.
GREENLAND = np.array([
    (-44.0, 59.0), (-53.0, 63.0), (-57.0, 67.0), (-61.0, 71.0), (-67.0, 75.5),
    (-73.5, 78.3), (-66.0, 80.6), (-60.0, 82.3), (-40.0, 84.5), (-10.0, 84.0),
    (-10.0, 73.0), (-18.0, 70.5), (-26.0, 68.5), (-32.0, 66.0), (-38.0, 64.0),
    (-42.0, 59.5),
])
#: Antarctica: everything south of this latitude is excluded.
ANTARCTIC_LIMIT = -60.0
#: A 0.5° cell is land when at least this share of it is land.
LAND_THRESHOLD = 0.5


@functools.cache
def _fine_fraction() -> np.ndarray:
    """Land fraction on the global 1/8° grid, lat ascending from -90, lon from -180 (uint8 %)."""
    path = cache.cache_dir() / "landmask" / "land_fraction_0125deg_v2.npy"
    if path.exists():
        return np.load(path)
    log.info("building the 1/8° land fraction from global-land-mask (once)")
    from global_land_mask import globe  # 1 GB boolean grid: import only when needed

    ocean = globe._mask  # (21600, 43200) True on water; lat descending from 90, lon from -180
    rows, cols = ocean.shape[0] // _PER_FINE, ocean.shape[1] // _PER_FINE
    counts = np.zeros((rows, cols), dtype=np.float32)
    step = 240  # fine rows per block keeps the temporary small
    for r0 in range(0, rows, step):
        block = ocean[r0 * _PER_FINE:(r0 + step) * _PER_FINE]
        counts[r0:r0 + step] = block.reshape(-1, _PER_FINE, cols, _PER_FINE).sum(
            axis=(1, 3), dtype=np.int32)
    percent = np.round(100 - 100 * counts / _PER_FINE**2).astype(np.uint8)[::-1].copy()
    cache.atomic_save_npy(path, percent)
    return percent


def land_fraction(lat: np.ndarray, lon: np.ndarray, res: float) -> np.ndarray:
    """Share of land (0..1) in each cell of a regular grid.

    Parameters
    ----------
    lat, lon
        Cell centres in degrees (any order; lon in [-180, 180) or [0, 360)).
    res
        Cell size in degrees; a multiple of 1/8°, with cell edges on multiples of 1/8°.

    Returns
    -------
    numpy.ndarray
        ``(lat, lon)`` float32 land fraction.
    """
    k = res / FINE
    if abs(k - round(k)) > 1e-9:
        raise ValueError(f"expected a resolution that is a multiple of {FINE}°, found {res}°")
    k = int(round(k))
    fine = _fine_fraction().astype(np.float32) / 100.0
    lat = np.asarray(lat, dtype=float)
    lon = (np.asarray(lon, dtype=float) + 180.0) % 360.0 - 180.0
    i0 = np.rint((lat - res / 2 + 90.0) / FINE).astype(int)
    j0 = np.rint((lon - res / 2 + 180.0) / FINE).astype(int)
    offsets = np.arange(k)
    ii = i0[:, None] + offsets[None, :]  # (nlat, k)
    jj = (j0[:, None] + offsets[None, :]) % fine.shape[1]  # longitude wraps
    valid = (ii >= 0) & (ii < fine.shape[0])  # cells reaching past a pole
    rows = fine[np.clip(ii, 0, fine.shape[0] - 1)] * valid[..., None]  # (nlat, k, nlon_fine)
    block = rows[:, :, jj]  # (nlat, k, nlon, k)
    return (block.sum(axis=(1, 3)) / (k * k)).astype(np.float32)


def _inside(lon: np.ndarray, lat: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Point-in-polygon by ray casting (even-odd rule)."""
    inside = np.zeros(np.broadcast(lon, lat).shape, dtype=bool)
    x0, y0 = polygon[-1]
    for x1, y1 in polygon:
        crosses = (y1 > lat) != (y0 > lat)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_at = x0 + (lat - y0) * (x1 - x0) / (y1 - y0)
        inside ^= crosses & (lon < x_at)
        x0, y0 = x1, y1
    return inside


def excluded_ice(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """``(lat, lon)`` True on Greenland and Antarctica."""
    lon2, lat2 = np.meshgrid(np.asarray(lon, float), np.asarray(lat, float))
    lon2 = (lon2 + 180.0) % 360.0 - 180.0
    return (lat2 < ANTARCTIC_LIMIT) | _inside(lon2, lat2, GREENLAND)


def land_mask(lat: np.ndarray, lon: np.ndarray, res: float = 0.5) -> np.ndarray:
    """The suite's land: land fraction ≥ 0.5, Greenland and Antarctica removed."""
    return (land_fraction(lat, lon, res) >= LAND_THRESHOLD) & ~excluded_ice(lat, lon)
