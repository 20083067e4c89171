"""Torch on CPUs: how many threads this process may use, and denormal floats flushed to zero
while the network computes (training makes them, and x86 CPUs are many times slower on them).
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch


def cpu_threads() -> int:
    """CPUs this process may run on: its affinity, capped by a cgroup (v2) CPU quota."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    n = n or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            n = min(n, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return n


def _flushing() -> bool:
    """Whether this thread flushes denormal floats to zero."""
    return torch.tensor([1e-40], dtype=torch.float32).item() == 0.0


@contextlib.contextmanager
def flushed_denormals(device: torch.device) -> Iterator[None]:
    """Denormal floats (magnitude below 1.2e-38) flushed to zero on CPUs for the duration.

    Training makes them (the GELU's gradient at strongly negative inputs), and x86 CPUs take
    many times longer over any arithmetic that touches one: on the default domain an epoch
    took 2.4 times as long by the third epoch as the first, and a whole fit 2.8 times as long
    as with them flushed. Flushing leaves the results unchanged in practice (a denormal added
    to a normal float rounds away; the default fit's predictions were bit-identical). The mode
    is a per-thread flag, set on the calling thread for the duration; torch's worker threads
    take it from the thread that creates them, so they flush when created inside (a trainer
    builds its network inside) and not when created before.
    """
    if device.type != "cpu" or _flushing():
        yield
        return
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


def on_flushing_thread(device: torch.device, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` on a new thread that flushes denormals from its start (CPU only).

    torch's worker threads keep the floating-point mode of the thread that created them, and
    OpenMP keeps its workers per calling thread. After another library has run parallel work
    on this thread (LightGBM and scikit-learn use the same OpenMP runtime), torch would reuse
    those non-flushing workers; a new thread gets new workers, created flushing.
    """
    if device.type != "cpu":
        return fn(*args)
    from concurrent.futures import ThreadPoolExecutor

    def work() -> Any:
        with flushed_denormals(device):
            return fn(*args)

    n_threads = torch.get_num_threads()
    with ThreadPoolExecutor(1, initializer=torch.set_num_threads,
                            initargs=(n_threads,)) as pool:
        return pool.submit(work).result()
