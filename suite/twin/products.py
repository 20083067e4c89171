"""The WaterGAP-like and ERA5-like fields of the twin, computed month block by month block.

Both see the truth's seasonal and interannual parts through their own errors and neither sees
the trends (depletion hotspots, glaciers, reservoirs). At the optimistic level their errors are
scalings of the truth's own parts; at the realistic and pessimistic levels each is a model of
its own (:func:`model_storage`). Random parts are drawn per month from the world's seed, so
any block of months gives the same values.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from twsbench.core import geometry as grid
from twsbench.core import landmask
from twsbench.inputs.era5 import LAYER_M
from twsbench.twin import fields as fx
from twsbench.twin.world import (
    MONTHS,
    WGHM_MONTHS,
    World,
    add_reservoirs,
    decimal_years,
    index_at,
    interannual,
    natural,
    pluri,
    seasonal,
)

ERA5_RES = 0.25
#: ERA5 storage's sub-mascon skill as a share of WaterGAP's: it holds soil, snow and canopy
#: water only (no groundwater or surface water). Chosen to match the ratio at the realism
#: levels' own construction (0.25 / 0.33 at the realistic level).
ERA5_SKILL_SHARE = 0.75
#: Spread of the per-cell sub-mascon skill around its target (sd in Fisher z) and of the
#: model's sub-mascon amplitude around the truth's (sd of its log); chosen.
SKILL_SPREAD = 0.3
AMP_SPREAD = 0.3
#: WaterGAP's human water use: the spread of its per-hotspot factors around ``human_ratio``
#: (sd of the log: 95 % of them within 0.41-2.4 × the ratio, as the published model/GRACE
#: depletion ratios spread from well below 1 to about 2.4), the displacement of a footprint
#: (sd, × its radius) and the sd of the log of its radius; pumping in WaterGAP starts in
#: PUMPING_START.
HUMAN_SPREAD = 0.45
HUMAN_SHIFT = 0.35
HUMAN_RESHAPE = 0.25
PUMPING_START = 1980.0
#: WaterGAP's reservoirs: sd of the error of its commissioning year (years) and of the log
#: of its storage.
RESERVOIR_YEAR_SD = 1.0
RESERVOIR_SPREAD = 0.3


def _month_rng(world: World, source: str, month: np.datetime64) -> np.random.Generator:
    tag = {"wghm": 1, "era5": 2}[source]
    # numpy's stubs have no (datetime64, unit) overload; the conversion works at runtime
    month_m = np.datetime64(month, "M")  # type: ignore[call-overload]
    offset = int((month_m - np.datetime64("1900-01", "M")).astype(int))
    return np.random.default_rng([world.seed, tag, offset])


def _monthly_noise(world: World, source: str, months: np.ndarray, length: float
                   ) -> np.ndarray:
    shape = world.land.shape
    return np.stack([fx.smooth_field(_month_rng(world, source, m), shape, length,
                                     wrap_lon=world.is_global) for m in months])


def _variability(world: World, months: np.ndarray, key: str = "variability") -> np.ndarray:
    """Sub-mascon variability (the truth's, or a model's ``key``) where it exists (2002-2022),
    zero before."""
    out = np.zeros((months.size, *world.land.shape), np.float32)
    pos = (months.astype("datetime64[M]") - MONTHS[0]).astype(int)
    ok = (pos >= 0) & (pos < MONTHS.size)
    out[ok] = world.latent[key][pos[ok]]
    return out


def model_storage(world: World, source: str, months: np.ndarray) -> np.ndarray:
    """A model's own storage anomaly (mm) at the realistic and pessimistic levels: seasonal
    cycle with its zone and own amplitude and phase errors, the truth's interannual modes on
    patterns only partly the truth's plus a mode of its own, a share of the pluri-annual
    signals, and its own sub-mascon variability."""
    lt = world.latent
    p = f"{source}_"
    ratio = lt[p + "amp_ratio"]
    out = seasonal(ratio * (lt["amp_climate"] + lt[p + "wet"]), lt["phase"] + lt[p + "phase_shift"],
                   months)
    out += seasonal(ratio * lt["amp2"], lt["phase2"] + lt[p + "phase2_shift"], months,
                    harmonic=2)
    i1, i2 = index_at(lt, "index1", months), index_at(lt, "index2", months)
    own = index_at(lt, p + "index", months)
    out += 0.8 * (i1[:, None, None] * lt[p + "pattern1"] + i2[:, None, None] * lt[p + "pattern2"])
    out += own[:, None, None] * lt[p + "pattern_own"]
    out += lt[p + "pluri_seen"] * pluri(lt, months)
    out += _variability(world, months, p + "variability")
    return out


def _skill_fit(world: World, source: str) -> dict[str, np.ndarray]:
    """The per-cell terms of :func:`with_skill`, computed once over the GRACE months.

    The level ``t`` around which the cells' correlations with the truth's natural departures
    are drawn is found by bisection so that the median over cells (area-weighted) of the
    correlation with the truth's whole departures (trends included), after what the model
    adds afterwards (WaterGAP's human use, ERA5's monthly noise), is the target: the value
    the calibration report measures from the written files."""
    key = f"_{source}_skill"
    if key in world.latent:
        return world.latent[key]  # type: ignore[return-value]
    assert world.axes.submascon_skill is not None
    target = world.axes.submascon_skill * (1.0 if source == "wghm" else ERA5_SKILL_SHARE)
    sub = world.submascon
    months = world.grace_months
    center = lambda a: a - a.mean(axis=0)  # noqa: E731
    d_own = sub.deviation(sub.cells(_own_at(world, source, months))).astype(np.float64)
    d_true = sub.deviation(sub.cells(natural(world.latent, months, _variability(world, months),
                                             sub))).astype(np.float64)
    own_mean, true_mean = d_own.mean(axis=0), d_true.mean(axis=0)
    d_own -= own_mean
    d_true -= true_mean
    sd_true = np.maximum(d_true.std(axis=0), 1e-6)
    beta = (d_own * d_true).mean(axis=0) / sd_true**2
    rest = d_own - beta * d_true
    sd_rest = np.maximum(rest.std(axis=0), 1e-6)
    rng = np.random.default_rng([world.seed, {"wghm": 1, "era5": 2}[source], 5150])
    shape = world.land.shape
    z = sub.cells(fx.smooth_field(rng, shape, 8.0, wrap_lon=world.is_global)[None])[0]
    amp = np.exp(AMP_SPREAD * sub.cells(
        fx.smooth_field(rng, shape, 6.0, wrap_lon=world.is_global)[None])[0])
    # what the measured correlation sees: the truth's whole departures, and what the model
    # adds after its departures are rebuilt
    pos = np.searchsorted(MONTHS, months)
    whole = center(sub.deviation(sub.cells(np.nan_to_num(world.truth[pos]))).astype(np.float64))
    if source == "wghm":
        added = (sub.cells(human_use(world, months)) if world.axes.human_ratio is not None
                 else np.zeros_like(d_own))
    else:  # ERA5's monthly noise, relative to the storage share it is added to
        added = 8.0 * sub.cells(_monthly_noise(world, "era5", months, 1.5)) / sub.cells(
            world.latent["era5_share"][None])
    added = center(sub.deviation(added).astype(np.float64))
    unit_true, unit_rest = d_true / sd_true, rest / sd_rest
    weights = sub.mascons.weights

    def weights_at(level: float) -> tuple[np.ndarray, np.ndarray]:
        rho = np.tanh(np.arctanh(level) + SKILL_SPREAD * z)
        return amp * rho * sd_true, amp * np.sqrt(1.0 - rho**2) * sd_true

    def median_r(level: float) -> float:
        a, b = weights_at(level)
        model = sub.deviation(a * unit_true + b * unit_rest) + added
        r = (model * whole).sum(axis=0) / np.sqrt((model**2).sum(axis=0)
                                                   * (whole**2).sum(axis=0) + 1e-300)
        return _weighted_median(r, weights)

    lo, hi = 0.0, 0.995
    for _ in range(20):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if median_r(mid) < target else (lo, mid)
    a, b = weights_at(0.5 * (lo + hi))
    fit = {"own_mean": own_mean, "true_mean": true_mean, "beta": beta,
           "true_weight": a / sd_true, "rest_weight": b / sd_rest}
    world.latent[key] = fit  # type: ignore[assignment]
    return fit


def _weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    ok = np.isfinite(values)
    order = np.argsort(values[ok])
    cum = np.cumsum(weights[ok][order])
    return float(values[ok][order][np.searchsorted(cum, 0.5 * cum[-1])])


def with_skill(world: World, source: str, own: np.ndarray, months: np.ndarray) -> np.ndarray:
    """A model's storage ``own`` at ``months`` with its sub-mascon departures rebuilt to
    correlate with the truth's natural ones at the world's ``submascon_skill`` (ERA5 at
    :data:`ERA5_SKILL_SHARE` of it).

    Per land cell, the model's departure is split into its part along the truth's departure
    and the rest; the new departure is ``ρ`` of the truth's standardised departure and
    ``√(1−ρ²)`` of the standardised rest, times the truth's departure sd and a factor of the
    model's own. ``ρ`` varies between cells (:data:`SKILL_SPREAD`) around a level set so that
    the measured cell median is the target (:func:`_skill_fit`); the mascon means are the
    model's own. Without the axis, ``own`` is returned as it is."""
    if world.axes.submascon_skill is None:
        return own
    fit = _skill_fit(world, source)
    sub = world.submascon
    cells = sub.cells(own)
    d_own = sub.deviation(cells) - fit["own_mean"]
    d_true = sub.deviation(sub.cells(natural(world.latent, months, _variability(world, months),
                                             sub))) - fit["true_mean"]
    new = (fit["true_weight"] * d_true
           + fit["rest_weight"] * (d_own - fit["beta"] * d_true))
    out = own.copy()
    rebuilt = cells - sub.deviation(cells) + fit["own_mean"] + sub.deviation(new)
    out.reshape(out.shape[0], -1)[:, sub.flat] = rebuilt
    return out


def _own_at(world: World, source: str, months: np.ndarray) -> np.ndarray:
    """A model's storage before its sub-mascon skill is set (WaterGAP with its noise)."""
    own = model_storage(world, source, months)
    if source == "wghm":
        own += 10.0 * _monthly_noise(world, "wghm", months, 2.0)
    return own


def _human(world: World) -> tuple[np.ndarray, np.ndarray]:
    """WaterGAP's view of the truth's human water use: each depletion hotspot's rate × a
    factor drawn around ``human_ratio``, its footprint displaced and resized; each reservoir
    with its own commissioning year, filling time and storage."""
    key = "_wghm_human"
    if key in world.latent:
        return world.latent[key]  # type: ignore[return-value]
    ratio = world.axes.human_ratio
    assert ratio is not None
    rng = np.random.default_rng([world.seed, 1, 1980])
    lat2, lon2 = np.meshgrid(world.lat, world.lon, indexing="ij")
    rate = np.zeros(world.land.shape, np.float32)
    sites = world.latent["sites"]
    # per-hotspot factors, scaled so that their mean weighted by depletion volume (rate ×
    # area) is the ratio itself: the spread is between hotspots, the total is the axis
    factors = np.exp(HUMAN_SPREAD * rng.standard_normal(len(sites)))
    volume = np.abs(sites[:, 3]) * sites[:, 2] ** 2
    factors *= ratio * volume.sum() / max(float((volume * factors).sum()), 1e-12)
    for (lat0, lon0, radius, site_rate), factor in zip(sites, factors, strict=True):
        dlat, dlon = HUMAN_SHIFT * radius * rng.standard_normal(2)
        size = radius * np.exp(HUMAN_RESHAPE * rng.standard_normal())
        rate += np.float32(factor * site_rate) * fx.gaussian_blob(
            lat2, lon2, lat0 + dlat, lon0 + dlon / max(np.cos(np.deg2rad(lat0)), 0.2), size)
    res = world.latent["reservoirs"].copy()
    n = len(res)
    res[:, 2] = np.floor(res[:, 2] + RESERVOIR_YEAR_SD * rng.standard_normal(n))
    res[:, 3] *= rng.uniform(0.5, 1.5, n)
    res[:, 4] *= ratio * np.exp(RESERVOIR_SPREAD * rng.standard_normal(n)
                                - 0.5 * RESERVOIR_SPREAD**2)
    world.latent[key] = (rate, res)  # type: ignore[assignment]
    return rate, res


def human_use(world: World, months: np.ndarray) -> np.ndarray:
    """WaterGAP's storage change from human water use (mm) at ``months``: groundwater
    depletion from :data:`PUMPING_START`, reservoirs filling from their commissioning year."""
    rate, reservoirs = _human(world)
    years = decimal_years(months).astype(np.float32)
    out = rate[None] * np.maximum(years - PUMPING_START, 0.0)[:, None, None]
    add_reservoirs(out, years, reservoirs)
    return out


def wghm_land(world: World) -> np.ndarray:
    """WaterGAP's land: the mascon file's land less Antarctica (Greenland is modelled)."""
    return world.jpl_land & (world.lat[:, None] >= landmask.ANTARCTIC_LIMIT)


def wghm_block(world: World, months: np.ndarray) -> np.ndarray:
    """Absolute storage in mm (kg m-2), NaN off WaterGAP's land, for ``months``."""
    lt = world.latent
    if world.level is None:
        out = seasonal(lt["wghm_bias"] * (lt["amp_climate"] + 0.7 * lt["wet"]),
                       lt["phase"] + lt["wghm_lag"], months)
        out += seasonal(lt["amp2"], lt["phase2"], months, harmonic=2)
        out += 0.8 * interannual(lt, months)
        out += 0.5 * _variability(world, months)
    else:
        out = model_storage(world, "wghm", months)
    out += 10.0 * _monthly_noise(world, "wghm", months, 2.0)
    if world.axes.submascon_skill is not None:
        out = with_skill(world, "wghm", out, months)
    if world.axes.human_ratio is not None:
        out += human_use(world, months)
        # the groundwater pumped by the record's end was in storage before pumping: the base
        # holds it, so absolute storage stays positive (a constant per cell, as the base)
        out += np.maximum(-human_use(world, WGHM_MONTHS[-1:])[0], 0.0)[None]
    out += lt["wghm_base"][None]
    out[:, ~wghm_land(world)] = np.nan
    return out.astype(np.float32)


def era5_axes(world: World) -> tuple[np.ndarray, np.ndarray]:
    """ERA5 0.25° points covering the extent: latitude descending, longitude as requested
    with ``area`` (−180..180) or 0..359.75 for the globe."""
    if world.is_global:
        return np.arange(90.0, -90.0 - 1e-9, -ERA5_RES), np.arange(0.0, 360.0, ERA5_RES)
    lat = np.arange(world.lat[-1] + 0.25, world.lat[0] - 0.25 - 1e-9, -ERA5_RES)
    west = world.lon[0] - 0.25
    lon = west + ERA5_RES * np.arange(2 * world.cols.size + 1)
    return lat, grid.wrap_lon(lon)


def _interp_matrix(src: np.ndarray, dst: np.ndarray, period: float | None) -> sp.csr_matrix:
    """Linear interpolation weights from centres ``src`` (ascending) to points ``dst``."""
    n = src.size
    if period is None:
        pos = np.clip(np.interp(dst, src, np.arange(n)), 0, n - 1)
        lo = np.minimum(np.floor(pos).astype(int), n - 2 if n > 1 else 0)
        frac = pos - lo
        hi = np.minimum(lo + 1, n - 1)
    else:  # periodic axis, src regularly spaced over the whole period
        step = period / n
        pos = ((dst - src[0]) % period) / step
        lo = np.floor(pos).astype(int) % n
        frac = pos - np.floor(pos)
        hi = (lo + 1) % n
    rows = np.arange(dst.size)
    return sp.csr_matrix((np.concatenate([1 - frac, frac]),
                          (np.concatenate([rows, rows]), np.concatenate([lo, hi]))),
                         shape=(dst.size, n))


def era5_geometry(world: World) -> tuple[sp.csr_matrix, sp.csr_matrix, np.ndarray]:
    """Interpolation from the 0.5° extent to the ERA5 points, and ERA5's sea (cached)."""
    cached = world.latent.get("_era5_geometry")
    if cached is not None:
        # world.latent (arrays) doubles as the cache of this tuple
        return cached  # type: ignore[return-value]
    lat_e, lon_e = era5_axes(world)
    wlat = _interp_matrix(world.lat, lat_e, None)
    if world.is_global:
        wlon = _interp_matrix(grid.LON, grid.wrap_lon(lon_e), 360.0)
    else:
        unwrapped = world.lon[0] + ((world.lon - world.lon[0]) % 360.0)
        wlon = _interp_matrix(unwrapped, world.lon[0] - 0.25 + ERA5_RES * np.arange(lon_e.size),
                              None)
    sea = landmask.land_fraction(lat_e, lon_e, ERA5_RES) < landmask.LAND_THRESHOLD
    world.latent["_era5_geometry"] = (wlat, wlon, sea)  # type: ignore[assignment]
    return wlat, wlon, sea


def era5_block(world: World, months: np.ndarray) -> dict[str, np.ndarray]:
    """ERA5-like monthly means on the 0.25° points, in ERA5's own units, NaN at sea."""
    lt = world.latent
    share = lt["era5_share"]

    def storage(ms: np.ndarray) -> np.ndarray:
        if world.level is not None:
            return share * with_skill(world, "era5", model_storage(world, "era5", ms), ms)
        total = seasonal(share * lt["amp_climate"], lt["phase"], ms)
        total += seasonal(share * lt["amp2"], lt["phase2"], ms, harmonic=2)
        total += share * interannual(lt, ms) + 0.5 * share * _variability(world, ms)
        return total

    m = months.astype("datetime64[M]")
    s_prev, s_now, s_next = storage(m - 1), storage(m), storage(m + 1)
    s_now = s_now + 8.0 * _monthly_noise(world, "era5", m, 1.5)
    moy = (m.astype(int) % 12 + 0.5).astype(np.float32)[:, None, None]
    north = (world.lat >= 0)[None, :, None]
    t_peak = np.where(north, 6.5, 0.5)
    t2m = lt["t2m_mean"] + lt["t2m_amp"] * np.cos(2 * np.pi * (moy - t_peak) / 12.0)
    t2m = t2m + 0.8 * index_at(lt, "index1", m)[:, None, None]
    winter = lt["t2m_mean"] - lt["t2m_amp"]
    snow_amp = np.clip((273.15 - winter) * 6.0, 0.0, 300.0)
    snow_peak = np.where(north, 2.5, 8.5)
    snow = snow_amp * np.maximum(0.0, np.cos(2 * np.pi * (moy - snow_peak) / 12.0)) ** 1.5
    canopy = 0.3 + 0.2 * np.cos(2 * np.pi * (moy - t_peak) / 12.0) * np.ones_like(s_now)
    soil_anom = s_now - (snow - snow.mean()) - canopy
    thick = np.array(list(LAYER_M.values()), np.float32)
    share_l = thick * np.array([1.4, 1.2, 1.0, 0.7], np.float32)
    share_l /= share_l.sum()
    theta = {name: np.clip(lt["theta"] + share_l[k] * soil_anom / (1000.0 * thick[k]),
                           0.01, 0.6) for k, name in enumerate(LAYER_M)}
    # fluxes consistent with the storage change: P − E − R = dS/dt + noise (mm/month)
    d_s = 0.5 * (s_next - s_prev)
    eps = 5.0 * np.random.default_rng([world.seed, 3, int(m[0].astype(int))]).standard_normal(
        d_s.shape).astype(np.float32)
    evap = np.clip(20.0 + 3.0 * (t2m - 273.15), 5.0, 150.0)
    evap = evap + np.maximum(0.0, -(d_s + eps))
    p_minus_r = d_s + eps + evap
    rr = lt["era5_runoff_ratio"]
    precip = p_minus_r / (1.0 - rr)
    runoff = rr * precip
    days = ((m + 1).astype("datetime64[D]") - m.astype("datetime64[D]")).astype(np.float32)
    per_day = (1000.0 * days)[:, None, None]
    fields = {**theta, "sd": snow / 1000.0, "src": canopy / 1000.0, "t2m": t2m,
              "tp": precip / per_day, "e": -evap / per_day, "ro": runoff / per_day}

    wlat, wlon, sea = era5_geometry(world)
    out = {}
    for name, values in fields.items():
        values = np.broadcast_to(values, s_now.shape)
        fine = np.stack([(wlat @ (wlon @ v.T).T) for v in values]).astype(np.float32)
        fine[:, sea] = np.nan
        out[name] = fine
    return out
