"""Tests of keras_lincon.geometry.residual: the one residual formula."""

import numpy as np
import pytest

import keras_lincon as klc
from keras_lincon import geometry
from keras_lincon.geometry import residual


def test_max_violation_absolute_and_relative():
    A, b = np.array([[1.0, 0.0], [0.0, 2.0]]), np.array([1.0, 0.0])
    x = np.array([[0.5, -1.0], [3.0, 0.5]])
    assert klc.max_violation(x, A, b) == pytest.approx(2.0)
    rel = klc.max_violation(x, A, b, relative=True)
    assert rel == pytest.approx(max(2.0 / (1 + np.hypot(3, 0.5)), 1.0 / (2 * np.hypot(3, 0.5))))
    assert klc.max_violation(x[:1], A, b) < 0
    assert klc.max_violation(np.zeros((0, 2)), A, b) == -np.inf
    assert klc.max_violation([[1.0, 1.0]], A, b, C=[[1.0, -1.0]], d=[0.5]) == pytest.approx(2.0)
    with pytest.raises(klc.ConstraintShapeError, match="last dimension 2"):
        klc.max_violation(np.zeros((3, 4)), A, b)


def test_with_box_and_per_point_violations():
    G, h = geometry.with_box([[1.0, 1.0]], [1.0], lower=[-1.0, -np.inf], upper=2.0)
    np.testing.assert_array_equal(G, [[1, 1], [1, 0], [0, 1], [-1, 0]])
    np.testing.assert_array_equal(h, [1, 2, 2, 1])
    x = np.array([[0.0, 0.0], [3.0, 0.0], [-1.5, 0.0]])
    np.testing.assert_allclose(geometry.violations(x, G, h), [-1.0, 2.0, 0.5])
    assert geometry.violations(x, np.zeros((0, 2))).tolist() == [-np.inf] * 3


def test_worst_residuals_is_violations_on_a_validated_system():
    rng = np.random.default_rng(2)
    A, b = rng.standard_normal((6, 3)), rng.standard_normal(6)
    C, d = rng.standard_normal((2, 3)), rng.standard_normal(2)
    x = rng.standard_normal((9, 3))
    x[4, 1] = np.nan
    s = geometry.as_constraint_system(A, b, C, d)
    for relative in (False, True):
        expected = geometry.violations(x, A, b, C, d, relative=relative)
        assert np.array_equal(residual.worst_residuals(x, s, relative=relative), expected)
    assert residual.worst_residuals(x, s)[4] == np.inf


def test_relative_residual_divides_by_the_scale():
    A, b = np.array([[3.0, 4.0]]), np.array([-2.0])
    x = np.array([[6.0, 8.0]])
    scale = residual.residual_scale(x, A, b)
    assert scale.shape == (1, 1) and scale[0, 0] == pytest.approx(2.0 + 5.0 * 10.0)
    assert residual.residual_scale(x[0], A, b).shape == (1,)
    assert geometry.violations(x, A, b, relative=True)[0] == pytest.approx((50.0 + 2.0) / 52.0)
    # per-point right-hand sides: one (k, m) row each
    np.testing.assert_allclose(geometry.violations(np.vstack([x, x]), A, [[50.0], [49.0]]), [0.0, 1.0])
