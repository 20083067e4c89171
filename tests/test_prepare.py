"""``prepare``: identical grids, anomalies, features from training months, splits, cache."""

from __future__ import annotations

import dataclasses
import shutil

import netCDF4
import numpy as np
import pytest

from tests import tiny
from twsbench.core import kernels
from twsbench.core import months as mo
from twsbench.core.config import Compute, Split, parse
from twsbench.core.errors import ConfigError
from twsbench.core.splits import make_splits
from twsbench.prepare.compute import compute_grids
from twsbench.prepare.files import resolve_inputs
from twsbench.prepare.grids import FEATURES, FIELDS, Grids
from twsbench.prepare.regrid import lat_weights, lon_weights
from twsbench.prepare.store import prepare

TINY = tiny.TINY


def test_grids_are_on_the_domain_land(tiny_grids):
    g = tiny_grids
    assert g.months.size == 249 and g.has_grace.sum() == 216
    assert 5 <= g.n_mascons <= 60
    assert g.features.shape == (249, len(FEATURES), g.n_cells)
    assert g.features.dtype == np.float32
    assert np.all(np.isfinite(g.features))
    for name in FIELDS:
        assert g.fields[name].shape == (249, g.n_cells)
    assert np.all(np.isfinite(g.grace[g.has_grace]))
    assert np.all(np.isnan(g.grace[~g.has_grace]))
    assert np.all(g.grace_sigma[g.has_grace] > 0)
    np.testing.assert_allclose(np.asarray(g.mascons.A.sum(axis=1)).ravel(), 1.0)


def test_grids_never_carry_the_truth(tiny_grids):
    names = {f.name for f in dataclasses.fields(Grids)}
    assert not any("truth" in n for n in names)
    assert not any("truth" in k for k in tiny_grids.fields)
    assert "truth" not in tiny_grids.attrs["inputs"]


def test_every_source_is_an_anomaly_against_the_baseline(tiny_grids):
    g = tiny_grids
    base = (g.months >= np.datetime64("2004-01")) & (g.months <= np.datetime64("2009-12"))
    for name in FIELDS:
        np.testing.assert_allclose(g.fields[name][base].mean(axis=0), 0.0, atol=1e-3)
    # GRACE's baseline leaves out the held-out blocks, whose GRACE is withheld from the models
    visible = base & g.has_grace & ~g.splits["gapfill_withheld"]
    assert (base & g.splits["gapfill_withheld"]).any()
    np.testing.assert_allclose(g.grace[visible].mean(axis=0), 0.0, atol=1e-9)


def test_grace_on_mascons_matches_the_file(tiny_config, tiny_grids):
    from twsbench.inputs import read_grace

    files = resolve_inputs(tiny_config)
    ds = read_grace(files.grace)
    g = tiny_grids
    lwe = ds["lwe_thickness"].sel(lat=g.lat, lon=g.lon).values.reshape(216, -1)[:, g.cell_index]
    expected = lwe[:, [np.flatnonzero(g.cell_mascon == k)[0] for k in range(g.n_mascons)]]
    base = (g.months >= np.datetime64("2004-01")) & (g.months <= np.datetime64("2009-12"))
    visible = base & ~g.splits["gapfill_withheld"]
    expected = expected - expected[visible[g.has_grace]].mean(axis=0)
    np.testing.assert_allclose(g.grace[g.has_grace], expected, atol=1e-9)


def test_feature_statistics_come_from_training_months_only(tiny_grids):
    g = tiny_grids
    train = g.splits["train"]
    for k, name in enumerate(FIELDS):
        values = g.fields[name]
        np.testing.assert_allclose(g.feature_mean[k], values[train].mean(), rtol=1e-5,
                                   atol=1e-6)
        np.testing.assert_allclose(g.feature_std[k], values[train].std(), rtol=1e-4)
        # standardised training months have mean 0 and std 1; other months need not
        np.testing.assert_allclose(g.features[train, k].mean(), 0.0, atol=1e-4)
        np.testing.assert_allclose(g.features[train, k].std(), 1.0, atol=1e-4)
    all_mean = g.fields["t2m"].mean()
    assert not np.isclose(all_mean, g.feature_mean[FIELDS.index("t2m")], rtol=1e-6)


def test_splits_never_share_a_month(tiny_grids):
    s = tiny_grids.splits
    main = [s["train"], s["validation"], s["test"], s["gap"]]
    total = np.sum(main, axis=0)
    np.testing.assert_array_equal(total, 1)  # every month in exactly one split
    np.testing.assert_array_equal(s["gap"], ~tiny_grids.has_grace)
    assert not (s["test_block"] & s["test_scattered"]).any()
    np.testing.assert_array_equal(s["test"], s["test_block"] | s["test_scattered"])
    assert s["validation"].sum() == 24 and s["test_scattered"].sum() == 24


def test_test_blocks_are_contiguous_gap_like_windows():
    months = mo.month_range("2002-04", "2022-12")
    has = ~np.isin(months, mo.MISSING_MONTHS)
    for seed in range(5):
        s = make_splits(months, has, Split(seed=seed, test_blocks=3))
        idx = np.flatnonzero(s["test_block"])
        runs = np.split(idx, np.flatnonzero(np.diff(idx) > 1) + 1)
        spans = [r[-1] - r[0] + 1 for r in runs]
        assert len(runs) >= 3 and all(span <= 11 for span in spans)
        assert sum(r.size for r in runs) >= 3 * 0.75 * 11
        assert not (s["test"] & s["train"]).any() and not (s["validation"] & s["test"]).any()
    a = make_splits(months, has, Split(seed=1))
    b = make_splits(months, has, Split(seed=1))
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_split_with_no_room_is_a_config_error():
    months = mo.month_range("2002-04", "2022-12")
    has = ~np.isin(months, mo.MISSING_MONTHS)
    with pytest.raises(ConfigError, match="split"):
        make_splits(months, has, Split(validation=300))
    with pytest.raises(ConfigError, match="test_blocks"):
        make_splits(months, has, Split(test_blocks=30))


@pytest.mark.slow
def test_cpu_and_dask_paths_give_the_same_grids(tiny_config):
    files = resolve_inputs(tiny_config)
    a = compute_grids(files, tiny_config, use_dask=False)
    b = compute_grids(files, tiny_config, use_dask=True)
    _assert_same(a, b)


@pytest.mark.slow
def test_distributed_scheduler_gives_the_same_grids(tiny_config):
    from distributed import Client, LocalCluster

    files = resolve_inputs(tiny_config)
    reference = compute_grids(files, tiny_config, use_dask=False)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster:
        compute = Compute(scheduler=cluster.scheduler_address)
        config = dataclasses.replace(tiny_config, compute=compute)
        grids, _, cached = prepare(config, use_cache=False)
        with Client(cluster.scheduler_address) as client:
            assert client.run(lambda: 1)  # the cluster really ran
    assert not cached
    _assert_same(reference, grids)


def _assert_same(a: Grids, b: Grids) -> None:
    np.testing.assert_array_equal(a.cell_index, b.cell_index)
    np.testing.assert_array_equal(a.grace, b.grace)
    np.testing.assert_array_equal(a.features, b.features)
    for name in FIELDS:
        np.testing.assert_array_equal(a.fields[name], b.fields[name])


@pytest.mark.slow
def test_cache_reuse_and_new_entries(tmp_path, monkeypatch, tiny_config):
    files = resolve_inputs(tiny_config)  # from the shared cache
    work = tmp_path / "inputs"
    work.mkdir()
    for path in [files.grace, files.wghm, *files.era5]:
        shutil.copy(path, work / path.name)
    monkeypatch.setenv("TWSBENCH_CACHE_DIR", str(tmp_path / "cache"))
    table = {"inputs": {"grace": str(work / files.grace.name), "wghm": str(work / files.wghm.name),
                        "era5": [str(work / p.name) for p in files.era5]},
             "domain": TINY["domain"]}
    config = parse(table)
    first, path1, cached1 = prepare(config)
    assert not cached1 and path1.exists()
    second, path2, cached2 = prepare(config)
    assert cached2 and path2 == path1
    np.testing.assert_array_equal(first.features, second.features)
    # a changed config makes a new entry
    other = parse({**table, "split": {"seed": 5}})
    _, path3, cached3 = prepare(other)
    assert not cached3 and path3 != path1
    # a changed input file makes a new entry
    with netCDF4.Dataset(work / files.wghm.name, "a") as ds:
        ds.setncattr("comment", "edited")
    _, path4, cached4 = prepare(config)
    assert not cached4 and path4 not in (path1, path3)
    assert not list((tmp_path / "cache" / "grids").glob(".*.tmp"))  # nothing half-written


@pytest.mark.parametrize("table, needle", [
    ({"domain": {"bbox": [-10.0, -5.0, -30.0, -25.0]}}, "domain"),  # open ocean
    ({**TINY, "period": {"start": "2030-01", "end": "2031-12", "baseline_start": "2030-01",
                         "baseline_end": "2030-12"}}, "period"),
    ({**TINY, "split": {"validation": 400}}, "split"),
    ({**TINY, "period": {"baseline_start": "1990-01", "baseline_end": "1995-12"}}, "baseline"),
])
def test_configs_that_make_no_sense(table, needle):
    with pytest.raises(ConfigError, match=needle):
        prepare(parse(table))


def test_unknown_config_keys_are_rejected():
    with pytest.raises(ConfigError, match="unknown"):
        parse({"domain": {"nmae": "south-asia"}})
    with pytest.raises(ConfigError, match="unknown"):
        parse({"domian": {}})


def test_regrid_preserves_the_area_weighted_mean():
    rng = np.random.default_rng(0)
    src_lat = np.arange(-90.0, 90.01, 0.25)
    src_lon = np.arange(-180.0, 180.0, 0.25)
    x = rng.normal(size=(3, src_lat.size, src_lon.size))
    dst_lat, dst_lon = np.arange(-89.75, 90, 0.5), np.arange(-179.75, 180, 0.5)
    out = kernels.regrid(lat_weights(src_lat, dst_lat), lon_weights(src_lon, dst_lon), x)

    def area_mean(field, lat, res):
        north = np.sin(np.deg2rad(np.clip(lat + res / 2, -90, 90)))
        south = np.sin(np.deg2rad(np.clip(lat - res / 2, -90, 90)))
        w = (north - south)[:, None] * np.ones(field.shape[-1])
        return (field * w).sum(axis=(-2, -1)) / w.sum()

    np.testing.assert_allclose(area_mean(out, dst_lat, 0.5), area_mean(x, src_lat, 0.25),
                               rtol=1e-6, atol=1e-12)


def test_regrid_hand_computed_cell_and_missing_values():
    # one 0.5° cell at the equator from 0.25° points: weights 1/4, 1/2, 1/4 in each direction
    src = np.array([0.0, 0.25, 0.5])
    x = np.arange(9, dtype=float).reshape(1, 3, 3)
    w_lat, w_lon = lat_weights(src, np.array([0.25])), lon_weights(src, np.array([0.25]))
    out = kernels.regrid(w_lat, w_lon, x)
    wy = np.array([np.sin(np.deg2rad(0.125)), np.sin(np.deg2rad(0.375)) - np.sin(
        np.deg2rad(0.125)), np.sin(np.deg2rad(0.5)) - np.sin(np.deg2rad(0.375))])
    wx = np.array([0.125, 0.25, 0.125])
    expected = (wy[:, None] * wx[None] * x[0]).sum() / (wy.sum() * wx.sum())
    np.testing.assert_allclose(out[0, 0, 0], expected, rtol=1e-12)
    x[0, 1, 1] = np.nan  # a missing source cell is left out of the mean
    w = wy[:, None] * wx[None]
    w[1, 1] = 0
    out = kernels.regrid(w_lat, w_lon, x)
    np.testing.assert_allclose(out[0, 0, 0], np.nansum(w * x[0]) / w.sum(), rtol=1e-12)
    out = kernels.regrid(w_lat, w_lon, np.full((1, 3, 3), np.nan))
    assert np.isnan(out).all()


def test_deviation_kernel_removes_mascon_means(tiny_grids):
    m = tiny_grids.mascons
    x = tiny_grids.fields["wghm"]
    d = kernels.deviation(m.A, m.cell_mascon, x)
    np.testing.assert_allclose(kernels.apply_A(m.A, d), 0.0, atol=1e-4)
    np.testing.assert_allclose(kernels.apply_AT(m.AT, np.ones((2, m.n_mascons))).sum(axis=1),
                               m.n_mascons, rtol=1e-12)


@pytest.mark.slow
def test_prepare_cli_then_cache_hit(tmp_path):
    import subprocess
    import sys

    cfg = tmp_path / "tiny.toml"
    cfg.write_text(tiny.toml(tiny.TINY))
    run = lambda: subprocess.run([sys.executable, "-m", "twsbench.cli", "prepare", str(cfg), "-q"],  # noqa: E731
                                 capture_output=True, text=True, timeout=600)
    first = run()
    assert first.returncode == 0, first.stderr
    second = run()
    assert second.returncode == 0 and "from the cache" in second.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text(tiny.toml(tiny.table(split={"validation": 400})))
    result = subprocess.run([sys.executable, "-m", "twsbench.cli", "prepare", str(bad), "-q"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
