"""``prepare``: the grids of a config, loaded from the cache or computed and saved there.

The key hashes the input files' contents, the grid-relevant config and the code that computes
the grids (found from its imports, :mod:`twsbench.core.codehash`): editing a report or a model
leaves the cached grids in use; editing a reader or the preparation does not.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

from twsbench.core import cache, codehash
from twsbench.core.config import Config
from twsbench.prepare.compute import compute_grids
from twsbench.prepare.files import InputFiles, file_hash, resolve_inputs
from twsbench.prepare.grids import Grids

log = logging.getLogger(__name__)
Stage = Callable[[str], None]


def cache_key(files: InputFiles, config: Config) -> str:
    """Key of prepared grids: input contents, the grid-relevant config and the code that
    computes them (the modules :mod:`twsbench.prepare.compute` imports)."""
    key = config.grids_key()
    key["inputs"] = {"files": [file_hash(p) for p in files.for_key()]}
    key["code"] = codehash.digest(codehash.GRIDS)
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:20]


def grids_path(key: str) -> Path:
    return cache.cache_dir() / "grids" / f"grids-{key}.nc"


@contextlib.contextmanager
def _scheduler(address: str | None) -> Iterator[object | None]:
    if not address:
        yield None
        return
    from distributed import Client

    with Client(address) as client:
        yield client


def prepare(config: Config, *, use_cache: bool = True, use_dask: bool = True,
            stage: Stage | None = None) -> tuple[Grids, Path, bool]:
    """Prepared grids for ``config``: loaded from the cache, or computed and saved.

    Returns
    -------
    grids, path, cached
        The grids, their cache file and whether they came from the cache.
    """
    stage = stage or (lambda label: log.info("prepare: %s", label))
    files = resolve_inputs(config, stage)
    stage("hashing inputs")
    key = cache_key(files, config)
    path = grids_path(key)
    if use_cache and path.exists():
        stage(f"loading cached grids {path.name}")
        return Grids.load(path), path, True
    with _scheduler(config.compute.scheduler):
        grids = compute_grids(files, config, use_dask=use_dask, stage=stage)
    grids.attrs["cache_key"] = key
    path.parent.mkdir(parents=True, exist_ok=True)
    stage(f"saving {path.name}")
    grids.save(path)
    return grids, path, False
