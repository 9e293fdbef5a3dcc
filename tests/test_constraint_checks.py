"""Tests of keras_lincon.layers.constraint_checks: the layer's output checks, per-sample right-hand sides."""

import numpy as np
import pytest

import keras_lincon as klc

A = np.array([[1.0, 1.0], [-1.0, 0.0]])
b = np.array([1.0, 0.0])


def test_violations_use_the_residual_formula_and_the_box():
    layer = klc.LinearInequalityConstraint(A, b, box=(-2.0, 2.0))
    y = np.array([[0.2, 0.3], [3.0, 0.0], [np.nan, 0.0]])
    worst = layer.violations(y)
    np.testing.assert_allclose(worst[:2], [max(0.5 - 1.0, -0.2, 0.2 - 2.0, 0.3 - 2.0, -2.2, -2.3), 2.0])
    assert worst[2] == np.inf  # NaN satisfies nothing
    G, h, C, d = layer.constraint_rows()
    np.testing.assert_allclose(worst[:2], klc.geometry.violations(y[:2], G, h, C, d))
    with pytest.raises(klc.ConstraintViolationError):
        layer.assert_constraints(y[:2])


def test_per_sample_rhs_replaces_the_input_rows():
    layer = klc.LinearInequalityConstraint(A, b, rhs_input="b")
    y = np.array([[2.0, 0.0]])
    assert layer.max_violation(y) > 0  # against the stored b
    assert layer.max_violation(y, rhs=np.array([[2.0, 0.0]])) <= 0  # against its own b
    assert layer.below_floor(np.array([[-5.0, -5.0]])).size == 0  # exact for every b: no floor
    np.testing.assert_array_equal(layer.floor, [-np.inf, -np.inf])
    with pytest.raises(klc.ConstraintShapeError, match=r"shape \(batch, 2\)"):
        layer.max_violation(y, rhs=np.zeros((1, 3)))


def test_below_floor_reports_samples_under_the_stored_b():
    layer = klc.LinearInequalityConstraint(A, b, box=(-2.0, 2.0), scaled_rows=[0], rhs_input=True)
    np.testing.assert_array_equal(layer.floor, [1.0])
    np.testing.assert_array_equal(layer.below_floor(np.array([[1.5], [0.5], [1.0]])), [1])
