"""Tests of keras_lincon.planning.row_split: which rows get generators and which are scaled."""

import numpy as np
import pytest

import keras_lincon as klc
from keras_lincon import geometry
from keras_lincon.planning.row_split import split_rows
from tests.polytope_families import permutahedron


def test_user_rows_are_scaled_and_the_rest_get_generators():
    system = geometry.as_constraint_system(klc.monotone_chain(5), None)
    split = split_rows(system, scaled=[1, 3])
    assert split.generator == (0, 2) and split.scaled == (1, 3) and split.moved == ()


def test_a_block_certainly_above_the_cap_moves_whole_and_the_others_stay():
    # block 1: the permutahedron of order 6 (62 rows, 720 vertices: a true lower bound); block 2: one row
    P, h, C, d = permutahedron(6)
    A = np.block([[P, np.zeros((62, 2))], [np.zeros((1, 6)), np.array([[1.0, 1.0]])]])
    system = geometry.as_constraint_system(A, np.append(h, 1.0), np.hstack([C, np.zeros((1, 2))]), d)
    split = split_rows(system, limit=100)
    assert split.moved == tuple(range(62)) and split.generator == (62,) and split.bounds[0] >= 720
    assert split_rows(system, limit=100, fallback=False).moved == ()
    graph = geometry.blocks(8, system.A, system.C)
    assert split_rows(system, limit=100, graph=graph) == split  # the caller's decomposition gives the same split


def test_rows_outside_a_are_refused():
    system = geometry.as_constraint_system(np.eye(2), np.ones(2))
    with pytest.raises(klc.ConstraintShapeError, match="indices of rows of A"):
        split_rows(system, scaled=[2])
