"""Threads of one task: the limit a fit runs under (``[compute] threads_per_task``).

:func:`limited` caps BLAS and OpenMP pools (threadpoolctl) and torch inside a block and
records the cap, which models with a thread parameter of their own (LightGBM's and the random
forest's ``n_jobs``) read through :func:`jobs`: several tasks on one machine then do not
oversubscribe its cores. LightGBM (``deterministic=True``) and the random forest (trees summed
in order) give the same predictions at any thread count; the CNNs' float sums depend on it.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

_limit = 0  # threads of the task under way; 0: none set


def cpus() -> int:
    """CPUs this process may use (its affinity where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def limit() -> int:
    """The thread cap of the task under way (0: none)."""
    return _limit


def jobs(n_jobs: int) -> int:
    """A model's ``n_jobs`` under the task's cap (``-1`` or less: every CPU, as joblib
    and LightGBM read it)."""
    if _limit <= 0:
        return n_jobs
    return _limit if n_jobs <= 0 else min(n_jobs, _limit)


@contextlib.contextmanager
def limited(threads: int) -> Iterator[None]:
    """At most ``threads`` threads for BLAS and OpenMP pools, torch and the models' ``n_jobs``
    inside the block (0: no limit)."""
    global _limit
    if threads <= 0:
        yield
        return
    from threadpoolctl import threadpool_limits

    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch is not None else None
    previous, _limit = _limit, threads
    try:
        with threadpool_limits(limits=threads):
            if torch is not None:
                torch.set_num_threads(threads)
            yield
    finally:
        _limit = previous
        if torch is not None and before is not None:
            torch.set_num_threads(before)
