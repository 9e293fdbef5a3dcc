"""The iterative solver behind :func:`keras_lincon.layers.coupled_kernel.project`, in ``keras.ops``.

ADMM steps (OSQP's splitting with over-relaxation) and primal-dual active-set
steps on the reduced problem ``min ||z - w||^2  s.t.  l <= K z <= u``, and the
ADMM run on the tangent problem that gives the matrix-product-only gradient.
Loops are unrolled in chunks so that reverse-mode differentiation works on
every backend.
"""

from __future__ import annotations

import numpy as np
from keras import ops

from keras_lincon.layers.backend_ops import matmul, maximum, minimum
from keras_lincon.planning.coupled_plan import ProjectionPlan

#: Finite stand-in for an infinite bound inside the kernel (inf - inf would give NaN in the gradient term).
BIG = 1e30


def active_matrix(D, gram, eps, q: int):
    """``D H D + eps D + (I - D)`` per sample: the active rows' Gram matrix, identity elsewhere.

    (B, q) mask -> (B, q, q). SPD for ``eps > 0``; the ridge keeps dependent active rows solvable.
    """
    eye = ops.eye(q, dtype=D.dtype)
    return D[:, :, None] * gram[None] * D[:, None, :] + eye[None] * (eps * D + (1.0 - D))[:, :, None]


def _solve(M, rhs):
    """(B, q, q), (B, q) -> (B, q)."""
    return ops.solve(M, rhs[..., None])[..., 0]


def mul_t(v, M):
    """``v M^T`` for a batch of rows v."""
    return matmul(v, ops.transpose(M))


def _differentiable_loop(count: int, body, state):
    """``fori_loop`` whose result can be differentiated under XLA.

    TensorFlow differentiates a while loop inside ``jit_compile`` only when it
    knows the trip count (``maximum_iterations``), which ``keras.ops.fori_loop``
    does not pass; other backends take ``fori_loop`` as it is.
    """
    import keras

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.while_loop(
            lambda i, _: i < count, lambda i, s: (i + 1, body(i, s)), (0, state), maximum_iterations=count
        )[1]
    if keras.backend.backend() == "jax":
        import jax

        return jax.lax.scan(lambda s, i: (body(i, s), None), state, None, length=count)[0]
    return ops.fori_loop(0, count, body, state)


#: Steps per loop body: XLA's CPU while loop costs about as much per trip as a small step.
_UNROLL = 5


def _unrolled_loop(count: int, body, state, loop):
    """``count`` steps of ``body`` as ``count // _UNROLL`` trips of ``_UNROLL`` steps, then the rest."""

    def block(i, s):
        for _ in range(_UNROLL):
            s = body(i, s)
        return s

    trips, rest = divmod(count, _UNROLL)
    if trips:
        state = loop(0, trips, block, state)
    for _ in range(rest):
        state = body(0, state)
    return state


def _differentiable_loop_from_zero(lower: int, upper: int, body, state):
    return _differentiable_loop(upper - lower, body, state)


def tangent_admm(g, t_tangent, D, K, plan: ProjectionPlan, count: int):
    """``count`` ADMM steps on ``min ||z' - g||^2 s.t. K_S z' = t_S'`` from zero: linear in (g, t').

    ``D`` (B, q) marks S; ``t_tangent`` (B, q) or None. Gradients flow through the loop.
    """
    rho, alpha = plan.rho, plan.alpha
    const = lambda a: ops.convert_to_tensor(np.asarray(a, dtype=np.float64), g.dtype)  # noqa: E731
    inv, rows = const(plan.admm_inverse), const(plan.admm_rows)
    target = 0.0 if t_tangent is None else D * t_tangent
    g_rows = matmul(matmul(g, inv), ops.transpose(K))  # K (I + rho K^T K)^{-1} g
    zeros = ops.zeros_like(D) * ops.sum(g, axis=-1, keepdims=True)  # zero, shaped (B, q)

    def step(_, state):  # as in solve_reduced, with the clip linearised at the solution
        s, lam = state
        s_relaxed = alpha * (g_rows + matmul(rho * s - lam, rows)) + (1.0 - alpha) * s
        s_new = target + (1.0 - D) * (s_relaxed + lam / rho)
        return s_new, lam + rho * (s_relaxed - s_new)

    s, lam = _unrolled_loop(count, step, (zeros, zeros), _differentiable_loop_from_zero)
    return matmul(g + matmul(rho * s - lam, K), inv)


def solve_reduced(w, K, gram, l, u, plan: ProjectionPlan, iterations: int, polish: int, tol: float, eps: float):
    """``argmin ||z - w||^2 s.t. l <= K z <= u`` for (B, r) ``w``: ADMM steps, then active-set steps.

    Returns the solution (B, r), its multipliers (B, q) (``z = w - lam K``;
    positive at an upper bound, negative at a lower one), the (B,) flags of
    samples whose active-set step met the KKT conditions, and the (B, 1)
    scale the tolerances are relative to.
    """
    Kw = mul_t(w, K)
    s, lam0, z0 = _admm(w, Kw, K, l, u, plan, iterations)
    finite_u = ops.where(ops.abs(u) < BIG, ops.abs(u), 0.0)
    finite_l = ops.where(ops.abs(l) < BIG, ops.abs(l), 0.0)
    scale = (
        1.0
        + ops.max(ops.abs(Kw), axis=-1, keepdims=True, initial=0.0)  # initial: empty batches
        + ops.max(maximum(finite_u, finite_l), axis=-1, keepdims=True, initial=0.0)
    )
    state = (z0, lam0, z0, lam0, ops.zeros_like(Kw[:, 0]) > 1.0)
    if polish:
        step = _polish_step(w, Kw, K, gram, l, u, tol * scale, eps)
        state = ops.fori_loop(0, polish, step, state)
    _, _, z_sol, lam_sol, converged = state
    return z_sol, lam_sol, converged, scale


def _admm(w, Kw, K, l, u, plan: ProjectionPlan, iterations: int) -> tuple:
    """``(s, lam, z)`` after ``iterations`` ADMM steps from the clipped ``K w`` (``z = w`` without steps).

    OSQP's iteration with P = I and no proximal term, written in (s, lam) only:
    ``z_t = (I + rho K^T K)^{-1} (w + K^T (rho s - lam))`` is needed only through ``K z_t``, one
    (q, q) product per step; rows are unit norm, so one rho fits all.
    """
    rho, alpha = plan.rho, plan.alpha
    const = lambda a: ops.convert_to_tensor(np.asarray(a, dtype=np.float64), w.dtype)  # noqa: E731
    inv, rows = const(plan.admm_inverse), const(plan.admm_rows)
    w_rows = matmul(matmul(w, inv), ops.transpose(K))

    def admm_step(_, state):
        s, lam = state
        s_relaxed = alpha * (w_rows + matmul(rho * s - lam, rows)) + (1.0 - alpha) * s
        s_new = minimum(maximum(s_relaxed + lam / rho, l), u)
        return s_new, lam + rho * (s_relaxed - s_new)

    s, lam = minimum(maximum(Kw, l), u), ops.zeros_like(Kw)
    if not iterations:
        return s, lam, w
    s, lam = _unrolled_loop(iterations, admm_step, (s, lam), ops.fori_loop)
    return s, lam, matmul(w + matmul(rho * s - lam, K), inv)


def _polish_step(w, Kw, K, gram, l, u, tol, eps: float):
    """One primal-dual active-set step, as a ``fori_loop`` body over ``(z, lam, best_z, best_lam, done)``;
    a sample keeps the first step that meets the KKT conditions (``tol`` (B, 1) absolute)."""
    q = K.shape[0]

    def polish_step(_, state):
        z, lam, best_z, best_lam, done = state
        Kz = mul_t(z, K)
        # semismooth Newton on the complementarity lam = max(0, lam + (Kz - u)) (and its lower twin)
        up, down = (lam + (Kz - u)) > 0, (lam + (Kz - l)) < 0
        D = ops.cast(ops.logical_or(up, down), w.dtype)
        t = ops.where(up, u, ops.where(down, l, 0.0))
        lam = _solve(active_matrix(D, gram, eps, q), D * (Kw - t))
        z = w - matmul(lam, K)
        Kz = mul_t(z, K)
        feasible = ops.logical_and(Kz <= u + tol, Kz >= l - tol)
        signs = ops.logical_and(
            ops.logical_or(ops.logical_not(up), lam >= -tol),
            ops.logical_or(ops.logical_not(down), lam <= tol),
        )
        # a NaN from a singular step fails these comparisons and is never kept
        ok = ops.all(ops.logical_and(feasible, signs), axis=-1)
        take = ops.logical_and(ok, ops.logical_not(done))[:, None]
        return z, lam, ops.where(take, z, best_z), ops.where(take, lam, best_lam), ops.logical_or(done, ok)

    return polish_step
