"""The twin world: a synthetic 0.5° truth on real geography, and the inputs derived from it.

The truth holds what the real inputs also see (seasonal cycle, interannual modes, sub-mascon
variability) and what the models and the reanalysis miss (groundwater-depletion hotspots,
glacier loss, reservoir filling). GRACE-like mascon means, a WaterGAP-like model and ERA5-like
reanalysis fields are derived from it the way the real ones relate to reality, with errors of
their own whose size is set by the realism level (:data:`LEVELS`). Same domain, seed and level,
same arrays.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from twsbench.core import geometry as grid
from twsbench.core import landmask
from twsbench.core import months as mo
from twsbench.core.config import Axes
from twsbench.core.domains import Domain
from twsbench.core.errors import ConfigError
from twsbench.core.mascons import Mascons, build_mascons, twin_tiling
from twsbench.twin import fields as fx

log = logging.getLogger(__name__)

#: Months the twin's truth covers (whole years, like a CDS request).
MONTHS = mo.month_range("2002-01", "2022-12")
#: Months of the WaterGAP-like file (the real 2.2e GSWP3-ERA5 file covers 1901-2022).
WGHM_MONTHS = mo.month_range("1901-01", "2022-12")
#: Reference year of the trends.
TREND_ORIGIN = 2007.0

# Depletion hotspots (lat, lon, radius °, trend mm/yr): NW India, Ganges, Central Valley,
# High Plains, North China Plain, Mesopotamia, Saudi Arabia, Nubian Sandstone.
KNOWN_HOTSPOTS = [
    (29.5, 76.0, 1.0, -28.0), (26.0, 84.5, 0.8, -15.0), (36.5, -119.5, 0.9, -20.0),
    (36.5, -101.5, 0.9, -12.0), (37.0, 115.5, 1.0, -18.0), (33.0, 45.0, 1.0, -14.0),
    (27.0, 45.0, 0.9, -10.0), (28.0, 24.0, 0.9, -6.0),
]
# Glacier regions (lat, lon, radius °, trend mm/yr): Himalaya arc, Karakoram, Tien Shan,
# Nyainqentanglha, Alaska, Patagonia, Canadian Arctic, Svalbard, Alps, Iceland.
KNOWN_GLACIERS = [
    (28.0, 86.5, 0.7, -45.0), (29.5, 81.5, 0.6, -40.0), (31.0, 78.5, 0.6, -35.0),
    (35.7, 76.5, 0.7, -8.0), (42.2, 79.5, 0.7, -30.0), (30.2, 94.5, 0.7, -50.0),
    (61.0, -144.0, 1.0, -90.0), (-49.0, -73.5, 0.8, -80.0), (79.5, -80.0, 1.2, -40.0),
    (78.8, 17.0, 0.8, -35.0), (46.5, 9.0, 0.5, -40.0), (64.5, -18.0, 0.8, -60.0),
]


@dataclass(frozen=True)
class Level:
    """How strongly a twin's inputs relate to its truth (one realism level).

    Model errors (WaterGAP-like and ERA5-like, each its own draw) and GRACE errors; the
    README's "Realism levels" table gives each number's source or marks it as chosen.
    """

    zone_scale: float  # × the climate-zone errors of :data:`ZONES` (log amplitude and phase)
    amp_noise: float  # sd of the model's own log amplitude error (sub-mascon to regional)
    phase_noise: float  # sd of the model's own phase error, months
    wet_share: float  # share of the truth's wetlands and river corridors the model has
    pattern_corr: float  # correlation of the model's interannual patterns with the truth's
    own_mode: float  # amplitude (mm) of the model's own interannual mode
    variability_corr: float  # correlation of the model's sub-mascon variability with the truth's
    pluri_amp: float  # scale of the truth's pluri-annual signals (drought and wet spells)
    pluri_seen: float  # share of them the model reproduces
    grace_rho: float  # lag-1 autocorrelation of GRACE errors (monthly AR(1))
    sigma_ratio: float  # median of actual error / stated σ over mascons
    sigma_spread: float  # lognormal sd of that ratio across mascons
    leakage: float  # share of a mascon's value blurred from its ~300-km surroundings
    damping: float  # largest damping of a low-variance mascon's signal
    #: how much of the truth's depletion and reservoir trends WaterGAP carries at this level
    #: (its point on the ``human_ratio`` axis; a world's own ``human_ratio`` replaces it)
    human_ratio: float | None = None


#: The realism levels. ``optimistic`` is the construction of twsbench ≤ 0.x: the model is a
#: scaled copy of the truth's parts and GRACE's noise is white with exactly its stated size
#: (its fields are unused; :func:`build_world` keeps that construction bit for bit).
LEVELS: dict[str, Level | None] = {
    "optimistic": None,
    "realistic": Level(zone_scale=1.0, amp_noise=0.3, phase_noise=0.6, wet_share=0.4,
                       pattern_corr=0.5, own_mode=30.0, variability_corr=0.3, pluri_amp=1.0,
                       pluri_seen=0.5, grace_rho=0.8, sigma_ratio=1.0, sigma_spread=0.35,
                       leakage=0.15, damping=0.2, human_ratio=1.0),
    "pessimistic": Level(zone_scale=1.5, amp_noise=0.5, phase_noise=1.2, wet_share=0.2,
                         pattern_corr=0.3, own_mode=40.0, variability_corr=0.1, pluri_amp=1.4,
                         pluri_seen=0.3, grace_rho=0.7, sigma_ratio=1.25, sigma_spread=0.5,
                         leakage=0.25, damping=0.35, human_ratio=0.5),
}

#: Climate zones of the twin and of the calibration report: cold (mean 2-m temperature below
#: 5 °C), arid (annual storage amplitude below 50 mm), tropical (|lat| < 23.5°), temperate.
ZONE_NAMES = ("tropical", "arid", "temperate", "cold")
#: Seasonal errors of global models against GRACE by zone: (amplitude ratio model/GRACE,
#: phase shift in months, positive = the model peaks later). Directions and sizes from Bibi
#: et al. 2024 (HESS 28:1725), see the README's table.
ZONES = {"tropical": (0.75, 0.0), "arid": (0.6, 1.0), "temperate": (0.8, 1.0),
         "cold": (1.3, -2.0)}
#: The ERA5-like storage's own seasonal errors by zone (chosen: no source gives them).
ERA5_ZONES = {"tropical": (0.9, 0.0), "arid": (0.8, 0.5), "temperate": (0.9, 0.5),
              "cold": (1.15, -1.0)}
COLD_K = 278.15
ARID_MM = 50.0


def climate_zone(abs_lat: np.ndarray, t2m_mean: np.ndarray, amplitude: np.ndarray
                 ) -> np.ndarray:
    """Index into :data:`ZONE_NAMES` of each cell or mascon."""
    return np.select([t2m_mean < COLD_K, amplitude < ARID_MM, abs_lat < 23.5], [3, 1, 0], 2)


def get_level(realism: str) -> Level | None:
    if realism not in LEVELS:
        raise ConfigError(f"[twin] realism: expected one of {', '.join(LEVELS)}, found "
                          f"{realism!r}")
    return LEVELS[realism]


@dataclass
class World:
    """The twin's arrays on its extent (a box of the global 0.5° grid holding whole mascons).

    Cell arrays are ``(lat, lon)`` with ``lat`` ascending; ``lon`` follows the global column
    order of the extent (ascending unless the extent crosses the antimeridian).
    """

    domain: Domain
    seed: int
    rows: np.ndarray  # global row index of each extent row
    cols: np.ndarray  # global column index of each extent column
    land: np.ndarray  # the suite's land (Greenland and Antarctica excluded)
    jpl_land: np.ndarray  # land of the mascon file (land fraction ≥ 0.5, ice sheets included)
    tiles: np.ndarray  # twin mascon ID of every cell
    whole: np.ndarray  # cells of tiles that lie wholly in the extent
    domain_tiles: np.ndarray  # IDs of the domain's mascons
    truth: np.ndarray  # (MONTHS, lat, lon) mm anomaly, NaN off land
    grace_months: np.ndarray  # months with a solution
    grace: np.ndarray  # (grace_months, lat, lon) mm, NaN outside whole tiles
    sigma: np.ndarray  # (grace_months, lat, lon) mm, 1-σ per mascon part
    epochs: np.ndarray  # record mid-times, datetime64[s]
    epoch_bounds: np.ndarray  # (n, 2) first and last day of each solution, datetime64[s]
    latent: dict[str, np.ndarray] = field(repr=False, default_factory=dict)
    realism: str = "realistic"
    axes: Axes = field(default_factory=Axes)
    _submascon: Submascon | None = field(default=None, repr=False)

    @property
    def submascon(self) -> Submascon:
        """Departures from the mascon means over the world's land (built once)."""
        if self._submascon is None:
            self._submascon = Submascon(self.land, self.tiles, self.lat)
        return self._submascon

    @property
    def level(self) -> Level | None:
        return LEVELS[self.realism]

    @property
    def lat(self) -> np.ndarray:
        return grid.LAT[self.rows]

    @property
    def lon(self) -> np.ndarray:
        return grid.LON[self.cols]

    @property
    def is_global(self) -> bool:
        return self.rows.size == grid.LAT.size and self.cols.size == grid.LON.size


class Submascon:
    """Sub-mascon departures of ``(months, lat, lon)`` fields over land: each cell's value less
    the area-weighted mean of its mascon's land cells (zero off land)."""

    def __init__(self, land: np.ndarray, tiles: np.ndarray, lat: np.ndarray):
        self.shape = land.shape
        self.flat = np.flatnonzero(land)
        area = np.broadcast_to(grid.cell_area(lat)[:, None], land.shape).ravel()[self.flat]
        self.mascons: Mascons = build_mascons(tiles.ravel()[self.flat], area)

    def cells(self, x: np.ndarray) -> np.ndarray:
        """``(months, land cells)`` values of ``x``."""
        return x.reshape(x.shape[0], -1)[:, self.flat]

    def deviation(self, cells: np.ndarray) -> np.ndarray:
        """Departures of ``(months, land cells)`` values from their mascon means."""
        return self.mascons.deviation(cells.T).T

    def to_grid(self, cells: np.ndarray) -> np.ndarray:
        out = np.zeros((cells.shape[0], self.shape[0] * self.shape[1]), np.float32)
        out[:, self.flat] = cells
        return out.reshape(cells.shape[0], *self.shape)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.to_grid(self.deviation(self.cells(x)))

    def variance(self, cells: np.ndarray) -> float:
        """Area-weighted sum over cells of the variance over months."""
        return float((self.mascons.weights * cells.var(axis=0)).sum())


def _extent(domain: Domain, tiles: np.ndarray, land: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows, columns and mascon IDs of the domain: tiles whose land centroid lies inside."""
    flat = np.flatnonzero(land)
    lat2, lon2 = np.meshgrid(grid.LAT, grid.LON, indexing="ij")
    area = np.broadcast_to(grid.cell_area(grid.LAT)[:, None], land.shape).ravel()[flat]
    mascons = build_mascons(tiles.ravel()[flat], area)
    clat, clon = mascons.centroids(lat2.ravel()[flat], lon2.ravel()[flat])
    chosen = mascons.ids[domain.contains(clat, clon)]
    if chosen.size == 0:
        raise ConfigError(f"[domain]: expected at least one land mascon in {domain.describe()}, "
                          "found none")
    if domain.is_global:
        return np.arange(grid.LAT.size), np.arange(grid.LON.size), chosen
    in_tiles = np.isin(tiles, chosen)
    rows = np.flatnonzero(in_tiles.any(axis=1))
    return rows, grid.cyclic_columns(in_tiles.any(axis=0)), chosen


def build_world(domain: Domain, seed: int = 0,
                progress: Callable[[str], None] | None = None, *,
                realism: str = "realistic", axes: Axes | None = None) -> World:
    """Generate the twin world for ``domain`` (deterministic in ``seed`` and ``realism``).

    Parameters
    ----------
    domain
        Where: a named domain, a bounding box or the globe.
    seed
        Seed of every random draw.
    progress
        Called with a short label as each stage starts.
    realism
        ``optimistic``, ``realistic`` or ``pessimistic`` (:data:`LEVELS`).
    axes
        Where the world sits on what no source pins down (:class:`Axes`); an unset axis
        takes the level's own point (its ``human_ratio``) or keeps its construction.

    Returns
    -------
    World
    """
    level = get_level(realism)
    axes = axes or Axes()
    if axes.any and level is None:
        raise ConfigError(f"[twin] {axes.describe()}: expected realism realistic or "
                          "pessimistic (the optimistic level has no axes), found optimistic")
    if level is not None and axes.human_ratio is None and level.human_ratio is not None:
        axes = replace(axes, human_ratio=level.human_ratio)
    step = progress or (lambda label: log.info("twin: %s", label))
    step("land mask and mascons")
    global_land = landmask.land_fraction(grid.LAT, grid.LON, grid.RES) >= landmask.LAND_THRESHOLD
    ice_all = landmask.excluded_ice(grid.LAT, grid.LON)
    global_tiles = twin_tiling()
    rows, cols, chosen = _extent(domain, global_tiles, global_land & ~ice_all)
    sub = np.ix_(rows, cols)
    jpl_land, ice, tiles = global_land[sub], ice_all[sub], global_tiles[sub]
    land = jpl_land & ~ice
    counts_global = np.bincount(global_tiles.ravel())
    counts_here = np.bincount(tiles.ravel(), minlength=counts_global.size)
    whole = (counts_here == counts_global)[tiles]

    # the first eight streams are those of the optimistic construction, unchanged
    seeds = np.random.SeedSequence([seed, 20020401]).spawn(12)
    rng = {name: np.random.default_rng(s) for name, s in zip(
        ["pattern", "index", "variability", "trend", "grace", "wghm", "era5", "ocean",
         "pluri", "wghm_errors", "era5_errors", "grace_errors"], seeds, strict=True)}
    lat2, lon2 = np.meshgrid(grid.LAT[rows], grid.LON[cols], indexing="ij")
    wrap = cols.size == grid.LON.size
    shape = land.shape

    step("truth: seasonal cycle and interannual modes")
    latent = _patterns(rng["pattern"], lat2, lon2, land, wrap)
    latent["index1"] = fx.ar1_series(rng["index"], WGHM_MONTHS.size, 0.93)
    latent["index2"] = fx.ar1_series(rng["index"], WGHM_MONTHS.size, 0.85)
    n = MONTHS.size
    step("truth: sub-mascon variability")
    white = fx.multiscale_field(rng["variability"], (n, *shape), (1.0, 2.0, 4.0), wrap_lon=wrap)
    latent["variability"] = fx.ar1_fields(white, 0.6) * latent["var_amp"][None]
    del white
    step("truth: depletion hotspots, glaciers, reservoirs")
    latent.update(_trends(rng["trend"], lat2, lon2, land))
    if level is not None:
        step("truth: pluri-annual droughts and wet spells")
        latent.update(_pluri(rng["pluri"], lat2, lon2, land, wrap, level))
        for source in ("wghm", "era5"):
            step(f"{source}: errors of its own")
            latent.update(_model_errors(rng[f"{source}_errors"], source, latent, lat2, lon2,
                                        land, wrap, level))

    grace_months = MONTHS[(MONTHS >= mo.GRACE_START) & ~np.isin(MONTHS, mo.MISSING_MONTHS)]
    departures = Submascon(land, tiles, grid.LAT[rows])
    if axes.submascon_share is not None or axes.submascon_structure is not None:
        step("truth: sub-mascon share and structure")
        latent["truth_scales"] = _submascon_scales(latent, grace_months, departures, axes)
    step("truth: anomalies")
    truth = _truth(latent, MONTHS, departures)
    base = (MONTHS >= mo.BASELINE[0]) & (MONTHS <= mo.BASELINE[1])
    truth -= truth[base].mean(axis=0)
    truth[:, ~land] = np.nan

    step("GRACE: mascon means, noise and uncertainty")
    grace, sigma = _grace(rng, truth, tiles, land, ice, whole, grace_months, lat2, wrap, level)
    epochs, bounds = record_times(grace_months)
    return World(domain=domain, seed=seed, rows=rows, cols=cols, land=land, jpl_land=jpl_land,
                 tiles=tiles, whole=whole, domain_tiles=chosen, truth=truth.astype(np.float32),
                 grace_months=grace_months, grace=grace, sigma=sigma, epochs=epochs,
                 epoch_bounds=bounds, latent=latent, realism=realism, axes=axes,
                 _submascon=departures)


def _patterns(rng: np.random.Generator, lat2: np.ndarray, lon2: np.ndarray, land: np.ndarray,
              wrap: bool) -> dict[str, np.ndarray]:
    """Static spatial patterns of the world (amplitudes, phases, model biases)."""
    shape = land.shape
    big = lambda length: fx.smooth_field(rng, shape, length, wrap_lon=wrap)  # noqa: E731
    abslat = np.abs(lat2)
    # climate zones: strong seasonal storage in the monsoon tropics, weak in deserts and the
    # far north; regional modulation at ~5°
    climate = (40.0 + 140.0 * np.exp(-(((abslat - 16.0) / 14.0) ** 2))) * np.exp(0.45 * big(10))
    # sharp features near rivers and wetlands (a fraction of a mascon wide)
    wet = _wetlands(rng, lat2, lon2, land)
    rivers = fx.random_paths(rng, land, max(2, int(land.sum() // 600)), 40)
    from scipy import ndimage  # local: only the patterns need it
    rivers = ndimage.gaussian_filter(rivers, 0.6) * 120.0
    # peak month: late summer monsoon north of the equator, March-April south of it
    phase = 2.5 + 6.0 / (1.0 + np.exp(-lat2 / 6.0)) + 0.8 * big(8)
    return {
        "amp": (climate + wet + rivers).astype(np.float32),
        "amp_climate": climate.astype(np.float32),
        "wet": (wet + rivers).astype(np.float32),
        "phase": phase.astype(np.float32),
        "amp2": (0.15 * climate * np.exp(0.3 * big(6))).astype(np.float32),
        "phase2": (phase + 1.5 * big(8)).astype(np.float32),
        "pattern1": (45.0 * big(16)).astype(np.float32),
        "pattern2": (25.0 * big(10)).astype(np.float32),
        "var_amp": (8.0 + 0.12 * climate).astype(np.float32),
        # model errors of the WaterGAP-like field
        "wghm_bias": np.exp(0.25 * big(12)).astype(np.float32),
        "wghm_lag": (0.6 + 0.5 * big(12)).astype(np.float32),
        # absolute storage well above the seasonal swing: soils, groundwater, surface water
        "wghm_base": (300.0 + 2.5 * (climate + wet + rivers) + 600.0 / (1.0 + np.exp(-big(14)))
                      ).astype(np.float32),
        # ERA5-like share of storage (soil, snow, canopy: no groundwater or surface water)
        "era5_share": (0.55 + 0.15 * big(12)).clip(0.2, 0.9).astype(np.float32),
        "era5_runoff_ratio": (0.25 + 0.08 * big(10)).clip(0.05, 0.6).astype(np.float32),
        "t2m_mean": (302.0 - 0.55 * np.maximum(abslat - 12.0, 0.0) - 4.0 * big(10)
                     ).astype(np.float32),
        "t2m_amp": (1.5 + 0.35 * abslat).astype(np.float32),
        "theta": (0.22 + 0.05 * big(8)).clip(0.08, 0.35).astype(np.float32),
    }


def _wetlands(rng: np.random.Generator, lat2: np.ndarray, lon2: np.ndarray, land: np.ndarray
              ) -> np.ndarray:
    """Wetland-like blobs of 80-220 mm seasonal amplitude, 0.4-0.9° across, one per ~400
    land cells."""
    wet = np.zeros(land.shape, np.float32)
    n_wet = max(2, int(land.sum() // 400))
    for (i, j) in np.argwhere(land)[rng.integers(0, max(1, land.sum()), n_wet)]:
        wet += rng.uniform(80, 220) * fx.gaussian_blob(lat2, lon2, lat2[i, j], lon2[i, j],
                                                        rng.uniform(0.4, 0.9))
    return wet


def _trends(rng: np.random.Generator, lat2: np.ndarray, lon2: np.ndarray, land: np.ndarray
            ) -> dict[str, np.ndarray]:
    """Trend fields the model and the reanalysis miss: mm/yr (and mm/yr² for glaciers)."""
    def inside(lat0: float, lon0: float) -> bool:
        d = np.abs(lat2 - lat0) + np.abs((lon2 - lon0 + 180) % 360 - 180)
        return bool(land[np.unravel_index(np.argmin(d), d.shape)] and d.min() < 1.0)

    depletion = np.zeros(land.shape, np.float32)
    sites: list[tuple[float, float, float, float]] = [h for h in KNOWN_HOTSPOTS
                                                      if inside(h[0], h[1])]
    cells = np.argwhere(land)
    for _ in range(max(1, int(land.sum() // 1500))):
        i, j = cells[rng.integers(0, len(cells))]
        sites.append((lat2[i, j], lon2[i, j], rng.uniform(0.5, 1.2), -rng.uniform(5, 20)))
    for lat0, lon0, radius, rate in sites:
        depletion += rate * fx.gaussian_blob(lat2, lon2, lat0, lon0, radius)
    glacier = np.zeros(land.shape, np.float32)
    for lat0, lon0, radius, rate in KNOWN_GLACIERS:
        if inside(lat0, lon0):
            glacier += rate * fx.gaussian_blob(lat2, lon2, lat0, lon0, radius)
    # reservoirs: a single cell filling over 2-4 years from a random start
    n_res = max(1, int(land.sum() // 1500))
    picks = cells[rng.integers(0, len(cells), n_res)]
    reservoirs = np.stack([
        np.array([i, j, rng.uniform(2003, 2018), rng.uniform(2, 4), rng.uniform(300, 800)])
        for i, j in picks])
    return {"depletion": depletion * land, "glacier": glacier * land, "reservoirs": reservoirs,
            "sites": np.array(sites, np.float64).reshape(-1, 4)}


def _pluri(rng: np.random.Generator, lat2: np.ndarray, lon2: np.ndarray, land: np.ndarray,
           wrap: bool, level: Level) -> dict[str, np.ndarray]:
    """Pluri-annual signals of the truth: a slow mode (decorrelation ~5 years) on a ~10°
    pattern, and multi-year droughts and wet spells of 2-6 years over regions 2-5° across."""
    shape = land.shape
    index = fx.ar1_series(rng, WGHM_MONTHS.size, 0.985)
    pattern = level.pluri_amp * 40.0 * fx.smooth_field(rng, shape, 20.0, wrap_lon=wrap)
    n_events = max(2, int(land.sum() // 500))
    cells = np.argwhere(land)
    maps, params = [], []
    for i, j in cells[rng.integers(0, len(cells), n_events)]:
        maps.append(fx.gaussian_blob(lat2, lon2, lat2[i, j], lon2[i, j], rng.uniform(2.0, 5.0)))
        sign = -1.0 if rng.random() < 0.55 else 1.0  # droughts slightly more often
        params.append([rng.uniform(2002.0, 2020.0), rng.uniform(2.0, 6.0),
                       sign * level.pluri_amp * rng.uniform(60.0, 200.0)])
    return {"pluri_index": index, "pluri_pattern": pattern.astype(np.float32),
            "event_maps": (np.stack(maps) * land).astype(np.float32),
            "events": np.array(params)}


def pluri(latent: dict[str, np.ndarray], months: np.ndarray) -> np.ndarray:
    """The truth's pluri-annual part at ``months`` (zero where the level has none)."""
    if "pluri_index" not in latent:
        return np.zeros((months.size, *latent["amp"].shape), np.float32)
    out = index_at(latent, "pluri_index", months)[:, None, None] * latent["pluri_pattern"][None]
    years = decimal_years(months)
    for (start, duration, depth), shape in zip(latent["events"], latent["event_maps"],
                                               strict=True):
        phase = np.clip((years - start) / duration, 0.0, 1.0)
        window = (np.sin(np.pi * phase) ** 2).astype(np.float32)  # onset, peak, recovery
        out += np.float32(depth) * window[:, None, None] * shape[None]
    return out


def _model_errors(rng: np.random.Generator, source: str, latent: dict[str, np.ndarray],
                  lat2: np.ndarray, lon2: np.ndarray, land: np.ndarray, wrap: bool,
                  level: Level) -> dict[str, np.ndarray]:
    """A model's own view of the world: seasonal errors by climate zone with their own
    sub-mascon structure, its own wetlands and interannual patterns, its own sub-mascon
    variability correlated with the truth's only to ``level.variability_corr``."""
    from scipy import ndimage  # local: only the patterns need it

    shape = land.shape
    big = lambda length: fx.smooth_field(rng, shape, length, wrap_lon=wrap)  # noqa: E731
    multi = lambda: fx.multiscale_field(rng, shape, (1.5, 4.0, 10.0), wrap_lon=wrap)  # noqa: E731
    zone = climate_zone(np.abs(lat2), latent["t2m_mean"], latent["amp_climate"])
    table = ZONES if source == "wghm" else ERA5_ZONES
    log_ratio = np.log(np.array([table[z][0] for z in ZONE_NAMES]))[zone]
    shift = np.array([table[z][1] for z in ZONE_NAMES])[zone]
    smooth = lambda a: ndimage.gaussian_filter(a, 2.0, mode=("nearest", "wrap" if wrap  # noqa: E731
                                                              else "nearest"))
    amp_ratio = np.exp(level.zone_scale * smooth(log_ratio) + level.amp_noise * multi())
    phase_shift = level.zone_scale * smooth(shift) + level.phase_noise * multi()
    # wetlands and river corridors: a share of the truth's, and some of the model's own
    own_wet = _wetlands(rng, lat2, lon2, land)
    wet = level.wet_share * latent["wet"] + (1.0 - level.wet_share) * own_wet
    c = level.pattern_corr
    s = np.sqrt(1.0 - c * c)
    p = f"{source}_"
    out = {
        p + "amp_ratio": amp_ratio.astype(np.float32),
        p + "phase_shift": phase_shift.astype(np.float32),
        p + "wet": wet.astype(np.float32),
        p + "phase2_shift": (phase_shift + 1.0 * level.phase_noise * big(6)).astype(np.float32),
        p + "pattern1": (c * latent["pattern1"] + s * 45.0 * big(16)).astype(np.float32),
        p + "pattern2": (c * latent["pattern2"] + s * 25.0 * big(10)).astype(np.float32),
        p + "pattern_own": (level.own_mode * big(8)).astype(np.float32),
        p + "index": fx.ar1_series(rng, WGHM_MONTHS.size, 0.9),
        p + "pluri_seen": (level.pluri_seen * np.exp(0.3 * big(12))).astype(np.float32),
    }
    n = MONTHS.size
    white = fx.multiscale_field(rng, (n, *shape), (1.0, 2.0, 4.0), wrap_lon=wrap)
    own = fx.ar1_fields(white, 0.6)
    del white
    r = level.variability_corr
    mix = r * latent["variability"] + np.sqrt(1.0 - r * r) * own * latent["var_amp"][None]
    out[p + "variability"] = (0.8 * mix).astype(np.float32)
    return out


def decimal_years(months: np.ndarray) -> np.ndarray:
    return 1970.0 + (months.astype("datetime64[M]").astype(int) + 0.5) / 12.0


def seasonal(amp: np.ndarray, phase: np.ndarray, months: np.ndarray, harmonic: int = 1
             ) -> np.ndarray:
    """``amp · cos(2πh (m + 0.5 − phase)/12)`` for each month (time first)."""
    m = (months.astype("datetime64[M]").astype(int) % 12 + 0.5).astype(np.float32)
    arg = (2 * np.pi * harmonic / 12.0) * (m[:, None, None] - phase[None])
    return amp[None] * np.cos(arg)


def index_at(latent: dict[str, np.ndarray], name: str, months: np.ndarray) -> np.ndarray:
    """Values of an interannual index at ``months``."""
    pos = (months.astype("datetime64[M]") - WGHM_MONTHS[0]).astype(int)
    return latent[name][np.clip(pos, 0, latent[name].size - 1)].astype(np.float32)


def interannual(latent: dict[str, np.ndarray], months: np.ndarray) -> np.ndarray:
    i1, i2 = index_at(latent, "index1", months), index_at(latent, "index2", months)
    return (i1[:, None, None] * latent["pattern1"][None]
            + i2[:, None, None] * latent["pattern2"][None])


def natural_parts(latent: dict[str, np.ndarray], months: np.ndarray, variability: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    """The truth's natural signal at ``months`` in two parts, before any rescaling of its
    sub-mascon departures: the seasonal cycle (both harmonics), and the rest (interannual
    modes, sub-mascon ``variability``, pluri-annual signals)."""
    cycle = seasonal(latent["amp"], latent["phase"], months)
    cycle += seasonal(latent["amp2"], latent["phase2"], months, harmonic=2)
    rest = interannual(latent, months)
    rest += variability
    if "pluri_index" in latent:
        rest += pluri(latent, months)
    return cycle, rest


def natural(latent: dict[str, np.ndarray], months: np.ndarray, variability: np.ndarray,
            sub: Submascon) -> np.ndarray:
    """The truth's natural signal (no trends) at ``months``, its sub-mascon departures
    rescaled as the world's share and structure axes ask."""
    cycle, rest = natural_parts(latent, months, variability)
    scales = latent.get("truth_scales")
    if scales is not None:
        cycle += np.float32(scales[0] - 1.0) * sub(cycle)
        rest += np.float32(scales[1] - 1.0) * sub(rest)
    cycle += rest
    return cycle


def human_trends(latent: dict[str, np.ndarray], months: np.ndarray) -> np.ndarray:
    """The truth's trends: depletion hotspots, glaciers and reservoirs (mm)."""
    years = decimal_years(months).astype(np.float32)
    dt = (years - TREND_ORIGIN)[:, None, None]
    out = latent["depletion"][None] * dt
    out += latent["glacier"][None] * (dt + 0.04 * dt**2)
    add_reservoirs(out, years, latent["reservoirs"])
    return out


def add_reservoirs(out: np.ndarray, years: np.ndarray, reservoirs: np.ndarray) -> None:
    """Add each reservoir's filling (row, column, start year, years to fill, mm) in place."""
    for i, j, start, duration, volume in reservoirs:
        fill = np.clip((years - start) / duration, 0.0, 1.0)
        out[:, int(i), int(j)] += volume * fill


def _truth(latent: dict[str, np.ndarray], months: np.ndarray, sub: Submascon) -> np.ndarray:
    if "truth_scales" in latent:
        return natural(latent, months, latent["variability"], sub) + human_trends(latent, months)
    # the levels' own construction, in its order of summation (same arrays bit for bit)
    years = decimal_years(months).astype(np.float32)
    dt = (years - TREND_ORIGIN)[:, None, None]
    out = seasonal(latent["amp"], latent["phase"], months)
    out += seasonal(latent["amp2"], latent["phase2"], months, harmonic=2)
    out += interannual(latent, months)
    out += latent["variability"]
    out += latent["depletion"][None] * dt
    out += latent["glacier"][None] * (dt + 0.04 * dt**2)
    add_reservoirs(out, years, latent["reservoirs"])
    if "pluri_index" in latent:
        out += pluri(latent, months)
    return out


def _submascon_scales(latent: dict[str, np.ndarray], months: np.ndarray, sub: Submascon,
                      axes: Axes) -> np.ndarray:
    """Factors of the truth's seasonal and other sub-mascon departures that give it the
    axes' sub-mascon share (of the variance over ``months``, area-weighted over land cells,
    the trends included) and seasonal structure (share of the natural departures' variance
    in the seasonal cycle). An unset axis keeps the level's own value."""
    pos = np.searchsorted(MONTHS, months)
    cycle, rest = natural_parts(latent, months, latent["variability"][pos])
    total = cycle + rest + human_trends(latent, months)
    d_cycle, d_rest = (sub.deviation(sub.cells(x)) for x in (cycle, rest))
    del cycle, rest
    d_trend = sub.deviation(sub.cells(total)) - d_cycle - d_rest
    cells = sub.cells(total)
    v_mean = sub.variance(cells - sub.deviation(cells))  # the mascon-mean part, unchanged
    v_cycle, v_rest = sub.variance(d_cycle), sub.variance(d_rest)
    s = (axes.submascon_structure if axes.submascon_structure is not None
         else v_cycle / (v_cycle + v_rest))
    unit = np.sqrt(s / v_cycle) * d_cycle + np.sqrt((1.0 - s) / v_rest) * d_rest
    # departures λ·unit + d_trend: variance a λ² + 2 b λ + c
    a = sub.variance(unit)
    b = float((sub.mascons.weights * _cov(unit, d_trend)).sum())
    c = sub.variance(d_trend)
    share = axes.submascon_share
    if share is None:  # keep the level's variance of natural departures
        lam = float(np.sqrt((v_cycle + v_rest) / a))
    else:
        target = share / (1.0 - share) * v_mean
        disc = b * b - a * (c - target)
        if disc < 0 or (-b + np.sqrt(disc)) <= 0:
            floor = c / (c + v_mean)
            raise ConfigError(f"[twin] submascon_share: expected at least the trends' own "
                              f"share here ({floor:.3f}), found {share:g}")
        lam = float((-b + np.sqrt(disc)) / a)
    return np.array([lam * np.sqrt(s / v_cycle), lam * np.sqrt((1.0 - s) / v_rest)])


def _cov(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Covariance over months (first axis) of each column."""
    return ((x - x.mean(axis=0)) * (y - y.mean(axis=0))).mean(axis=0)


def _grace(rng: dict, truth: np.ndarray, tiles: np.ndarray, land: np.ndarray, ice: np.ndarray,
           whole: np.ndarray, grace_months: np.ndarray, lat2: np.ndarray, wrap: bool,
           level: Level | None = None) -> tuple[np.ndarray, np.ndarray]:
    """GRACE-like mascon means with correlated noise and per-mascon 1-σ, on whole tiles.

    With a realism ``level``: the errors are AR(1) in time as well as correlated in space,
    their size differs from the stated σ by a per-mascon factor, a share of each mascon's
    value leaks in from its ~300-km surroundings (ocean and ice included, as CRI's coastline
    filter leaves some), and low-variance mascons are damped as regularisation does.
    """
    r = rng["grace"]
    sel = np.isin(MONTHS, grace_months)
    years = decimal_years(grace_months).astype(np.float32)
    # CRI splits mascons at the coast: land, ice-sheet and ocean parts get their own values
    part_class = np.where(land, 0, np.where(ice, 1, 2))
    part = tiles.astype(np.int64) * 3 + part_class
    flat = np.flatnonzero(whole)
    area = np.broadcast_to(grid.cell_area(lat2[:, :1])[:, :1], tiles.shape).ravel()[flat]
    parts = build_mascons(part.ravel()[flat], area)
    ocean = 12.0 * fx.smooth_field(rng["ocean"], (grace_months.size, *tiles.shape), 6.0,
                                   wrap_lon=wrap)
    ice_signal = (-80.0 * (years - TREND_ORIGIN))[:, None, None] + seasonal(
        np.full(tiles.shape, 40.0, np.float32), np.full(tiles.shape, 8.0, np.float32),
        grace_months)
    signal = np.where(land[None], np.nan_to_num(truth[sel]), np.where(ice[None], ice_signal,
                                                                        ocean))
    cells_of = lambda a: a.reshape(grace_months.size, -1)[:, flat].T  # noqa: E731
    means = parts.mean(cells_of(signal))  # (parts, months)

    kind = parts.ids % 3
    base_sigma = np.select([kind == 0, kind == 1], [r.uniform(15, 40, kind.size),
                                                    r.uniform(40, 80, kind.size)],
                           r.uniform(8, 15, kind.size))
    era = np.select([years < 2004, years < 2011, years < 2018.4], [1.4, 1.0, 1.2], 0.9)
    sigma = base_sigma[:, None] * era[None, :].astype(np.float32)  # (parts, months)
    field = fx.smooth_field(r, (grace_months.size, *tiles.shape), 6.0, wrap_lon=wrap)
    actual = sigma
    if level is not None:
        from scipy import ndimage  # local: only the realistic levels need it

        e = rng["grace_errors"]
        field = fx.ar1_fields(field, level.grace_rho)
        ratio = level.sigma_ratio * np.exp(level.sigma_spread * e.standard_normal(kind.size)
                                           - 0.5 * level.sigma_spread**2)
        actual = sigma * ratio[:, None]
        # leakage: a share of the value comes from a ~300-km neighbourhood (1.5° Gaussian)
        mode = ("nearest", "wrap" if wrap else "nearest")
        blurred = ndimage.gaussian_filter(signal, (0.0, 3.0, 3.0), mode=("nearest", *mode))
        means = (1.0 - level.leakage) * means + level.leakage * parts.mean(cells_of(blurred))
        # regularisation damps mascons of small signal (up to level.damping at sd → 0)
        anomaly = means - means.mean(axis=1, keepdims=True)
        keep = 1.0 - level.damping * np.exp(-anomaly.std(axis=1) / 40.0)
        means = means.mean(axis=1, keepdims=True) + keep[:, None] * anomaly
    z = parts.mean(cells_of(field))
    z /= z.std()
    values = means + actual * z
    baseline = (grace_months >= mo.BASELINE[0]) & (grace_months <= mo.BASELINE[1])
    values -= values[:, baseline].mean(axis=1, keepdims=True)  # JPL's time_mean_removed

    out = np.full((grace_months.size, tiles.size), np.nan, np.float32)
    out_sigma = np.full_like(out, np.nan)
    out[:, flat] = parts.spread(values).T
    out_sigma[:, flat] = parts.spread(sigma).T
    return out.reshape(-1, *tiles.shape), out_sigma.reshape(-1, *tiles.shape)


# Solutions dated in a neighbouring month, and the first ones, as JPL dates them
# (first and last day of the data span).
_SPANS = {
    "2002-04": ("2002-04-04", "2002-05-01"), "2002-05": ("2002-05-02", "2002-05-19"),
    "2011-11": ("2011-10-16", "2011-11-13"), "2011-12": ("2011-12-17", "2012-01-16"),
    "2015-05": ("2015-04-15", "2015-05-12"), "2017-03": ("2017-03-18", "2017-04-15"),
}


def record_times(months: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """JPL-like solution spans and mid-times: the calendar month, except the odd ones."""
    starts, ends = [], []
    for m in months.astype("datetime64[M]"):
        span = _SPANS.get(str(m))
        if span:
            starts.append(np.datetime64(span[0], "s"))
            ends.append(np.datetime64(span[1], "s"))
        else:
            starts.append(m.astype("datetime64[s]"))
            ends.append((m + 1).astype("datetime64[s]"))
    t0, t1 = np.array(starts), np.array(ends)
    return t0 + (t1 - t0) // 2, np.stack([t0, t1], axis=1)
