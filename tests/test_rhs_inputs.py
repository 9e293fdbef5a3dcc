"""The layer's numpy planning: which right-hand sides are inputs, and the translation that moves the set."""

import numpy as np
import pytest

from keras_lincon.errors import ConstraintShapeError
from keras_lincon.geometry import as_constraint_system, violations
from keras_lincon.planning import rhs_inputs as rhs_lib


@pytest.mark.parametrize(
    ("value", "b_rows", "d", "floor"),
    [
        (False, (), False, False),
        (None, (), False, False),
        (True, (), False, True),
        ("b", (0, 1, 2), False, False),
        ("d", (), True, False),
        (("b", "d"), (0, 1, 2), True, False),
        (["d", "b"], (0, 1, 2), True, False),
        ({"b": [2, 0]}, (0, 2), False, False),
        ({"b": [True, False, True], "d": True}, (0, 2), True, False),
        ({"b": "all"}, (0, 1, 2), False, False),
        ({"d": True}, (), True, False),
    ],
)
def test_rhs_inputs_parses_every_documented_value(value, b_rows, d, floor):
    parsed = rhs_lib.rhs_inputs(value, m=3, p=2)
    assert (parsed.b_rows, parsed.d, parsed.floor) == (b_rows, d, floor)
    assert rhs_lib.rhs_inputs(parsed.to_config(3), m=3, p=2) == parsed  # the config round-trips


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("yes", "rhs_input='yes' is not defined; the choices are False"),
        ("bd", "not defined"),
        (("b", "b"), "not defined"),
        (1, "not defined"),
        ({"c": 1}, "not defined"),
        ({"b": [5]}, r"indices of rows of A \(0..2\)"),
        ({"b": [0], "d": "yes"}, "'d' must be True or False"),
        ({"b": [True, False]}, r"mask needs shape \(3,\)"),
        ({"b": []}, "asks for right-hand sides of rows of A, but there are none"),
        ({"d": False}, "names no right-hand side"),
    ],
)
def test_rhs_inputs_refuses_anything_else_and_lists_the_choices(value, message):
    with pytest.raises(ConstraintShapeError, match=message):
        rhs_lib.rhs_inputs(value, m=3, p=2)


def test_d_needs_equalities():
    with pytest.raises(ConstraintShapeError, match="equality rows C, but there are none"):
        rhs_lib.rhs_inputs("d", m=3, p=0)


def test_translation_moves_input_rows_by_their_change_and_nothing_else():
    rng = np.random.default_rng(0)
    A, C = rng.normal(size=(3, 7)) * [[1e3], [1.0], [1e-3]], rng.normal(size=(2, 7))
    system = as_constraint_system(A, rng.uniform(1, 2, 3), C, rng.normal(size=2))
    box = (np.full(7, -np.inf), np.r_[np.full(6, np.inf), 5.0])  # coordinate 6 is bounded
    rhs = rhs_lib.rhs_inputs({"b": [0, 2], "d": True}, 3, 2)
    T, q = rhs_lib.plan_translation(system, box, rhs)
    np.testing.assert_allclose(A @ T, [[1, 0, 0, 0], [0, 0, 0, 0], [0, 1, 0, 0]], atol=1e-9)
    np.testing.assert_allclose(C @ T, [[0, 0, 1, 0], [0, 0, 0, 1]], atol=1e-9)
    np.testing.assert_allclose(T[6], 0.0, atol=1e-12)
    beta0 = np.r_[system.b[[0, 2]], system.d]
    np.testing.assert_allclose(q, -T @ beta0)
    # a feasible point of the stored set, moved, is feasible for any new right-hand sides
    x0 = np.linalg.lstsq(np.vstack([A, C]), np.r_[system.b - 1.0, system.d], rcond=None)[0]
    beta = rng.normal(size=(5, 4)) * 100
    moved = x0 + beta @ T.T + q
    b_new = np.repeat(system.b[None], 5, axis=0)
    b_new[:, [0, 2]] = beta[:, :2]
    assert violations(moved, A, b_new, C, beta[:, 2:], relative=True).max() <= 1e-12


def test_translation_refuses_rows_that_change_the_shape():
    A = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]])  # rows 0 and 1 are parallel
    system = as_constraint_system(A, np.ones(3))
    with pytest.raises(ConstraintShapeError, match=r"rows A\[0\], A\[1\].*rhs_input=True with scaled_rows"):
        rhs_lib.plan_translation(system, None, rhs_lib.rhs_inputs({"b": [0]}, 3, 0))
    with pytest.raises(ConstraintShapeError, match="a box bounds the coordinates"):
        rhs_lib.plan_translation(system, (np.full(2, -1.0), np.ones(2)), rhs_lib.rhs_inputs({"b": [2]}, 3, 0))
