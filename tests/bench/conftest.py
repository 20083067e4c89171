"""Speed benchmarks (pytest-benchmark): fixtures shared by the kernel and ``prepare`` benches.

The benchmarks are slow, so a plain ``pytest`` run skips everything in this folder. They run
with ``--benchmark-only`` or ``--benchmark-enable``, or when ``TWSBENCH_BENCH=1`` is set::

    TWSBENCH_CACHE_DIR=/tmp/twc pytest tests/bench --benchmark-only

Timings go into the benchmark report and ``extra_info`` (``--benchmark-json``); no test asserts
on time. Correctness is checked once per benchmark, outside the timed call.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.bench._helpers import DEVICE_PARAMS
from twsbench.core import backend

BENCH_DIR = Path(__file__).parent


def _bench_requested(config: pytest.Config) -> bool:
    # getoption with a default: the options are absent under ``-p no:benchmark``
    return bool(config.getoption("benchmark_only", default=False)
                or config.getoption("benchmark_enable", default=False)
                or os.environ.get("TWSBENCH_BENCH") == "1")


def pytest_configure(config: pytest.Config) -> None:
    # pytest-benchmark registers its marker; under ``-p no:benchmark`` (and --strict-markers)
    # the modules must still collect, to be skipped below
    config.addinivalue_line("markers", "benchmark(**kwargs): pytest-benchmark options")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip the benchmarks unless they were asked for (this hook sees every item)."""
    if _bench_requested(config):
        return
    skip = pytest.mark.skip(reason="benchmark: run with --benchmark-only, --benchmark-enable "
                                   "or TWSBENCH_BENCH=1")
    for item in items:
        if BENCH_DIR in Path(item.path).parents:
            item.add_marker(skip)


@pytest.fixture(params=DEVICE_PARAMS)
def xp(request):
    """The array module of the benchmark's device (NumPy, or CuPy on a GPU)."""
    return backend.get_xp(request.param)


@pytest.fixture(scope="session")
def medians() -> dict[str, float]:
    """Median seconds of benchmarks run so far, to put ratios into later ones' extra_info."""
    return {}
