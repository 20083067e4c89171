"""Which input files a config reads: its ``[inputs]``, or the twin world generated once into
the cache; and their content hashes, remembered per file."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from twsbench.core import cache, codehash
from twsbench.core.config import Config, TwinWorld
from twsbench.core.domains import Domain
from twsbench.core.errors import InputError

Stage = Callable[[str], None]


@dataclass(frozen=True)
class InputFiles:
    grace: Path
    wghm: Path
    era5: tuple[Path, ...]
    truth: Path | None = None
    grace_companions: tuple[Path, ...] = ()

    def for_key(self) -> list[Path]:
        return [self.grace, *self.grace_companions, self.wghm, *self.era5]


def file_hash(path: Path) -> str:
    """SHA-256 of a file's content, remembered per (path, size, mtime) in the cache."""
    path = Path(path).resolve()
    stat = path.stat()
    memo_dir = cache.cache_dir() / "hashes"
    memo_key = hashlib.sha256(f"{path}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()
    memo = memo_dir / memo_key[:32]
    if memo.exists():
        return memo.read_text().strip()
    value = cache.sha256_file(path)
    memo_dir.mkdir(parents=True, exist_ok=True)
    cache.write_text(memo, value)
    return value


def twin_key(domain: Domain, world: TwinWorld) -> str:
    """The twin world's cache entry: its domain, level, axes and seed, and the code that
    writes it (the modules :mod:`twsbench.twin` imports)."""
    return f"{domain.name}-{world.label}-{codehash.digest(codehash.TWIN)}"


def twin_inputs(domain: Domain, world: TwinWorld, stage: Stage | None = None) -> InputFiles:
    """The twin world's files for ``domain`` and ``world``, generated once into the cache."""
    from twsbench.twin import WorldFiles, make_world

    seed, realism = world.seed, world.realism
    name = twin_key(domain, world)
    target = cache.cache_dir() / "twin" / name
    files = WorldFiles.in_dir(target)
    if not all(p.exists() for p in files.all()):
        if stage:
            stage(f"generating the twin world ({domain.describe()}, {realism}"
                  + (f", {world.axes.describe()}" if world.axes.any else "") + f", seed {seed})")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.temp_dir(target)
        try:
            make_world(domain, seed, tmp, realism=realism, axes=world.axes)
            if target.exists():  # another process finished first
                shutil.rmtree(tmp)
            else:
                os.replace(tmp, target)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return InputFiles(grace=files.grace, wghm=files.wghm, era5=tuple(files.era5),
                      truth=files.truth)


def check_inputs(config: Config) -> None:
    """Each file of ``[inputs]`` exists, is a file and is not empty."""
    source = config.report.verdict_map
    if source:
        path = Path(source)
        table = path / "verdict_map.csv" if path.is_dir() else path
        if not table.is_file():
            raise InputError(table, "[report] verdict_map",
                             "a map run's verdict_map.csv (or its run folder)", "no such file")
    i = config.inputs
    if i.is_twin:
        return
    named: list[tuple[str, str | None]] = [("grace", i.grace), ("wghm", i.wghm),
                                           *(("era5", p) for p in i.era5),
                                           ("truth", i.truth),
                                           *(("grace_companions", p)
                                             for p in i.grace_companions)]
    for key, value in named:
        if value is None:
            continue
        path = Path(value)
        if not path.exists():
            raise InputError(path, f"[inputs] {key}", "an existing file", "no such file")
        if path.is_dir():
            raise InputError(path, f"[inputs] {key}", "a file", "a directory")
        if path.stat().st_size == 0:
            raise InputError(path, f"[inputs] {key}", "a netCDF or zip file",
                             "an empty file (0 bytes)")


def resolve_inputs(config: Config, stage: Stage | None = None) -> InputFiles:
    """Input files of a config: its ``[inputs]`` or the (cached) twin world."""
    if config.inputs.is_twin:
        return twin_inputs(config.domain.resolve(), config.twin.primary, stage)
    check_inputs(config)
    i = config.inputs
    # not the twin: validated in twsbench.core.config
    assert i.grace is not None and i.wghm is not None
    return InputFiles(grace=Path(i.grace), wghm=Path(i.wghm), era5=tuple(map(Path, i.era5)),
                      truth=Path(i.truth) if i.truth else None,
                      grace_companions=tuple(map(Path, i.grace_companions)))
