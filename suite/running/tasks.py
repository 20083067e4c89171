"""The unit of work of a run: one (world, model, seed) fit, and the predictions and scores of
every variant of the model sharing that fit (``X``, ``X+residual``, …).

:func:`fit_one` is a pure function of its arguments (the model's seed fixes its result), so
``twsbench run`` can call it in-process, one after another, or send it to the workers of a
``dask.distributed`` cluster (:mod:`twsbench.running.cluster`): a task that dies with its worker
runs again elsewhere and gives the same result.
"""

from __future__ import annotations

import socket
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from twsbench.core.config import Config
from twsbench.core.errors import OutputError
from twsbench.core.threads import cpus, limited
from twsbench.core.timing import measure
from twsbench.downscaling.wrappers import Checked, split_name, wrap
from twsbench.prepare.grids import Grids
from twsbench.running.catalog import make
from twsbench.running.plan import ModelRun, load
from twsbench.running.records import Failure, one_line
from twsbench.scoring.table import hotspots, score_prediction


@dataclass
class World:
    """What every fit of one world shares: the view downscalers see (the withheld months'
    GRACE removed), the GRACE scoring compares with, the truth (None on real files) and its
    hotspot cells."""

    label: str
    grids: Grids
    reference: np.ndarray
    truth: np.ndarray | None
    hot: np.ndarray | None = None

    @classmethod
    def of(cls, label: str, grids: Grids, reference: np.ndarray, truth: np.ndarray | None,
           hotspot_trend: float) -> World:
        hot = hotspots(grids, truth, hotspot_trend) if truth is not None else None
        return cls(label, grids, reference, truth, hot)


@dataclass
class FitResult:
    """One fit's score rows, monthly rows and timing, its predictions of every month and
    (with a truth, for a model that does not need GRACE) of the validation months with their
    GRACE hidden, and its training history; or, for a failed task, its :class:`Failure`
    (no rows, no predictions)."""

    rows: list
    monthly: list
    timing: dict[str, Any]
    cells: np.ndarray | None
    hidden: np.ndarray | None
    history: list = field(default_factory=list)
    failure: Failure | None = None


def failed(specs: Sequence[ModelRun], world: str, stage: str, err: BaseException | str,
           kind: str | None = None, trace: str = "") -> list[FitResult]:
    """Each of ``specs`` as a failed result: the one-line reason names the model, its seed,
    the world and the stage."""
    first = specs[0]
    if isinstance(err, BaseException):
        kind = kind or ("output" if isinstance(err, OutputError) else "error")
        trace = trace or "".join(traceback.format_exception(err))
        text = str(err) if isinstance(err, OutputError) else (
            f"{first.base} (seed {first.seed}, world {world}): {stage} raised "
            f"{type(err).__name__}: {err}")
    else:
        text = err
    failure = Failure(world, first.base, first.seed, [s.name for s in specs], stage,
                      kind or "error", one_line(text), trace)
    return [FitResult([], [], {"model": s.name, "seed": s.seed, "failed": True}, None, None,
                      failure=failure) for s in specs]


def where() -> tuple[str, int]:
    """The worker this runs on (``in-process`` outside a cluster) and its task slots."""
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return "in-process", 1
    return str(worker.name), int(worker.state.nthreads)


def fit_one(specs: Sequence[ModelRun], world: World, config: Config, rid: str,
            threads: int = 0, epoch: float | None = None, want_history: bool = True,
            stage: Callable[[str], None] | None = None) -> list[FitResult]:
    """Fit the model ``specs`` share (one :attr:`ModelRun.fit_key`: one name's variants,
    e.g. ``X``, ``X+residual``) once on the world's training months; for each spec,
    predict every month (and, with a truth, the validation months with their GRACE hidden)
    through its wrappers and score it.

    ``threads``: threads per task for torch, BLAS and OpenMP (0: no limit; -1: the worker's
    CPUs divided by its task slots). ``epoch``: the run's start (``time.time()``), which the
    task's start and end in the timing are relative to. ``stage`` (in-process) hears when
    the fit and the predictions start.
    """
    from twsbench.scoring import uncertainty

    load(config)  # the config's plug-ins, in a worker process too
    if len({s.fit_key for s in specs}) != 1:
        raise ValueError(f"expected runs sharing one fit, found {[s.tag for s in specs]}")
    worker, slots = where()
    if threads < 0:
        threads = max(1, cpus() // max(slots, 1))
    started = time.time()
    grids, truth = world.grids, world.truth
    say = stage or (lambda label: None)
    first = specs[0]
    who = f"{first.base} (seed {first.seed}, world {world.label})"
    say(f"{first.base} (seed {first.seed}): fit")
    try:
        # made first: a CNN imports torch, whose threads the cap then sets
        fitted = make(first.base, seed=first.seed, params=first.params, device=first.device)
        with limited(threads), measure() as fit_m:
            fitted.fit(grids, grids.split_months("train"))
    except Exception as err:  # a model's own code: its failure is a row of the run
        return failed(specs, world.label, "fit", err)
    checked = Checked(fitted, who)
    view = uncertainty.hide_validation(grids) if truth is not None else None
    out: list[Any] = []
    for spec in specs:
        say(f"{spec.name} (seed {spec.seed}): predict")
        t0 = time.time()
        model = wrap(checked, split_name(spec.name)[1])
        step = "predict_cells"
        try:
            with limited(threads):
                with measure() as pred_m:
                    cells = model.predict_cells(grids, grids.months)
                hidden = None
                if view is not None and not model.needs_grace:
                    step = "predict_cells (validation months, GRACE hidden)"
                    checked.who = f"{who}, validation months with GRACE hidden"
                    hidden = model.predict_cells(view, grids.split_months("validation"))
                    checked.who = who
                step = "scoring"
                t1 = time.perf_counter()
                rows, monthly = score_prediction(grids, cells, truth, spec.name, spec.seed,
                                                 rid, world.reference,
                                                 config.ranking.hotspot_trend)
                score_seconds = time.perf_counter() - t1
                covered = int(model.covers(grids, grids.months).sum())
        except Exception as err:
            checked.who = who
            out.append(failed([spec], world.label, step, err)[0])
            continue
        out.append((spec, cells, hidden, rows, monthly, pred_m, score_seconds, covered,
                    time.time() - t0))
    ended = time.time()
    epoch = started if epoch is None else epoch
    results = []
    for item in out:
        if isinstance(item, FitResult):
            results.append(item)
            continue
        spec, cells, hidden, rows, monthly, pred_m, score_seconds, covered, own = item
        timing = {
            "model": spec.name, "seed": spec.seed, "fit_seconds": fit_m.seconds,
            "predict_seconds": pred_m.seconds,
            "cells_months_per_second": grids.n_cells * covered / max(pred_m.seconds, 1e-9),
            "fit_peak_rss_gib": fit_m.peak_rss / 2**30,
            "predict_peak_rss_gib": pred_m.peak_rss / 2**30,
            "score_seconds": score_seconds, "device": spec.device,
            "worker": worker, "host": socket.gethostname(), "threads": threads or cpus(),
            "task": f"{first.base}__seed{first.seed}", "shares_fit": len(specs) > 1,
            "task_start_s": started - epoch, "task_end_s": ended - epoch,
            "task_seconds": ended - started, "own_seconds": own,
        }
        results.append(FitResult(rows, monthly, timing, cells, hidden,
                                 list(fitted.history) if want_history else []))
    return results
