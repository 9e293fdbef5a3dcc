"""Tests of keras_lincon.geometry.centre: the deepest point of P in a box (the LP behind every centre)."""

import numpy as np
import pytest

import keras_lincon as klc
from keras_lincon import geometry


def test_interior_point_in_box():
    A = klc.checkerboard((4, 4), (2, 2))
    c = geometry.interior_point_in_box(A, lower=-1.0, upper=1.0)
    assert np.all(np.abs(c) < 1) and klc.max_violation(c[None], A) <= 1e-12
    with pytest.raises(klc.InfeasibleError, match="box"):
        geometry.interior_point_in_box([[1.0]], [-2.0], lower=-1.0, upper=1.0)


def test_deepest_point_in_a_box_and_without_one():
    s = geometry.as_constraint_system([[1.0, 1.0]], [1.0])  # x + y <= 1
    c, depth = geometry.deepest_point(s, np.array([0.0, 0.0]), np.array([1.0, 1.0]))
    assert 0 < depth <= 1 and np.all((c > 0) & (c < 1)) and c.sum() <= 1 + 1e-12
    # equalities and no box: solved in the coordinates of C x = d, strictly inside the rows
    s = geometry.as_constraint_system(-np.eye(3), np.zeros(3), np.ones((1, 3)), [3.0])
    c, depth = geometry.deepest_point(s, np.full(3, -np.inf), np.full(3, np.inf), strict_rows=True)
    np.testing.assert_allclose(c, [1.0, 1.0, 1.0], atol=1e-9)
    assert depth > 0
    empty = geometry.as_constraint_system(-np.eye(2), np.zeros(2), np.ones((1, 2)), [-1.0])
    assert geometry.deepest_point(empty, np.full(2, -np.inf), np.full(2, np.inf))[0] is None


def test_centre_of_a_box_without_rows():
    c = geometry.interior_point_in_box(np.zeros((0, 3)), lower=[0.0, -np.inf, -np.inf], upper=[2.0, 5.0, np.inf])
    np.testing.assert_allclose(c, [1.0, 0.0, 0.0])
