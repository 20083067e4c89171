"""Where inputs sit on the twin's axes (:mod:`twsbench.scoring.locate`): the estimator, the
shipped reference, and ``twsbench inspect --locate``, which reads no truth."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pandas as pd
import pytest

from tests.test_cli import run_cli
from twsbench.core.config import AXES
from twsbench.scoring import locate


def _synthetic_reference(n: int, seed: int) -> pd.DataFrame:
    """Features drawn at random, each axis a known linear function of its features plus
    noise of sd 0.05."""
    rng = np.random.default_rng(seed)
    features = sorted({f for fs in locate.AXIS_FEATURES.values() for f in fs})
    table = pd.DataFrame(rng.uniform(0, 1, (n, len(features))), columns=features)
    for axis, names in locate.AXIS_FEATURES.items():
        table[axis] = 0.2 + sum((k + 1) * 0.1 * table[f] for k, f in enumerate(names)) \
            + 0.05 * rng.standard_normal(n)
    return table


def test_estimates_recover_a_known_relation_and_intervals_cover():
    reference = _synthetic_reference(60, 0)
    fresh = _synthetic_reference(200, 1)
    covered = {axis: 0 for axis in AXES}
    for _, row in fresh.iterrows():
        for located in locate.locate(row.to_dict(), reference):
            covered[located.axis] += located.low <= row[located.axis] <= located.high
            truth_free = 0.2 + sum((k + 1) * 0.1 * row[f] for k, f in
                                   enumerate(locate.AXIS_FEATURES[located.axis]))
            assert abs(located.estimate - truth_free) < 0.1
    for axis, hits in covered.items():
        assert 0.8 <= hits / len(fresh) <= 0.98, (axis, hits)


def test_the_shipped_reference_has_every_axis_and_feature():
    table = pd.read_csv(locate.REFERENCE)
    assert len(table) >= 20
    for axis, names in locate.AXIS_FEATURES.items():
        assert table[[axis, *names]].notna().all().all()
        assert table[axis].std() > 0  # the reference spans the axis


@pytest.mark.slow
def test_inspect_locate_prints_one_line_per_axis_and_reads_no_truth(tiny_world, tmp_path):
    with_truth = run_cli("inspect", "--locate", str(tiny_world.grace.parent))
    assert with_truth.returncode == 0, with_truth.stderr
    lines = with_truth.stdout.strip().splitlines()
    pattern = r"^(\w+) (-?\d+\.\d\d) \[(-?\d+\.\d\d), (-?\d+\.\d\d)\]$"
    assert [re.match(pattern, line).group(1) for line in lines] == list(AXES)
    for line in lines:
        _, estimate, low, high = re.match(pattern, line).groups()
        assert float(low) <= float(estimate) <= float(high)
    # the same files without the truth: the same lines
    for path in tiny_world.all():
        if path != tiny_world.truth:
            shutil.copy(path, tmp_path / path.name)
    without = run_cli("inspect", "--locate", str(tmp_path))
    assert without.returncode == 0, without.stderr
    assert without.stdout == with_truth.stdout
    # a folder without the inputs: one line, exit 2
    (tmp_path / tiny_world.wghm.name).unlink()
    missing = run_cli("inspect", "--locate", str(tmp_path))
    assert missing.returncode == 2 and "no wghm file" in missing.stderr


def test_intervals_widen_when_the_relation_shifts_between_domains():
    """With several domains the interval comes from each domain predicted by the others: an
    offset between domains, invisible to leave-one-out within them, widens it."""
    same = _synthetic_reference(60, 2)
    same["domain"] = np.where(np.arange(60) < 30, "a", "b")
    shifted = same.copy()
    shifted.loc[shifted["domain"] == "b", "submascon_skill"] += 0.3
    narrow, wide = locate.fit(same, "submascon_skill"), locate.fit(shifted, "submascon_skill")
    pooled = locate.fit(shifted.drop(columns="domain"), "submascon_skill")  # leave-one-out
    assert narrow.high - narrow.low < 0.3
    assert wide.high - wide.low > 1.4 * (pooled.high - pooled.low)
    assert wide.low < -0.25 and wide.high > 0.25  # each domain off by the shift
