"""The twin's axes (:class:`twsbench.core.config.Axes`): each set value measured back from the
written files, the way the calibration report measures it; their config keys and flags."""

from __future__ import annotations

import numpy as np
import pytest

from twsbench.core.config import Axes, TwinWorld, parse
from twsbench.core.domains import get_domain
from twsbench.core.errors import ConfigError
from twsbench.scoring import realism as calibration
from twsbench.twin import make_world, products
from twsbench.twin.world import MONTHS, build_world

# Central Valley and High Plains: depletion hotspots, no glaciers (which WaterGAP never has
# and which would count as hotspots too)
BOX = get_domain(None, (32.0, 42.0, -124.0, -100.0))
WORLDS = {
    "low": Axes(submascon_skill=0.2, submascon_share=0.1, submascon_structure=0.2,
                human_ratio=0.0),
    "high": Axes(submascon_skill=0.8, submascon_share=0.3, submascon_structure=0.8,
                 human_ratio=2.0),
}


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    out = {}
    for name, axes in {**WORLDS, "level": Axes()}.items():  # level: the realistic level's own
        _, files, _ = make_world(BOX, 0, tmp_path_factory.mktemp(f"axes-{name}"), axes=axes)
        out[name] = calibration.measure(files.grace, files.wghm, files.era5, files.truth).twin
    return out


@pytest.mark.parametrize("name", WORLDS)
def test_submascon_skill_measured_within_a_tenth_of_its_target(measured, name):
    target = WORLDS[name].submascon_skill
    assert abs(measured[name]["wghm_submascon_r"] - target) <= 0.1
    # ERA5's storage follows at a set share of it
    assert abs(measured[name]["era5_submascon_r"] - products.ERA5_SKILL_SHARE * target) <= 0.1


@pytest.mark.parametrize("name", WORLDS)
def test_submascon_share_and_structure_measured_near_their_targets(measured, name):
    axes = WORLDS[name]
    assert abs(measured[name]["truth_submascon_share"] - axes.submascon_share) <= 0.03
    assert abs(measured[name]["truth_submascon_seasonal"] - axes.submascon_structure) <= 0.1


@pytest.mark.parametrize("name", WORLDS)
def test_human_ratio_sets_the_hotspot_trend_slope(measured, name):
    """Where every hotspot is human (no glaciers), WaterGAP's sub-mascon trend at the hotspot
    cells follows the truth's at about the ratio: displaced footprints and per-hotspot factors
    spread it, the ratio sets it."""
    ratio = WORLDS[name].human_ratio
    slope = measured[name]["wghm_hotspot_slope"]
    assert measured[name]["hotspot_cells"] >= 20
    assert 0.5 * ratio - 0.1 <= slope <= 1.5 * ratio + 0.1


def test_realistic_level_carries_human_use_in_its_stated_range(measured):
    """The realistic level is a point on the human_ratio axis: with no axis set, WaterGAP's
    sub-mascon trend at the (glacier-free) hotspots follows the truth's inside the level's
    stated range."""
    lo, hi = calibration.HUMAN_HOTSPOT_SLOPE["realistic"]
    assert measured["level"]["hotspot_cells"] >= 20
    assert lo <= measured["level"]["wghm_hotspot_slope"] <= hi
    assert measured["level"]["wghm_hotspot_r"] >= 0.5


def test_axes_change_only_what_they_name():
    """A world with no axes set is the level's own point (bit for bit the world that sets the
    level's human_ratio); setting the skill changes WaterGAP and ERA5, not the truth or GRACE;
    the same axes and seed give the same arrays."""
    plain = build_world(BOX, 3, progress=lambda _: None)
    named = build_world(BOX, 3, progress=lambda _: None, axes=Axes(human_ratio=1.0))
    skill = build_world(BOX, 3, progress=lambda _: None, axes=Axes(submascon_skill=0.6))
    again = build_world(BOX, 3, progress=lambda _: None, axes=Axes(submascon_skill=0.6))
    months = MONTHS[60:66]
    np.testing.assert_array_equal(products.wghm_block(plain, months),
                                  products.wghm_block(named, months))
    np.testing.assert_array_equal(plain.truth, skill.truth)
    np.testing.assert_array_equal(plain.grace, skill.grace)
    assert not np.allclose(products.wghm_block(plain, months), products.wghm_block(skill, months),
                           equal_nan=True)
    np.testing.assert_array_equal(products.wghm_block(skill, months),
                                  products.wghm_block(again, months))
    share = build_world(BOX, 3, progress=lambda _: None, axes=Axes(submascon_share=0.3))
    assert not np.allclose(plain.truth, share.truth, equal_nan=True)
    # the mascon means of the truth do not move: only the departures below them
    sub = plain.submascon
    mean = lambda w: sub.cells(np.nan_to_num(w.truth)) - sub.deviation(  # noqa: E731
        sub.cells(np.nan_to_num(w.truth)))
    np.testing.assert_allclose(mean(plain), mean(share), atol=1e-2)


def test_a_share_below_the_trends_own_is_refused():
    with pytest.raises(ConfigError, match=r"submascon_share: expected at least .* found 0\.01"):
        build_world(get_domain(None, (24.0, 36.0, 68.0, 84.0)), 0, progress=lambda _: None,
                    axes=Axes(submascon_share=0.01))


def test_twin_axes_take_numbers_or_lists():
    config = parse({"twin": {"submascon_skill": [0.2, 0.6], "human_ratio": 1,
                             "seeds": [0, 1]}})
    labels = [w.label for w in config.worlds]
    assert labels == ["realistic-skill0.2-human1-seed0", "realistic-skill0.2-human1-seed1",
                      "realistic-skill0.6-human1-seed0", "realistic-skill0.6-human1-seed1"]
    one = config.for_world(config.worlds[2])
    assert one.worlds == [TwinWorld(0, "realistic", Axes(submascon_skill=0.6, human_ratio=1.0))]
    assert parse({}).worlds == [TwinWorld(0, "realistic")]
    assert parse({}).worlds[0].label == "realistic-seed0"


@pytest.mark.parametrize(("twin", "message"), [
    ({"submascon_skill": 1.2}, r"\[twin\] submascon_skill: expected numbers in \[0, 0.95\], "
                               r"found 1.2"),
    ({"human_ratio": [1, 1]}, r"\[twin\] human_ratio: expected each value once"),
    ({"submascon_share": "high"}, r"\[twin\] submascon_share: expected a number or a list of "
                                  r"numbers, found .high."),
    ({"realism": "optimistic", "human_ratio": 1}, r"expected realism realistic or pessimistic"),
])
def test_bad_axis_values_are_refused(twin, message):
    with pytest.raises(ConfigError, match=message):
        parse({"twin": twin})
