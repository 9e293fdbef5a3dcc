"""``scaling="project"`` with right-hand sides as inputs: the projection onto each sample's own set (issue 20).

The layer returns ``Proj_{S(beta)}(y)`` for the generator stage's ``y``
(:mod:`keras_lincon.layers.moved_projection`), made exactly feasible by a pull towards
the stored centre moved with ``beta`` (``layers.coupled_kernel._pull_to_centre``).
Checked: feasibility for random systems (rows scaled 1e-3..1e3, right-hand
sides and inputs at 1e-3..1e3) before and after ``fit``; the value against
OSQP's projection; the gradient against finite differences; JAX and torch.
"""

from __future__ import annotations

import dataclasses
import importlib.util

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import keras_lincon as klc
from keras_lincon.layers import coupled_kernel as cp
from keras_lincon.layers import moved_projection
from keras_lincon.layers.generator_kernel import generator_outputs
from keras_lincon.planning.coupled_plan import plan_projection
from tests.conftest import run_python
from tests.test_coupled_kernel import osqp_projection, relative_violation
from tests.test_layer_rhs_inputs import (
    assert_feasible_before_and_after_fit,
    dc3_qp,
    floatx,
    random_case,
    random_rhs,
)

keras = pytest.importorskip("keras")
ops = keras.ops

#: float32: the layer's promise; float64: 1e-12 (seen: 7e-16 on 960 random cases)
TOLERANCE = {"float32": 1e-5, "float64": 1e-12}


def _layer(seed, shape, spec_kind, dtype):
    A, b, kwargs = random_case(seed, *shape, spec_kind, True)
    layer = klc.LinearInequalityConstraint(A, b, dtype=dtype, scaling="project", **kwargs)
    assert moved_projection.applies(layer._plan)
    return layer


def _exact(layer):
    """The layer with an exact solver (ADMM then active-set steps, gradient by the solve) for value checks."""
    coupled = layer._plan.stages.coupled
    plan = dataclasses.replace(coupled.plan, iterations=300, polish=12, gradient_iterations=None)
    stages = dataclasses.replace(layer._plan.stages, coupled=dataclasses.replace(coupled, plan=plan))
    layer._plan = dataclasses.replace(layer._plan, stages=stages)
    return layer


def _generator_point(layer, features):
    x = ops.convert_to_tensor(features, layer.compute_dtype)
    y = generator_outputs(x, layer, layer._layout, layer._call_mode, layer.nonneg)
    return np.asarray(ops.convert_to_numpy(y), dtype=np.float64)


def _full_rhs(layer, rhs):
    """Per-sample ``b`` (B, m) and ``d`` (B, p) of the layer's system from its rhs inputs."""
    s, parts = layer.system, list(rhs)
    batch = parts[0].shape[0]
    b, d = np.tile(s.b, (batch, 1)), np.tile(s.d, (batch, 1))
    if layer._plan.rhs.b_rows:
        b[:, list(layer._plan.rhs.b_rows)] = parts.pop(0)
    if layer._plan.rhs.d:
        d = parts.pop(0)
    return b, d


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**31),
    shape=st.sampled_from([(3, 1, 1), (5, 2, 2), (6, 4, 1), (4, 3, 0), (7, 3, 3), (12, 6, 4)]),
    spec_kind=st.integers(0, 3),
    dtype=st.sampled_from(["float32", "float64"]),
    scale=st.sampled_from([1e-3, 1.0, 1e3]),
)
# a tiny d against a stored d far away: a ray step in the stored frame lost everything here (2.7e-2)
@example(seed=35, shape=(3, 1, 1), spec_kind=2, dtype="float32", scale=1e-3)
def test_outputs_feasible_for_their_own_rhs_before_and_after_fit(seed, shape, spec_kind, dtype, scale):
    with floatx(dtype):
        assert_feasible_before_and_after_fit(_layer(seed, shape, spec_kind, dtype), seed, dtype, scale)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31), shape=st.sampled_from([(5, 2, 2), (7, 3, 3), (12, 6, 4)]), both=st.booleans())
def test_value_is_osqps_projection_onto_the_samples_set(seed, shape, both):
    """float64, exact solver: the output is OSQP's projection of the generator point onto S(b, d)."""
    layer = _exact(_layer(seed, shape, 3 if both else 2, "float64"))  # ("b", "d") or "d"
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(16, 6)) * 2.0
    rhs = random_rhs(layer, rng, 1.0, 16)
    out = np.asarray(ops.convert_to_numpy(layer([features, *rhs])))
    b, d = _full_rhs(layer, rhs)
    s = layer.system
    for i in range(16):
        assert relative_violation(out[i : i + 1], s.A, b[i], s.C, d[i], None) <= 1e-12
    y = _generator_point(layer, features)
    expected = osqp_projection(y, s.A, b, s.C, d, None)
    err = np.abs(out - expected).max(axis=1) / (1 + np.abs(expected).max())
    # samples whose active-set step met the KKT conditions are the projection; the rest (degenerate
    # vertices of random blocks) are feasible ADMM iterates, checked above
    plan = layer._plan.stages.coupled.plan
    _, converged = cp.project(y, plan, b if both else None, d, differentiable=False, return_converged=True)
    converged = np.asarray(converged)
    assert converged.mean() >= 0.5, converged
    assert np.all(err[converged] <= 1e-7), err


def test_dc3_block_is_the_projection_and_feasible_in_float32():
    """DC3's QP as the proxy states it: float64 equals OSQP's projection of the generator point onto
    {A y = x, G y <= h}; float32 with the layer's own solver settings stays within 1e-6 relative."""
    A, X, G, h = dc3_qp(num=32)
    features = np.random.default_rng(0).normal(size=(32, 5)) * 3
    layer = _exact(
        klc.LinearInequalityConstraint(G, h, C=A, rhs_input="d", scaled_rows="all", scaling="project", dtype="float64")
    )
    out = np.asarray(ops.convert_to_numpy(layer([features, X])))
    expected = osqp_projection(_generator_point(layer, features), G, h, A, X, None)
    assert np.abs(out - expected).max() <= 1e-8 * (1 + np.abs(expected).max())
    layer32 = klc.LinearInequalityConstraint(G, h, C=A, rhs_input="d", scaled_rows="all", scaling="project")
    for scale in (1e-3, 1.0, 1e3):  # inputs of any scale, features far from the set
        y = np.asarray(ops.convert_to_numpy(layer32([features * scale, (X * scale).astype(np.float32)])))
        assert layer32.max_violation(y, relative=True, rhs=X * scale) <= 1e-6


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="uses TensorFlow's GradientTape")
def test_gradient_matches_finite_differences():
    """float64, exact solver: d(out . v)/d(features) against central differences, away from points where
    the active set changes within the step (two step sizes must agree there)."""
    import tensorflow as tf

    A, X, G, h = dc3_qp(num=8)
    layer = _exact(
        klc.LinearInequalityConstraint(G, h, C=A, rhs_input="d", scaled_rows="all", scaling="project", dtype="float64")
    )
    rng = np.random.default_rng(3)
    features = rng.normal(size=(8, 5)) * 2
    v_in, v_out = rng.normal(size=features.shape), rng.normal(size=(8, A.shape[1]))
    variable = tf.Variable(features)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer([variable, X]) * v_out)
    analytic = np.sum(tape.gradient(loss, variable).numpy() * v_in, axis=1)
    steps = (1e-5, 1e-6)
    stacked = np.concatenate([features + sign * s * v_in for s in steps for sign in (1.0, -1.0)])
    moved = np.asarray(ops.convert_to_numpy(layer([stacked, np.tile(X, (4, 1))]))).reshape(4, 8, -1)
    fd = [np.sum((moved[2 * k] - moved[2 * k + 1]) * v_out, axis=1) / (2 * s) for k, s in enumerate(steps)]
    regular = np.abs(fd[0] - fd[1]) <= 1e-5 * (1 + np.abs(fd[1]))
    assert regular.sum() >= 4
    err = np.abs(analytic - fd[1]) / (1 + np.abs(fd[1]))
    assert np.all(err[regular] <= 1e-5), (err, regular)


def test_pull_keeps_feasible_points_and_uses_the_stored_slack():
    """Interior points come back bit for bit; a translate of the set with a far centre stays exact in float32."""
    A, X, G, h = dc3_qp(num=64)
    plan = plan_projection(G, h, C=A)
    inside = (X @ np.linalg.pinv(A).T).astype(np.float32)  # pinv(A) x is strictly feasible here
    out = np.asarray(cp.project(inside, plan, d=X.astype(np.float32), iterations=0, polish=0))
    np.testing.assert_allclose(out, inside, rtol=0, atol=2e-6 * np.abs(inside).max())
    # d far from the stored d0 = C c0: the moved centre is large (|T d| ~ 1e4), the output is not
    far = (X * 1e3).astype(np.float32)
    y = (far @ np.linalg.pinv(A).T + np.random.default_rng(0).normal(0, 30, (64, A.shape[1]))).astype(np.float32)
    out = np.asarray(cp.project(y, plan, d=far, iterations=20, polish=0))
    assert relative_violation(out, G, h, A, far, None) <= 1e-5


BACKEND_SCRIPT = """
import numpy as np, keras, keras_lincon as klc
from tests.test_layer_rhs_inputs import random_case, random_rhs
worst = {}
for dtype in ("float32", "float64"):
    for seed in range(3):
        A, b, kwargs = random_case(seed, 7, 3, 3, seed, True)
        layer = klc.LinearInequalityConstraint(A, b, dtype=dtype, scaling="project", **kwargs)
        rng = np.random.default_rng(seed)
        for scale in (1e-3, 1.0, 1e3):
            rhs = [r.astype(dtype) for r in random_rhs(layer, rng, scale, 32)]
            y = keras.ops.convert_to_numpy(layer([(rng.normal(size=(32, 5)) * scale).astype(dtype), *rhs]))
            assert str(y.dtype) == dtype, y.dtype
            v = layer.max_violation(np.asarray(y), relative=True, rhs=rhs if len(rhs) > 1 else rhs[0])
            worst[dtype] = max(worst.get(dtype, 0.0), v)
assert worst["float32"] <= 1e-5 and worst["float64"] <= 1e-12, worst
print("OK", worst)
"""


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_other_backends(backend):
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed")
    env = {"KERAS_BACKEND": backend, "CUDA_VISIBLE_DEVICES": "", "JAX_ENABLE_X64": "1"}
    assert "OK" in run_python(BACKEND_SCRIPT, env=env)


def test_projection_penalty_is_a_loss_not_an_output_change():
    """projection_penalty adds weight * mean ||y - x||^2 to the losses, leaves outputs alone, is saved, and
    is refused without scaling="project"."""
    A, X, G, h = dc3_qp(num=16)
    features = np.random.default_rng(1).normal(size=(16, 5)) * 3
    kwargs = dict(C=A, rhs_input="d", scaled_rows="all", scaling="project", dtype="float64")
    plain = klc.LinearInequalityConstraint(G, h, **kwargs)
    penalised = klc.LinearInequalityConstraint(G, h, projection_penalty=0.25, **kwargs)
    out = plain([features, X])
    penalised([features, X])
    penalised.set_weights(plain.get_weights())
    out_p = penalised([features, X])
    np.testing.assert_array_equal(ops.convert_to_numpy(out), ops.convert_to_numpy(out_p))
    y = _generator_point(plain, features)
    expected = 0.25 * np.mean(np.sum((y - ops.convert_to_numpy(out)) ** 2, axis=1))
    assert len(penalised.losses) == 1 and not plain.losses
    assert float(ops.convert_to_numpy(penalised.losses[0])) == pytest.approx(expected, rel=1e-9)
    config = penalised.get_config()
    assert config["projection_penalty"] == 0.25 and "projection_penalty" not in plain.get_config()
    assert klc.LinearInequalityConstraint.from_config(config)._plan.output_map.projection_penalty == 0.25
    with pytest.raises(ValueError, match="scaling='project'"):
        klc.LinearInequalityConstraint(G, h, C=A, rhs_input="d", scaling="per_block", projection_penalty=0.1)
    with pytest.raises(ValueError, match="chose 'per_block'"):  # "auto" without every row scaled
        klc.LinearInequalityConstraint(G, h, C=A, rhs_input="d", projection_penalty=0.1)
    auto = klc.LinearInequalityConstraint(G, h, C=A, rhs_input="d", scaled_rows="all", projection_penalty=0.1)
    assert auto.scaling == "project"  # the default chose the projection: the penalty applies
    with pytest.raises(ValueError, match=">= 0"):
        klc.LinearInequalityConstraint(G, h, projection_penalty=-1.0, **kwargs)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_feasible_for_huge_features(dtype):
    """The pull towards the centre forms the output from the end it stays near: with features at 1e9 to
    1e15 (ADMM leaves the point far outside, the pull keeps almost nothing of it) float32 outputs stayed
    within 1e-5 only up to 1e6 when it always subtracted from x (1.2e-5 at 1e9, 1.0 at 1e15)."""
    A, X, G, h = dc3_qp(num=64)
    layer = klc.LinearInequalityConstraint(G, h, C=A, rhs_input="d", scaled_rows="all", dtype=dtype)
    assert layer.scaling == "project"  # "auto" chose the projection
    for scale in (1e6, 1e9, 1e12, 1e15):
        features = np.random.default_rng(0).normal(size=(64, 5)) * scale
        y = ops.convert_to_numpy(layer([features, X]))
        assert np.isfinite(y).all()
        assert layer.max_violation(y, relative=True, rhs=X) <= TOLERANCE[dtype], scale
