"""Helpers of the speed benchmarks: device parameters and figures for ``extra_info``."""

from __future__ import annotations

import numpy as np
import pytest

from twsbench.core import backend

#: Devices a kernel benchmark runs on; CUDA only where CuPy reaches a GPU.
DEVICE_PARAMS = [
    "cpu",
    pytest.param("cuda", marks=[
        pytest.mark.gpu,
        pytest.mark.skipif(not backend.cupy_available(), reason="needs CuPy and a CUDA GPU"),
    ]),
]


def median_s(benchmark) -> float | None:
    """Median seconds of a finished ``benchmark.pedantic`` (None when benchmarks are disabled)."""
    stats = getattr(benchmark, "stats", None)
    if stats is None or getattr(stats, "stats", None) is None:
        return None
    return float(stats.stats.median)


def record(benchmark, medians: dict[str, float], name: str, *, bytes_read: int | None = None,
           bytes_written: int | None = None, relative_to: tuple[str, ...] = (),
           **info) -> None:
    """Put figures into ``benchmark.extra_info``: median, GB/s, ratios to other benchmarks.

    ``relative_to`` names earlier benchmarks (keys of ``medians``); for each one measured in
    this session, ``<this>_over_<other>`` is this median divided by the other's.
    """
    benchmark.extra_info.update(info)
    median = median_s(benchmark)
    if median is None:
        return
    medians[name] = median
    benchmark.extra_info["median_s"] = median
    if bytes_read is not None:
        benchmark.extra_info["bytes_read"] = int(bytes_read)
        benchmark.extra_info["GB_per_s_read"] = bytes_read / median / 1e9
    if bytes_written is not None:
        benchmark.extra_info["bytes_written"] = int(bytes_written)
        benchmark.extra_info["GB_per_s_written"] = bytes_written / median / 1e9
    for other in relative_to:
        if other in medians:
            benchmark.extra_info[f"{name}_over_{other}"] = median / medians[other]


def nbytes(*arrays) -> int:
    """Bytes of NumPy arrays and of SciPy sparse matrices (data, indices, indptr)."""
    total = 0
    for a in arrays:
        if hasattr(a, "indptr"):
            total += a.data.nbytes + a.indices.nbytes + a.indptr.nbytes
        else:
            total += np.asarray(a).nbytes
    return total
