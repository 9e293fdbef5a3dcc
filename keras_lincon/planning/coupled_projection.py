"""Exact Euclidean projection onto a block of coupled linear rows, batched.

Per sample it solves ::

    x* = argmin_x ||x - y||^2   s.t.   A x <= b,  C x = d,  lower <= x <= upper

where ``b`` and ``d`` may be fixed or given per sample. Two parts:

* :func:`plan_projection` (numpy only, once): equalities eliminated through a
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

import dataclasses

import numpy as np
from keras import ops

from keras_lincon.errors import ConstraintShapeError, DegenerateSetError, InfeasibleError, LinconError
from keras_lincon.layers.backend_ops import matmul, maximum, minimum

#: Finite stand-in for an infinite bound inside the kernel (inf - inf would give NaN in the gradient term).
_BIG = 1e30


@dataclasses.dataclass(frozen=True)
class ProjectionPlan:
    """Everything :func:`project` needs, as float64 numpy arrays (built by :func:`plan_projection`).

    Shapes: ``n`` variables, ``m`` inequality rows, ``p`` equality rows,
    ``k`` bounded coordinates, ``r = n - rank C`` free dimensions, ``q``
    rows of the reduced problem (the kept inequality rows, then the bounded
    coordinates).

    Attributes:
        A, b0: (m, n), (m,) inequality rows and the reference right-hand side.
        C, d0: (p, n), (p,) equality rows and the reference right-hand side.
        lower, upper: (n,) bounds (``-inf`` / ``inf`` where absent).
        bounded: (k,) indices of the coordinates with a finite bound.
        null_basis: (n, r) orthonormal basis of ``null(C)``; ``None`` when ``p = 0``.
        c_pinv: (n, p) ``pinv(C)``: the particular solution is ``c_pinv @ d``.
        kept: (m_kept,) inequality rows that are not constant on ``C x = d``.
        K: (q, r) reduced rows, unit norm.
        row_norm: (q,) the norms ``K`` was divided by.
        gram: (q, q) ``K K^T``.
        admm_inverse: (r, r) ``(I + rho K^T K)^{-1}`` (the objective's ``I`` makes OSQP's
            proximal term unnecessary, so ADMM needs no copy of ``z``).
        admm_rows: (q, q) ``K (I + rho K^T K)^{-1} K^T``: one product per ADMM step.
        center0: (n,) strictly feasible centre for ``(b0, d0)``.
        shift: (n, m + p) ``T`` with ``c(b, d) = center0 + T [b - b0; d - d0]``
            (``A T = [I 0]``, ``C T = [0 I]``, zero on bounded coordinates), or
            ``None`` when the rows do not allow a translation.
        rho, alpha: ADMM penalty and over-relaxation.
        regularization: ridge ``eps`` of the active-set systems (rows have unit norm).
        iterations, polish: default ADMM and active-set step counts.
    """

    A: np.ndarray
    b0: np.ndarray
    C: np.ndarray
    d0: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    bounded: np.ndarray
    null_basis: np.ndarray | None
    c_pinv: np.ndarray
    kept: np.ndarray
    K: np.ndarray
    row_norm: np.ndarray
    gram: np.ndarray
    admm_inverse: np.ndarray
    admm_rows: np.ndarray
    center0: np.ndarray
    shift: np.ndarray | None
    rho: float
    alpha: float
    regularization: float
    iterations: int
    polish: int
    b_fixed: bool
    d_fixed: bool
    shift_b: bool = False
    shift_d: bool = False
    gradient_iterations: int | None = None

    @property
    def dim(self) -> int:
        return self.A.shape[1]


# ---------------------------------------------------------------------------------------------
# planning (numpy only)
# ---------------------------------------------------------------------------------------------


def _as_matrix(M, n: int | None, name: str) -> np.ndarray:
    M = np.asarray(M, dtype=np.float64)
    if M.ndim == 1 and M.size == 0:
        M = M.reshape(0, n or 0)
    if M.ndim != 2 or (n is not None and M.shape[1] != n):
        raise ConstraintShapeError(f"{name} must be a 2-D array with {n} columns; got shape {M.shape}.")
    if not np.all(np.isfinite(M)):
        raise LinconError(f"{name} holds NaN or infinity.")
    return M


def _as_vector(v, size: int, name: str) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64).reshape(-1)
    if v.size != size:
        raise ConstraintShapeError(f"{name} must have {size} entries (one per row); got {v.size}.")
    if not np.all(np.isfinite(v)):
        raise LinconError(f"{name} holds NaN or infinity.")
    return v


def _row_space(M: np.ndarray, tol: float = 1e-10):
    """``(null_basis, pinv)`` of ``M`` (k, n) by a pivoted QR of ``M^T`` (cheaper than an SVD at n = 1000).

    Rows are scaled to unit norm first (rows scaled by 1e-3..1e3 would cost
    digits otherwise). ``null_basis`` (n, n - rank) is orthonormal; ``pinv``
    (n, k) maps a consistent right-hand side to the solution in the row space
    (the minimum-norm one), ``pinv(M)`` for full row rank.
    """
    import scipy.linalg

    k, n = M.shape
    if k == 0:
        return np.eye(n), np.zeros((n, 0))
    norms = np.linalg.norm(M, axis=1)
    unit = np.where(norms > 0, 1.0 / np.where(norms > 0, norms, 1.0), 1.0)
    Q, R, perm = scipy.linalg.qr((M * unit[:, None]).T, mode="full", pivoting=True)
    diag = np.abs(np.diag(R))
    rank = int(np.sum(diag > tol * max(diag.max(initial=0.0), 1e-300)))
    # M^T P = Q R: the first `rank` pivoted rows span the row space; solve R11^T u = (P^T D m)[:rank]
    pinv = np.zeros((n, k))
    if rank:
        R11 = R[:rank, :rank]
        pinv[:, perm[:rank]] = Q[:, :rank] @ scipy.linalg.solve_triangular(R11, np.eye(rank), trans="T")
    return Q[:, rank:], pinv * unit[None, :]


def _interior_point(A, b, C, d, lower, upper, tol: float) -> np.ndarray:
    """A point with ``C c = d`` (skipped when ``d`` is None) and positive slack on every other row.

    Two LPs: the largest distance ``t*`` to the rows (capped at 1, unbounded
    sets would run off), then the point of smallest 1-norm keeping distance
    ``t*/2`` (a centre near the origin, not at a far vertex of the LP).
    """
    from scipy.optimize import linprog

    n = A.shape[1]
    norms = np.linalg.norm(A, axis=1)
    # a cheap candidate first: the minimum-norm point of C c = d (0 without equalities), moved
    # towards the box's middle within C's null space; kept when every row has a clear margin
    null_basis, c_pinv = _row_space(C if d is not None else np.zeros((0, n)))
    start = c_pinv @ d if d is not None and C.shape[0] else np.zeros(n)
    both = np.isfinite(lower) & np.isfinite(upper)
    middle = np.where(both, 0.5 * (np.where(both, lower, 0.0) + np.where(both, upper, 0.0)), start)
    middle = np.where(np.isfinite(lower) & ~np.isfinite(upper), np.maximum(middle, lower + 1.0), middle)
    middle = np.where(~np.isfinite(lower) & np.isfinite(upper), np.minimum(middle, upper - 1.0), middle)
    for candidate in (start, start + null_basis @ (null_basis.T @ (middle - start))):
        size = 1.0 + np.linalg.norm(candidate)
        margins = [(b - A @ candidate) / (np.abs(b) + norms * size)]
        lo, hi = np.isfinite(lower), np.isfinite(upper)
        margins += [(candidate - lower)[lo] / (np.abs(lower[lo]) + size)]
        margins += [(upper - candidate)[hi] / (np.abs(upper[hi]) + size)]
        if min(np.min(v, initial=np.inf) for v in margins) > 1e-3:
            return candidate
    fin_lo, fin_hi = np.flatnonzero(np.isfinite(lower)), np.flatnonzero(np.isfinite(upper))
    # rows of [c, t] <= rhs: A c + t |a| <= b, -c + t <= -lo, c + t <= hi
    E = np.eye(n)
    rows = [np.hstack([A, norms[:, None]]), np.hstack([-E[fin_lo], np.ones((fin_lo.size, 1))])]
    rows.append(np.hstack([E[fin_hi], np.ones((fin_hi.size, 1))]))
    G, h = np.vstack(rows), np.concatenate([b, -lower[fin_lo], upper[fin_hi]])
    eq = {} if d is None or C.shape[0] == 0 else dict(A_eq=np.hstack([C, np.zeros((C.shape[0], 1))]), b_eq=d)
    first = linprog(
        np.r_[np.zeros(n), -1.0], A_ub=G, b_ub=h, bounds=[(None, None)] * n + [(None, 1.0)], method="highs", **eq
    )
    if first.status != 0:
        raise InfeasibleError(f"could not find a point of the set (LP status {first.status}: {first.message}).")
    t_star = -first.fun
    if t_star <= tol:
        raise DegenerateSetError(
            f"the set has no strictly feasible point (largest distance to its rows {t_star:.3g}): the exact "
            "feasibility step needs one. Pass rows that hold with equality as C, d."
        )
    # min sum(v) with -v <= c <= v, keeping distance t*/2
    Z = np.zeros((G.shape[0], n))
    G2 = np.vstack([np.hstack([G[:, :n], Z]), np.hstack([E, -E]), np.hstack([-E, -E])])
    h2 = np.concatenate([h - 0.5 * t_star * G[:, n], np.zeros(2 * n)])
    eq2 = {} if not eq else dict(A_eq=np.hstack([C, np.zeros_like(C)]), b_eq=d)
    second = linprog(np.r_[np.zeros(n), np.ones(n)], A_ub=G2, b_ub=h2, bounds=[(None, None)] * (2 * n), **eq2)
    return second.x[:n] if second.status == 0 else first.x[:n]


def _translation(A, C, bounded, b_moves: bool, d_moves: bool, n: int) -> np.ndarray | None:
    """``T`` (n, m + p) that moves a point with the right-hand sides, or None when none exists.

    Rows whose right-hand side moves must be independent modulo the fixed rows
    (the other block and the bounds): ``T = N_F pinv(M N_F)``, ``N_F`` a basis
    of the fixed rows' null space. Columns of fixed rows are zero.
    """
    m, p = A.shape[0], C.shape[0]
    E = np.eye(n)[bounded]
    moving = [A] * b_moves + [C] * d_moves
    fixed = [E] + [A] * (not b_moves) + [C] * (not d_moves)
    M, F = np.vstack(moving), np.vstack(fixed)
    N_F = _row_space(F)[0]
    part = N_F @ _row_space(M @ N_F)[1]  # independent moving rows: a right inverse of M N_F
    if not np.allclose(M @ part, np.eye(M.shape[0]), atol=1e-8):
        return None
    T = np.zeros((n, m + p))
    columns = np.r_[np.arange(m)[: m * b_moves], m + np.arange(p)[: p * d_moves]]
    T[:, columns] = part
    return T


def plan_projection(
    A,
    b=None,
    C=None,
    d=None,
    box=None,
    *,
    center=None,
    rho: float = 1.0,
    alpha: float = 1.6,
    regularization: float = 1e-10,
    iterations: int = 30,
    polish: int = 8,
    gradient_iterations: int | None = None,
) -> ProjectionPlan:
    """Builds the plan for projecting onto ``{A x <= b, C x = d, lower <= x <= upper}``.

    Args:
        A: (m, n) inequality rows (m may be 0).
        b: (m,) right-hand side, or None when every sample brings its own
            (then the rows must allow a translation, see ``ProjectionPlan.shift``).
            A fixed ``b`` can still be overridden per sample in :func:`project`.
        C, d: (p, n), (p,) equality rows and right-hand side; ``d=None`` with
            ``C`` given means ``d`` comes per sample.
        box: optional ``(lower, upper)``, scalars or (n,) arrays, infinite allowed.
        center: (n,) a strictly feasible point for the fixed ``b``, ``d``;
            when omitted: the minimum-norm point of ``C x = d`` (moved towards
            the box's middle) if every row keeps a clear margin there, else
            two small LPs (the largest inscribed distance, then the smallest
            1-norm keeping half of it). The ray step pulls unconverged
            samples towards it; a centre near typical outputs perturbs less.
        rho, alpha: ADMM penalty (rows are normalised, so 1 is a natural
            scale) and over-relaxation.
        regularization: ridge added to the active-set systems.
        iterations, polish: default ADMM steps and active-set steps.
        gradient_iterations: default of :func:`project`'s argument.

    Raises:
        ConstraintShapeError: shapes disagree.
        InfeasibleError / DegenerateSetError: no (strictly) feasible point.
        LinconError: a moving right-hand side that no translation follows.
    """
    A = _as_matrix(A, None, "A")
    n = A.shape[1]
    m = A.shape[0]
    C = _as_matrix(np.zeros((0, n)) if C is None else C, n, "C")
    p = C.shape[0]
    if d is not None and p == 0:
        raise ConstraintShapeError("d given without C.")
    b_fixed, d_fixed = b is not None or m == 0, d is not None or p == 0
    b = np.zeros(m) if m == 0 else (None if b is None else _as_vector(b, m, "b"))
    d = np.zeros(p) if p == 0 else (None if d is None else _as_vector(d, p, "d"))
    if box is None:
        lower, upper = np.full(n, -np.inf), np.full(n, np.inf)
    else:
        lower, upper = (np.broadcast_to(np.asarray(v, dtype=np.float64), (n,)).copy() for v in box)
        if np.any(np.isnan(lower)) or np.any(np.isnan(upper)) or np.any(lower >= upper):
            raise LinconError("box must satisfy lower < upper for every coordinate (no NaN).")
    bounded = np.flatnonzero(np.isfinite(lower) | np.isfinite(upper))

    # equalities: x = pinv(C) d + N z with N orthonormal, so ||x - y|| = ||z - N^T y|| + const
    if p:
        null_basis, c_pinv = _row_space(C)
    else:
        null_basis, c_pinv = None, np.zeros((n, 0))
    N = np.eye(n) if null_basis is None else null_basis

    # reduced rows; a row constant on the affine set (a.N = 0) needs no solver, only the final check
    AN = A @ N
    an_norm = np.linalg.norm(AN, axis=1)
    kept = np.flatnonzero(an_norm > 1e-10 * np.maximum(np.linalg.norm(A, axis=1), 1e-300))
    K_raw = np.vstack([AN[kept], N[bounded]])
    row_norm = np.linalg.norm(K_raw, axis=1)
    if np.any(row_norm == 0):  # a bounded coordinate fixed by the equalities: the box must hold there
        raise DegenerateSetError("a bounded coordinate is fixed by the equalities; drop its bound.")
    K = K_raw / row_norm[:, None] if K_raw.size else K_raw
    r = N.shape[1]
    gram = K @ K.T
    admm_inverse = np.linalg.inv(np.eye(r) + rho * K.T @ K)

    # the broadest translation that exists: it lets a fixed b or d be overridden per sample too
    shift, shift_b, shift_d = None, False, False
    for moves in ((True, True), (True, False), (False, True)):
        if (moves[0] and not m) or (moves[1] and not p) or (not moves[0] and not b_fixed):
            continue
        if not moves[1] and not d_fixed:
            continue
        shift = _translation(A, C, bounded, *moves, n)
        if shift is not None:
            shift_b, shift_d = moves
            break
    if not (b_fixed and d_fixed) and shift is None:
        moving = " and ".join(name for name, fixed in (("b", b_fixed), ("d", d_fixed)) if not fixed)
        raise LinconError(
            f"{moving} given per sample, but the rows do not allow moving a centre with it (the moving rows must "
            "be independent of each other and of the fixed rows and bounds). Give b and d here, or pass "
            "center= per sample to project()."
        )

    tol = 1e-9
    if center is not None:
        c0 = _as_vector(center, n, "center")
        if not b_fixed:
            b = A @ c0 + np.linalg.norm(A, axis=1)
        if not d_fixed:
            d = C @ c0
    elif b_fixed and d_fixed:
        c0 = _interior_point(A, b, C, d, lower, upper, tol)
    else:
        # a point strictly inside the fixed rows; moving rows get slack |a| (distance 1) there
        fixed_rows = A if b_fixed else np.zeros((0, n))
        c0 = _interior_point(fixed_rows, b if b_fixed else np.zeros(0), C, d if d_fixed else None, lower, upper, tol)
        if not b_fixed:
            b = A @ c0 + np.linalg.norm(A, axis=1)
        if not d_fixed:
            d = C @ c0
    slack = b - A @ c0
    inside_box = np.all((c0 > lower) & (c0 < upper))
    if np.any(slack <= 0) or not inside_box or (p and np.max(np.abs(C @ c0 - d)) > 1e-8 * (1 + np.abs(d).max())):
        raise DegenerateSetError("center must satisfy C c = d and every other row strictly.")
    return ProjectionPlan(
        A=A,
        b0=b,
        C=C,
        d0=d,
        lower=lower,
        upper=upper,
        bounded=bounded,
        null_basis=null_basis,
        c_pinv=c_pinv,
        kept=kept,
        K=K,
        row_norm=row_norm,
        gram=gram,
        admm_inverse=admm_inverse,
        admm_rows=K @ admm_inverse @ K.T,
        center0=c0,
        shift=shift,
        rho=float(rho),
        alpha=float(alpha),
        regularization=float(regularization),
        iterations=int(iterations),
        polish=int(polish),
        b_fixed=b_fixed,
        d_fixed=d_fixed,
        shift_b=shift_b,
        shift_d=shift_d,
        gradient_iterations=None if gradient_iterations is None else int(gradient_iterations),
    )


# ---------------------------------------------------------------------------------------------
# kernel (keras.ops only)
# ---------------------------------------------------------------------------------------------


def _targets(plan: ProjectionPlan, b, d, const, batch_zeros):
    """Reduced bounds ``l <= K z <= u`` as (B, q) tensors, and the particular solution.

    ``u = (b - A x_p) / |row|`` for inequality rows, ``(upper - x_p) / |row|`` and
    ``(lower - x_p) / |row|`` for bounded coordinates; a missing side holds -+_BIG.
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
    u_box = ops.where(const(np.isfinite(hi)), u_box, _BIG)
    l_box = ops.where(const(np.isfinite(lo)), l_box, -_BIG)
    u_ineq = u_ineq / const(norm_ineq)
    u = ops.concatenate([u_ineq + batch_zeros, u_box + batch_zeros], axis=-1)
    l = ops.concatenate([ops.zeros_like(u_ineq + batch_zeros) - _BIG, l_box + batch_zeros], axis=-1)
    return l, u, x_p


def _active_matrix(D, gram, eps, q: int):
    """``D H D + eps D + (I - D)`` per sample: the active rows' Gram matrix, identity elsewhere.

    (B, q) mask -> (B, q, q). SPD for ``eps > 0``; the ridge keeps dependent active rows solvable.
    """
    eye = ops.eye(q, dtype=D.dtype)
    return D[:, :, None] * gram[None] * D[:, None, :] + eye[None] * (eps * D + (1.0 - D))[:, :, None]


def _solve(M, rhs):
    """(B, q, q), (B, q) -> (B, q)."""
    return ops.solve(M, rhs[..., None])[..., 0]


def _mul_t(v, M):
    """``v M^T`` for a batch of rows v."""
    return matmul(v, ops.transpose(M))


def project(
    y,
    plan: ProjectionPlan,
    b=None,
    d=None,
    *,
    center=None,
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
        b: (B, m) per-sample right-hand sides, or None for the plan's.
        d: (B, p) per-sample equality right-hand sides, or None for the plan's.
        center: (B, n) or (n,) strictly feasible points, or None: the plan's
            centre, moved with ``b`` and ``d`` by ``plan.shift``.
        iterations: ADMM steps (default ``plan.iterations``).
        polish: active-set steps (default ``plan.polish``).
        gradient_iterations: with ``polish=0`` only: compute the implicit
            gradient by this many ADMM steps on the tangent problem instead of
            one batched linear solve (matrix products only: XLA on the CPU
            lowers batched solves to slow loops). Approximate; the value is
            unaffected. Default ``plan.gradient_iterations`` (None: solve).
        differentiable: False skips the gradient terms (inference: with
            ``polish=0`` no solve at all); the output then carries no gradient.
        return_converged: also return a (B,) bool tensor: True where an
            active-set step met the KKT conditions (the output is then the
            projection to rounding); False where the output is the ADMM
            iterate made feasible.

    Returns:
        (B, n) feasible points (and the flags when asked). Gradients flow to
        ``y``, ``b`` and ``d`` through the implicit function theorem.
    """
    y = ops.convert_to_tensor(y)
    dtype = y.dtype
    is64 = "float64" in str(dtype)
    const = lambda a: ops.convert_to_tensor(np.asarray(a, dtype=np.float64), dtype)  # noqa: E731
    iterations = plan.iterations if iterations is None else int(iterations)
    polish = plan.polish if polish is None else int(polish)
    if gradient_iterations is None:
        gradient_iterations = plan.gradient_iterations
    m, p = plan.A.shape[0], plan.C.shape[0]
    q = plan.K.shape[0]
    if (b is None and not plan.b_fixed) or (d is None and not plan.d_fixed):
        raise LinconError("this plan has no fixed b (or d): pass it per sample to project().")
    b = None if b is None or m == 0 else ops.cast(b, dtype)
    d = None if d is None or p == 0 else ops.cast(d, dtype)
    moves_b, moves_d = b is not None, d is not None
    if center is None and ((moves_b and not plan.shift_b) or (moves_d and not plan.shift_d)):
        raise LinconError("per-sample b or d needs center= here: the rows do not allow moving the plan's centre.")
    tol = 1e-9 if is64 else 1e-4  # KKT acceptance, relative to the sample's scale
    eps = plan.regularization if is64 else max(plan.regularization, 1e-6)

    N = None if plan.null_basis is None else const(plan.null_basis)
    K, gram = const(plan.K), const(plan.gram)
    batch_zeros = ops.zeros_like(y[:, :1])
    l, u, x_p = _targets(plan, b, d, const, batch_zeros)
    l_s, u_s = ops.stop_gradient(l), ops.stop_gradient(u)
    y_s = ops.stop_gradient(y)
    w = y_s if N is None else matmul(y_s, N)  # N^T (y - x_p) = N^T y: x_p lies in the row space of C

    g = y - y_s if N is None else matmul(y - y_s, N)  # zero in value: carries the gradient
    if q:
        z_sol, lam_sol, converged, scale = _solve_reduced(w, K, gram, l_s, u_s, plan, iterations, polish, tol, eps)
        # One system on the strongly active rows S (multiplier away from 0) serves two purposes:
        # column 0 refines the solution (removes the ridge's O(eps) bias, so a converged sample's
        # rows hold to rounding and the ray step below barely moves it); column 1 is the implicit
        # gradient: z' = g - K_S^T (K_S K_S^T + eps I)^{-1} (K_S g - t_S'), a projection of g onto
        # null(K_S) plus the motion of the active face with its right-hand sides t_S(b, d).
        strong_up, strong_down = lam_sol > tol * scale, lam_sol < -tol * scale
        D = ops.cast(ops.logical_or(strong_up, strong_down), dtype)
        t_tangent = None
        if moves_b or moves_d:
            t = ops.where(strong_up, u, ops.where(strong_down, l, 0.0))
            t_tangent = t - ops.stop_gradient(t)  # zero in value
        if polish == 0 and (gradient_iterations is not None or not differentiable):
            # GEMM-only path (no per-sample factorisation): the solution as ADMM left it, and the
            # gradient from the same ADMM iteration run on the tangent problem
            # min ||z' - g||^2 s.t. K_S z' = t_S' (rows outside S free), differentiated through.
            z_lin = _tangent_admm(g, t_tangent, D, K, plan, gradient_iterations) if differentiable else None
        else:
            M = ops.stop_gradient(_active_matrix(D, gram, eps, q))
            t_s = ops.where(strong_up, u_s, ops.where(strong_down, l_s, 0.0))
            lam_d = D * lam_sol
            residual = D * (_mul_t(w, K) - t_s) - D * matmul(lam_d, gram)
            rhs = _mul_t(g, K)
            if t_tangent is not None:
                rhs = rhs - t_tangent
            columns = [residual, D * rhs] if differentiable else [residual]
            both = ops.solve(M, ops.stack(columns, axis=-1))
            z_refined = w - matmul(lam_d + both[..., 0], K)
            z_sol = ops.where(converged[:, None], z_refined, z_sol)
            z_lin = g - matmul(both[..., 1], K) if differentiable else None
    else:  # only equalities: the affine projection is exact
        z_sol, z_lin = w, g
        converged = ops.ones_like(y[:, 0]) > 0

    # --- exact feasibility: equalities by construction, the rest by ray scaling towards the centre
    x_k = z_sol if N is None else _mul_t(z_sol, N)
    if x_p is not None:
        x_k = x_k + ops.stop_gradient(x_p)
    if center is not None:
        c = ops.cast(center, dtype)
    else:
        c = const(plan.center0)
        if moves_b:
            c = c + matmul(ops.stop_gradient(b) - const(plan.b0), const(plan.shift[:, :m].T))
        if moves_d:
            c = c + matmul(ops.stop_gradient(d) - const(plan.d0), const(plan.shift[:, m:].T))
    x_ray = _ray_scale(x_k, c, plan, None if b is None else ops.stop_gradient(b), const, dtype)

    # --- the value is x_ray; the derivative is N z' (+ the particular solution's motion with d)
    if not differentiable:
        out = ops.stop_gradient(x_ray)
        return (out, converged) if return_converged else out
    x_lin = z_lin if N is None else _mul_t(z_lin, N)
    if moves_d:
        x_lin = x_lin + (x_p - ops.stop_gradient(x_p))
    out = ops.stop_gradient(x_ray) + x_lin
    return (out, converged) if return_converged else out


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


def _tangent_admm(g, t_tangent, D, K, plan: ProjectionPlan, count: int):
    """``count`` ADMM steps on ``min ||z' - g||^2 s.t. K_S z' = t_S'`` from zero: linear in (g, t').

    ``D`` (B, q) marks S; ``t_tangent`` (B, q) or None. Gradients flow through the loop.
    """
    rho, alpha = plan.rho, plan.alpha
    const = lambda a: ops.convert_to_tensor(np.asarray(a, dtype=np.float64), g.dtype)  # noqa: E731
    inv, rows = const(plan.admm_inverse), const(plan.admm_rows)
    target = 0.0 if t_tangent is None else D * t_tangent
    g_rows = matmul(matmul(g, inv), ops.transpose(K))  # K (I + rho K^T K)^{-1} g
    zeros = ops.zeros_like(D) * ops.sum(g, axis=-1, keepdims=True)  # zero, shaped (B, q)

    def step(_, state):  # as in _solve_reduced, with the clip linearised at the solution
        s, lam = state
        s_relaxed = alpha * (g_rows + matmul(rho * s - lam, rows)) + (1.0 - alpha) * s
        s_new = target + (1.0 - D) * (s_relaxed + lam / rho)
        return s_new, lam + rho * (s_relaxed - s_new)

    s, lam = _unrolled_loop(count, step, (zeros, zeros), _differentiable_loop_from_zero)
    return matmul(g + matmul(rho * s - lam, K), inv)


def _solve_reduced(w, K, gram, l, u, plan: ProjectionPlan, iterations: int, polish: int, tol: float, eps: float):
    """``argmin ||z - w||^2 s.t. l <= K z <= u`` for (B, r) ``w``: ADMM steps, then active-set steps.

    Returns the solution (B, r), its multipliers (B, q) (``z = w - lam K``;
    positive at an upper bound, negative at a lower one), the (B,) flags of
    samples whose active-set step met the KKT conditions, and the (B, 1)
    scale the tolerances are relative to.
    """
    q = plan.K.shape[0]
    Kw = _mul_t(w, K)
    rho, alpha = plan.rho, plan.alpha
    const = lambda a: ops.convert_to_tensor(np.asarray(a, dtype=np.float64), w.dtype)  # noqa: E731
    inv, rows = const(plan.admm_inverse), const(plan.admm_rows)
    w_rows = matmul(matmul(w, inv), ops.transpose(K))

    # OSQP's iteration with P = I and no proximal term, written in (s, lam) only:
    # z_t = (I + rho K^T K)^{-1} (w + K^T (rho s - lam)) is needed only through K z_t, one (q, q)
    # product per step; rows are unit norm, so one rho fits all
    def admm_step(_, state):
        s, lam = state
        s_relaxed = alpha * (w_rows + matmul(rho * s - lam, rows)) + (1.0 - alpha) * s
        s_new = minimum(maximum(s_relaxed + lam / rho, l), u)
        return s_new, lam + rho * (s_relaxed - s_new)

    s, lam0 = minimum(maximum(Kw, l), u), ops.zeros_like(Kw)
    if iterations:
        s, lam0 = _unrolled_loop(iterations, admm_step, (s, lam0), ops.fori_loop)
        z0 = matmul(w + matmul(rho * s - lam0, K), inv)
    else:
        z0 = w

    finite_u = ops.where(ops.abs(u) < _BIG, ops.abs(u), 0.0)
    finite_l = ops.where(ops.abs(l) < _BIG, ops.abs(l), 0.0)
    scale = (
        1.0
        + ops.max(ops.abs(Kw), axis=-1, keepdims=True, initial=0.0)  # initial: empty batches
        + ops.max(maximum(finite_u, finite_l), axis=-1, keepdims=True, initial=0.0)
    )

    def polish_step(_, state):
        z, lam, best_z, best_lam, done = state
        Kz = _mul_t(z, K)
        # semismooth Newton on the complementarity lam = max(0, lam + (Kz - u)) (and its lower twin)
        up, down = (lam + (Kz - u)) > 0, (lam + (Kz - l)) < 0
        D = ops.cast(ops.logical_or(up, down), w.dtype)
        t = ops.where(up, u, ops.where(down, l, 0.0))
        lam = _solve(_active_matrix(D, gram, eps, q), D * (Kw - t))
        z = w - matmul(lam, K)
        Kz = _mul_t(z, K)
        feasible = ops.logical_and(Kz <= u + tol * scale, Kz >= l - tol * scale)
        signs = ops.logical_and(
            ops.logical_or(ops.logical_not(up), lam >= -tol * scale),
            ops.logical_or(ops.logical_not(down), lam <= tol * scale),
        )
        # a NaN from a singular step fails these comparisons and is never kept
        ok = ops.all(ops.logical_and(feasible, signs), axis=-1)
        take = ops.logical_and(ok, ops.logical_not(done))[:, None]
        return z, lam, ops.where(take, z, best_z), ops.where(take, lam, best_lam), ops.logical_or(done, ok)

    state = (z0, lam0, z0, lam0, ops.zeros_like(Kw[:, 0]) > 1.0)
    if polish:
        state = ops.fori_loop(0, polish, polish_step, state)
    _, _, z_sol, lam_sol, converged = state
    return z_sol, lam_sol, converged, scale


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
