"""Tests of keras_lincon.baselines.projection: OSQP and batched ADMM projections."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_lincon as klc
from keras_lincon.baselines.projection import ADMMProjection, OSQPProjector, ProjectionError, projection_error
from keras_lincon.experiments import datasets


def test_osqp_matches_closed_form_halfspace_and_box(rng):
    a = rng.standard_normal(5)
    y = rng.standard_normal((20, 5)) * 3
    expected = y - np.maximum(0.0, y @ a - 0.5)[:, None] * a / (a @ a)
    np.testing.assert_allclose(OSQPProjector(a[None], [0.5]).project(y), expected, atol=1e-5)
    box = OSQPProjector(np.zeros((0, 5)), box=(-1.0, 2.0)).project(y)
    np.testing.assert_allclose(box, np.clip(y, -1.0, 2.0), atol=1e-5)


def test_osqp_projection_is_feasible_and_idempotent(rng):
    A = klc.checkerboard((8, 8), (2, 2))
    proj = OSQPProjector(A, box=(-1.0, 1.0))
    y = rng.uniform(-1.5, 1.5, (16, 64))
    x = proj.project(y)
    assert klc.max_violation(x, A) <= 1e-5 and np.abs(x).max() <= 1 + 1e-5
    np.testing.assert_allclose(proj.project(x), x, atol=1e-5)
    assert proj.seconds > 0


def test_admm_agrees_with_osqp_on_real_images():
    data = datasets.load("auto", max_train=1, max_test=32)
    h, w = data.image_shape
    A = klc.checkerboard((h, w), datasets.checkerboard_grid((h, w)))
    y = data.x_test.reshape(32, -1).astype(np.float64)
    reference = OSQPProjector(A, box=(-1.0, 1.0)).project(y)
    layer = ADMMProjection(A, box=(-1.0, 1.0), iterations=3000, tolerance=1e-6)
    x = layer(y.astype("float32"))
    assert projection_error(x, reference) <= 1e-4
    assert layer.max_violation(x) <= 1e-4


@pytest.mark.parametrize("seed", range(4))
def test_admm_agrees_with_osqp_on_random_systems(seed):
    rng = np.random.default_rng(seed)
    n = 6
    A = rng.standard_normal((4, n))
    b = rng.uniform(0.1, 1.0, 4)
    C = rng.standard_normal((1, n))
    y = rng.standard_normal((8, n)) * 2
    reference = OSQPProjector(A, b, C=C, d=[0.0], box=(-2.0, np.inf)).project(y)
    layer = ADMMProjection(A, b, C=C, d=[0.0], box=(-2.0, np.inf), iterations=5000, tolerance=1e-6)
    assert projection_error(layer(y.astype("float32")), reference) <= 1e-4


def test_admm_under_xla_and_in_a_model():
    A = klc.monotone_chain(12)
    layer = ADMMProjection(A, iterations=2000, tolerance=1e-6)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(12), layer])
    x = np.random.default_rng(0).standard_normal((32, 4)).astype("float32")
    graph = tf.function(lambda t: model(t), jit_compile=True)(x).numpy()
    eager = model(x).numpy()
    np.testing.assert_allclose(graph, eager, atol=1e-4)
    assert layer.max_violation(graph) <= 1e-4
    clone = ADMMProjection.from_config(layer.get_config())
    np.testing.assert_allclose(clone(eager), layer(eager), atol=1e-6)


def test_admm_budget_limits_accuracy_and_reports_it():
    A = klc.checkerboard((8, 8), (2, 2))
    y = np.random.default_rng(0).uniform(-3, 3, (16, 64)).astype("float32")
    rough = ADMMProjection(A, box=(-1.0, 1.0), iterations=2, tolerance=1e-9)
    fine = ADMMProjection(A, box=(-1.0, 1.0), iterations=2000, tolerance=1e-6)
    assert rough.max_violation(rough(y)) > 10 * fine.max_violation(fine(y))


def test_errors():
    with pytest.raises(ProjectionError, match="could not project"):
        OSQPProjector([[1.0], [-1.0]], [-1.0, -1.0]).project(np.zeros((1, 1)))
    with pytest.raises(klc.ConstraintShapeError, match=r"shape \(batch, 2\)"):
        OSQPProjector([[1.0, 0.0]]).project(np.zeros((3, 5)))
    with pytest.raises(klc.ConstraintShapeError, match="pair"):
        OSQPProjector([[1.0, 0.0]], box=3.0)
    with pytest.raises(klc.LinconError, match="iterations"):
        ADMMProjection([[1.0, 0.0]], iterations=0)


def test_missing_osqp_is_a_missing_dependency(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "osqp", None)  # `import osqp` now fails
    with pytest.raises(klc.MissingDependencyError, match="pip install osqp"):
        OSQPProjector([[1.0, 0.0]])
