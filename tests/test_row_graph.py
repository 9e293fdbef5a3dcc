"""Tests of keras_lincon.geometry.row_graph: blocks of coupled variables, single-variable rows."""

import numpy as np

from keras_lincon import geometry
from keras_lincon.geometry import double_description as dd
from keras_lincon.geometry import row_graph


def test_coupled_blocks_small_and_dense_paths_agree_with_system_blocks(monkeypatch):
    rng = np.random.default_rng(7)
    for limit in (row_graph._SMALL_BLOCKS_NONZEROS, -1):  # the union-find, then numpy's label propagation
        monkeypatch.setattr(row_graph, "_SMALL_BLOCKS_NONZEROS", limit)
        for _ in range(300):
            n, m, p = int(rng.integers(1, 12)), int(rng.integers(0, 10)), int(rng.integers(0, 4))
            density = rng.uniform(0, 0.6)
            A = (rng.random((m, n)) < density) * rng.standard_normal((m, n))
            C = (rng.random((p, n)) < density) * rng.standard_normal((p, n))
            coord, (rows, eqs) = dd.coupled_blocks(n, A, C)
            ref_coord, (ref_rows, ref_eqs) = row_graph.blocks(n, A, C)
            assert np.array_equal(coord, ref_coord) and np.array_equal(rows, ref_rows)
            assert np.array_equal(eqs, ref_eqs)


def test_single_variable_rows():
    rows = np.array([[0.0, -2.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 0.0], [1e-300, 0.0, 0.0]])
    assert geometry.single_variable_rows(rows).tolist() == [True, False, False, True]
    assert geometry.single_variable_rows(np.zeros((0, 3))).shape == (0,)


def test_blocks_number_by_first_variable_and_mark_untouched():
    A = np.array([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]])
    C = np.array([[1.0, 0.0, 0.0, 0.0]])
    coord, (rows, eqs) = geometry.blocks(4, A, C)
    assert coord.tolist() == [0, -1, 1, 1] and rows.tolist() == [1, -1] and eqs.tolist() == [0]


def test_find_root_halves_paths():
    parent = [0, 0, 1, 2, 3]
    assert row_graph.find_root(parent, 4) == 0
    assert parent[4] != 3  # shortened on the way
