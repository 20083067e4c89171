"""The array backend: device choice, and CPU/GPU parity of every kernel (GPU tests skip
without CUDA)."""

from __future__ import annotations

import numpy as np
import pytest

from twsbench.core import backend, kernels
from twsbench.core.errors import ConfigError
from twsbench.core.mascons import build_mascons
from twsbench.prepare.regrid import lat_weights, lon_weights

gpu = pytest.mark.skipif(not backend.cupy_available(), reason="needs CuPy and a CUDA GPU")


def test_cpu_is_always_available():
    assert backend.resolve("cpu") == "cpu"
    assert backend.get_xp("cpu") is np
    assert backend.resolve("auto") in ("cpu", "cuda")
    with pytest.raises(ConfigError, match=r"\[compute\] device: expected one of"):
        backend.resolve("tpu")


@pytest.mark.skipif(backend.cupy_available() or backend.torch_cuda_available(),
                    reason="a GPU is present")
def test_cuda_without_a_gpu_is_a_clear_error():
    assert backend.resolve("auto") == "cpu"
    assert backend.torch_device("auto") == "cpu"
    for call in (backend.get_xp, backend.resolve, backend.torch_device):
        with pytest.raises(ConfigError, match="expected a CUDA GPU"):
            call("cuda")


def test_one_device_setting_governs_cupy_and_torch(monkeypatch):
    """A GPU seen by torch alone (no CuPy): ``auto`` is CUDA for both; the kernels fall back to
    NumPy, the torch models run on CUDA; ``cpu`` is the CPU for both."""
    monkeypatch.setattr(backend, "cupy_available", lambda: False)
    monkeypatch.setattr(backend, "torch_cuda_available", lambda: True)
    assert backend.resolve("auto") == "cuda"
    assert backend.get_xp("auto") is np
    assert backend.torch_device("auto") == "cuda"
    assert backend.torch_device("cpu") == "cpu"
    # and one where CuPy sees the GPU but torch is a CPU build: a clear error for torch
    monkeypatch.setattr(backend, "cupy_available", lambda: True)
    monkeypatch.setattr(backend, "torch_cuda_available", lambda: False)
    assert backend.resolve("auto") == "cuda"
    with pytest.raises(ConfigError, match="CUDA build of torch"):
        backend.torch_device("auto")


def test_to_device_and_back_is_a_no_op_on_numpy():
    x = np.arange(6.0)
    assert backend.to_device(x, np) is x
    np.testing.assert_array_equal(backend.to_numpy(x), x)
    backend.synchronize(np)


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(3)
    ids = rng.integers(0, 40, 2000)
    m = build_mascons(ids, rng.uniform(0.5, 2.0, ids.size))
    x = rng.normal(size=(30, ids.size))
    src_lat, src_lon = np.arange(-10.0, 10.01, 0.25), np.arange(0.0, 20.0, 0.25)
    field = rng.normal(size=(30, src_lat.size, src_lon.size))
    field[:, ::7, ::5] = np.nan
    w_lat = lat_weights(src_lat, np.arange(-9.75, 10.0, 0.5))
    w_lon = lon_weights(src_lon, np.arange(0.25, 20.0, 0.5))
    return m, x, field, w_lat, w_lon


@gpu
@pytest.mark.gpu
def test_kernels_match_on_gpu(problem):
    import cupy

    m, x, field, w_lat, w_lon = problem
    A, AT = backend.to_device(m.A, cupy), backend.to_device(m.AT, cupy)
    xd = cupy.asarray(x)
    cm = cupy.asarray(m.cell_mascon)
    pairs = [
        (kernels.apply_A(m.A, x), kernels.apply_A(A, xd)),
        (kernels.apply_AT(m.AT, kernels.apply_A(m.A, x)),
         kernels.apply_AT(AT, kernels.apply_A(A, xd))),
        (kernels.deviation(m.A, m.cell_mascon, x), kernels.deviation(A, cm, xd)),
        (kernels.regrid(w_lat, w_lon, field),
         kernels.regrid(backend.to_device(w_lat, cupy), backend.to_device(w_lon, cupy),
                        cupy.asarray(field), cupy)),
        (kernels.anomaly(x, np.arange(30) < 12), kernels.anomaly(
            xd, cupy.asarray(np.arange(30) < 12), cupy)),
        (kernels.standardise(x, 1.5, 2.0), kernels.standardise(xd, 1.5, 2.0)),
    ]
    for cpu, dev in pairs:
        np.testing.assert_allclose(backend.to_numpy(dev), cpu, rtol=1e-10, atol=1e-10)


def test_blocked_kernels_equal_the_plain_formula(problem):
    m, x, *_ = problem
    assert x.shape[0] > kernels.MONTH_BLOCK  # the blocked path
    np.testing.assert_allclose(kernels.apply_A(m.A, x), (m.A @ x.T).T, rtol=0, atol=1e-12)
    np.testing.assert_allclose(kernels.deviation(m.A, m.cell_mascon, x),
                               x - ((m.A @ x.T).T)[:, m.cell_mascon], rtol=0, atol=1e-12)


def test_regrid_with_a_changing_mask_equals_month_by_month(problem):
    *_, field, w_lat, w_lon = problem
    changing = field.copy()
    changing[3, 10:20, 10:20] = np.nan  # the mask now differs between months
    whole = kernels.regrid(w_lat, w_lon, changing)
    by_month = np.concatenate([kernels.regrid(w_lat, w_lon, changing[k:k + 1])
                               for k in range(changing.shape[0])])
    np.testing.assert_allclose(whole, by_month, rtol=1e-12, atol=1e-12)
