"""Tests of keras_lincon.layers.single_row_projection: the projection onto blocks of one row plus bounds."""

import keras
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import keras_lincon as klc
from keras_lincon.layers import single_row_projection as srp
from keras_lincon.planning import scaling_plan as sl
from tests.scaling_reference import scale_map


def separate_rows(rng, blocks: int, scale: float):
    """``blocks`` rows on disjoint coordinates (2 to 9 each), signs mixed, magnitudes spread by ``scale``;
    a box per coordinate and ``b`` between the row's least value on the box and its largest."""
    sizes = rng.integers(2, 10, blocks)
    n = int(sizes.sum())
    A = np.zeros((blocks, n))
    start = 0
    for j, size in enumerate(sizes):
        A[j, start : start + size] = rng.choice([-1.0, 1.0], size) * scale ** rng.uniform(-1, 1, size)
        start += size
    lower = -rng.uniform(0.1, 2.0, n)
    upper = rng.uniform(0.1, 2.0, n)
    least = np.sum(np.where(A > 0, A * lower, A * upper), axis=1)
    most = np.sum(np.where(A > 0, A * upper, A * lower), axis=1)
    b = least + rng.uniform(0.05, 0.95, blocks) * (most - least)
    return A, b, (lower, upper)


def project(y, stage, dtype):
    out = srp.project_single_rows(keras.ops.convert_to_tensor(y, dtype), stage, srp.plan_single_rows(stage))
    return keras.ops.convert_to_numpy(out).astype(np.float64)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**31 - 1),
    blocks=st.sampled_from([1, 3, 12]),
    row_scale=st.sampled_from([1.0, 1e3]),
    point_scale=st.sampled_from([1e-2, 1.0, 1e3]),
    dtype=st.sampled_from(["float32", "float64"]),
    table=st.booleans(),
)
def test_output_is_feasible_and_the_projection(seed, blocks, row_scale, point_scale, dtype, table):
    """Feasible (the row to rounding of its terms, the box exactly) and equal to the float64 bisection's
    projection, in both layouts, for rows and points at many scales."""
    rng = np.random.default_rng(seed)
    A, b, box = separate_rows(rng, blocks, row_scale)
    stage = sl.plan(np.zeros((0, A.shape[1])), scaled_rows=A, scaled_rhs=b, box=box)
    y = rng.standard_normal((64, A.shape[1])) * point_scale
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(srp, "PRODUCT_BLOCKS", 0 if table else srp.PRODUCT_BLOCKS)
        assert (srp.plan_single_rows(stage).rows is None) == table
        x = project(y, stage, dtype)
    eps = np.finfo(dtype).eps
    assert np.all(x >= box[0] * (1 + eps)) and np.all(x <= box[1] * (1 + eps))  # the box, rounded to dtype
    terms = np.abs(A) @ np.maximum(np.abs(box[0]), np.abs(box[1])) + np.abs(b)
    assert np.all(x @ A.T - b <= 64 * eps * terms)
    reference = scale_map(stage, y, mode="project")
    # The Newton steps aim a rounding margin below b (the terms of a.x, at the point's scale too):
    # the output is within margin / ||a|| of the projection's distance, and, for rows of similar
    # coefficients, within rounding of the projection itself.
    margin = srp.MARGIN_ULPS * eps * (terms + np.abs(y) @ np.abs(A).T)  # (B, blocks)
    slack = np.sqrt(np.sum((margin / np.linalg.norm(A, axis=1)) ** 2, axis=1))
    scale = 1 + 2 * np.abs(y).max(axis=1)
    distance, best = np.linalg.norm(x - y, axis=1), np.linalg.norm(reference - y, axis=1)
    assert np.all(distance <= best + 4 * slack + 64 * eps * scale)
    if row_scale == 1.0:  # coefficients of one size: each coordinate within the margin's reach
        assert np.all(np.abs(x - reference) <= (4 * slack + 64 * eps * scale)[:, None])


def test_points_on_the_bounds_and_already_feasible_points():
    """Images in the box with pixels exactly at -1 and 1 (ties at the start) converge; feasible points stay."""
    A = klc.checkerboard((8, 8), (2, 2))
    stage = sl.plan(np.zeros((0, 64)), scaled_rows=A, scaled_rhs=np.zeros(4), box=(-1.0, 1.0))
    rng = np.random.default_rng(0)
    y = np.clip(rng.standard_normal((128, 64)) * 1.5, -1.0, 1.0)
    x = project(y, stage, "float64")
    np.testing.assert_allclose(x, scale_map(stage, y, mode="project"), atol=1e-12)
    feasible = x
    np.testing.assert_allclose(project(feasible, stage, "float64"), feasible, atol=1e-12)


def test_feasible_whatever_the_step_count(monkeypatch):
    """Too few Newton steps give a worse point, never an infeasible one (the bracket's feasible end)."""
    rng = np.random.default_rng(3)
    A, b, box = separate_rows(rng, 5, 10.0)
    stage = sl.plan(np.zeros((0, A.shape[1])), scaled_rows=A, scaled_rhs=b, box=box)
    y = rng.standard_normal((256, A.shape[1])) * 5
    for steps in (1, 2):
        monkeypatch.setattr(srp, "PROJECT_STEPS", steps)
        x = project(y, stage, "float32")
        assert np.all(x @ A.T - b <= 1e-5 * (np.abs(A) @ np.full(A.shape[1], 2.0) + np.abs(b)))
        assert np.all(x >= box[0] * (1 + 1e-7)) and np.all(x <= box[1] * (1 + 1e-7))


@pytest.mark.parametrize("table", [False, True])
def test_gradient_matches_finite_differences(table, monkeypatch):
    """The implicit gradient d x / d y against central differences of the float64 reference."""
    import tensorflow as tf

    if keras.backend.backend() != "tensorflow":
        pytest.skip("the gradient is checked with tf.GradientTape")
    if table:
        monkeypatch.setattr(srp, "PRODUCT_BLOCKS", 0)
    rng = np.random.default_rng(4)
    A, b, box = separate_rows(rng, 4, 3.0)
    stage = sl.plan(np.zeros((0, A.shape[1])), scaled_rows=A, scaled_rhs=b, box=box)
    y = rng.standard_normal((1, A.shape[1])) * 2
    w = rng.standard_normal(A.shape[1])
    yt = tf.constant(y)
    with tf.GradientTape() as tape:
        tape.watch(yt)
        loss = tf.reduce_sum(srp.project_single_rows(yt, stage, srp.plan_single_rows(stage)) * w)
    grad = tape.gradient(loss, yt).numpy()[0]
    step = 1e-6
    fd = np.array(
        [
            (scale_map(stage, y + e, mode="project") - scale_map(stage, y - e, mode="project"))[0] @ w / (2 * step)
            for e in np.eye(A.shape[1])[:, None, :] * step
        ]
    )
    np.testing.assert_allclose(grad, fd, atol=1e-5)
