"""Wall time and peak memory of a block of work, for fit, predict and every other stage.

Peak memory is the process's resident set size (RSS), sampled every few milliseconds while
the block runs: it sees memory allocated by C and C++ libraries (LightGBM, scikit-learn,
torch) that Python's tracemalloc does not.
"""

from __future__ import annotations

import contextlib
import os
import resource
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int:
    """Current resident set size of this process in bytes."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except OSError:  # not Linux: the lifetime peak is the best available
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@dataclass
class Measurement:
    """What :func:`measure` saw: seconds and peak RSS (bytes) during the block."""

    seconds: float = 0.0
    peak_rss: int = 0
    start_rss: int = 0

    @property
    def peak_increase(self) -> int:
        return max(0, self.peak_rss - self.start_rss)


@contextlib.contextmanager
def measure(interval: float = 0.005) -> Iterator[Measurement]:
    """Measure the wall time and the peak RSS of the ``with`` block."""
    result = Measurement(start_rss=rss_bytes())
    result.peak_rss = result.start_rss
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(interval):
            result.peak_rss = max(result.peak_rss, rss_bytes())

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    t0 = time.perf_counter()
    try:
        yield result
    finally:
        result.seconds = time.perf_counter() - t0
        stop.set()
        thread.join()
        result.peak_rss = max(result.peak_rss, rss_bytes())
