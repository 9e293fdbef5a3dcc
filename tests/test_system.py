"""Tests of keras_lincon.geometry.system: validation (once), unit rows, boxes, coordinates on C x = d."""

import numpy as np
import pytest

from keras_lincon import geometry
from keras_lincon.errors import ConstraintShapeError
from keras_lincon.geometry import system


def test_a_constraint_system_is_taken_as_validated():
    s = geometry.as_constraint_system([[1.0, 2.0]], [3.0])
    assert geometry.as_constraint_system(s) is s
    with pytest.raises(ConstraintShapeError):  # with a right-hand side it is read as a matrix, and is none
        geometry.as_constraint_system(s, [1.0])
    rep_raw, rep_system = geometry.h_to_v([[1.0, 2.0]], [3.0]), geometry.h_to_v(s)
    assert np.array_equal(rep_raw.vertices, rep_system.vertices) and np.array_equal(rep_raw.rays, rep_system.rays)


def test_row_norms_are_numpys_bit_for_bit():
    rng = np.random.default_rng(0)
    M = rng.standard_normal((60, 7)) * 10.0 ** rng.uniform(-150, 150, (60, 1))
    assert np.array_equal(system.row_norms(M), np.linalg.norm(M, axis=1))
    assert system.row_norms(np.zeros((0, 3))).shape == (0,)


def test_normalized_rows_keeps_the_set_and_zero_rows():
    s = geometry.as_constraint_system([[3.0, 4.0], [0.0, 0.0]], [5.0, 1.0], [[0.0, 2.0]], [4.0])
    unit = geometry.normalized_rows(s)
    np.testing.assert_allclose(unit.A, [[0.6, 0.8], [0.0, 0.0]])
    np.testing.assert_allclose(unit.b, [1.0, 1.0])
    np.testing.assert_allclose(unit.C, [[0.0, 1.0]])
    np.testing.assert_allclose(unit.d, [2.0])


def test_equality_coordinates_parametrise_the_solutions():
    rng = np.random.default_rng(1)
    C, d = rng.standard_normal((2, 5)), rng.standard_normal(2)
    x0, N = system.equality_coordinates(C, d)
    assert x0.shape == (5,) and N.shape == (5, 3)
    np.testing.assert_allclose(C @ x0, d, atol=1e-12)
    np.testing.assert_allclose(C @ N, 0.0, atol=1e-12)
    np.testing.assert_allclose(N.T @ N, np.eye(3), atol=1e-12)


def test_as_box_sides():
    lo, hi = geometry.as_box((0.0, None), 3)
    assert lo.tolist() == [0.0] * 3 and hi.tolist() == [np.inf] * 3
    assert geometry.as_box(None, 3) is None
    for box, pattern in [
        ((1.0, 1.0), "strictly below"),
        ((np.nan, 1.0), "NaN"),
        (([0.0, 0.0], 1.0), "length 3"),
        ((np.inf, None), "cannot be"),
        (3.0, "pair"),
    ]:
        with pytest.raises(ConstraintShapeError, match=pattern):
            geometry.as_box(box, 3)
