"""Month splits: train, validation, test (gap-like blocks and scattered months) and gap, and
the two tasks' test months.

Months are split, never cells. Test holds contiguous blocks of calendar months (like the
11-month GRACE/GRACE-FO gap) and scattered months; validation holds scattered months; train
is every other month with GRACE. Months without GRACE form ``gap``: only the twin's truth can
score them. No month is in two of train, validation and test.

The two tasks:

- ``downscale``: the scattered test months. Every model may use their GRACE.
- ``gapfill``: the test blocks, whose GRACE is withheld from every model
  (:meth:`twsbench.prepare.grids.Grids.withhold`), and the ``gap`` months without GRACE.
  ``gapfill_withheld`` and ``gapfill_nograce`` are its two parts.
"""

from __future__ import annotations

import numpy as np

from twsbench.core.config import Split
from twsbench.core.errors import ConfigError

NAMES = ("train", "validation", "test", "gap")
#: the tasks' test months, and the two parts of gapfill
TASKS = ("downscale", "gapfill")
TASK_SPLITS = ("downscale", "gapfill", "gapfill_withheld", "gapfill_nograce")


def make_splits(months: np.ndarray, has_grace: np.ndarray, split: Split
                ) -> dict[str, np.ndarray]:
    """Boolean masks over ``months`` for each split (plus ``test_block``/``test_scattered``
    and the tasks' splits).

    Raises
    ------
    ConfigError
        When the split asks for more months than there are, or leaves a split empty.
    """
    n = months.size
    has_grace = np.asarray(has_grace, dtype=bool)
    rng = np.random.default_rng([split.seed, 7101])
    taken = np.zeros(n, dtype=bool)
    block = np.zeros(n, dtype=bool)
    starts = np.arange(0, n - split.block_length + 1)
    rng.shuffle(starts)
    placed = 0
    for start in starts:
        if placed == split.test_blocks:
            break
        span = slice(max(0, start - 1), min(n, start + split.block_length + 1))
        window = slice(start, start + split.block_length)
        # a block needs GRACE in most of its months and may not touch another block
        if block[span].any() or has_grace[window].sum() < 0.75 * split.block_length:
            continue
        block[window] = True
        placed += 1
    if placed < split.test_blocks:
        raise ConfigError(f"[split] test_blocks: expected room for {split.test_blocks} blocks of "
                          f"{split.block_length} months, found room for {placed}")
    block &= has_grace
    taken |= block
    free = np.flatnonzero(has_grace & ~taken)
    need = split.test_scattered + split.validation
    if need >= free.size:
        raise ConfigError(f"[split]: expected fewer than {free.size} scattered test and "
                          f"validation months (the rest train), found {need}")
    picks = rng.permutation(free)
    scattered = np.zeros(n, dtype=bool)
    scattered[picks[: split.test_scattered]] = True
    validation = np.zeros(n, dtype=bool)
    validation[picks[split.test_scattered:need]] = True
    test = block | scattered
    train = has_grace & ~test & ~validation
    out = {"train": train, "validation": validation, "test": test, "gap": ~has_grace,
           "test_block": block, "test_scattered": scattered,
           "downscale": scattered, "gapfill": block | ~has_grace, "gapfill_withheld": block,
           "gapfill_nograce": ~has_grace}
    for name in ("train", "gap") if (~has_grace).any() else ("train",):
        if not out[name].any():
            raise ConfigError(f"[split]: expected months in {name}, found none")
    return out
