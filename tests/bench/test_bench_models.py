"""Each of the default run's downscalers' ``predict`` over all 249 months of the default twin
domain (the CNN's ablations share its network, and so its predict cost).

Models are fitted once outside the timing (the CNN for one epoch only: its predict cost does
not depend on how long it trained). ``extra_info`` holds cells·months per second.
"""

from __future__ import annotations

import numpy as np
import pytest

from twsbench.core.config import DEFAULT_MODELS, parse
from twsbench.prepare.store import prepare
from twsbench.running.catalog import make

QUICK_FIT = {"soft_cnn": {"epochs": 1}}


@pytest.fixture(scope="module")
def grids():
    return prepare(parse({}))[0]


@pytest.mark.benchmark(group="predict")
@pytest.mark.parametrize("name", DEFAULT_MODELS)
def test_predict(benchmark, grids, name):
    model = make(name, seed=0, params=QUICK_FIT.get(name))
    model.fit(grids, grids.split_months("train"))
    out = benchmark.pedantic(model.predict, args=(grids, grids.months), rounds=3,
                             warmup_rounds=1, iterations=1)
    cells = grids.from_grid(out.values)
    covered = model.covers(grids, grids.months)
    assert np.isfinite(cells[covered]).all()
    stats = getattr(benchmark, "stats", None)
    if stats is not None and getattr(stats, "stats", None) is not None:
        benchmark.extra_info["cells_months_per_second"] = (
            grids.n_cells * int(covered.sum()) / float(stats.stats.median))
    benchmark.extra_info.update(cells=grids.n_cells, months=int(covered.sum()))
