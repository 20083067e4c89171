"""A run's task records: what each (world, model, seed) task gave, written into the run's
working folder as the task finishes, so that a run killed part-way, or one with a failed
task, resumes where it stopped.

A record is ``tasks/<key>.pkl`` in the run folder: the task's results
(:class:`twsbench.running.tasks.FitResult`, one per variant sharing the fit) or its
:class:`Failure`s. The key (:func:`task_key`) hashes what decides the task's results: the
world's config, the variants' names, seed, parameters and device, and the code (twsbench's
modules and the module defining the model), never the run's id, so a run whose plug-in was
fixed still takes the other models' records of the run before it. Records are written to a
temporary file and renamed, so a record is complete or absent.

Where a record is looked for: the run's own working folder, then every run folder and
working folder under the same output root (a run killed before it finished, a finished run
with failed tasks). Only records of finished tasks are taken; a failed task always runs
again.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from twsbench.core import cache
from twsbench.core.config import Config, as_plain
from twsbench.running.plan import ModelRun, code_hash

FOLDER = "tasks"
#: ``twsbench run``'s exit status when the run finished but some task failed
EXIT_FAILED = 3
#: what a failed task's ``kind`` says
KINDS = {"error": "raised an exception", "output": "broke the output contract",
         "timeout": "ran past [compute] task_timeout", "died": "its process died"}


@dataclass
class Failure:
    """A task that failed: its world, model (the registered name the variants share), seed,
    the variants it would have scored, the stage it failed in, the kind of failure
    (:data:`KINDS`), a one-line reason and the traceback."""

    world: str
    model: str
    seed: int
    names: list[str]
    stage: str
    kind: str
    reason: str
    traceback: str = ""

    def as_row(self) -> dict[str, Any]:
        row = asdict(self)
        row.pop("traceback")
        row["names"] = " ".join(self.names)
        return row


@dataclass
class Record:
    """One task's record: its key, world, the tags of its variants and their results (each
    a :class:`twsbench.running.tasks.FitResult`, which holds its :class:`Failure` if any)."""

    key: str
    world: str
    tags: list[str]
    results: list = field(default_factory=list)

    @property
    def failures(self) -> list[Failure]:
        return [r.failure for r in self.results if r.failure is not None]


def one_line(text: str, limit: int = 400) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def task_key(config: Config, world: str, group: Sequence[ModelRun]) -> str:
    """What decides a task's results, hashed: the config without where it runs and without
    the other models, the world, the group's runs and the code that runs them."""
    from twsbench.running.catalog import get_class

    plain = as_plain(config)
    for key in ("source", "layers", "tuning"):
        plain.pop(key, None)
    for key in ("scheduler", "workers", "threads_per_task", "task_timeout", "fail_fast"):
        plain["compute"].pop(key, None)
    plain.pop("models", None)  # the group's runs say what this task fits
    plain["domain"] = as_plain(config.domain.resolve())
    module = get_class(group[0].name).__module__
    path = getattr(sys.modules.get(module), "__file__", None)
    extra = [Path(path)] if path and not module.startswith("twsbench.") else []
    text = json.dumps({"config": plain, "world": world,
                       "runs": [r.as_dict() for r in group],
                       "code": code_hash(extra)}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


class Records:
    """The records of the run whose working folder is ``work``; others are looked for in
    ``out_root`` (:func:`find`)."""

    def __init__(self, work: Path, out_root: Path, search: bool = True):
        self.folder = work / FOLDER
        self.out_root = out_root
        self.search = search
        #: (world, tag) of every failed result saved here (a record taken is never failed)
        self.failed: set[tuple[str, str]] = set()
        self.folder.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.pkl"

    def save(self, record: Record) -> None:
        save(self.path(record.key), record)
        self.failed |= {(record.world, tag) for tag, r in zip(record.tags, record.results,
                                                                strict=True) if r.failure}

    def load(self, key: str) -> Record:
        with open(self.path(key), "rb") as f:
            record: Record = pickle.load(f)
        return record

    def finished(self, key: str) -> bool:
        """Whether a finished task's record is here, or (copied here) in another run's
        folder under the output root."""
        own = self.path(key)
        if not self.search:
            return False
        candidates = [own, *sorted(self.out_root.glob(f"*/{FOLDER}/{key}.pkl")),
                      *sorted(self.out_root.glob(f".*/{FOLDER}/{key}.pkl"))]
        for path in candidates:
            try:
                with open(path, "rb") as f:
                    record = pickle.load(f)
            except (OSError, EOFError, pickle.UnpicklingError, AttributeError):
                continue  # unreadable: run the task again
            if not record.failures and record.results:
                if path != own:
                    save(own, record)
                return True
        return False


def save(path: Path, record: Record) -> None:
    """Write ``record`` to ``path`` atomically (a temporary file renamed into place; a
    killed writer's temporary is cleared by the next, :func:`twsbench.core.cache.temp_path`)."""
    tmp = cache.temp_path(path)
    try:
        with open(tmp, "wb") as f:
            pickle.dump(record, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
