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

from twsbench.core.errors import ConfigError

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


@functools.cache
def torch_installed() -> bool:
    """Whether torch imports (the ``cnn`` extra)."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


@functools.cache
def torch_cuda_available() -> bool:
    """Whether torch is installed and sees a CUDA device."""
    if not torch_installed():
        return False
    import torch

    try:
        return bool(torch.cuda.is_available())
    except Exception:  # a broken CUDA runtime
        return False


def resolve(device: str = "auto") -> str:
    """``"cpu"`` or ``"cuda"`` for a requested device: the one setting that governs the CuPy
    kernels and the torch models alike (``auto`` picks CUDA when CuPy or torch sees a GPU).

    Raises
    ------
    ConfigError
        For an unknown device, or ``cuda`` on a machine where neither sees a GPU.
    """
    if device not in DEVICES:
        raise ConfigError(f"[compute] device: expected one of {', '.join(DEVICES)}, found "
                          f"{device!r}")
    if device == "cpu":
        return "cpu"
    present = cupy_available() or torch_cuda_available()
    if device == "cuda" and not present:
        raise ConfigError("[compute] device: expected a CUDA GPU visible to CuPy or torch, "
                          "found none")
    return "cuda" if present else "cpu"


def get_xp(device: str = "auto") -> ModuleType:
    """The array module for ``device``: :mod:`cupy` on CUDA when CuPy is installed, else
    :mod:`numpy`."""
    if resolve(device) == "cuda" and cupy_available():
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
    """The torch device string for ``device`` (resolved as :func:`resolve` does).

    Raises
    ------
    ConfigError
        When the device is CUDA but torch cannot use it (a CPU build of torch).
    """
    resolved = resolve(device)
    if resolved == "cuda" and not torch_cuda_available():
        raise ConfigError("[compute] device: expected a CUDA build of torch for device cuda, "
                          "found torch without CUDA (install a CUDA build of torch, or set "
                          "device = \"cpu\")")
    return resolved
