"""Where a run's fits go: in-process, one after another, or as tasks on ``dask.distributed``.

``[compute] scheduler`` (``twsbench run --scheduler ADDRESS``) sends every (world, model,
seed) fit to an existing cluster (a ``dask-jobqueue`` cluster on SLURM, ``dask-kubernetes``,
a hosted Dask); ``[compute] workers`` (``--workers N``) starts a ``LocalCluster`` of N
single-task worker processes. Each world's grids, reference GRACE and truth are prepared once
by the client and scattered to every worker; the tasks (:func:`twsbench.running.tasks.fit_one`)
return their rows, timing and predictions, which the client saves as each task's record when it
finishes (:mod:`twsbench.running.records`); the runner takes the records in the plan's order,
so the tables are those of the in-process run.

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
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from twsbench.core.config import Config
from twsbench.core.errors import ConfigError, TaskFailed
from twsbench.core.threads import cpus
from twsbench.running.catalog import get_class
from twsbench.running.plan import ModelRun
from twsbench.running.records import Record, Records, save
from twsbench.running.tasks import FitResult, World, failed, fit_one

log = logging.getLogger(__name__)
Stage = Callable[[str], None]
Progress = Callable[[str, int, int], None]
GPU = "GPU"


def resources_for(name: str, gpus: bool) -> dict[str, int] | None:
    """The Dask resources a fit of model ``name`` asks for: a GPU for a model that can run
    on CUDA, where the workers declare GPUs; nothing otherwise."""
    return {GPU: 1} if gpus and "cuda" in get_class(name).devices else None


@dataclass
class Job:
    """One task of a run: a world, the runs sharing one fit (:func:`fit_groups`), the
    record's key, and whether it is the primary world (whose histories are kept)."""

    world: World
    group: list[ModelRun]
    key: str
    primary: bool

    @property
    def label(self) -> str:
        first = self.group[0]
        return f"{first.base} (seed {first.seed}, world {self.world.label})"


def _record(job: Job, results: list[FitResult]) -> Record:
    return Record(job.key, job.world.label, [s.tag for s in job.group], results)


def _timed_out(group: Sequence[ModelRun], world: str, timeout: float) -> list[FitResult]:
    first = group[0]
    return failed(group, world, "fit or predict",
                  f"{first.base} (seed {first.seed}, world {world}): ran past [compute] "
                  f"task_timeout ({timeout:g} s), stopped", kind="timeout")


class Tasks:
    """What the executors share: each finished task's record saved as it comes (failures
    reported as one line), progress counted, and ``fail_fast`` honoured."""

    def __init__(self, records: Records, stage: Stage, progress: Progress | None,
                 total: int, fail_fast: bool):
        self.records, self.stage, self.progress = records, stage, progress
        self.total, self.done, self.fail_fast = total, 0, fail_fast

    def finished(self, record: Record) -> None:
        self.records.save(record)
        self.done += 1
        if self.progress:
            self.progress("models", self.done, self.total)
        for failure in record.failures[:1]:  # a fit's variants share its failure
            self.stage(f"failed: {failure.reason}")
            if self.fail_fast:
                raise TaskFailed(failure.reason)


def _in_child(job: Job, config: Config, rid: str, epoch: float, path: str) -> None:
    """A child process's task: its record written where the parent looks for it."""
    try:
        results = fit_one(job.group, job.world, config, rid, config.compute.threads_per_task,
                          epoch, want_history=job.primary)
        save(Path(path), _record(job, results))
    finally:
        os._exit(0)  # no atexit handlers or buffers of the parent's


class InProcess:
    """Fits one after another in this process (the default); with ``[compute]
    task_timeout``, each in a child process (forked; spawned where the run uses CUDA) that is
    killed when it runs too long."""

    where = "in-process"

    def run(self, jobs: Sequence[Job], config: Config, rid: str, epoch: float,
            tasks: Tasks) -> None:
        timeout = config.compute.task_timeout
        for job in jobs:
            if timeout > 0:
                tasks.finished(self._limited(job, config, rid, epoch, timeout, tasks.records))
                continue
            results = fit_one(job.group, job.world, config, rid,
                              config.compute.threads_per_task, epoch,
                              want_history=job.primary, stage=tasks.stage)
            tasks.finished(_record(job, results))

    @staticmethod
    def _limited(job: Job, config: Config, rid: str, epoch: float, timeout: float,
                 records: Records) -> Record:
        import multiprocessing

        path = records.path(job.key)
        path.unlink(missing_ok=True)
        from twsbench.core import backend

        # a forked child cannot use CUDA once this process has: spawn a fresh one there
        gpu = backend.resolve(config.compute.device) == "cuda"
        ctx = multiprocessing.get_context("spawn") if gpu else multiprocessing.get_context("fork")
        child = ctx.Process(target=_in_child, args=(job, config, rid, epoch, str(path)),
                            daemon=True)
        child.start()
        child.join(timeout)
        if child.is_alive():
            child.kill()
            child.join()
            return _record(job, _timed_out(job.group, job.world.label, timeout))
        if path.exists():
            return records.load(job.key)
        return _record(job, failed(job.group, job.world.label, "fit or predict",
                                   f"{job.label}: its process died (exit code "
                                   f"{child.exitcode})", kind="died"))


def _with_timeout(group: list[ModelRun], world: World, config: Config, rid: str,
                  threads: int, epoch: float, primary: bool) -> list[FitResult]:
    """A worker's task: :func:`fit_one`, given up after ``[compute] task_timeout`` seconds
    (its thread cannot be stopped; the client restarts the worker)."""
    timeout = config.compute.task_timeout
    if timeout <= 0:
        return fit_one(group, world, config, rid, threads, epoch, want_history=primary)
    import concurrent.futures

    pool = concurrent.futures.ThreadPoolExecutor(1)
    future = pool.submit(fit_one, group, world, config, rid, threads, epoch, primary)
    pool.shutdown(wait=False)
    try:
        return future.result(timeout=timeout)
    except concurrent.futures.TimeoutError:
        results = _timed_out(group, world.label, timeout)
        from distributed import get_worker

        results[0].timing["restart_worker"] = get_worker().address
        return results


class OnCluster:
    """Fits as tasks on a ``dask.distributed`` client; each record saved as its task
    finishes."""

    def __init__(self, client, threads: int):
        self.client = client
        self.threads = threads
        self.where = f"dask {client.scheduler.address}"
        workers = client.scheduler_info(n_workers=-1)["workers"].values()
        self.gpus = any(w.get("resources", {}).get(GPU, 0) > 0 for w in workers)

    def run(self, jobs: Sequence[Job], config: Config, rid: str, epoch: float,
            tasks: Tasks) -> None:
        """Send every job now (each world's data scattered once) and save each record as its
        task finishes."""
        from distributed import as_completed

        client = self.client
        # every worker holds the world's data: a task lost with its worker runs again on
        # another, which has the data already
        shared = {}
        for job in jobs:
            if job.world.label not in shared:
                shared[job.world.label] = client.scatter(job.world, broadcast=True, hash=False)
        futures = {}
        for job in jobs:
            first = job.group[0]
            future = client.submit(
                _with_timeout, job.group, shared[job.world.label], config, rid, self.threads,
                epoch, job.primary, pure=False, resources=resources_for(first.name, self.gpus),
                key=f"fit-{rid}-{job.world.label}-{first.base}__seed{first.seed}")
            futures[future.key] = (future, job)
        tasks.stage(f"{len(futures)} fits sent to {self.where}")
        try:
            for future in as_completed([f for f, _ in futures.values()]):
                job = futures[future.key][1]
                try:
                    results = future.result()
                except Exception as err:  # e.g. KilledWorker: the task killed its workers
                    results = failed(job.group, job.world.label, "fit or predict",
                                     f"{job.label}: {type(err).__name__}: {err}",
                                     kind="died")
                future.release()
                address = results[0].timing.pop("restart_worker", None)
                if address:
                    client.restart_workers([address])
                tasks.finished(_record(job, results))
                if not results[0].failure:
                    tasks.stage(f"{job.label} done on {results[0].timing['worker']}")
        finally:
            for future, _ in futures.values():
                future.cancel()
            for data in shared.values():
                data.release()


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
def _quiet_close() -> Iterator[Callable[[], None]]:
    """A switch that silences dask's loggers while the client and cluster close (comms
    closing in turn log errors with tracebacks that mean nothing to a run), restored after:
    a run's terminal shows its own lines, failures included, and no tracebacks."""
    names = ("distributed", "tornado", "asyncio")
    before = {name: logging.getLogger(name).level for name in names}

    def quiet() -> None:
        for name in names:
            logging.getLogger(name).setLevel(logging.CRITICAL + 1)

    try:
        yield quiet
    finally:
        for name, level in before.items():
            logging.getLogger(name).setLevel(level)


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
        with _quiet_close() as quiet, client:
            stage(f"connected to the dask scheduler {compute.scheduler}")
            try:
                yield OnCluster(client, compute.threads_per_task or -1)
            finally:
                quiet()
        return
    n = compute.workers
    threads = compute.threads_per_task or max(1, cpus() // n)
    with _environ_kept():  # the workers get distributed's environment, this process not
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                               dashboard_address=None, silence_logs=logging.CRITICAL)
    # a worker restarted sets the environment too
    with _quiet_close() as quiet, _environ_kept(), cluster, Client(cluster) as client:
        stage(f"started a LocalCluster of {n} workers, {threads} thread(s) per task")
        try:
            yield OnCluster(client, threads)
        finally:
            quiet()
