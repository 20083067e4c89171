"""How ``twsbench run`` scales with LocalCluster workers, one thread per task.

Two worlds of a mid-sized twin domain, ``mascon_regression`` once and the random forest and
LightGBM with two seeds each (10 fits), run with 1 and then 2 workers. Each round is a whole
run: the cluster's start, the fits, the ensembles' calibration, the tables and the report.
``extra_info`` holds the span of the fits (first task start to last task end) and the
2-worker run's speed-up over the 1-worker run; ``python -m twsbench.pipeline.scaling`` does the
same for any config, with a projection to more workers.
"""

from __future__ import annotations

import pytest

from tests.bench._helpers import record
from twsbench.core.config import parse
from twsbench.pipeline.scaling import with_workers
from twsbench.prepare.store import prepare

pytest.importorskip("distributed")

TABLE = {"domain": {"bbox": [20.0, 32.0, 72.0, 88.0]},
         "twin": {"seeds": [0, 1], "realism": "realistic"},
         "models": {"names": ["mascon_regression", "random_forest", "lightgbm"],
                    "seeds": [0, 1], "params": {"random_forest": {"n_estimators": 50}}}}
MEDIANS: dict[str, float] = {}
SPANS: dict[int, float] = {}


@pytest.fixture(scope="module")
def config():
    config = parse(TABLE, "<scaling bench>")
    for world in config.worlds:  # the worlds' grids in the cache: the runs time the fits
        prepare(config.for_world(world))
    return config


@pytest.mark.parametrize("workers", [1, 2])
def test_run_on_workers(benchmark, config, workers, tmp_path):
    import pandas as pd

    from twsbench.pipeline.benchmark import run

    c = with_workers(config, workers, 1, tmp_path / "checkpoints")
    out = {}

    def once():
        out["dir"], _ = run(c, tmp_path / "reports", force=True)

    benchmark.group = "scaling: 10 fits on LocalCluster workers, 1 thread per task"
    benchmark.pedantic(once, rounds=1, iterations=1)
    timing = pd.read_csv(out["dir"] / "timing.csv")
    assert len(timing) == 2 * (1 + 2 + 2) and timing["worker"].nunique() == workers
    SPANS[workers] = float(timing["task_end_s"].max() - timing["task_start_s"].min())
    info = {"fits_span_s": round(SPANS[workers], 2),
            "task_seconds_sum": round(float(timing["task_seconds"].sum()), 2)}
    if workers == 2 and 1 in SPANS:
        info["fits_speedup_over_1_worker"] = round(SPANS[1] / SPANS[2], 3)
    record(benchmark, MEDIANS, f"workers_{workers}",
           relative_to=("workers_1",) if workers == 2 else (), **info)
