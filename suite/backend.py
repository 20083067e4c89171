"""The one place that chooses the array backend (NumPy or CuPy) and the torch device.

Kernels take the array module ``xp`` returned here, so one implementation serves the CPU and
the GPU. CuPy is used only when it imports *and* reports a usable CUDA device; ``import cupy``
alone succeeds on machines without a GPU.
"""

from __future__ import annotations

import functools
import logging
from types import ModuleType

import numpy as np

log = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda")


@functools.cache
def cupy_available() -> bool:
    """Whether CuPy imports and can reach a CUDA device."""
    try:
        import cupy
    except Exception:  # not installed, or a broken CUDA runtime
        return False
    try:
        return bool(cupy.is_available())
    except Exception:
        return False


def resolve(device: str = "auto") -> str:
    """``"cpu"`` or ``"cuda"`` for a requested device (``auto`` picks CUDA when present)."""
    if device not in DEVICES:
        raise ValueError(f"device: expected one of {', '.join(DEVICES)}, found {device!r}")
    if device == "auto":
        return "cuda" if cupy_available() else "cpu"
    if device == "cuda" and not cupy_available():
        raise RuntimeError("device: expected a CUDA GPU reachable by CuPy, found none")
    return device


def get_xp(device: str = "auto") -> ModuleType:
    """The array module for ``device``: :mod:`numpy` or :mod:`cupy`."""
    if resolve(device) == "cuda":
        import cupy

        return cupy
    return np


def get_sparse(xp: ModuleType) -> ModuleType:
    """The sparse-matrix module matching ``xp`` (scipy.sparse or cupyx.scipy.sparse)."""
    if xp is np:
        import scipy.sparse

        return scipy.sparse
    import cupyx.scipy.sparse

    return cupyx.scipy.sparse


def to_device(array, xp: ModuleType):
    """Move a NumPy array or SciPy sparse matrix to ``xp``'s device (no copy for NumPy)."""
    import scipy.sparse as sp

    if xp is np:
        return array
    if sp.issparse(array):
        return get_sparse(xp).csr_matrix(array.tocsr())
    return xp.asarray(array)


def to_numpy(array) -> np.ndarray:
    """Bring an array back to host memory."""
    if hasattr(array, "get"):
        return array.get()
    return np.asarray(array)


def synchronize(xp: ModuleType) -> None:
    """Wait for queued GPU work (for honest timings); a no-op on NumPy."""
    if xp is not np:
        xp.cuda.Stream.null.synchronize()


def torch_device(device: str = "auto") -> str:
    """The torch device string for ``device`` (``auto``: CUDA when torch sees a GPU)."""
    if device not in DEVICES:
        raise ValueError(f"device: expected one of {', '.join(DEVICES)}, found {device!r}")
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device: expected a CUDA GPU visible to torch, found none")
    return device
