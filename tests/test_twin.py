"""The twin world read back through the suite's readers: conventions and construction."""

from __future__ import annotations

import numpy as np
import pytest

from twsbench.core import landmask
from twsbench.core import months as mo
from twsbench.core.domains import get_domain
from twsbench.core.mascons import mascons_on_grid
from twsbench.inputs import read_era5, read_grace, read_truth, read_wghm
from twsbench.twin.world import build_world

pytestmark = pytest.mark.slow  # the default-domain world, read back


@pytest.fixture(scope="module")
def inputs(south_asia_world):
    files = south_asia_world
    return {"grace": read_grace(files.grace), "wghm": read_wghm(files.wghm),
            "era5": read_era5(list(files.era5)), "truth": read_truth(files.truth)}


@pytest.fixture(scope="module")
def on_mascons(inputs):
    """GRACE, its σ and the truth on the domain's land mascons (via the operator A)."""
    g, truth = inputs["grace"], inputs["truth"]
    sub = g.sel(lat=truth["lat"], lon=truth["lon"])
    lwe = sub["lwe_thickness"].values
    land = landmask.land_mask(truth["lat"].values, truth["lon"].values)
    mask = land & sub["land_mask"].values & np.isfinite(lwe[0])
    mascons, flat = mascons_on_grid(sub["mascon_id"].values, mask, truth["lat"].values)
    n = g.sizes["time"]
    cells = lambda a: a.reshape(a.shape[0], -1)[:, flat].T  # noqa: E731
    t = cells(truth.sel(time=g["time"]).values)
    return {"mascons": mascons, "grace_cells": cells(lwe), "sigma_cells":
            cells(sub["uncertainty"].values), "truth_mean": mascons.mean(t), "n": n}


def _conventions(da):
    lat, lon = da["lat"].values, da["lon"].values
    assert np.all(np.diff(lat) > 0)
    assert np.all(np.diff(lon) > 0)
    assert lon.min() >= -180 and lon.max() < 180
    t = da["time"].values
    assert t.dtype == np.dtype("datetime64[ns]")
    np.testing.assert_array_equal(t, t.astype("datetime64[M]").astype("datetime64[ns]"))
    assert da.attrs["units"].startswith("mm") or da.attrs["units"] == "K"


def test_all_inputs_on_internal_conventions(inputs):
    _conventions(inputs["grace"]["lwe_thickness"])
    _conventions(inputs["wghm"])
    for name in ("storage", "precip", "evap", "runoff"):
        _conventions(inputs["era5"][name])
    _conventions(inputs["truth"])
    assert inputs["grace"]["lwe_thickness"].attrs["units"] == "mm"
    assert inputs["wghm"].attrs["units"] == "mm"
    assert inputs["era5"]["storage"].attrs["units"] == "mm"


def test_grace_has_216_months_of_2002_04_to_2022_12(inputs):
    t = inputs["grace"]["time"].values.astype("datetime64[M]")
    assert t.size == 216
    assert str(t[0]) == "2002-04" and str(t[-1]) == "2022-12"
    period = mo.month_range("2002-04", "2022-12")
    np.testing.assert_array_equal(t, period[~np.isin(period, mo.MISSING_MONTHS)])
    epochs = inputs["grace"]["epoch"].values
    offset = np.abs(epochs - mo.mid_month(t)) / np.timedelta64(1, "D")
    assert offset.max() <= 18.0  # JPL-like record times, some in the neighbouring month
    assert (epochs.astype("datetime64[M]") != t).sum() >= 3


def test_other_inputs_cover_the_same_months(inputs):
    period = mo.month_range("2002-04", "2022-12").astype("datetime64[ns]")
    for da in (inputs["wghm"], inputs["era5"]["storage"], inputs["truth"]):
        assert np.isin(period, da["time"].values).all()
    assert inputs["truth"].sizes["time"] == 249


def test_grace_is_mascon_means_of_truth_plus_noise_of_about_stated_size(on_mascons):
    m = on_mascons["mascons"]
    grace = m.mean(on_mascons["grace_cells"])
    sigma = m.mean(on_mascons["sigma_cells"])
    # GRACE and σ are constant over each mascon's land cells
    np.testing.assert_allclose(m.spread(grace), on_mascons["grace_cells"], atol=1e-6)
    np.testing.assert_allclose(m.spread(sigma), on_mascons["sigma_cells"], atol=1e-6)
    z = (grace - on_mascons["truth_mean"]) / sigma
    assert m.n_mascons > 100
    assert abs(z.mean()) < 0.1
    # realistic: σ only estimates the error (a factor per mascon), leakage and damping add to it
    assert 0.75 < z.std() < 1.25
    assert np.quantile(np.abs(z), 0.999) < 6  # leakage from glaciers makes a few outliers
    # the signal dominates the noise: GRACE follows the truth's mascon means
    r = np.corrcoef(grace.ravel(), on_mascons["truth_mean"].ravel())[0, 1]
    assert r > 0.9
    assert 5.0 < np.median(sigma) < 80.0  # a few cm, as JPL's land mascons


def test_truth_is_an_anomaly_on_land_only(inputs):
    truth = inputs["truth"]
    base = truth.sel(time=slice("2004-01", "2009-12"))
    assert base.sizes["time"] == 72
    np.testing.assert_allclose(base.mean("time").values[np.isfinite(base.values[0])], 0,
                               atol=1e-3)
    land = landmask.land_mask(truth["lat"].values, truth["lon"].values)
    finite = np.isfinite(truth.values[0])
    np.testing.assert_array_equal(finite, land)


def _trend(da, lat, lon):
    series = da.sel(lat=lat, lon=lon, method="nearest").sel(time=slice("2003-01", "2021-12"))
    years = (series["time"].values.astype("datetime64[M]").astype(int)) / 12.0
    return np.polyfit(years, series.values, 1)[0]


def test_depletion_hotspot_is_in_truth_grace_and_watergap_but_not_era5(inputs):
    # north-west India (the twin's hotspot at 29.5N 76E): WaterGAP simulates the pumping
    # (the realistic level's human_ratio 1, with a factor and footprint of its own), ERA5 not
    assert _trend(inputs["truth"], 29.5, 76.0) < -15.0
    assert _trend(inputs["wghm"], 29.5, 76.0) < -10.0
    assert abs(_trend(inputs["era5"]["storage"], 29.5, 76.0)) < 5.0
    assert _trend(inputs["grace"]["lwe_thickness"], 29.5, 76.0) < -3.0  # diluted over a mascon


def test_watergap_is_absolute_storage_with_the_seasonal_cycle(inputs):
    w = inputs["wghm"].sel(time=slice("2004-01", "2009-12"))
    assert float(w.min()) > 0  # absolute storage, not an anomaly
    anomaly = w - w.mean("time")
    truth = inputs["truth"].sel(time=slice("2004-01", "2009-12"))
    r = np.corrcoef(np.nan_to_num(anomaly.values.ravel()),
                    np.nan_to_num(truth.sel(lat=w.lat, lon=w.lon).values.ravel()))[0, 1]
    assert 0.5 < r < 0.99  # related to the truth, with its own errors


def test_era5_fluxes_close_the_storage_budget(inputs):
    e = inputs["era5"].sel(time=slice("2003-01", "2021-12"))
    storage = e["storage"].values
    d_s = 0.5 * (storage[2:] - storage[:-2])
    budget = (e["precip"] - e["evap"] - e["runoff"]).values[1:-1]
    land = np.isfinite(d_s) & np.isfinite(budget)
    residual = budget[land] - d_s[land]
    assert abs(residual.mean()) < 2.0
    assert residual.std() < 15.0  # noise plus ERA5's own storage noise
    assert np.all(e["precip"].values[np.isfinite(e["precip"].values)] >= 0)


def test_ice_sheets_and_ocean_are_not_land():
    lat = np.array([-75.25, 72.25, 0.25, 28.25])
    lon = np.array([0.25, -40.25, -150.25, 77.25])
    mask = landmask.land_mask(lat, lon)
    assert not mask[0].any() and not mask[1, 1] and not mask[2, 2]
    assert mask[3, 3]  # Delhi region


def test_same_seed_same_arrays_other_seed_other_arrays():
    domain = get_domain(bbox=(24.0, 30.0, 76.0, 84.0))
    a, b, c = build_world(domain, 5), build_world(domain, 5), build_world(domain, 6)
    np.testing.assert_array_equal(a.truth, b.truth)
    np.testing.assert_array_equal(a.grace, b.grace)
    np.testing.assert_array_equal(a.sigma, b.sigma)
    assert not np.allclose(np.nan_to_num(a.truth), np.nan_to_num(c.truth))
