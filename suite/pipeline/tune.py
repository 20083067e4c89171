"""``twsbench tune``: the same search for every learned downscaler of a config.

Each model that declares a search space (:attr:`twsbench.downscaling.contract.Base.search_space`)
gets ``trials`` Optuna trials (TPE, seeded; the first trial is the model's current
parameters, so the search can only keep or improve them on its objective). A trial fits the
model on the training months of a *tuning world* and scores it on that world's validation
months:

- on the twin, the tuning world is the twin with another seed than every world the config
  scores (by default one more than the largest), so tuning sees neither a test month nor the
  scored world;
- on real files there is one world: the files, with every test month's GRACE withheld and
  the truth (if any) read at validation months only.

The objective (higher is better) is, with a truth, the mean of the two tasks' primary scores
on the validation months: ``nse_submascon_truth`` of ``X+residual`` (downscale: every model
given the month's GRACE) and ``nse_fine_truth`` of ``X`` with the validation months' GRACE
hidden (gap-fill); ``--task`` picks one of them. On real files it is ``nse_mascon_grace``
against the hidden validation GRACE. CNN trials report their validation loss every epoch and
are pruned (median rule) when it is worse than the median of earlier trials at that epoch;
the other models fit in one step and have nothing to prune.

Trials run in-process, one after another, or on a Dask cluster (``--workers``,
``--scheduler``) in rounds of as many trials as the cluster has task slots, without pruning.

The result is a parameter layer (``twsbench run CONFIG --params FILE``): a
``[models.params.NAME]`` table per tuned model and a ``[tuning]`` table with the
provenance.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from twsbench.core import threads
from twsbench.core.config import Config, TwinWorld, toml_value
from twsbench.core.errors import ConfigError
from twsbench.core.threads import cpus
from twsbench.downscaling.contract import Choice, Range, SearchSpace, learns, search_space
from twsbench.downscaling.wrappers import RESIDUAL, split_name, wrap
from twsbench.prepare.grids import Grids
from twsbench.running.catalog import get_class, make
from twsbench.running.plan import load, model_names, params_for

log = logging.getLogger(__name__)
Stage = Callable[[str], None]
TASKS = ("both", "downscale", "gapfill")
#: the median pruner's completed trials before it prunes, and the epochs it lets every trial run
PRUNE_AFTER, PRUNE_WARMUP = 4, 8


@dataclass
class TuningWorld:
    """What every trial sees: the grids with the test months' GRACE withheld, the truth at
    the validation months (None on real files) and the validation months' GRACE."""

    label: str
    grids: Grids
    validation: np.ndarray  # month indices
    truth: np.ndarray | None  # (validation months, cells)
    grace: np.ndarray  # (validation months, mascons), the GRACE hidden from the gap-fill view


def tuning_seed(config: Config) -> int:
    """One more than the largest twin seed the config scores."""
    return max(w.seed for w in config.twin.worlds) + 1


def tuning_world(config: Config, world_seed: int | None = None,
                 stage: Stage | None = None) -> TuningWorld:
    """The world trials fit and score on (see the module's docstring).

    Raises
    ------
    ConfigError
        For a ``world_seed`` among the seeds of the worlds the config scores, or a world
        without validation months.
    """
    from twsbench.prepare.files import resolve_inputs
    from twsbench.prepare.store import prepare
    from twsbench.scoring.reference import truth_on_cells

    if config.worlds is not None:
        seed = tuning_seed(config) if world_seed is None else world_seed
        scored = sorted({w.seed for w in config.worlds})
        if seed in scored:
            raise ConfigError(f"--world-seed: expected a twin seed other than the scored "
                              f"worlds' ({', '.join(map(str, scored))}), found {seed}")
        world = TwinWorld(seed, config.twin.primary.realism, config.twin.primary.axes)
        config = config.for_world(world)
        label = world.label
    else:
        label = "files"
    full, _, _ = prepare(config, stage=stage)
    test = full.splits["test"] | full.splits["gapfill_withheld"]
    grids, _ = full.withhold(test)
    validation = np.flatnonzero(grids.splits["validation"] & grids.has_grace)
    if validation.size == 0:
        raise ConfigError("[split] validation: expected validation months with GRACE to tune "
                          "on, found none")
    truth_path = resolve_inputs(config).truth
    truth = truth_on_cells(truth_path, grids, hide=test)[validation] if truth_path else None
    return TuningWorld(label, grids, validation, truth, grids.grace[validation].copy())


def objective_name(task: str, has_truth: bool) -> str:
    if not has_truth:
        return "nse_mascon_grace of X, validation GRACE hidden"
    parts = {"downscale": "nse_submascon_truth of X+residual",
             "gapfill": "nse_fine_truth of X, validation GRACE hidden"}
    if task == "both":
        return f"mean of {parts['downscale']} and {parts['gapfill']}"
    return parts[task]


def evaluate(name: str, params: dict[str, Any], world: TuningWorld, task: str,
             on_epoch: Callable[[dict], None] | None = None, n_threads: int = 0
             ) -> tuple[float, float]:
    """Fit ``name`` with ``params`` on the tuning world's training months and return
    (the objective on its validation months, the CPU seconds the trial took)."""
    from twsbench.scoring import metrics, uncertainty

    cpu0 = time.process_time()
    grids = world.grids
    with tempfile.TemporaryDirectory(prefix="twsbench-trial-") as tmp:
        if "checkpoint_dir" in getattr(get_class(name), "defaults", {}):  # the trial's own
            params = {**params, "checkpoint_dir": tmp}
        model = make(name, seed=0, params=params)
        if on_epoch is not None and hasattr(model, "on_epoch"):
            model.on_epoch = on_epoch  # type: ignore[attr-defined]
        with threads.limited(n_threads):
            model.fit(grids, grids.split_months("train"))
            months = grids.months[world.validation]
            m = grids.mascons
            values = []
            if task in ("both", "gapfill") or world.truth is None:
                view = uncertainty.hide_validation(grids)
                hidden = model.predict_cells(view, months)
                if world.truth is None:
                    from twsbench.core import kernels

                    values.append(metrics.nse(kernels.apply_A(m.A, hidden), world.grace,
                                              m.area()))
                else:
                    values.append(metrics.nse(hidden, world.truth, grids.cell_area))
            if world.truth is not None and task in ("both", "downscale"):
                shown = wrap(model, (RESIDUAL,)).predict_cells(grids, months)
                values.append(metrics.submascon_nse(shown, world.truth, m.A, m.cell_mascon,
                                                    grids.cell_area))
    value = float(np.mean(values))
    return (value if math.isfinite(value) else -1e9), time.process_time() - cpu0


def suggest(trial, space: SearchSpace) -> dict[str, Any]:
    """A trial's parameters from a search space."""
    out: dict[str, Any] = {}
    for key, spec in space.items():
        if isinstance(spec, Choice):
            out[key] = trial.suggest_categorical(key, list(spec.options))
        elif isinstance(spec, Range) and spec.integer:
            out[key] = trial.suggest_int(key, int(spec.low), int(spec.high), log=spec.log)
        else:
            out[key] = trial.suggest_float(key, float(spec.low), float(spec.high),
                                           log=spec.log)
    return out


def _start(space: SearchSpace, params: dict[str, Any]) -> dict[str, Any]:
    """The model's current parameters inside its space (the first trial)."""
    out = {}
    for key, spec in space.items():
        value = params.get(key)
        if isinstance(spec, Choice):
            if value in spec.options:
                out[key] = value
        elif isinstance(value, (int, float)) and spec.low <= value <= spec.high:
            out[key] = value
    return out


def learned(config: Config) -> tuple[list[str], list[str]]:
    """The config's learned models (base names): those with a search space, and those
    without one (not tuned)."""
    bases = dict.fromkeys(split_name(n)[0] for n in model_names(config))
    classes = {base: get_class(base) for base in bases}
    tuned = [b for b, cls in classes.items() if search_space(cls)]
    untuned = [b for b, cls in classes.items() if learns(cls) and not search_space(cls)]
    return tuned, untuned


def _study(seed: int, pruning: bool):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # a trial is pruned only after PRUNE_AFTER completed trials, and only from epoch
    # PRUNE_WARMUP on: a small learning rate starts slower and is not to be judged early
    pruner = (optuna.pruners.MedianPruner(n_startup_trials=PRUNE_AFTER,
                                          n_warmup_steps=PRUNE_WARMUP)
              if pruning else optuna.pruners.NopPruner())
    return optuna.create_study(direction="maximize", pruner=pruner,
                               sampler=optuna.samplers.TPESampler(seed=seed))


def _tune_in_process(name: str, base_params: dict, world: TuningWorld, task: str,
                     trials: int, seed: int, stage: Stage) -> tuple[Any, float]:
    import optuna

    space = search_space(get_class(name))
    study = _study(seed, pruning=True)
    study.enqueue_trial(_start(space, base_params))
    cpu = 0.0
    for k in range(trials):
        trial = study.ask()
        params = {**base_params, **suggest(trial, space)}

        def report(record: dict, trial=trial) -> None:
            if "val_obs" in record:
                trial.report(-float(record["val_obs"]), int(record["epoch"]))
                if trial.should_prune():
                    raise optuna.TrialPruned()

        t0 = time.process_time()
        try:
            value, _ = evaluate(name, params, world, task, on_epoch=report)
        except optuna.TrialPruned:
            cpu += time.process_time() - t0
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            stage(f"{name}: trial {k + 1}/{trials} pruned")
            continue
        cpu += time.process_time() - t0
        study.tell(trial, value)
        stage(f"{name}: trial {k + 1}/{trials}: {value:.4f} (best {study.best_value:.4f})")
    return study, cpu


def _tune_on_cluster(client, slots: int, name: str, base_params: dict, world: TuningWorld,
                     task: str, trials: int, seed: int, n_threads: int, stage: Stage
                     ) -> tuple[Any, float]:
    space = search_space(get_class(name))
    study = _study(seed, pruning=False)
    study.enqueue_trial(_start(space, base_params))
    shared = client.scatter(world, broadcast=True, hash=False)
    cpu, done = 0.0, 0
    try:
        while done < trials:
            batch = [study.ask() for _ in range(min(slots, trials - done))]
            futures = [client.submit(evaluate, name, {**base_params, **suggest(t, space)},
                                     shared, task, None, n_threads, pure=False)
                       for t in batch]
            for trial, future in zip(batch, futures, strict=True):
                value, seconds = future.result()
                cpu += seconds
                study.tell(trial, value)
            done += len(batch)
            stage(f"{name}: {done}/{trials} trials (best {study.best_value:.4f})")
    finally:
        shared.release()
    return study, cpu


def tune(config: Config, trials: int, out: str | Path, *, task: str = "both",
         world_seed: int | None = None, seed: int = 0, command: str = "",
         stage: Stage | None = None) -> dict[str, Any]:
    """Tune every learned model of ``config`` with ``trials`` trials each and write the
    parameter layer ``out`` (atomically). Returns the layer as a table."""
    from twsbench.running.cluster import executor

    stage = stage or (lambda label: log.info("tune: %s", label))
    if trials < 1:
        raise ConfigError(f"--trials: expected at least 1, found {trials}")
    if task not in TASKS:
        raise ConfigError(f"--task: expected one of {', '.join(TASKS)}, found {task!r}")
    load(config)
    tuned, untuned = learned(config)
    if not tuned:
        raise ConfigError(f"{config.source}: expected a learned model with a search space "
                          f"among [models] names, found none")
    world = tuning_world(config, world_seed, stage)
    if world.truth is None and task == "downscale":
        raise ConfigError("--task downscale: expected a truth (the twin), found real files "
                          "without one")
    layer: dict[str, Any] = {"models": {"params": {}}, "tuning": {
        "command": command, "config": config.source, "trials": trials, "task": task,
        "sampler": f"optuna TPE, seed {seed}; the first trial the model's parameters",
        "pruning": (f"median rule on the CNN's validation loss per epoch, from epoch "
                    f"{PRUNE_WARMUP} after {PRUNE_AFTER} complete trials (in-process only)"),
        "world": world.label, "validation_months": int(world.validation.size),
        "objective": objective_name(task, world.truth is not None), "untuned": untuned}}
    with executor(config, stage) as ex:
        client = getattr(ex, "client", None)
        for k, name in enumerate(tuned):
            given = params_for(config, name)
            base_params = dict(getattr(make(name, params=given), "params", given))
            base_params.pop("checkpoint_dir", None)
            stage(f"{name}: {trials} trials on {world.label}")
            t0 = time.perf_counter()
            if client is None:
                study, cpu = _tune_in_process(name, base_params, world, task, trials,
                                              seed + k, stage)
            else:
                slots = sum(w["nthreads"] for w in
                            client.scheduler_info(n_workers=-1)["workers"].values())
                per_task = config.compute.threads_per_task or max(1, cpus() // max(1, slots))
                study, cpu = _tune_on_cluster(client, max(1, slots), name, base_params, world,
                                              task, trials, seed + k, per_task, stage)
            import optuna

            states = [t.state for t in study.trials]
            first = study.trials[0]
            best = study.best_trial
            layer["models"]["params"][name] = {key: best.params[key]
                                               for key in sorted(best.params)}
            layer["tuning"][name] = {
                "best": round(float(best.value), 6),
                "first": (round(float(first.value), 6)
                          if first.state == optuna.trial.TrialState.COMPLETE else None),
                "best_trial": int(best.number), "trials": len(states),
                "pruned": sum(s == optuna.trial.TrialState.PRUNED for s in states),
                "cpu_seconds": round(cpu, 1),
                "wall_seconds": round(time.perf_counter() - t0, 1)}
    write_layer(layer, Path(out))
    return layer


def to_toml(layer: dict[str, Any]) -> str:
    """The layer as TOML: ``[tuning]`` (its scalars, then a table per model) and a
    ``[models.params.NAME]`` table per model."""
    lines = ["# Tuned parameters: apply with twsbench run CONFIG --params THIS_FILE", ""]
    tuning = layer.get("tuning", {})
    lines.append("[tuning]")
    lines += [f"{k} = {toml_value(v, 6)}" for k, v in tuning.items()
              if not isinstance(v, dict) and v is not None]
    for name, table in tuning.items():
        if isinstance(table, dict):
            lines += ["", f"[tuning.{json.dumps(name)}]"]
            lines += [f"{k} = {toml_value(v, 6)}" for k, v in table.items() if v is not None]
    for name, params in layer["models"]["params"].items():
        lines += ["", f"[models.params.{json.dumps(name)}]"]
        lines += [f"{k} = {toml_value(v, 6)}" for k, v in params.items()]
    return "\n".join(lines) + "\n"


def write_layer(layer: dict[str, Any], path: Path) -> None:
    """Write atomically: a temporary file beside ``path``, renamed into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(to_toml(layer))
    os.replace(tmp, path)
