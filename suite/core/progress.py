"""Progress display for the CLI (rich), kept out of the library's code paths."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)


@contextlib.contextmanager
def bars(console: Console, enabled: bool = True) -> Iterator[tuple]:
    """Yield ``(stage, progress)`` callbacks: ``stage(label)`` prints a step, ``progress(label,
    done, total)`` drives one bar per label."""
    if not enabled:
        yield (lambda label: None), (lambda label, done, total: None)
        return
    columns = (TextColumn("{task.description:<22}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        tasks: dict[str, TaskID] = {}

        def stage(label: str) -> None:
            progress.console.print(f"[dim]{time.strftime('%H:%M:%S')}[/dim] {label}")

        def advance(label: str, done: int, total: int) -> None:
            if label not in tasks:
                tasks[label] = progress.add_task(label, total=total)
            progress.update(tasks[label], completed=done)

        yield stage, advance
