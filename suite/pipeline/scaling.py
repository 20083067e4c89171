"""How a run scales with workers: ``python -m twsbench.pipeline.scaling CONFIG --workers 1 2``.

Runs ``CONFIG`` once per worker count on a ``LocalCluster`` with one thread per task (every
CNN with a fresh checkpoint folder, so no fit is reused), and reports each run's wall time,
the span of its fits (first task start to last task end), the speed-up against the first
count, and a projection for more workers from the task times in ``timing.csv``: the fits
placed in the plan's order on N workers, each task on the first worker free (as the
scheduler does with equal tasks ready), plus the run's serial part (preparation, scoring
of the ensembles and the report).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from twsbench.core.config import Config, load
from twsbench.core.threads import cpus


def with_workers(config: Config, workers: int, threads: int, checkpoints: Path) -> Config:
    """``config`` on ``workers`` LocalCluster workers, ``threads`` per task, CNN checkpoints
    in a folder of their own."""
    from twsbench.running.catalog import get_class
    from twsbench.running.plan import model_names

    params = {k: dict(v) for k, v in config.models.params.items()}
    for name in model_names(config):
        if "checkpoint_dir" in getattr(get_class(name), "defaults", {}):
            params.setdefault(name, {})["checkpoint_dir"] = str(checkpoints / name)
    return dataclasses.replace(
        config, compute=dataclasses.replace(config.compute, workers=workers,
                                            threads_per_task=threads),
        models=dataclasses.replace(config.models, params=params))


def project(task_seconds: list[float], workers: int) -> float:
    """Makespan of tasks taken in order, each by the first worker free."""
    free = np.zeros(workers)
    for seconds in task_seconds:
        k = int(np.argmin(free))
        free[k] += seconds
    return float(free.max())


def measure(config: Config, counts: list[int], out: Path, threads: int = 1) -> dict:
    """Run ``config`` on each worker count; the runs, their speed-ups and the projection."""
    from twsbench.pipeline.benchmark import run
    from twsbench.prepare.store import prepare

    # the grids in the cache: the runs time the rest
    for cfg in [config.for_world(w) for w in config.worlds or []] or [config]:
        prepare(cfg)
    rows: list[dict[str, Any]] = []
    tasks: list[float] = []
    for n in counts:
        with tempfile.TemporaryDirectory() as tmp:
            c = with_workers(config, n, threads, Path(tmp))
            t0 = time.perf_counter()
            run_dir, _ = run(c, out / f"workers-{n}", force=True)
            wall = time.perf_counter() - t0
        # one row per task (a fit shared by a model's variants is one task)
        timing = pd.read_csv(run_dir / "timing.csv")
        timing = timing.drop_duplicates([c for c in ("world", "task") if c in timing])
        span = float(timing["task_end_s"].max() - timing["task_start_s"].min())
        if not tasks:
            tasks = [float(t) for t in timing["task_seconds"]]
        rows.append({"workers": n, "threads_per_task": threads, "wall_seconds": wall,
                     "fits_span_seconds": span, "serial_seconds": wall - span,
                     "task_seconds_sum": float(timing["task_seconds"].sum()),
                     "tasks": len(timing), "run_dir": str(run_dir)})
    for r in rows:
        r["speedup_wall"] = rows[0]["wall_seconds"] / r["wall_seconds"]
        r["speedup_fits"] = rows[0]["fits_span_seconds"] / r["fits_span_seconds"]
    serial = float(rows[0]["serial_seconds"])
    projection = [{"workers": n, "fits_seconds": project(tasks, n),
                   "run_seconds": project(tasks, n) + serial}
                  for n in (1, 2, 4, 8, 16, 32, 64)]
    result = {"config": str(config.source), "cpus": cpus(), "runs": rows,
              "projection": projection}
    (out / "scaling.json").write_text(json.dumps(result, indent=1))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m twsbench.pipeline.scaling",
                                     description=__doc__)
    parser.add_argument("config", help="TOML config")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--threads-per-task", type=int, default=1)
    parser.add_argument("--out", default="reports/scaling", help="folder for the runs")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = measure(load(args.config), args.workers, out, args.threads_per_task)
    for r in result["runs"]:
        print(f"{r['workers']} worker(s), {r['threads_per_task']} thread(s) per task: "
              f"run {r['wall_seconds']:.1f} s, fits {r['fits_span_seconds']:.1f} s "
              f"(speed-up {r['speedup_wall']:.2f} run, {r['speedup_fits']:.2f} fits)")
    print("projection from the task times (fits in order, first free worker; + serial "
          f"{result['runs'][0]['serial_seconds']:.1f} s):")
    for p in result["projection"]:
        print(f"  {p['workers']:3d} workers: fits {p['fits_seconds']:.1f} s, "
              f"run {p['run_seconds']:.1f} s")
    print(f"written: {out / 'scaling.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
