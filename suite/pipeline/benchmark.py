"""``twsbench run``: the whole benchmark run. Prepare → fit and predict every model (timed) →
scores and comparisons → report, in a hidden working folder that becomes
``reports/<run_id>/`` only when the report is complete."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from twsbench.core.config import Config
from twsbench.report.build import build_report
from twsbench.running.runner import RunFolder, execute, write_meta

Stage = Callable[[str], None]
Progress = Callable[[str, int, int], None]


def run(config: Config, out_root: str | Path = "reports", *, force: bool = False,
        benchmark_json: list[Path] | None = None, stage: Stage | None = None,
        progress: Progress | None = None, fail_fast: bool = False) -> tuple[Path, bool]:
    """Run the benchmark described by ``config``.

    A run stopped part-way (killed, or ``fail_fast`` at a failed task) keeps its finished
    tasks' records in its working folder; the same command run again takes them and runs
    only the rest (:class:`twsbench.running.runner.RunFolder`).

    Returns
    -------
    run_dir, reused
        The finished run folder and whether it already existed (nothing was run).
    """
    folder = RunFolder.open(config, out_root, force)
    if folder.done:
        if stage:
            stage(f"run {folder.rid} already exists: {folder.final}")
        return folder.final, True
    folder.start()
    try:
        meta = execute(config, folder, benchmark_json=benchmark_json, stage=stage,
                       progress=progress, fail_fast=fail_fast)
        if stage:
            stage("building the report")
        t0 = time.perf_counter()
        build_report(folder.work)
        meta["stage_seconds"]["report"] = time.perf_counter() - t0
        write_meta(folder.work, meta)
        folder.finish()
    finally:
        folder.discard()
    return folder.final, False
