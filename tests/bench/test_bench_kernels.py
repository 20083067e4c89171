"""Speed of the hot kernels on global data, against the references the issue names.

- ``apply_A`` on 249 months of the global land grid (~59k cells, ~1,590 twin mascons), against a
  plain NumPy copy of the same bytes (the memory-bandwidth bound) and a straightforward xarray
  ``groupby("mascon_ID").mean()`` (unweighted: the reference the issue names, not the same sum).
- ``apply_AT``, ``deviation``, ``anomaly`` and ``standardise`` on the same global data.
- Conservative regridding 0.25° → 0.5° (ERA5-like points, NaN over the sea) against
  xarray-regrid's conservative method on the same data.

Every kernel runs on the CPU and, where CuPy reaches a GPU, on CUDA (synchronised inside the
timed call). Correctness is checked once per benchmark, outside the timed call.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util

import numpy as np
import pytest
import xarray as xr

from tests.bench._helpers import nbytes, record
from twsbench.core import backend, kernels, landmask
from twsbench.core import geometry as grid
from twsbench.core import months as mo
from twsbench.core.mascons import Mascons, mascons_on_grid, twin_tiling
from twsbench.prepare import regrid
from twsbench.prepare.grids import FEATURES

MONTHS = 249  # 2002-04 .. 2022-12
#: Months of the regridding comparison: 249 global 0.25° months are ~1 GB of float32 input and
#: ~8 GB of temporaries in our kernel, so both sides get the same 60 months.
REGRID_MONTHS = 60


def _device(xp) -> str:
    return "cpu" if xp is np else "cuda"


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


# ------------------------------------------------------------------------------------------
# data


@pytest.fixture(scope="module")
def mascons() -> Mascons:
    """Twin mascons of the global 0.5° land grid."""
    land = landmask.land_mask(grid.LAT, grid.LON)
    m, _ = mascons_on_grid(twin_tiling(), land, grid.LAT)
    return m


@pytest.fixture(scope="module")
def cell_x(mascons) -> np.ndarray:
    """``(months, cells)`` float64 random field on the global land cells."""
    return np.random.default_rng(0).standard_normal((MONTHS, mascons.n_cells))


def _weighted_means(m: Mascons, x: np.ndarray) -> np.ndarray:
    """Reference mascon means by weighted bincount, month by month."""
    area = np.bincount(m.cell_mascon, weights=m.weights, minlength=m.n_mascons)
    w = m.weights / area[m.cell_mascon]
    return np.stack([np.bincount(m.cell_mascon, weights=w * row, minlength=m.n_mascons)
                     for row in x])


# ------------------------------------------------------------------------------------------
# apply_A and its references


@pytest.mark.benchmark(group="apply_A")
def test_numpy_copy(benchmark, xp, cell_x, medians):
    """The bandwidth bound: copying the bytes ``apply_A`` reads."""
    x = backend.to_device(cell_x, xp)
    out = xp.empty_like(x)

    def run():
        xp.copyto(out, x)
        backend.synchronize(xp)

    benchmark.pedantic(run, rounds=30, warmup_rounds=1, iterations=1)
    assert bool((out == x).all())
    record(benchmark, medians, f"copy[{_device(xp)}]", bytes_read=cell_x.nbytes,
           shape=list(cell_x.shape), dtype=str(cell_x.dtype))


@pytest.mark.benchmark(group="apply_A")
def test_apply_A(benchmark, xp, mascons, cell_x, medians):
    """Mascon means of 249 global months (``A @ x`` with months first)."""
    dev = _device(xp)
    A, x = backend.to_device(mascons.A, xp), backend.to_device(cell_x, xp)

    def run():
        y = kernels.apply_A(A, x)
        backend.synchronize(xp)
        return y

    y = backend.to_numpy(benchmark.pedantic(run, rounds=20, warmup_rounds=1, iterations=1))
    err = float(np.abs(y - _weighted_means(mascons, cell_x)).max())
    assert err <= 1e-10
    record(benchmark, medians, f"apply_A[{dev}]", bytes_read=nbytes(cell_x, mascons.A),
           relative_to=(f"copy[{dev}]",), months=MONTHS, cells=mascons.n_cells,
           mascons=mascons.n_mascons, nnz=int(mascons.A.nnz), max_abs_err_vs_bincount=err)


@pytest.mark.benchmark(group="apply_A")
@pytest.mark.parametrize("use_flox", [True, False], ids=["flox", "plain"])
def test_xarray_groupby_mean(benchmark, mascons, cell_x, medians, use_flox):
    """A straightforward xarray ``groupby("mascon_ID").mean()`` (unweighted) on the same data,
    with flox (xarray's default when it is installed) and without (xarray's own loop)."""
    da = xr.DataArray(cell_x, dims=("time", "cell"),
                      coords={"mascon_ID": ("cell", mascons.ids[mascons.cell_mascon])})

    def run():
        with xr.set_options(use_flox=use_flox):
            return da.groupby("mascon_ID").mean()

    rounds = 10 if use_flox else 2
    out = benchmark.pedantic(run, rounds=rounds, warmup_rounds=1, iterations=1)
    # same grouping as A, unweighted: compare with plain bincount means
    counts = np.bincount(mascons.cell_mascon, minlength=mascons.n_mascons)
    ref = np.stack([np.bincount(mascons.cell_mascon, weights=row, minlength=mascons.n_mascons)
                    for row in cell_x]) / counts
    np.testing.assert_array_equal(out["mascon_ID"].values, mascons.ids)
    np.testing.assert_allclose(out.values, ref, rtol=0, atol=1e-10)
    options = xr.get_options()
    label = f"xarray_groupby[{'flox' if use_flox else 'plain'}]"
    record(benchmark, medians, label, bytes_read=cell_x.nbytes,
           relative_to=("apply_A[cpu]", "copy[cpu]"),
           xarray=xr.__version__, flox=_version("flox"), numbagg=_version("numbagg"),
           use_flox=use_flox, use_numbagg=bool(options["use_numbagg"]),
           use_bottleneck=bool(options["use_bottleneck"]), weighted=False)


# ------------------------------------------------------------------------------------------
# apply_AT, deviation


@pytest.mark.benchmark(group="apply_AT")
def test_apply_AT(benchmark, xp, mascons, cell_x, medians):
    """The adjoint ``A.T g``: 249 months of mascon values onto the global land cells."""
    dev = _device(xp)
    g_host = kernels.apply_A(mascons.A, cell_x)
    AT_host = mascons.AT
    AT, g = backend.to_device(AT_host, xp), backend.to_device(g_host, xp)

    def run():
        y = kernels.apply_AT(AT, g)
        backend.synchronize(xp)
        return y

    y = backend.to_numpy(benchmark.pedantic(run, rounds=20, warmup_rounds=1, iterations=1))
    # adjoint identity <A x, g> = <x, A.T g>, month by month
    lhs = np.einsum("tm,tm->t", kernels.apply_A(mascons.A, cell_x), g_host)
    rhs = np.einsum("tn,tn->t", cell_x, y)
    rel = float(np.abs(lhs - rhs).max() / np.abs(lhs).max())
    assert rel <= 1e-10
    record(benchmark, medians, f"apply_AT[{dev}]", bytes_read=nbytes(g_host, AT_host),
           bytes_written=y.nbytes, relative_to=(f"copy[{dev}]",), adjoint_rel_err=rel)


@pytest.mark.benchmark(group="deviation")
def test_deviation(benchmark, xp, mascons, cell_x, medians):
    """Sub-mascon deviation ``x − E A x`` of 249 global months."""
    dev = _device(xp)
    A, x = backend.to_device(mascons.A, xp), backend.to_device(cell_x, xp)
    cell_mascon = backend.to_device(mascons.cell_mascon, xp)

    def run():
        y = kernels.deviation(A, cell_mascon, x)
        backend.synchronize(xp)
        return y

    y = backend.to_numpy(benchmark.pedantic(run, rounds=10, warmup_rounds=1, iterations=1))
    residual = float(np.abs(kernels.apply_A(mascons.A, y)).max())  # A D = 0
    assert residual <= 1e-12
    record(benchmark, medians, f"deviation[{dev}]", bytes_read=nbytes(cell_x, mascons.A),
           relative_to=(f"copy[{dev}]",), max_abs_mascon_mean_of_deviation=residual)


# ------------------------------------------------------------------------------------------
# anomaly, standardise (elementwise, bandwidth-bound)


@pytest.mark.benchmark(group="anomaly")
def test_anomaly(benchmark, xp, cell_x, medians):
    """Anomalies against the 2004–2009 baseline of 249 global months (float64)."""
    dev = _device(xp)
    period = mo.month_range("2002-04", "2022-12")
    base_host = (period >= np.datetime64("2004-01", "M")) & (period <= np.datetime64("2009-12",
                                                                                      "M"))
    x, base = backend.to_device(cell_x, xp), backend.to_device(base_host, xp)

    def run():
        y = kernels.anomaly(x, base, xp)
        backend.synchronize(xp)
        return y

    y = backend.to_numpy(benchmark.pedantic(run, rounds=10, warmup_rounds=1, iterations=1))
    assert float(np.abs(y[base_host].mean(axis=0)).max()) <= 1e-12
    record(benchmark, medians, f"anomaly[{dev}]", bytes_read=cell_x.nbytes,
           relative_to=(f"copy[{dev}]",), baseline_months=int(base_host.sum()))


@pytest.mark.benchmark(group="standardise")
def test_standardise(benchmark, xp, mascons, medians):
    """Standardising the global feature stack ``(249, features, cells)`` in float32."""
    dev = _device(xp)
    rng = np.random.default_rng(1)
    shape = (MONTHS, len(FEATURES), mascons.n_cells)
    stack_host = rng.standard_normal(shape, dtype=np.float32)
    mean_host = rng.standard_normal((1, shape[1], 1)).astype(np.float32)
    std_host = (1.0 + rng.random((1, shape[1], 1))).astype(np.float32)
    stack = backend.to_device(stack_host, xp)
    mean, std = backend.to_device(mean_host, xp), backend.to_device(std_host, xp)

    def run():
        y = kernels.standardise(stack, mean, std)
        backend.synchronize(xp)
        return y

    y = backend.to_numpy(benchmark.pedantic(run, rounds=5, warmup_rounds=1, iterations=1))
    assert y.dtype == np.float32
    np.testing.assert_allclose(y[:3], (stack_host[:3] - mean_host) / std_host, rtol=1e-6)
    record(benchmark, medians, f"standardise[{dev}]", bytes_read=stack_host.nbytes,
           shape=list(shape))


# ------------------------------------------------------------------------------------------
# conservative regridding 0.25° -> 0.5°

SRC_LAT = np.linspace(-90.0, 90.0, 721)  # ERA5's 90..-90, sorted ascending for our kernel
SRC_LON = np.arange(-180.0, 180.0, 0.25)
SRC_RES = 0.25


@pytest.fixture(scope="module")
def era5_like() -> np.ndarray:
    """``(REGRID_MONTHS, 721, 1440)`` float32 in [0, 1), NaN on cells without any land."""
    x = np.random.default_rng(2).random((REGRID_MONTHS, SRC_LAT.size, SRC_LON.size),
                                        dtype=np.float32)
    sea = landmask.land_fraction(SRC_LAT, SRC_LON, SRC_RES) == 0
    x[:, sea] = np.nan
    return x


@pytest.fixture(scope="module")
def valid_field() -> np.ndarray:
    """A few fully valid months (no NaN) for the numerical checks."""
    return np.random.default_rng(3).random((3, SRC_LAT.size, SRC_LON.size), dtype=np.float32)


def _xarray_regrid(x: np.ndarray, skipna: bool = True) -> np.ndarray:
    import xarray_regrid  # noqa: F401  (registers the .regrid accessor)

    da = xr.DataArray(x, dims=("time", "lat", "lon"),
                      coords={"time": np.arange(x.shape[0]), "lat": SRC_LAT, "lon": SRC_LON})
    target = xr.Dataset(coords={"lat": grid.LAT, "lon": grid.LON})
    return da.regrid.conservative(target, skipna=skipna).values


def _area_mean(x: np.ndarray, lat: np.ndarray, res: float) -> np.ndarray:
    """Area-weighted mean of each month, cell areas from the cell bounds."""
    w = grid.cell_area(lat, res, res)[:, None]
    return (x.astype(np.float64) * w).sum(axis=(1, 2)) / (w.sum() * x.shape[2])


@pytest.mark.benchmark(group="regrid")
def test_regrid(benchmark, xp, era5_like, valid_field, medians):
    """Ours: separable sparse overlap weights, NaN left out of each cell's weighted mean."""
    dev = _device(xp)
    w_lat = backend.to_device(regrid.lat_weights(SRC_LAT, grid.LAT), xp)
    w_lon = backend.to_device(regrid.lon_weights(SRC_LON, grid.LON), xp)
    x = backend.to_device(era5_like, xp)

    def run():
        y = kernels.regrid(w_lat, w_lon, x, xp)
        backend.synchronize(xp)
        return y

    y = benchmark.pedantic(run, rounds=3, warmup_rounds=1, iterations=1)
    assert y.shape == (REGRID_MONTHS, grid.LAT.size, grid.LON.size)
    # conservation on a fully valid field: area-weighted global means agree
    z = backend.to_numpy(kernels.regrid(w_lat, w_lon, backend.to_device(valid_field, xp), xp))
    before = _area_mean(valid_field, SRC_LAT, SRC_RES)
    after = _area_mean(z, grid.LAT, grid.RES)
    rel = float(np.abs(after / before - 1).max())
    assert rel <= 1e-6
    record(benchmark, medians, f"regrid[{dev}]", bytes_read=era5_like.nbytes,
           months=REGRID_MONTHS, src_shape=list(era5_like.shape[1:]),
           dst_shape=[grid.LAT.size, grid.LON.size], nan_share=float(np.isnan(era5_like[0]).mean()),
           global_mean_rel_err=rel)


@pytest.mark.benchmark(group="regrid")
def test_xarray_regrid_conservative(benchmark, era5_like, valid_field, medians):
    """xarray-regrid's conservative method (``skipna=True``) on the same data."""
    w_lat = regrid.lat_weights(SRC_LAT, grid.LAT)
    w_lon = regrid.lon_weights(SRC_LON, grid.LON)
    ref = benchmark.pedantic(_xarray_regrid, args=(era5_like,), rounds=3, warmup_rounds=1,
                             iterations=1)
    # same NaN policy: a target cell is NaN exactly when none of its sources has data
    ours = kernels.regrid(w_lat, w_lon, era5_like[:2])
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(ref[:2]))
    del ours
    # values on a fully valid field; xarray-regrid weighs each source cell's latitude overlap
    # in degrees times the cell's whole area (ours: exact overlap in sin φ) and gives the ERA5
    # pole rows zero area, so the two part most near the poles
    ours = kernels.regrid(w_lat, w_lon, valid_field)
    theirs = _xarray_regrid(valid_field)
    diff = np.abs(ours - theirs).max(axis=(0, 2))  # by target latitude
    lat = np.abs(grid.LAT)
    tol = {"lat<=60": (lat <= 60, 1e-3), "lat<=85": (lat <= 85, 5e-3), "all": (lat <= 90, 0.1)}
    observed = {name: float(diff[sel].max()) for name, (sel, _) in tol.items()}
    for name, (_, limit) in tol.items():
        assert observed[name] <= limit, (name, observed[name])
    record(benchmark, medians, "xarray_regrid[cpu]", bytes_read=era5_like.nbytes,
           relative_to=("regrid[cpu]",), months=REGRID_MONTHS,
           skipna=True,
           xarray_regrid=_version("xarray-regrid"),
           sparse_weights=importlib.util.find_spec("sparse") is not None,
           max_abs_diff_vs_ours_valid_field=observed, value_range=[0.0, 1.0])
