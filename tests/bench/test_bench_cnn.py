"""Speed of one training epoch of the soft-constrained CNN (default network) on the tiny twin
domain.

The epoch is that of a network already trained for a few epochs, as most of a fit's epochs
are (a fresh network computes on different numbers: early epochs were up to twice as fast as
later ones before denormals were flushed). A fit of ``WARM + 1`` epochs is stopped once after
``WARM`` epochs; each round resumes a copy of its checkpoint and trains the last epoch: loading
the checkpoint, building the months' inputs and targets, every training batch, the validation
pass and the checkpoint. ``extra_info`` holds the training months, the batches and
months·pixels per second (pixels: the padded input image the network sees).
"""

from __future__ import annotations

import itertools
import shutil

import numpy as np
import pytest

from tests import tiny
from tests.bench._helpers import record
from twsbench.core.config import parse
from twsbench.prepare.store import prepare

torch = pytest.importorskip("torch")

from twsbench.models.training import TrainConfig, Trainer  # noqa: E402

WARM = 4
CONFIG = TrainConfig(epochs=WARM + 1)


class _Stop(Exception):
    pass


@pytest.fixture(scope="module")
def grids():
    return prepare(parse(tiny.TINY))[0]


@pytest.fixture(scope="module")
def months(grids):
    train = grids.split_months("train")
    validation = grids.split_months("validation")
    return train, validation[~np.isin(validation, train)]


@pytest.fixture(scope="module")
def warm_checkpoint(grids, months, tmp_path_factory):
    """The checkpoint folder of a fit stopped after ``WARM`` epochs."""
    folder = tmp_path_factory.mktemp("cnn") / "warm"

    def stop(record):
        if record["epoch"] == WARM - 1:
            raise _Stop

    with pytest.raises(_Stop):
        Trainer(grids, CONFIG, seed=0, checkpoint_dir=folder).fit(*months, on_epoch=stop)
    return folder


@pytest.mark.benchmark(group="train")
def test_train_one_epoch(benchmark, grids, months, warm_checkpoint, tmp_path, medians):
    rounds = itertools.count()

    def resumed():
        folder = tmp_path / f"round{next(rounds)}"
        shutil.copytree(warm_checkpoint, folder)
        return (Trainer(grids, CONFIG, seed=0, checkpoint_dir=folder),), {}

    history = benchmark.pedantic(lambda t: t.fit(*months), setup=resumed, rounds=5,
                                 warmup_rounds=1)
    assert [e["epoch"] for e in history.epochs] == list(range(WARM + 1))  # one epoch resumed
    assert all(np.isfinite(e["val_obs"]) for e in history.epochs)
    n = int(grids.has_grace[grids.month_index(months[0])].sum())
    multiple = 2**CONFIG.depth
    pixels = int(np.prod([-(-size // multiple) * multiple for size in grids.shape]))
    record(benchmark, medians, "train_epoch_tiny", months=n,
           batches=-(-n // CONFIG.batch_months), pixels=pixels)
    if "median_s" in benchmark.extra_info:
        benchmark.extra_info["months_pixels_per_second"] = (
            n * pixels / benchmark.extra_info["median_s"])
