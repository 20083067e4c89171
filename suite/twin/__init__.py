"""The twin world: generate it and write its five files."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from twsbench.core.config import Axes
from twsbench.core.domains import Domain
from twsbench.twin import writers
from twsbench.twin.world import World, build_world

__all__ = ["WorldFiles", "World", "build_world", "make_world"]


@dataclass(frozen=True)
class WorldFiles:
    """Paths of a written twin world."""

    grace: Path
    wghm: Path
    era5: tuple[Path, ...]
    truth: Path

    @classmethod
    def in_dir(cls, out: Path) -> WorldFiles:
        out = Path(out)
        return cls(grace=out / writers.GRACE_NAME, wghm=out / writers.WGHM_NAME,
                   era5=tuple(out / n for n in writers.ERA5_NAMES.values()),
                   truth=out / writers.TRUTH_NAME)

    def all(self) -> list[Path]:
        return [self.grace, self.wghm, *self.era5, self.truth]


def make_world(domain: Domain, seed: int, out: str | Path,
               stage: Callable[[str], None] | None = None,
               progress: writers.Progress | None = None, *,
               realism: str = "realistic", axes: Axes | None = None
               ) -> tuple[World, WorldFiles, dict]:
    """Build the twin world at a realism level (and ``axes``) and write its files into
    ``out``.

    Returns
    -------
    world, files, timings
        The in-memory world, the written paths and seconds spent per stage.
    """
    out = Path(out)
    files = WorldFiles.in_dir(out)
    timings = {}
    t0 = time.perf_counter()
    world = build_world(domain, seed, progress=stage, realism=realism, axes=axes)
    timings["build"] = time.perf_counter() - t0
    out.mkdir(parents=True, exist_ok=True)
    for label, write in (
        ("grace", lambda: writers.write_grace(world, files.grace, progress)),
        ("wghm", lambda: writers.write_wghm(world, files.wghm, progress)),
        ("era5", lambda: writers.write_era5(world, out, progress)),
        ("truth", lambda: writers.write_truth(world, files.truth)),
    ):
        if stage:
            stage(f"writing {label}")
        t0 = time.perf_counter()
        write()
        timings[label] = time.perf_counter() - t0
    return world, files, timings
