"""Where the suite keeps derived data between runs, and atomic writes into it."""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
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


def sha256_file(path: Path) -> str:
    """SHA-256 of a file's content (hex), read in 4 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def alive(pid: int) -> bool:
    """Whether process ``pid`` is running (on this machine)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale(target: Path, suffix: str) -> None:
    """Remove temporaries of ``target`` (``.{name}.{pid}.*{suffix}``) whose writing process is
    gone: what a killed writer leaves behind. Live writers' temporaries are left alone."""
    target = Path(target)
    head = f".{target.name}."
    for path in target.parent.glob(glob.escape(head) + "*" + suffix):
        remove_if_dead(path, path.name[len(head):].split(".", 1)[0])


def remove_if_dead(path: Path, pid: str) -> None:
    """Remove ``path`` (a file or a folder) when ``pid``, its writer, is no longer running."""
    if pid.isdigit() and not alive(int(pid)):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def temp_path(target: Path) -> Path:
    """A new, unique temporary file beside ``target`` (same filesystem, so rename is atomic),
    named after this process so that a later writer can clear it if this one is killed."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(target, ".tmp")
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp",
                                dir=target.parent)
    os.close(fd)
    os.chmod(name, 0o666 & ~_umask())  # mkstemp makes 0600; the final file gets normal rights
    return Path(name)


def temp_dir(target: Path) -> Path:
    """Like :func:`temp_path`, a new directory to be renamed to ``target`` when complete."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(target, ".tmpdir")
    name = tempfile.mkdtemp(prefix=f".{target.name}.{os.getpid()}.", suffix=".tmpdir",
                            dir=target.parent)
    os.chmod(name, 0o777 & ~_umask())
    return Path(name)


def write_text(path: Path, text: str) -> None:
    """Write ``text`` so that ``path`` is either absent, the old file, or complete."""
    tmp = temp_path(path)
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_save_npy(path: Path, array: np.ndarray) -> None:
    """Save an array so that ``path`` is either absent or complete."""
    tmp = temp_path(path)
    try:
        with open(tmp, "wb") as f:
            np.save(f, array)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
