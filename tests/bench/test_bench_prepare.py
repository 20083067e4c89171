"""Speed and peak memory of ``prepare`` (no grids cache) on the twin world.

The south-asia twin (the default config) always runs. The global twin runs only with
``TWSBENCH_BENCH_GLOBAL=1``: the first run generates the global twin world (~5 min, ~2.5 GB
under ``$TWSBENCH_CACHE_DIR/twin``). The twin world is generated (or found in the cache) before
the timed call, so the figures are those of ``prepare`` itself: reading, regridding, anomalies,
mascons, features and saving the grids.

Peak memory (``extra_info``): ``ru_maxrss_before_MB`` is ``resource.getrusage`` ``ru_maxrss``,
the peak resident size of the whole pytest process so far (earlier benchmarks included), read
before this benchmark starts. Just before the timed round the process's peak counter is reset
(Linux ``/proc/self/clear_refs``; this resets ``ru_maxrss`` too), so ``peak_rss_round_MB`` is the
process's peak RSS during the timed round; it includes what the process already held
(``rss_before_MB``), so ``peak_rss_round_MB - rss_before_MB`` is what ``prepare`` added. Where
the reset is not allowed, ``peak_rss_round_MB`` is None and ``ru_maxrss_after_MB`` (the process
peak since start) is the only figure.
"""

from __future__ import annotations

import os
import resource
import sys
from pathlib import Path

import pytest

from tests.bench._helpers import DEVICE_PARAMS, record
from twsbench.core.config import parse
from twsbench.prepare.files import resolve_inputs
from twsbench.prepare.store import prepare

_STATUS = Path("/proc/self/status")


def _status_kb(field: str) -> int | None:
    """A ``kB`` field of ``/proc/self/status`` (Linux), else None."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    """Reset the process's peak RSS (``VmHWM``); False where the kernel does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _maxrss_mb() -> float:
    """``ru_maxrss`` in MB (kilobytes on Linux, bytes on macOS)."""
    value = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return value / (1e6 if sys.platform == "darwin" else 1e3)


def _bench_prepare(benchmark, medians, name: str, table: dict, warmup_rounds: int) -> None:
    config = parse(table)
    files = resolve_inputs(config)  # generates the twin world once, outside the timing
    maxrss_before = _maxrss_mb()
    state = {}

    def setup():
        state["rss_before_kb"] = _status_kb("VmRSS")
        state["reset"] = _reset_peak()

    def run():
        return prepare(config, use_cache=False)

    grids, path, cached = benchmark.pedantic(run, setup=setup, rounds=1,
                                             warmup_rounds=warmup_rounds, iterations=1)
    hwm = _status_kb("VmHWM") if state["reset"] else None
    assert not cached
    assert grids.features.shape[0] == grids.months.size
    assert path.exists()
    record(benchmark, medians, name, domain=grids.attrs["domain"],
           device=grids.attrs["device"], months=int(grids.months.size),
           cells=int(grids.cell_index.size), mascons=int(grids.mascon_ids.size),
           grids_file_MB=path.stat().st_size / 1e6,
           input_files_MB=sum(p.stat().st_size for p in files.for_key()) / 1e6,
           peak_rss_round_MB=hwm / 1e3 if hwm is not None else None,
           rss_before_MB=(state["rss_before_kb"] / 1e3
                          if state["rss_before_kb"] is not None else None),
           ru_maxrss_before_MB=maxrss_before, ru_maxrss_after_MB=_maxrss_mb(),
           cpu_count=os.cpu_count(), warmup_rounds=warmup_rounds)


@pytest.mark.benchmark(group="prepare")
@pytest.mark.parametrize("device", DEVICE_PARAMS)
def test_prepare_south_asia(benchmark, medians, device):
    """The default config (south-asia twin, 2002-04..2022-12), no grids cache."""
    _bench_prepare(benchmark, medians, f"prepare_south_asia[{device}]",
                   {"compute": {"device": device}}, warmup_rounds=1)


@pytest.mark.slow
@pytest.mark.benchmark(group="prepare")
@pytest.mark.skipif(os.environ.get("TWSBENCH_BENCH_GLOBAL") != "1",
                    reason="global twin: set TWSBENCH_BENCH_GLOBAL=1 (~5 min and ~2.5 GB once)")
def test_prepare_global(benchmark, medians):
    """The global twin, no grids cache (one round, no warm-up: minutes per round)."""
    _bench_prepare(benchmark, medians, "prepare_global[cpu]",
                   {"domain": {"name": "global"}, "compute": {"device": "cpu"}},
                   warmup_rounds=0)
