"""A CNN fit's checkpoint: the state after its last finished epoch, written atomically and
read back to resume a fit that was killed."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from twsbench.core import cache


def save(path: Path | None, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` so that it is either the old checkpoint or the new one
    (nothing without a checkpoint folder)."""
    if path is None:
        return
    tmp = cache.temp_path(path)
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load(path: Path | None, device: torch.device, config: dict[str, Any], seed: int
         ) -> dict[str, Any] | None:
    """The checkpoint at ``path`` (None when there is none yet).

    Raises
    ------
    ValueError
        For a checkpoint of another configuration or seed.
    """
    if path is None or not path.exists():
        return None
    state = torch.load(path, map_location=device, weights_only=False)
    if state["config"] != config or state["seed"] != seed:
        raise ValueError(f"{path}: expected a checkpoint of this model and seed, found "
                         "another")
    return state
