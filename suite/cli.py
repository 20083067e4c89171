"""The ``twsbench`` command line: parses a few arguments and calls the library.

Exit statuses: 0 done; 1 ``validate`` found problems; 2 bad input or configuration (one line
on stderr); 3 ``twsbench run`` finished (or, with ``--fail-fast``, stopped) with failed
tasks, each named in one line on stderr, their tracebacks in the run folder's
``failures.log``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from twsbench import __version__
from twsbench.core.errors import InputError, TwsbenchError

log = logging.getLogger("twsbench")


def _world(args: argparse.Namespace, console: Console) -> int:
    from twsbench.core.config import AXES, Twin, validate_twin
    from twsbench.core.domains import get_domain
    from twsbench.core.progress import bars
    from twsbench.scoring.realism import measure
    from twsbench.twin import make_world

    domain = get_domain(args.domain, tuple(args.bbox) if args.bbox else None)
    values = {k: getattr(args, k) for k in AXES if getattr(args, k) is not None}
    twin = Twin(seed=args.seed, realism=(args.realism,), **{k: (v,) for k, v in values.items()})
    validate_twin(twin)
    axes = twin.primary.axes
    t0 = time.perf_counter()
    with bars(console, enabled=not args.quiet) as (stage, progress):
        world, files, timings = make_world(domain, args.seed, args.out, stage, progress,
                                           realism=args.realism, axes=axes)
        stage("calibration statistics from the written files")
        t1 = time.perf_counter()
        cal = measure(files.grace, files.wghm, files.era5, files.truth)
        timings["calibration"] = time.perf_counter() - t1
    total = time.perf_counter() - t0
    axes = world.axes  # with the level's own point on the axes it sets
    where = args.realism + (f", {axes.describe()}" if axes.any else "")
    table = Table(title=f"twin world: {domain.describe()}, {where}, seed {args.seed}",
                  show_header=False)
    table.add_row("extent", f"lat {world.lat[0] - 0.25:g}..{world.lat[-1] + 0.25:g}, "
                  f"lon {world.lon[0] - 0.25:g}..{world.lon[-1] + 0.25:g} "
                  f"({world.lat.size} × {world.lon.size} cells of 0.5°)")
    table.add_row("land", f"{int(world.land.sum()):,} cells; {world.domain_tiles.size} mascons "
                  "in the domain")
    table.add_row("months", f"truth 2002-04..2022-12 (249); GRACE {world.grace_months.size} "
                  "solutions")
    for path in files.all():
        table.add_row(path.name, f"{path.stat().st_size / 2**20:,.1f} MiB")
    table.add_row("time", f"{total:.1f} s (" + ", ".join(
        f"{k} {v:.1f} s" for k, v in timings.items()) + ")")
    console.print(table)
    console.print(_calibration_table(cal, f"calibration ({args.realism})"))
    if axes.any:
        console.print(_axes_table(cal, axes))
    return 0


def _axes_table(cal, axes) -> Table:
    from twsbench.scoring.realism import axis_rows

    table = Table(title="the world's axes: target and measured from the written files")
    for name in ("axis", "target", "measured", "how"):
        table.add_column(name, justify="right" if name in ("target", "measured") else "left",
                         overflow="fold")
    for row in axis_rows(cal, axes):
        table.add_row(*row)
    return table


def _calibration_table(cal, title: str) -> Table:
    from twsbench.scoring.realism import rows

    header, body = rows(cal)
    table = Table(title=title)
    for k, name in enumerate(header):
        table.add_column(name, justify="left" if k in (0, len(header) - 2, len(header) - 1)
                         else "right", overflow="fold")
    for row in body:
        table.add_row(*row)
    return table


def _locate(target: str) -> int:
    """``inspect --locate``: one line per axis, ``AXIS ESTIMATE [LOW, HIGH]``."""
    from twsbench.inputs.inspect import group_inputs
    from twsbench.scoring.locate import locate_files

    path = Path(target)
    if path.is_file() and path.suffix == ".toml":
        from twsbench.prepare.files import resolve_inputs

        files = resolve_inputs(_load_config(target))
        grace, wghm, era5 = files.grace, files.wghm, list(files.era5)
    else:
        found = dict(group_inputs([path]))
        missing = [k for k in ("grace", "wghm", "era5") if k not in found]
        if missing:
            raise InputError(path, "--locate", "GRACE, WaterGAP and ERA5 files (or a config)",
                             f"no {', '.join(missing)} file")
        grace, wghm, era5 = found["grace"][0], found["wghm"][0], found["era5"]
    for located in locate_files(grace, wghm, era5):
        print(located.line())
    return 0


def _inspect(args: argparse.Namespace, console: Console) -> int:
    from twsbench.inputs.inspect import describe, group_inputs

    if args.locate:
        return _locate(args.locate)
    if not args.paths:
        raise InputError(Path("."), "inspect", "files or directories (or --locate)",
                         "none given")
    groups = group_inputs([Path(p) for p in args.paths])
    for kind, paths in groups:
        table = Table(title=f"{kind}: {', '.join(p.name for p in paths)}", show_header=False)
        for key, value in describe(kind, paths).items():
            table.add_row(key, value)
        console.print(table)
    found = dict(groups)
    if all(k in found for k in ("grace", "wghm", "era5")):  # a twin folder, or real inputs
        from twsbench.scoring.realism import measure

        cal = measure(found["grace"][0], found["wghm"][0], found["era5"],
                      found["truth"][0] if "truth" in found else None)
        console.print(_calibration_table(cal, "calibration: the inputs against GRACE"
                                         + (" and the truth" if "truth" in found else "")))
    return 0


def _load_config(path: str | None, scheduler: str | None = None, workers: int | None = None,
                 threads: int | None = None, layers: Sequence[str] = (),
                 sets: Sequence[str] = ()):
    import dataclasses

    from twsbench.core.config import load, validate

    config = load(path, tuple(layers), tuple(sets))
    changes: dict = {}
    if scheduler:
        changes.update(scheduler=scheduler, workers=0)
    if workers is not None:
        changes.update(workers=workers, scheduler=None)
    if threads is not None:
        changes["threads_per_task"] = threads
    if changes:
        config = dataclasses.replace(
            config, compute=dataclasses.replace(config.compute, **changes))
        validate(config)
    return config


def _prepare(args: argparse.Namespace, console: Console) -> int:
    from twsbench.core.progress import bars
    from twsbench.prepare.store import prepare

    config = _load_config(args.config, args.scheduler)
    t0 = time.perf_counter()
    with bars(console, enabled=not args.quiet) as (stage, _):
        grids, path, cached = prepare(config, use_cache=not args.no_cache, stage=stage)
    table = Table(title=f"prepared grids ({'from the cache' if cached else 'computed'} in "
                  f"{time.perf_counter() - t0:.1f} s)", show_header=False)
    for key, value in grids.summary().items():
        table.add_row(key, value)
    table.add_row("cache", str(path))
    console.print(table)
    return 0


def _run(args: argparse.Namespace, console: Console) -> int:
    import pandas as pd

    from twsbench.core.errors import TaskFailed
    from twsbench.core.progress import bars
    from twsbench.core.splits import TASKS
    from twsbench.pipeline.benchmark import run
    from twsbench.running.records import EXIT_FAILED
    from twsbench.scoring.leaderboards import NO_TRUTH, leaderboard, ranking_metric

    config = _load_config(args.config, args.scheduler, args.workers, args.threads_per_task,
                          args.params, args.set)
    t0 = time.perf_counter()
    try:
        with bars(console, enabled=not args.quiet) as (stage, progress):
            run_dir, reused = run(config, args.out, force=args.force,
                                  benchmark_json=[Path(p) for p in args.benchmark_json],
                                  stage=stage, progress=progress, fail_fast=args.fail_fast)
    except TaskFailed as err:
        print(f"twsbench: failed: {err} (stopped: --fail-fast; run the same command again "
              "to resume)", file=sys.stderr)
        return EXIT_FAILED
    meta = json.loads((run_dir / "meta.json").read_text())
    scores = pd.read_csv(run_dir / "scores.csv")
    timing = pd.read_csv(run_dir / "timing.csv")
    when = " (already there)" if reused else f" in {time.perf_counter() - t0:.0f} s"
    console.print(f"run {meta['run_id']}{when}")
    for task in TASKS:
        board = leaderboard(scores, timing, meta, task)
        if board.empty:
            console.print(f"{task}: " + (NO_TRUTH if ranking_metric(meta, task) is None else
                                         "no model of this run takes part"))
            continue
        table = Table(title=f"{task} leaderboard ({task} test months)")
        columns = [c for c in board.columns if not c.endswith("_spread")][:5]
        table.add_column("model", no_wrap=True)
        for c in columns:
            table.add_column(c.replace("_", " "), justify="right", overflow="fold")
        for model, row in board.iterrows():
            table.add_row(model, *(f"{row[c]:.4g}" if isinstance(row[c], float) else
                                   str(row[c]) for c in columns))
        console.print(table)
    console.print(f"report: {run_dir / 'index.html'}")
    failures = meta.get("failed_tasks", [])
    for failure in failures:
        print(f"twsbench: failed: {failure['reason']}", file=sys.stderr)
    if failures:
        print(f"twsbench: {len(failures)} task(s) failed; their tracebacks are in "
              f"{run_dir / 'failures.log'}; after a fix, the same command runs only them "
              "again", file=sys.stderr)
        return EXIT_FAILED
    return 0


def _tune(args: argparse.Namespace, console: Console) -> int:
    import shlex

    from twsbench.core.progress import bars
    from twsbench.pipeline.tune import tune

    config = _load_config(args.config, args.scheduler, args.workers, sets=args.set)
    command = "twsbench " + " ".join(shlex.quote(a) for a in args.argv)
    t0 = time.perf_counter()
    with bars(console, enabled=not args.quiet) as (stage, _):
        layer = tune(config, args.trials, args.out, task=args.task,
                     world_seed=args.world_seed, seed=args.seed, command=command, stage=stage)
    info = layer["tuning"]
    table = Table(title=f"tuned on {info['world']} ({info['validation_months']} validation "
                  f"months, {info['objective']}) in {time.perf_counter() - t0:.0f} s")
    for column in ("model", "first trial", "best", "trials", "pruned", "CPU s"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for name in layer["models"]["params"]:
        t = info[name]
        first = "pruned" if t.get("first") is None else f"{t['first']:.4f}"
        table.add_row(name, first, f"{t['best']:.4f}", str(t["trials"]), str(t["pruned"]),
                      f"{t['cpu_seconds']:.0f}")
    console.print(table)
    if info["untuned"]:
        console.print(f"not tuned (no search space): {', '.join(info['untuned'])}")
    console.print(f"layer: {args.out} (apply with: twsbench run CONFIG --params {args.out})")
    return 0


def _report(args: argparse.Namespace, console: Console) -> int:
    from twsbench.report.build import build_report

    run_dir = Path(args.run_dir)
    for name in ("meta.json", "scores.csv", "timing.csv", "monthly.csv", "grid.nc"):
        if not (run_dir / name).exists():
            raise InputError(run_dir / name, "-", "a run folder written by twsbench run",
                             "no such file")
    console.print(f"report: {build_report(run_dir)}")
    return 0


def _release(args: argparse.Namespace, console: Console) -> int:
    from twsbench.core.progress import bars
    from twsbench.release.product import release

    with bars(console, enabled=not args.quiet) as (stage, _):
        path = release(args.run_dir, args.out, force=args.force, stage=stage)
    console.print(f"product: {path}\nchecksum: {path.name}.sha256")
    return 0


def _validate(args: argparse.Namespace, console: Console) -> int:
    from twsbench.release.product import validate

    problems = validate(args.file)
    for problem in problems:
        console.print(f"FAIL {problem}")
    if problems:
        return 1
    console.print(f"OK {args.file}")
    return 0


def _fetch(args: argparse.Namespace, console: Console) -> int:
    from twsbench.inputs.fetch import fetch, redact

    result = fetch(args.source, Path(args.out), args.first, args.last,
                   tuple(args.bbox) if args.bbox else None, dry_run=args.dry_run)
    console.print_json(redact(json.dumps(result)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="twsbench",
        description="Benchmark suite for downscaling GRACE/GRACE-FO water storage to 0.5°.")
    parser.add_argument("--version", action="version", version=f"twsbench {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    world = sub.add_parser("world", help="write the twin world in the real file formats")
    where = world.add_mutually_exclusive_group()
    where.add_argument("--domain", help="south-asia (default) or global")
    where.add_argument("--bbox", nargs=4, type=float, metavar=("S", "N", "W", "E"),
                       help="a box in degrees; mascons whose land centroid is inside")
    world.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    world.add_argument("--realism", choices=("optimistic", "realistic", "pessimistic"),
                       default="realistic", help="how strongly the inputs relate to the truth "
                       "(default realistic)")
    for flag, text in (
            ("--submascon-skill", "correlation of WaterGAP's sub-mascon departures with the "
             "truth's (median over cells), 0-0.95"),
            ("--submascon-share", "the truth's share of variance below the mascon scale, "
             "0.01-0.6"),
            ("--human-ratio", "how much of the truth's depletion and reservoir trends WaterGAP "
             "carries, 0-3"),
            ("--submascon-structure", "share of the truth's sub-mascon variance in its "
             "seasonal cycle, 0-1")):
        world.add_argument(flag, type=float, metavar="X", dest=flag[2:].replace("-", "_"),
                           help=text + " (default: the realism level's own)")
    world.add_argument("--out", required=True, help="directory for the five files")
    world.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    world.set_defaults(func=_world)

    inspect = sub.add_parser("inspect", help="read input files (or a directory of them) "
                             "the way the suite does and summarise them")
    inspect.add_argument("paths", nargs="*", help="files or directories")
    inspect.add_argument("--locate", metavar="DIR_OR_CONFIG",
                         help="where the inputs (a folder of them, or a config's) sit on the "
                         "twin's axes: one line per axis, AXIS ESTIMATE [LOW, HIGH]; reads "
                         "no truth")
    inspect.set_defaults(func=_inspect)
    prep = sub.add_parser("prepare", help="prepare the identical grids every downscaler sees "
                          "(cached)")
    prep.add_argument("config", nargs="?", help="TOML config (default: the built-in twin config)")
    prep.add_argument("--scheduler", metavar="ADDRESS",
                      help="send the work to a dask.distributed scheduler")
    prep.add_argument("--no-cache", action="store_true", help="recompute even when cached")
    prep.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    prep.set_defaults(func=_prepare)

    run = sub.add_parser("run", help="prepare, fit and predict every model, score, report")
    run.add_argument("config", nargs="?", help="TOML config (default: the built-in twin config)")
    run.add_argument("--out", default="reports", help="folder of run folders (default reports)")
    where = run.add_mutually_exclusive_group()
    where.add_argument("--scheduler", metavar="ADDRESS",
                       help="run preprocessing and every (world, model, seed) fit on a "
                            "dask.distributed scheduler")
    where.add_argument("--workers", type=int, metavar="N",
                       help="run the fits on a LocalCluster of N worker processes")
    run.add_argument("--threads-per-task", type=int, metavar="T",
                     help="torch/BLAS/OpenMP threads of each fit (default: the CPUs per "
                          "task slot)")
    run.add_argument("--params", action="append", default=[], metavar="FILE",
                     help="a parameter layer (twsbench tune's output) applied on top of the "
                          "config; repeatable")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="one config value, e.g. models.params.lightgbm.num_leaves=63; "
                          "repeatable, applied last")
    run.add_argument("--force", action="store_true",
                     help="run again even if this run exists (into a new folder)")
    run.add_argument("--benchmark-json", action="append", default=[], metavar="FILE",
                     help="pytest-benchmark JSON to include in the report")
    run.add_argument("--fail-fast", action="store_true",
                     help="stop at the first failed task (exit status 3); the finished tasks "
                          "are kept for the next run of the same command")
    run.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    run.set_defaults(func=_run)

    tun = sub.add_parser("tune", help="tune every learned model of a config with the same "
                         "number of trials; write a parameter layer for run --params")
    tun.add_argument("config", nargs="?", help="TOML config (default: the built-in twin config)")
    tun.add_argument("--trials", type=int, required=True, metavar="N",
                     help="trials per learned model")
    tun.add_argument("--out", required=True, metavar="FILE", help="the parameter layer (TOML)")
    tun.add_argument("--task", choices=("both", "downscale", "gapfill"), default="both",
                     help="the objective: the mean of both tasks' primary scores (default) "
                          "or one")
    tun.add_argument("--world-seed", type=int, metavar="S",
                     help="the tuning world's twin seed (default: one more than the "
                          "config's largest)")
    tun.add_argument("--seed", type=int, default=0, help="the sampler's seed (default 0)")
    tun.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="one config value (e.g. models.params_files=[] to start from the "
                          "models' defaults); repeatable")
    where = tun.add_mutually_exclusive_group()
    where.add_argument("--scheduler", metavar="ADDRESS", help="run trials on this dask "
                       "scheduler")
    where.add_argument("--workers", type=int, metavar="N",
                       help="run trials on a LocalCluster of N workers")
    tun.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    tun.set_defaults(func=_tune)

    report = sub.add_parser("report", help="rebuild a run's report from its saved files")
    report.add_argument("run_dir", help="reports/<run_id>")
    report.set_defaults(func=_report)

    rel = sub.add_parser("release", help="refit a run's best model and write its product")
    rel.add_argument("run_dir", help="reports/<run_id>")
    rel.add_argument("--out", help="product file (default: in the run folder)")
    rel.add_argument("--force", action="store_true", help="overwrite an existing product")
    rel.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    rel.set_defaults(func=_release)

    val = sub.add_parser("validate", help="check a released product")
    val.add_argument("file")
    val.set_defaults(func=_validate)

    fet = sub.add_parser("fetch", help="download the real inputs (needs accounts and a network)")
    fet.add_argument("source", choices=("grace", "era5", "wghm"))
    fet.add_argument("--out", required=True, help="download directory")
    fet.add_argument("--first", type=int, default=2002, help="first year (default 2002)")
    fet.add_argument("--last", type=int, default=2022, help="last year (default 2022)")
    fet.add_argument("--bbox", nargs=4, type=float, metavar=("S", "N", "W", "E"),
                     help="ERA5 area (default: the globe)")
    fet.add_argument("--dry-run", action="store_true", help="print the requests only")
    fet.set_defaults(func=_fetch)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``twsbench`` console script."""
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    console = Console(stderr=False)
    try:
        return args.func(args, console)
    except TwsbenchError as err:
        from twsbench.inputs.fetch import redact

        print(f"twsbench: error: {redact(' '.join(str(err).split()))}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
