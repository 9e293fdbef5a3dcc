"""The coupled-block projection: exact feasibility, agreement with OSQP, implicit gradient, backends.

Random blocks have rows scaled by 1e-3 to 1e3, some equalities, some boxes,
and fixed or per-sample right-hand sides. OSQP (tight tolerances, polish) is
the reference projection. The in-process tests run on the suite's Keras
backend (TensorFlow); JAX and torch run in a fresh process each.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keras_lincon.layers import coupled_kernel as cp
from keras_lincon.planning.coupled_plan import plan_projection
from tests.conftest import run_python

keras = pytest.importorskip("keras")
ops = keras.ops
osqp = pytest.importorskip("osqp")

#: The tests that use tf.GradientTape / tf.function run in the suite's process only on TensorFlow.
needs_tf = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="uses TensorFlow's GradientTape")


def random_block(seed: int, *, moving: bool = False, n_range=(5, 40), m_range=(10, 60)):
    """A feasible block with a strictly feasible point ``x0``; rows scaled by 1e-3..1e3.

    Returns ``A, b, C, d, box, x0`` with ``b`` (B, m) and ``d`` (B, p) per sample
    when ``moving`` (the sets are translates, so they stay non-empty), else 1-D.
    """
    rng = np.random.default_rng(seed)
    n = int(rng.integers(*n_range))
    m = int(rng.integers(*m_range))
    p = int(rng.integers(0, n // 3 + 1))
    A = rng.normal(size=(m, n)) * 10.0 ** rng.uniform(-3, 3, size=(m, 1))
    C = rng.normal(size=(p, n)) * 10.0 ** rng.uniform(-3, 3, size=(p, 1))
    x0 = rng.normal(size=n)
    b = A @ x0 + rng.uniform(0.05, 1.0, m) * np.linalg.norm(A, axis=1)
    d = C @ x0
    box = None
    if rng.random() < 0.5:
        box = (x0 - rng.uniform(0.2, 2.0, n), x0 + rng.uniform(0.2, 2.0, n))
        box[1][rng.random(n) < 0.3] = np.inf  # some coordinates bounded on one side only
    return A, b, (C if p else None), (d if p else None), box, x0


def osqp_projection(y, A, b, C, d, box):
    """Row-wise projection by OSQP (eps 1e-10, polish); ``b``, ``d`` may be per sample."""
    import scipy.sparse as sp

    n = y.shape[1]
    B = y.shape[0]
    b = np.broadcast_to(b, (B, A.shape[0]))
    C = np.zeros((0, n)) if C is None else C
    d = np.broadcast_to(np.zeros(0) if d is None else d, (B, C.shape[0]))
    lo, hi = (np.full(n, -np.inf), np.full(n, np.inf)) if box is None else box
    M = sp.csc_matrix(np.vstack([A, C, np.eye(n)]))
    out = np.empty_like(y)
    solver = osqp.OSQP()
    solver.setup(
        sp.eye(n, format="csc"),
        -y[0],
        M,
        np.r_[np.full(A.shape[0], -np.inf), d[0], lo],
        np.r_[b[0], d[0], hi],
        eps_abs=1e-11,
        eps_rel=1e-11,
        max_iter=400_000,
        polishing=True,
        verbose=False,
    )
    for i in range(B):
        solver.update(q=-y[i], l=np.r_[np.full(A.shape[0], -np.inf), d[i], lo], u=np.r_[b[i], d[i], hi])
        out[i] = solver.solve(raise_error=False).x
    return out


def relative_violation(x, A, b, C, d, box) -> float:
    """Worst residual over ``|rhs| + |row| |x|`` (the package's tolerance statement), per-sample rhs allowed."""
    x = np.asarray(x, dtype=np.float64)
    size = np.linalg.norm(x, axis=1, keepdims=True)
    worst = [((x @ A.T - b) / (np.abs(b) + np.linalg.norm(A, axis=1) * size)).max()]
    if C is not None:
        worst.append((np.abs(x @ C.T - d) / (np.abs(d) + np.linalg.norm(C, axis=1) * size)).max())
    if box is not None:
        lo, hi = box
        worst.append(
            np.max(np.where(np.isfinite(hi), (x - hi) / (np.abs(np.where(np.isfinite(hi), hi, 0)) + size), -1))
        )
        worst.append(
            np.max(np.where(np.isfinite(lo), (lo - x) / (np.abs(np.where(np.isfinite(lo), lo, 0)) + size), -1))
        )
    return float(max(worst))


def _points(x0, batch, spread, seed):
    return x0 + np.random.default_rng(seed + 1).normal(0.0, spread, (batch, x0.size))


SOLVER = dict(iterations=200, polish=10)  # generous for random blocks with more rows than dimensions


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1))
def test_feasible_and_matches_osqp_float64(seed):
    A, b, C, d, box, x0 = random_block(seed)
    plan = plan_projection(A, b, C, d, box)
    y = _points(x0, 16, 1.0, seed)
    x, converged = cp.project(ops.convert_to_tensor(y), plan, return_converged=True, **SOLVER)
    x, converged = np.asarray(x), np.asarray(converged)
    assert relative_violation(x, A, b, C, d, box) <= 1e-12
    ref = osqp_projection(y, A, b, C, d, box)
    scale = 1.0 + np.abs(ref).max()
    # converged samples are the projection to the reference's accuracy; the others are only feasible
    assert converged.mean() >= 0.5, converged.mean()
    err = np.abs(x - ref).max(axis=1) / scale
    assert np.all(err[converged] <= 1e-7), err[converged].max()


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1))
def test_feasible_float32_even_when_stopped_early(seed):
    A, b, C, d, box, x0 = random_block(seed)
    plan = plan_projection(A, b, C, d, box)
    y = _points(x0, 16, 3.0, seed).astype(np.float32)
    for iterations, polish in ((0, 0), (3, 1), (200, 10)):
        x = np.asarray(cp.project(ops.convert_to_tensor(y), plan, iterations=iterations, polish=polish))
        assert x.dtype == np.float32
        assert relative_violation(x, A, b, C, d, box) <= 1e-5, (iterations, polish)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1))
def test_per_sample_right_hand_sides(seed):
    rng = np.random.default_rng(seed)
    A, b, C, d, box, x0 = random_block(seed, n_range=(8, 30), m_range=(2, 6))
    box = None  # a translation that moves the centre must leave bounded coordinates alone
    if C is None:
        C = rng.normal(size=(1, x0.size))
    shifts = rng.normal(0.0, 0.5, (16, x0.size))  # translate the set: stays non-empty
    b_s, d_s = b + shifts @ A.T, (C @ x0) + shifts @ C.T
    plan = plan_projection(A, None, C, None, box)
    y = _points(x0, 16, 1.0, seed)
    x, converged = cp.project(ops.convert_to_tensor(y), plan, b_s, d_s, return_converged=True, **SOLVER)
    x = np.asarray(x)
    for i in range(16):
        assert relative_violation(x[i : i + 1], A, b_s[i], C, d_s[i], None) <= 1e-12
    ref = osqp_projection(y, A, b_s, C, d_s, None)
    ok = np.asarray(converged)
    assert ok.mean() >= 0.5
    assert np.abs(x - ref)[ok].max() / (1 + np.abs(ref).max()) <= 1e-7


def _grad_check(seed, wrt: str):
    """Directional derivatives of the projection against central differences (float64)."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    A, b, C, d, box, x0 = random_block(seed, n_range=(8, 30), m_range=(4, 20))
    if wrt != "y":
        box = None  # per-sample b / d need a translation: no bounds on the moved coordinates
        if C is None:
            C = rng.normal(size=(1, x0.size))
            d = C @ x0
    plan = plan_projection(A, None if wrt == "b" else b, C, None if wrt == "d" else d, box)
    B = 8
    y = _points(x0, B, 1.0, seed)
    bb, dd = np.tile(b, (B, 1)), np.tile(d, (B, 1)) if d is not None else None
    args = {"y": y, "b": bb, "d": dd}
    v_in = rng.normal(size=args[wrt].shape)
    v_out = rng.normal(size=y.shape)

    def run(values):
        b_arg = values["b"] if wrt == "b" else None
        d_arg = values["d"] if wrt == "d" else None
        return np.asarray(cp.project(values["y"], plan, b_arg, d_arg, iterations=200, polish=10))

    variable = tf.Variable(args[wrt])
    with tf.GradientTape() as tape:
        values = {**args, wrt: variable}
        out = cp.project(
            values["y"],
            plan,
            values["b"] if wrt == "b" else None,
            values["d"] if wrt == "d" else None,
            iterations=200,
            polish=10,
        )
        loss = tf.reduce_sum(out * v_out)
    # samples are independent, so the gradient of the sum holds every sample's v_out^T J
    analytic = np.sum(np.asarray(tape.gradient(loss, variable)) * v_in, axis=1)
    # central differences with two steps, all in one batch: [+h1, -h1, +h2, -h2]
    steps = (1e-5, 1e-6)
    stacked = {key: None if val is None else np.tile(val, (4, 1)) for key, val in args.items()}
    stacked[wrt] = np.concatenate([args[wrt] + sign * h * v_in for h in steps for sign in (1.0, -1.0)])
    moved = run(stacked).reshape(4, B, -1)
    fd = [np.sum((moved[2 * k] - moved[2 * k + 1]) * v_out, axis=1) / (2 * h) for k, h in enumerate(steps)]
    # where the two steps disagree the active set changes within the step: a degenerate point, not tested
    regular = np.abs(fd[0] - fd[1]) <= 1e-5 * (1 + np.abs(fd[1]))
    checked = int(regular.sum())
    err = np.abs(analytic - fd[1]) / (1 + np.abs(fd[1]))
    assert np.all(err[regular] <= 1e-5), (err, regular)
    assert checked >= B // 2


@needs_tf
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1))
def test_gradient_matches_finite_differences(seed):
    _grad_check(seed, "y")


@needs_tf
@pytest.mark.parametrize("wrt", ["b", "d"])
def test_gradient_in_right_hand_sides(wrt):
    for seed in (3, 11):
        _grad_check(seed, wrt)


@needs_tf
def test_xla_matches_eager():
    tf = pytest.importorskip("tensorflow")
    A, b, C, d, box, x0 = random_block(5)
    plan = plan_projection(A, b, C, d, box)
    y = _points(x0, 32, 1.0, 5).astype(np.float32)
    eager = np.asarray(cp.project(y, plan))
    compiled = tf.function(lambda v: cp.project(v, plan), jit_compile=True)
    xla = compiled(tf.constant(y)).numpy()
    assert relative_violation(xla, A, b, C, d, box) <= 1e-5
    assert np.abs(xla - eager).max() <= 1e-3 * (1 + np.abs(eager).max())


def test_dc3_block_float64():
    """DC3's block (100 vars, A y = x per sample, G y <= h): 1e-12 feasibility, OSQP's answer."""
    A_eq, X, G, h = _dc3_block()
    plan = plan_projection(G, h, C=A_eq)
    y = np.random.default_rng(0).normal(0, 3, (32, 100))
    x, converged = cp.project(y, plan, d=X, return_converged=True, iterations=0, polish=8)
    x = np.asarray(x)
    assert np.all(np.asarray(converged))
    assert relative_violation(x, G, h, A_eq, X, None) <= 1e-12
    ref = osqp_projection(y, G, h, A_eq, X, None)
    assert np.abs(x - ref).max() <= 1e-8


BACKEND_SCRIPT = """
import numpy as np, keras
from keras_lincon.layers import coupled_kernel as cp
from keras_lincon.planning.coupled_plan import plan_projection
rng = np.random.default_rng(0)
A = rng.normal(size=(12, 8)) * 10.0 ** rng.uniform(-2, 2, (12, 1)); x0 = rng.normal(size=8)
b = A @ x0 + np.linalg.norm(A, axis=1) * 0.3; C = rng.normal(size=(2, 8)); d = C @ x0
plan = plan_projection(A, b, C, d, (x0 - 1, x0 + 1))
y = (x0 + rng.normal(size=(16, 8))).astype("float32")
backend = keras.backend.backend()
fast = dict(iterations=100, polish=0, gradient_iterations=40)  # the matrix-product path
if backend == "jax":
    import jax
    f = jax.jit(lambda v: cp.project(v, plan))
    x = np.asarray(f(y))
    g = np.asarray(jax.grad(lambda v: cp.project(v, plan).sum())(y))
    g_fast = np.asarray(jax.jit(jax.grad(lambda v: cp.project(v, plan, **fast).sum()))(y))
else:
    import torch
    t = torch.tensor(y, requires_grad=True)
    out = cp.project(t, plan)
    out.sum().backward()
    x, g = out.detach().numpy(), t.grad.numpy()
    t2 = torch.tensor(y, requires_grad=True)
    cp.project(t2, plan, **fast).sum().backward()
    g_fast = t2.grad.numpy()
assert np.linalg.norm(g_fast - g) <= 1e-2 * np.linalg.norm(g), np.linalg.norm(g_fast - g) / np.linalg.norm(g)
viol = max(((x @ A.T - b) / (abs(b) + np.linalg.norm(A, axis=1) * np.linalg.norm(x, axis=1, keepdims=True))).max(),
           np.abs(x @ C.T - d).max(), (x - x0 - 1).max(), (x0 - 1 - x).max())
assert viol <= 1e-5, viol
assert np.all(np.isfinite(g)) and np.abs(g).max() > 0
print("OK", viol)
"""


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_other_backends(backend):
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed")
    out = run_python(BACKEND_SCRIPT, env={"KERAS_BACKEND": backend, "CUDA_VISIBLE_DEVICES": ""})
    assert "OK" in out


def _dc3_block(count: int = 32):
    rs = np.random.RandomState(17)
    rs.random(100), rs.random(100)  # Q, p of the recipe: they fix the stream
    A_eq = rs.normal(0, 1, (50, 100))
    X = rs.uniform(-1, 1, (10000, 50))[:count]
    G = rs.normal(0, 1, (50, 100))
    h = np.sum(np.abs(G @ np.linalg.pinv(A_eq)), axis=1)
    return A_eq, X, G, h


@needs_tf
def test_matrix_product_gradient_matches_solve_and_compiles():
    """``polish=0, gradient_iterations=k``: ADMM on the tangent problem, no batched solve."""
    tf = pytest.importorskip("tensorflow")
    A_eq, X, G, h = _dc3_block()
    plan = plan_projection(G, h, C=A_eq)
    rng = np.random.default_rng(1)
    y = tf.constant(X @ np.linalg.pinv(A_eq).T + rng.normal(0, 1, (32, 100)))
    v = tf.constant(rng.normal(size=(32, 100)))

    def grad(**kwargs):
        with tf.GradientTape() as tape:
            tape.watch(y)
            loss = tf.reduce_sum(cp.project(y, plan, d=X, **kwargs) * v)
        return tape.gradient(loss, y).numpy()

    exact = grad(iterations=0, polish=8)
    iterated = grad(iterations=100, polish=0, gradient_iterations=60)
    assert np.linalg.norm(iterated - exact) <= 1e-6 * np.linalg.norm(exact)

    @tf.function(jit_compile=True)
    def compiled(y32):
        with tf.GradientTape() as tape:
            tape.watch(y32)
            out = cp.project(y32, plan, d=tf.constant(X, tf.float32), iterations=50, polish=0, gradient_iterations=30)
            loss = tf.reduce_sum(out * tf.cast(v, tf.float32))
        return out, tape.gradient(loss, y32)

    out, g = compiled(tf.cast(y, tf.float32))
    assert relative_violation(out.numpy(), G, h, A_eq, X, None) <= 1e-5
    # float32 and 50 steps: a few samples may still see another active set
    per_sample = np.linalg.norm(g.numpy() - exact, axis=1) / np.linalg.norm(exact, axis=1)
    assert np.mean(per_sample <= 1e-2) >= 0.9, per_sample


@needs_tf
@pytest.mark.parametrize("polish, gradient_iterations", [(8, None), (0, 60)])
def test_dependent_active_rows(polish, gradient_iterations):
    """A row given twice (and a multiple of it): the regularised projector onto null(a) is the gradient."""
    tf = pytest.importorskip("tensorflow")
    a = np.array([1.0, 2.0, -1.0, 0.5])
    A = np.vstack([a, a, 3 * a, [0.0, 0.0, 1.0, 0.0]])
    b = np.array([1.0, 1.0, 3.0, 5.0])
    plan = plan_projection(A, b)
    y = tf.constant(np.array([[3.0, 2.0, 0.0, 1.0], [2.0, 1.0, -1.0, 0.0]]))
    x = cp.project(y, plan, iterations=100, polish=polish, gradient_iterations=gradient_iterations)
    y_np = y.numpy()
    expected = y_np - np.maximum(y_np @ a - 1.0, 0)[:, None] * a / (a @ a)
    assert np.abs(x.numpy() - expected).max() <= 1e-8
    v = np.random.default_rng(0).normal(size=(2, 4))
    with tf.GradientTape() as tape:
        tape.watch(y)
        loss = tf.reduce_sum(
            cp.project(y, plan, iterations=100, polish=polish, gradient_iterations=gradient_iterations) * v
        )
    g = tape.gradient(loss, y).numpy()
    projector = np.eye(4) - np.outer(a, a) / (a @ a)
    assert np.all(np.isfinite(g))
    assert np.abs(g - v @ projector).max() <= 1e-6


def test_value_only_matches():
    """``differentiable=False`` gives the same values (no tangent loop, no gradient solve)."""
    A_eq, X, G, h = _dc3_block(16)
    plan = plan_projection(G, h, C=A_eq)
    y = X @ np.linalg.pinv(A_eq).T + np.random.default_rng(2).normal(0, 1, (16, 100))
    for polish, gradient_iterations in ((8, None), (0, 20)):
        kwargs = dict(d=X, iterations=60, polish=polish, gradient_iterations=gradient_iterations)
        full = np.asarray(cp.project(y, plan, **kwargs))
        value = np.asarray(cp.project(y, plan, differentiable=False, **kwargs))
        assert np.abs(full - value).max() <= 1e-12
