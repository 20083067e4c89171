"""Where a run's fits go: in-process, one after another, or as tasks on ``dask.distributed``.

``[compute] scheduler`` (``twsbench run --scheduler ADDRESS``) sends every (world, model,
seed) fit to an existing cluster (a ``dask-jobqueue`` cluster on SLURM, ``dask-kubernetes``,
a hosted Dask); ``[compute] workers`` (``--workers N``) starts a ``LocalCluster`` of N
single-task worker processes. Each world's grids, reference GRACE and truth are prepared once
by the client and scattered to every worker; the tasks (:func:`twsbench.running.tasks.fit_one`)
return their rows, timing and predictions, which the client takes in the plan's order, so the tables
are those of the in-process run.

A worker that dies takes its running task with it; the scheduler runs the task again on
another worker (up to ``distributed.scheduler.allowed-failures`` times), and because a fit is
a pure function of its seed the result is the same.

Resources: where the workers declare a ``GPU`` resource (``dask worker --resources GPU=1``),
the tasks of models that can run on CUDA ask for one, so at most one CNN trains per GPU.
Threads per task (torch, BLAS and OpenMP) are ``[compute] threads_per_task``; by default a
``LocalCluster`` gives each of its N workers the machine's CPUs / N, and a worker of an
existing cluster its own CPUs divided by its task slots.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence

from twsbench.core.config import Config
from twsbench.core.errors import ConfigError
from twsbench.core.threads import cpus
from twsbench.running.catalog import get_class
from twsbench.running.plan import ModelRun, fit_groups
from twsbench.running.tasks import FitResult, World, fit_one

log = logging.getLogger(__name__)
Stage = Callable[[str], None]
GPU = "GPU"


def resources_for(name: str, gpus: bool) -> dict[str, int] | None:
    """The Dask resources a fit of model ``name`` asks for: a GPU for a model that can run
    on CUDA, where the workers declare GPUs; nothing otherwise."""
    return {GPU: 1} if gpus and "cuda" in get_class(name).devices else None


def _in_plan_order(runs: Sequence[ModelRun], groups: list[list[ModelRun]],
                   take: Callable[[int], list[FitResult]]) -> Iterator[FitResult]:
    """Each run's result in the plan's order, from its group's task (``take(k)``: group
    ``k``'s results, asked for once, when the first of its runs comes)."""
    of = {id(spec): (k, j) for k, group in enumerate(groups) for j, spec in enumerate(group)}
    held: dict[int, list[FitResult]] = {}
    left = [len(g) for g in groups]
    for spec in runs:
        k, j = of[id(spec)]
        if k not in held:
            held[k] = take(k)
        result = held[k][j]
        left[k] -= 1
        if not left[k]:
            del held[k]
        yield result


class InProcess:
    """Fits one after another in this process (the default)."""

    where = "in-process"

    def results(self, world: World, runs: Sequence[ModelRun], config: Config, rid: str,
                epoch: float, stage: Stage, primary: bool = True) -> Iterator[FitResult]:
        """The fits' results in the plan's order, each group fitted when first needed."""
        groups = fit_groups(runs)
        return _in_plan_order(runs, groups, lambda k: fit_one(
            groups[k], world, config, rid, config.compute.threads_per_task, epoch,
            want_history=primary, stage=stage))


class OnCluster:
    """Fits as tasks on a ``dask.distributed`` client, taken back in the plan's order."""

    def __init__(self, client, threads: int):
        self.client = client
        self.threads = threads
        self.where = f"dask {client.scheduler.address}"
        workers = client.scheduler_info(n_workers=-1)["workers"].values()
        self.gpus = any(w.get("resources", {}).get(GPU, 0) > 0 for w in workers)

    def results(self, world: World, runs: Sequence[ModelRun], config: Config, rid: str,
                epoch: float, stage: Stage, primary: bool = True) -> Iterator[FitResult]:
        """Send every fit of ``world`` now; the returned iterator waits for each in turn."""
        client = self.client
        # every worker holds the world's data: a task lost with its worker runs again on
        # another, which has the data already
        shared = client.scatter(world, broadcast=True, hash=False)
        groups = fit_groups(runs)
        futures = []
        for group in groups:
            first = group[0]
            futures.append(client.submit(
                fit_one, group, shared, config, rid, self.threads, epoch, primary,
                key=f"fit-{rid}-{world.label}-{first.base}__seed{first.seed}", pure=False,
                resources=resources_for(first.name, self.gpus)))
        stage(f"{world.label}: {len(futures)} fits sent to {self.where}")
        return self._gather(world, runs, groups, futures, shared, stage)

    @staticmethod
    def _gather(world, runs, groups, futures, shared, stage) -> Iterator[FitResult]:
        def take(k: int) -> list[FitResult]:
            results = futures[k].result()
            futures[k].release()
            first = groups[k][0]
            stage(f"{world.label}: {first.base} (seed {first.seed}) done on "
                  f"{results[0].timing['worker']}")
            return results

        try:
            yield from _in_plan_order(runs, groups, take)
        finally:
            for future in futures:
                future.cancel()
            shared.release()


@contextlib.contextmanager
def _environ_kept() -> Iterator[None]:
    """This process's environment as it was before the block: starting a ``LocalCluster``
    sets ``OMP_NUM_THREADS=1`` (and MKL's and OpenBLAS's) in the process that starts it (for
    its workers, distributed's ``nanny.pre-spawn-environ``), and torch, started later in
    this process or in a program it runs, would then train a CNN on one thread: other float
    sums than the run's settings give."""
    import os

    before = dict(os.environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(before)


@contextlib.contextmanager
def executor(config: Config, stage: Stage) -> Iterator[InProcess | OnCluster]:
    """The executor ``config.compute`` asks for (closed, with its cluster, on exit)."""
    compute = config.compute
    if not compute.scheduler and not compute.workers:
        yield InProcess()
        return
    from distributed import Client, LocalCluster

    if compute.scheduler:
        try:
            client = Client(compute.scheduler, timeout="20s")
        except (OSError, TimeoutError, ValueError) as err:
            raise ConfigError(f"[compute] scheduler: expected a reachable dask scheduler, "
                              f"found none at {compute.scheduler!r} ({err})") from err
        with client:
            stage(f"connected to the dask scheduler {compute.scheduler}")
            yield OnCluster(client, compute.threads_per_task or -1)
        return
    n = compute.workers
    threads = compute.threads_per_task or max(1, cpus() // n)
    with _environ_kept():  # the workers get distributed's environment, this process not
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                               dashboard_address=None, silence_logs=logging.ERROR)
    with _environ_kept(), cluster, Client(cluster) as client:  # a worker restarted sets it too
        stage(f"started a LocalCluster of {n} workers, {threads} thread(s) per task")
        yield OnCluster(client, threads)
