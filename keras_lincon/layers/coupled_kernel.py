"""Exact Euclidean projection onto a block of coupled linear rows, batched.

Per sample it solves ::

    x* = argmin_x ||x - y||^2   s.t.   A x <= b,  C x = d,  lower <= x <= upper

where ``b`` and ``d`` may be fixed or given per sample. Two parts:

* :func:`keras_lincon.planning.coupled_plan.plan_projection` (numpy only, once): equalities eliminated through a
  particular solution and an orthonormal null-space basis, rows normalised,
  the ADMM matrix factored, a strictly feasible centre, and (when it exists)
  the translation that moves the centre with ``b`` and ``d``.
* :func:`project` (``keras.ops`` only, every backend, compiles under XLA /
  ``jax.jit``): a fixed number of ADMM steps (OSQP's splitting, with
  over-relaxation) to guess the active set, then a fixed number of
  primal-dual active-set (semismooth Newton) steps on the dual, each accepted
  per sample only when it satisfies the KKT conditions; then an exact
  feasibility step (ray scaling towards the centre), so every output is
  feasible to rounding even when the solver stops early; and an
  implicit-function gradient.

Why this solver (measured, see ``benchmarks/coupled_projection.py`` and
BENCHMARKS.md): on DC3's block the active-set steps alone are exact (3e-14)
after 4 to 6 steps, where ADMM needs 50 (points near the set) to 100-200
(far) steps for 1e-6; on random blocks with more rows than free dimensions
the active-set steps alone cycle, and an ADMM warm start fixes most of that
(OSQP's "polish", run as a loop). Cost decides the default per backend: an
active-set step is a batched (q, q) solve per sample, which TensorFlow's XLA
lowers to slow loops on the CPU (about 1 s per step at batch 256 on DC3's
block); an ADMM step is one (q, q) product. So:

* exact path (default, ``polish > 0``): JAX, torch, TF graphs, float64 work;
  outputs are the projection to rounding where ``converged``;
* matrix-product path (``polish=0, gradient_iterations=k``): TF + XLA and
  training; the value is the ADMM iterate made feasible, the gradient comes
  from ``k`` ADMM steps on the tangent problem (DC3: 50 + 20 steps, 8.6x a
  dense 100 -> 100 layer forward + backward at batch 256 under TF XLA).

Gradient: at the solution ``dx*/dy = N P N^T`` with ``N`` the null-space basis
of ``C`` and ``P = I - K_S^T (K_S K_S^T + eps I)^{-1} K_S`` the projector onto
the null space of the strongly active rows ``K_S`` (inequalities and bounds
whose multiplier is positive), in reduced coordinates. ``dx*/db`` and
``dx*/dd`` follow from the same system (the active face moves with its
right-hand side). Degenerate active sets: weakly active rows (zero
multiplier) are treated as inactive (one of the one-sided derivatives);
linearly dependent active rows get the ridge-regularised projector above
(``eps`` = ``plan.regularization``), a least-squares projector onto their
common null space up to ``O(eps)``.
"""

from __future__ import annotations

import numpy as np
from keras import ops

from keras_lincon.errors import LinconError
from keras_lincon.layers.backend_ops import matmul, maximum, minimum
from keras_lincon.layers.coupled_solver import BIG, active_matrix, mul_t, solve_reduced, tangent_admm
from keras_lincon.planning.coupled_plan import ProjectionPlan
from keras_lincon.tolerances import KKT_RTOL_FLOAT32, KKT_RTOL_FLOAT64


def _targets(plan: ProjectionPlan, b, d, const, batch_zeros):
    """Reduced bounds ``l <= K z <= u`` as (B, q) tensors, and the particular solution.

    ``u = (b - A x_p) / |row|`` for inequality rows, ``(upper - x_p) / |row|`` and
    ``(lower - x_p) / |row|`` for bounded coordinates; a missing side holds -+BIG.
    ``x_p = pinv(C) d`` is (B, n) or (n,), None without equalities.
    """
    kept, bounded = plan.kept, plan.bounded
    norm_ineq, norm_box = plan.row_norm[: kept.size], plan.row_norm[kept.size :]
    d_t = const(plan.d0) if d is None else d
    if b is None:
        b_t = const(plan.b0[kept])
    else:
        b_t = b if kept.size == plan.A.shape[0] else ops.take(b, kept, axis=-1)
    if plan.C.shape[0]:
        x_p = matmul(d_t, const(plan.c_pinv.T))
        u_ineq = b_t - matmul(d_t, const((plan.A[kept] @ plan.c_pinv).T))
        x_p_box = matmul(d_t, const(plan.c_pinv[bounded].T))
    else:
        x_p, u_ineq, x_p_box = None, b_t, const(np.zeros(bounded.size))
    lo, hi = plan.lower[bounded], plan.upper[bounded]
    u_box = (const(np.where(np.isfinite(hi), hi, 0.0)) - x_p_box) / const(norm_box)
    l_box = (const(np.where(np.isfinite(lo), lo, 0.0)) - x_p_box) / const(norm_box)
    u_box = ops.where(const(np.isfinite(hi)), u_box, BIG)
    l_box = ops.where(const(np.isfinite(lo)), l_box, -BIG)
    u_ineq = u_ineq / const(norm_ineq)
    u = ops.concatenate([u_ineq + batch_zeros, u_box + batch_zeros], axis=-1)
    l = ops.concatenate([ops.zeros_like(u_ineq + batch_zeros) - BIG, l_box + batch_zeros], axis=-1)
    return l, u, x_p


def project(
    y,
    plan: ProjectionPlan,
    b=None,
    d=None,
    *,
    center=None,
    move=None,
    iterations: int | None = None,
    polish: int | None = None,
    gradient_iterations: int | None = None,
    differentiable: bool = True,
    return_converged: bool = False,
):
    """Projects every row of ``y`` onto the plan's set; exact feasibility, implicit gradient.

    Args:
        y: (B, n) points (float32 or float64; the computation runs in y's dtype).
        plan: from :func:`plan_projection`.
        b, d: (B, m), (B, p) per-sample right-hand sides, or None for the plan's.
        center: (B, n) or (n,) strictly feasible points, or None: the plan's
            centre, moved with ``b`` and ``d`` (by ``move``, else ``plan.shift``).
        move: (B, n), with ``center=None``: ``S(b, d) = S(plan.b0, plan.d0) + move`` (the caller's
            guarantee, e.g. a layer's ``T (beta - beta_0)``); see :func:`_pull_to_centre`.
        iterations, polish: ADMM and active-set steps (default ``plan.iterations``, ``plan.polish``).
        gradient_iterations: with ``polish=0`` only: compute the implicit
            gradient by this many ADMM steps on the tangent problem instead of
            one batched linear solve (matrix products only: XLA on the CPU
            lowers batched solves to slow loops). Approximate; the value is
            unaffected. Default ``plan.gradient_iterations`` (None: solve).
        differentiable: False skips the gradient terms (inference; the output carries no gradient).
        return_converged: also return (B,) bools: True where an active-set step met the KKT
            conditions (the output is the projection to rounding), else the ADMM iterate made feasible.

    Returns:
        (B, n) feasible points (and the flags when asked). Gradients flow to
        ``y``, ``b`` and ``d`` through the implicit function theorem.
    """
    y = ops.convert_to_tensor(y)
    dtype = y.dtype
    const = lambda a: ops.convert_to_tensor(np.asarray(a, dtype=np.float64), dtype)  # noqa: E731
    iterations = plan.iterations if iterations is None else int(iterations)
    polish = plan.polish if polish is None else int(polish)
    gradient_iterations = plan.gradient_iterations if gradient_iterations is None else gradient_iterations
    b, d = _per_sample_rhs(plan, b, d, center is not None or move is not None, dtype)
    N = None if plan.null_basis is None else const(plan.null_basis)
    l, u, x_p = _targets(plan, b, d, const, ops.zeros_like(y[:, :1]))
    y_s = ops.stop_gradient(y)
    w = y_s if N is None else matmul(y_s, N)  # N^T (y - x_p) = N^T y: x_p lies in the row space of C
    g = y - y_s if N is None else matmul(y - y_s, N)  # zero in value: carries the gradient
    if plan.K.shape[0]:
        steps = (iterations, polish, gradient_iterations, differentiable)
        z_sol, z_lin, converged = _reduced_projection(w, g, l, u, plan, steps, b is not None or d is not None, const)
    else:  # only equalities: the affine projection is exact
        z_sol, z_lin = w, (g if differentiable else None)
        converged = ops.ones_like(y[:, 0]) > 0

    out = _feasible_output(z_sol, z_lin, x_p, N, (b, d, center, move), plan, const)
    return (out, converged) if return_converged else out


def _feasible_output(z_sol, z_lin, x_p, N, rhs: tuple, plan: ProjectionPlan, const):
    """Back to ``x``: equalities hold by construction, the rest by ray scaling towards the centre; the
    value is the ray-scaled point, the derivative ``N z'`` (plus the particular solution's motion with
    ``d``). ``z_lin`` None: no gradient. ``rhs`` = (b, d, center, move), each None or per sample."""
    b, d, center, move = rhs
    dtype = z_sol.dtype
    x_k = z_sol if N is None else mul_t(z_sol, N)
    if x_p is not None:
        x_k = x_k + ops.stop_gradient(x_p)
    b_s = None if b is None else ops.stop_gradient(b)
    if center is not None:
        x_ray = _ray_scale(x_k, ops.cast(center, dtype), plan, b_s, const, dtype)
    else:
        x_ray = _pull_to_centre(x_k, _moved_centre(plan, b, d, move, const), plan, b_s, const, dtype)
    x_ray = ops.stop_gradient(x_ray)
    if z_lin is None:
        return x_ray
    x_lin = z_lin if N is None else mul_t(z_lin, N)
    if d is not None:
        x_lin = x_lin + (x_p - ops.stop_gradient(x_p))
    return x_ray + x_lin


def _per_sample_rhs(plan: ProjectionPlan, b, d, centred: bool, dtype) -> tuple:
    """``b``, ``d`` cast to ``dtype`` (None where the plan's own are used), after checking the plan allows them."""
    m, p = plan.A.shape[0], plan.C.shape[0]
    if (b is None and not plan.b_fixed) or (d is None and not plan.d_fixed):
        raise LinconError("this plan has no fixed b (or d): pass it per sample to project().")
    b = None if b is None or m == 0 else ops.cast(b, dtype)
    d = None if d is None or p == 0 else ops.cast(d, dtype)
    if not centred and ((b is not None and not plan.shift_b) or (d is not None and not plan.shift_d)):
        raise LinconError("per-sample b or d needs center= here: the rows do not allow moving the plan's centre.")
    return b, d


def _moved_centre(plan: ProjectionPlan, b, d, move, const):
    """The plan's centre moved by ``move`` (the caller's translation), else with per-sample ``b`` and ``d``
    by ``plan.shift`` ((n,) or (B, n))."""
    m, shift = plan.A.shape[0], plan.shift
    c = const(plan.center0)
    if move is not None:
        return c + ops.stop_gradient(ops.cast(move, c.dtype))
    if shift is None:  # fixed b and d (per-sample ones without a shift were refused)
        return c
    if b is not None:
        c = c + matmul(ops.stop_gradient(b) - const(plan.b0), const(shift[:, :m].T))
    if d is not None:
        c = c + matmul(ops.stop_gradient(d) - const(plan.d0), const(shift[:, m:].T))
    return c


def _pull_to_centre(x, c, plan: ProjectionPlan, b, const, dtype):
    """``c + keep (x - c)`` with the largest ``keep`` in [0, 1] that satisfies every row: a point of the set.

    ``c`` is the plan's centre or a translate of it that moves with ``b`` and
    ``d``, so its slack is the stored ``s = b0 - A c0`` (and the box's room
    around ``c0``, whose coordinates a translation leaves alone): with the
    excess ``e = A x - b`` a row allows ``keep <= s / (e + s)``. Unlike
    :func:`_ray_scale` this never forms ``b - A c``, whose rounding grows with
    ``|c|`` (a centre moved far by ``T (beta - beta_0)``), and a feasible ``x``
    comes back unchanged. The point is formed from the end it stays near
    (``x - (1 - keep)(x - c)`` when most of ``x`` is kept, ``c + keep (x - c)``
    otherwise), so rounding is relative to the output, whatever ``|x| / |c|``.
    """
    finfo = np.finfo(np.float64 if "float64" in str(dtype) else np.float32)
    keeps = []
    if plan.A.shape[0]:
        excess = matmul(x, const(plan.A.T)) - (const(plan.b0) if b is None else b)
        slack = const(plan.b0 - plan.A @ plan.center0)
        keeps.append(_largest_keep(excess, slack, maximum(excess + slack, finfo.tiny)))
    for bound, sign in ((plan.upper, 1.0), (plan.lower, -1.0)):
        finite = np.isfinite(bound)
        if finite.any():
            edge = np.where(finite, bound, 0.0)
            excess = ops.where(const(finite), sign * (x - const(edge)), 0.0)
            room = const(np.where(finite, sign * (edge - plan.center0), 1.0))
            keeps.append(_largest_keep(excess, room, excess + room))
    if not keeps:
        return x
    keep = keeps[0]
    for other in keeps[1:]:
        keep = minimum(keep, other)
    # a relative margin of a few ulps keeps the rounding on the feasible side
    keep = maximum(keep - 2 * finfo.eps * (1.0 - keep), 0.0)[..., None]
    return ops.where(keep >= 0.5, x - (1.0 - keep) * (x - c), c + keep * (x - c))


def _largest_keep(excess, slack, denominator):
    """(B,) the smallest ``slack / denominator`` over the rows where ``excess > 0`` (1 where none)."""
    return ops.min(ops.where(excess > 0, slack / denominator, 1.0), axis=-1, initial=1.0)


def _reduced_projection(w, g, l, u, plan: ProjectionPlan, steps: tuple, moves: bool, const) -> tuple:
    """The projection in reduced coordinates and its linearisation: ``(z_sol, z_lin, converged)``.

    ``w`` (B, q) the point, ``g`` (B, q) zero in value (carries the gradient),
    ``l, u`` (B, k) the rows' bounds; ``steps`` = (ADMM steps, active-set steps, gradient ADMM
    steps or None, differentiable). ``z_lin`` is None when not differentiable.
    """
    iterations, polish, gradient_iterations, differentiable = steps
    dtype = w.dtype
    is64 = "float64" in str(dtype)
    tol = KKT_RTOL_FLOAT64 if is64 else KKT_RTOL_FLOAT32  # KKT acceptance, relative to the sample's scale
    eps = plan.regularization if is64 else max(plan.regularization, 1e-6)
    K, gram = const(plan.K), const(plan.gram)
    l_s, u_s = ops.stop_gradient(l), ops.stop_gradient(u)
    z_sol, lam_sol, converged, scale = solve_reduced(w, K, gram, l_s, u_s, plan, iterations, polish, tol, eps)
    # One system on the strongly active rows S (multiplier away from 0) serves two purposes:
    # column 0 refines the solution (removes the ridge's O(eps) bias, so a converged sample's
    # rows hold to rounding and the ray step barely moves it); column 1 is the implicit
    # gradient: z' = g - K_S^T (K_S K_S^T + eps I)^{-1} (K_S g - t_S'), a projection of g onto
    # null(K_S) plus the motion of the active face with its right-hand sides t_S(b, d).
    strong_up, strong_down = lam_sol > tol * scale, lam_sol < -tol * scale
    D = ops.cast(ops.logical_or(strong_up, strong_down), dtype)
    t_tangent = None
    if moves:
        t = ops.where(strong_up, u, ops.where(strong_down, l, 0.0))
        t_tangent = t - ops.stop_gradient(t)  # zero in value
    if polish == 0 and (gradient_iterations is not None or not differentiable):
        # GEMM-only path (no per-sample factorisation): the solution as ADMM left it, and the
        # gradient from the same ADMM iteration run on the tangent problem
        # min ||z' - g||^2 s.t. K_S z' = t_S' (rows outside S free), differentiated through.
        z_lin = tangent_admm(g, t_tangent, D, K, plan, gradient_iterations) if differentiable else None
        return z_sol, z_lin, converged
    M = ops.stop_gradient(active_matrix(D, gram, eps, K.shape[0]))
    t_s = ops.where(strong_up, u_s, ops.where(strong_down, l_s, 0.0))
    lam_d = D * lam_sol
    residual = D * (mul_t(w, K) - t_s) - D * matmul(lam_d, gram)
    rhs = mul_t(g, K)
    if t_tangent is not None:
        rhs = rhs - t_tangent
    both = ops.solve(M, ops.stack([residual, D * rhs] if differentiable else [residual], axis=-1))
    z_refined = w - matmul(lam_d + both[..., 0], K)
    z_sol = ops.where(converged[:, None], z_refined, z_sol)
    return z_sol, (g - matmul(both[..., 1], K) if differentiable else None), converged


def _ray_scale(x, c, plan: ProjectionPlan, b, const, dtype):
    """``c + (x - c) / max(1, max_i a_i.(x - c) / (b_i - a_i.c), box ratios)``: a point of the set.

    ``c`` satisfies the equalities and every other row strictly, ``x`` the
    equalities, so the convex combination satisfies all rows (to rounding).
    """
    step = x - c
    ratios = []
    if plan.A.shape[0]:
        At = const(plan.A.T)
        b_t = const(plan.b0) if b is None else b
        slack = b_t - matmul(c, At)
        tiny = np.finfo(np.float64 if "float64" in str(dtype) else np.float32).tiny
        ratios.append(ops.max(matmul(step, At) / maximum(slack, tiny), axis=-1, initial=0.0))
    for bound, sign in ((plan.upper, 1.0), (plan.lower, -1.0)):
        finite = np.isfinite(bound)
        if finite.any():
            room = sign * (const(np.where(finite, bound, 0.0)) - c)
            ratio = ops.where(const(finite), sign * step / ops.where(const(finite), room, 1.0), 0.0)
            ratios.append(ops.max(ratio, axis=-1, initial=0.0))
    if not ratios:
        return x
    worst = ratios[0]
    for ratio in ratios[1:]:
        worst = maximum(worst, ratio)
    # a relative margin of a few ulps keeps the rounding of c + step / factor on the feasible side
    ulp = 2 * np.finfo(np.float64 if "float64" in str(dtype) else np.float32).eps
    factor = maximum(worst * (1.0 + ulp), 1.0)
    return c + step / factor[..., None]


def coupled_stage(y, coupled, others=None):
    """The exact projection of ``y`` (B, n) onto the coupled blocks' sets
    (:class:`keras_lincon.planning.stages.CoupledBlocks`); ``others`` (B, n) gives the other
    coordinates (None when the blocks hold every coordinate)."""
    columns, n = coupled.columns, y.shape[-1]
    if others is None:
        return project(y, coupled.plan)
    part = project(ops.take(y, columns, axis=1), coupled.plan)
    position = np.full(n, columns.size)  # back to (B, n) through a zero slot
    position[columns] = np.arange(columns.size)
    spread = ops.take(ops.concatenate([part, ops.zeros_like(part[:, :1])], axis=1), position, axis=1)
    return ops.where(np.isin(np.arange(n), columns), spread, others)
