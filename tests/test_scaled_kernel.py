"""Tests of keras_lincon.layers.kernels: the layer's keras.ops arithmetic against its numpy references."""

import keras
import numpy as np
import pytest

import keras_lincon as klc
from keras_lincon.layers import scaled_kernel
from keras_lincon.planning import scaling_plan as sl
from tests.scaling_reference import scale_map

CHECKER = klc.checkerboard((8, 8), (2, 2))


def budget_stage(rng, n=12):
    rows = np.vstack([np.ones(n), rng.uniform(0.0, 1.0, (3, n))])
    floor = rng.uniform(0.5, 2.0, 4)
    return sl.plan(-np.eye(n), np.zeros(n), scaled_rows=rows, scaled_rhs=floor, input_dependent=True, box=(None, 1.5))


@pytest.mark.parametrize("mode", sl.MODES)
def test_scaled_stage_matches_the_numpy_reference(mode):
    rng = np.random.default_rng(0)
    stage = sl.plan(CHECKER, box=(-1.0, 1.0), strict_generator_rows=(mode == "clip_scale"))
    y = rng.standard_normal((32, 64)) * 3
    norms = np.sum(CHECKER**2, axis=1)  # disjoint rows: projecting onto each one apart lands in the cone
    y = y - (np.maximum(CHECKER @ y.T, 0).T / norms) @ CHECKER
    assert klc.max_violation(y, CHECKER) <= 1e-9
    x = keras.ops.convert_to_numpy(scaled_kernel.scaled_stage(keras.ops.convert_to_tensor(y, "float32"), stage, mode))
    np.testing.assert_allclose(x, scale_map(stage, y, mode=mode), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", ["per_block", "clip_blend", "project"])
def test_scaled_stage_with_per_sample_rhs_matches_and_full_rhs_fills_moved_rows(mode):
    rng = np.random.default_rng(1)
    stage = budget_stage(rng)
    rhs = stage.rhs + rng.exponential(3.0, (16, 4))
    y = np.abs(rng.standard_normal((16, 12))) * 5
    x = scaled_kernel.scaled_stage(
        keras.ops.convert_to_tensor(y, "float32"), stage, mode, keras.ops.convert_to_tensor(rhs, "float32")
    )
    np.testing.assert_allclose(keras.ops.convert_to_numpy(x), scale_map(stage, y, rhs, mode=mode), rtol=1e-5, atol=1e-5)
    # two of the four scaled rows are inputs; the others keep the stored b
    full = keras.ops.convert_to_numpy(
        scaled_kernel.full_rhs(keras.ops.convert_to_tensor(rhs[:, [1, 3]], "float32"), stage, np.array([1, 3]))
    )
    np.testing.assert_allclose(full[:, [1, 3]], rhs[:, [1, 3]], rtol=1e-6)
    np.testing.assert_allclose(full[:, [0, 2]], np.broadcast_to(stage.rhs[[0, 2]], (16, 2)), rtol=1e-6)


def test_box_weights_replace_the_stage_centre():
    stage = sl.plan(CHECKER, box=(-1.0, 1.0))
    y = np.random.default_rng(2).standard_normal((8, 64)).astype("float32") * 4
    arrays = klc.planning.weight_arrays.box_arrays(stage.center, *klc.geometry.as_box((-1.0, 1.0), 64))
    weights = tuple(
        keras.ops.convert_to_tensor(arrays[k], "float32") for k in ("box_center", "box_inv_upper", "box_inv_lower")
    )
    a = scaled_kernel.scaled_stage(keras.ops.convert_to_tensor(y), stage, "global")
    b = scaled_kernel.scaled_stage(keras.ops.convert_to_tensor(y), stage, "global", box_weights=weights)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("mode", ["clip_blend", "clip_scale"])
def test_bounds_among_the_generator_rows_are_gathered_in_any_order(mode):
    """Rows of one nonzero (bounds) go through a gather, the others a product: the result is the reference's."""
    rng = np.random.default_rng(3)
    n = 6
    A = np.vstack([rng.normal(size=(1, n)), -np.diag(rng.uniform(0.5, 2.0, n))[[4, 1, 2]], rng.normal(size=(1, n))])
    b = np.r_[1.0, np.zeros(3), 1.0]
    stage = sl.plan(A, b, box=(-1.0, 1.0), strict_generator_rows=True)
    y = rng.uniform(-3, 3, (4000, n))
    y = y[np.all(y @ A.T <= b, axis=1)][:64]  # points of P_gen
    x = keras.ops.convert_to_numpy(scaled_kernel.scaled_stage(keras.ops.convert_to_tensor(y, "float32"), stage, mode))
    np.testing.assert_allclose(x, scale_map(stage, y, mode=mode), rtol=1e-5, atol=1e-5)
    assert klc.max_violation(x, A, b) <= 1e-5


def test_project_is_the_euclidean_projection_of_each_single_row_block():
    """Budget groups with x >= 0 as generator rows (bounds) and per-sample budgets: project = OSQP's projection."""
    rng = np.random.default_rng(7)
    n, groups = 12, 3
    rows = np.kron(np.eye(groups), np.ones(n // groups))
    floor = np.full(groups, 0.5)
    stage = sl.plan(-np.eye(n), np.zeros(n), scaled_rows=rows, scaled_rhs=floor, input_dependent=True, box=(None, 1.0))
    eligible, a, *_ = sl.single_row_blocks(stage)
    assert eligible.all() and np.array_equal(a, np.ones(n))
    y = np.abs(rng.standard_normal((40, n))) * 2  # points of x >= 0
    b_s = floor + rng.uniform(0, 3, (40, groups))
    x = keras.ops.convert_to_numpy(
        scaled_kernel.scaled_stage(
            keras.ops.convert_to_tensor(y, "float32"), stage, "project", keras.ops.convert_to_tensor(b_s, "float32")
        )
    )
    reference = scale_map(stage, y, b_s, mode="project")
    np.testing.assert_allclose(x, reference, rtol=1e-5, atol=1e-5)
    # the reference is the projection: for each sample, the KKT conditions of min ||x - y||^2
    # over {sum_group x <= b_s, 0 <= x <= 1}: x = clip(y - mu, 0, 1) with mu >= 0, mu (b_s - sum) = 0
    for g in range(groups):
        cols = slice(g * n // groups, (g + 1) * n // groups)
        total = reference[:, cols].sum(axis=1)
        assert np.all(total <= b_s[:, g] + 1e-9)
        mu = np.array([_multiplier(y[i, cols], reference[i, cols]) for i in range(len(y))])
        assert np.all(mu >= -1e-9) and np.allclose(mu * (b_s[:, g] - total), 0, atol=1e-6)


def _multiplier(y, x):
    """The common shift y - x of the coordinates strictly inside (0, 1); 0 if none or none moved."""
    inside = (x > 1e-12) & (x < 1 - 1e-12)
    shifts = (y - x)[inside]
    assert shifts.size == 0 or np.ptp(shifts) < 1e-8
    return float(shifts.mean()) if shifts.size else 0.0


def test_project_gradient_is_the_implicit_function_gradient():
    """d x / d y of the projection (checked against central finite differences of the numpy reference)."""
    stage = sl.plan(CHECKER, box=(-1.0, 1.0))
    rng = np.random.default_rng(8)
    y = rng.standard_normal((1, 64)) * 0.8
    y = y - (np.maximum(CHECKER @ y.T, 0).T / np.sum(CHECKER**2, axis=1)) @ CHECKER  # in the cone
    w = rng.standard_normal(64)
    import tensorflow as tf

    yt = tf.Variable(y.astype("float32"))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(scaled_kernel.scaled_stage(yt, stage, "project") * w)
    grad = tape.gradient(loss, yt).numpy()[0]
    eps, fd = 1e-6, np.zeros(64)
    for j in range(64):
        e = np.zeros((1, 64))
        e[0, j] = eps
        fd[j] = (scale_map(stage, y + e, mode="project") - scale_map(stage, y - e, mode="project"))[0] @ w / (2 * eps)
    np.testing.assert_allclose(grad, fd, atol=2e-3)
