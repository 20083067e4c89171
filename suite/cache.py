"""Where the suite keeps derived data between runs, and atomic writes into it."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np


def cache_dir() -> Path:
    """``$TWSBENCH_CACHE_DIR``, else ``$XDG_CACHE_HOME/twsbench``, else ``~/.cache/twsbench``."""
    env = os.environ.get("TWSBENCH_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "twsbench"


def temp_path(target: Path) -> Path:
    """A new, unique temporary path beside ``target`` (same filesystem, so rename is atomic)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(name, 0o666 & ~umask)  # mkstemp makes 0600; the final file gets normal rights
    return Path(name)


def atomic_save_npy(path: Path, array: np.ndarray) -> None:
    """Save an array so that ``path`` is either absent or complete."""
    tmp = temp_path(path)
    try:
        with open(tmp, "wb") as f:
            np.save(f, array)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
