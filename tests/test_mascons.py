"""Mascon geometry and the aggregation operator A on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from twsbench.core import geometry as grid
from twsbench.core.mascons import build_mascons, mascons_on_grid, twin_tiling


def test_rows_sum_to_one_and_match_hand_computed_weights():
    # three cells in mascon 7 (areas 1, 2, 1) and two in mascon 3 (areas 3, 1)
    m = build_mascons(np.array([7, 3, 7, 7, 3]), np.array([1.0, 3.0, 2.0, 1.0, 1.0]))
    np.testing.assert_array_equal(m.ids, [3, 7])
    dense = m.A.toarray()
    np.testing.assert_allclose(dense, [[0, 0.75, 0, 0, 0.25],
                                       [0.25, 0, 0.5, 0.25, 0]])
    np.testing.assert_allclose(dense.sum(axis=1), 1.0)
    x = np.array([4.0, 8.0, 2.0, 0.0, 4.0])
    # mascon 3: (3·8 + 1·4)/4 = 7; mascon 7: (1·4 + 2·2 + 1·0)/4 = 2
    np.testing.assert_allclose(m.mean(x), [7.0, 2.0])


def test_transpose_and_spreading():
    m = build_mascons(np.array([7, 3, 7, 7, 3]), np.array([1.0, 3.0, 2.0, 1.0, 1.0]))
    g = np.array([10.0, -2.0])
    np.testing.assert_allclose(m.spread(g), [-2, 10, -2, -2, 10])
    np.testing.assert_allclose(m.E @ g, m.spread(g))
    np.testing.assert_allclose(m.AT.toarray(), m.A.toarray().T)
    np.testing.assert_allclose(m.AT @ g, [-0.5, 7.5, -1.0, -0.5, 2.5])
    np.testing.assert_allclose((m.A @ m.E).toarray(), np.eye(2))


def test_deviation_removes_mascon_means_exactly():
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 20, 500)
    m = build_mascons(ids, rng.uniform(0.5, 2.0, 500))
    x = rng.normal(size=(500, 4))
    d = m.deviation(x)
    np.testing.assert_allclose(m.mean(d), 0.0, atol=1e-12)
    np.testing.assert_allclose(m.deviation(d), d, atol=1e-12)  # D is a projector
    c = rng.normal(size=(m.n_mascons, 4))
    np.testing.assert_allclose(m.deviation(x + m.spread(c)), d, atol=1e-12)


def test_operator_on_grid_uses_cell_areas_from_bounds():
    lat = np.array([0.25, 60.25])
    ids = np.array([[1, 1], [1, 2]])
    land = np.array([[True, False], [True, True]])
    m, flat = mascons_on_grid(ids, land, lat)
    np.testing.assert_array_equal(flat, [0, 2, 3])
    a_eq, a_60 = grid.cell_area(np.array([0.25, 60.25]))
    np.testing.assert_allclose(m.A.toarray()[0], [a_eq / (a_eq + a_60), a_60 / (a_eq + a_60), 0])
    np.testing.assert_allclose(m.A.toarray()[1], [0, 0, 1])


def test_cell_areas_sum_to_the_sphere():
    total = grid.cell_area(grid.LAT).sum() * grid.LON.size
    np.testing.assert_allclose(total, 4 * np.pi * grid.EARTH_RADIUS_M**2, rtol=1e-12)


def test_bad_operator_input_is_rejected():
    with pytest.raises(ValueError):
        build_mascons(np.array([1, 2]), np.array([1.0, -1.0]))
    with pytest.raises(ValueError):
        build_mascons(np.array([1, 2]), np.array([1.0, 0.0]))


def test_twin_tiling_is_jpl_like():
    ids = twin_tiling()
    assert ids.shape == (360, 720)
    assert ids.min() == 1
    n = np.unique(ids).size
    assert n == ids.max()
    assert 4500 <= n <= 4650  # JPL has 4,551 mascons
    # 3° × 3° tiles at the equator: 6 rows × 6 columns of 0.5° cells
    row = np.searchsorted(grid.LAT, 0.25)
    _, counts = np.unique(ids[row], return_counts=True)
    assert set(counts) == {6}
    sizes = np.bincount(ids.ravel())[1:]
    assert np.all(sizes % 6 == 0)  # every tile spans the 6 rows of its band
    # a tile never straddles two bands
    for tile in (1, 1000, 2300, 4000):
        rows = np.unique(np.nonzero(ids == tile)[0])
        assert rows.size == 6 and np.all(np.diff(rows) == 1)


def test_twin_tiling_equal_area_ish():
    ids = twin_tiling()
    area = np.broadcast_to(grid.cell_area(grid.LAT)[:, None], ids.shape)
    tile_area = np.bincount(ids.ravel(), weights=area.ravel())[1:]
    # whole 0.5° cells make tiles of k or k+1 columns: near-equal, not equal, areas
    low, high = np.percentile(tile_area / tile_area.mean(), [1, 99])
    assert 0.85 < low and high < 1.15
    assert tile_area.max() / tile_area.min() < 1.35


def test_twin_tiling_on_a_subset_matches_the_global_one():
    full = twin_tiling()
    lat, lon = grid.LAT[100:130], grid.LON[[5, 400, 719]]
    np.testing.assert_array_equal(twin_tiling(lat, lon), full[100:130][:, [5, 400, 719]])
    np.testing.assert_array_equal(twin_tiling(lat, lon + 360.0), full[100:130][:, [5, 400, 719]])


def test_cyclic_columns_take_the_short_way_round():
    used = np.zeros(10, bool)
    used[[0, 1, 8, 9]] = True  # across the antimeridian
    np.testing.assert_array_equal(grid.cyclic_columns(used), [8, 9, 0, 1])
    used = np.zeros(10, bool)
    used[[3, 5]] = True
    np.testing.assert_array_equal(grid.cyclic_columns(used), [3, 4, 5])
    np.testing.assert_array_equal(grid.cyclic_columns(np.ones(4, bool)), [0, 1, 2, 3])
