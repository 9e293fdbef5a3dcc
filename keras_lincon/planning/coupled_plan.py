"""The plan of the exact Euclidean projection onto a block of coupled rows (numpy only, once).

Per sample the layer solves ``argmin_x ||x - y||^2  s.t.  A x <= b, C x = d,
lower <= x <= upper`` (:mod:`keras_lincon.layers.coupled_kernel`). This module
prepares it: equalities eliminated through a particular solution and an
orthonormal null-space basis, rows normalised, the ADMM matrix factored, a
strictly feasible centre, and (when it exists) the translation that moves
the centre with per-sample ``b`` and ``d``. The solver's choice and its
gradient are described in :mod:`keras_lincon.layers.coupled_kernel`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from keras_lincon import geometry
from keras_lincon.errors import ConstraintShapeError, DegenerateSetError, InfeasibleError, LinconError


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
        A: (m, n) inequality rows (m may be 0); b: (m,), or None when every
            sample brings its own (the rows must then allow a translation,
            ``ProjectionPlan.shift``); a fixed ``b`` may still be overridden per sample.
        C, d: (p, n), (p,) equality rows (``d=None``: per sample); box: ``(lower, upper)`` or None.
        center: (n,) a strictly feasible point for the fixed ``b, d`` (default: the minimum-norm
            point of ``C x = d`` if every row keeps a margin there, else two small LPs).
        rho, alpha, regularization: ADMM penalty, over-relaxation, the active-set systems' ridge;
            iterations, polish, gradient_iterations: defaults of ``layers.coupled_kernel.project``.

    Raises:
        ConstraintShapeError, InfeasibleError, DegenerateSetError, LinconError: (see the message).
    """
    A, b, C, d, lower, upper = _validated(A, b, C, d, box)
    n, p = A.shape[1], C.shape[0]
    b_fixed, d_fixed = b is not None, d is not None
    bounded = np.flatnonzero(np.isfinite(lower) | np.isfinite(upper))
    # equalities: x = pinv(C) d + N z with N orthonormal, so ||x - y|| = ||z - N^T y|| + const
    null_basis, c_pinv = _row_space(C) if p else (None, np.zeros((n, 0)))
    N = np.eye(n) if null_basis is None else null_basis
    reduced = _reduced_problem(A, N, bounded, rho)
    moves = _broadest_shift(A, C, bounded, b_fixed, d_fixed)
    c0, b, d = _centre(A, b, C, d, lower, upper, center)
    gradient_iterations = None if gradient_iterations is None else int(gradient_iterations)
    steps = dict(iterations=int(iterations), polish=int(polish), gradient_iterations=gradient_iterations)
    settings: dict[str, Any] = dict(rho=float(rho), alpha=float(alpha), regularization=float(regularization), **steps)
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
        center0=c0,
        b_fixed=b_fixed,
        d_fixed=d_fixed,
        **moves,
        **reduced,
        **settings,
    )


def _validated(A, b, C, d, box) -> tuple:
    """``(A, b, C, d, lower, upper)`` as float64 arrays; ``b``/``d`` None where they come per sample
    (zero-length arrays when there are no such rows)."""
    A = _as_matrix(A, None, "A")
    (m, n) = A.shape
    C = _as_matrix(np.zeros((0, n)) if C is None else C, n, "C")
    p = C.shape[0]
    if d is not None and p == 0:
        raise ConstraintShapeError("d given without C.")
    b = np.zeros(m) if m == 0 else (None if b is None else _as_vector(b, m, "b"))
    d = np.zeros(p) if p == 0 else (None if d is None else _as_vector(d, p, "d"))
    if box is None:
        return A, b, C, d, np.full(n, -np.inf), np.full(n, np.inf)
    lower, upper = (np.broadcast_to(np.asarray(v, dtype=np.float64), (n,)).copy() for v in box)
    if np.any(np.isnan(lower)) or np.any(np.isnan(upper)) or np.any(lower >= upper):
        raise LinconError("box must satisfy lower < upper for every coordinate (no NaN).")
    return A, b, C, d, lower, upper


def _reduced_problem(A: np.ndarray, N: np.ndarray, bounded: np.ndarray, rho: float) -> dict:
    """The rows in reduced coordinates ``z`` (``x = x_p + N z``), normalised, and the ADMM matrices:
    the :class:`ProjectionPlan` fields ``kept, K, row_norm, gram, admm_inverse, admm_rows``.

    A row constant on the affine set (``a N = 0``) needs no solver, only the final check, so it is dropped.
    """
    AN = A @ N
    an_norm = np.linalg.norm(AN, axis=1)
    kept = np.flatnonzero(an_norm > 1e-10 * np.maximum(np.linalg.norm(A, axis=1), 1e-300))
    K_raw = np.vstack([AN[kept], N[bounded]])
    row_norm = np.linalg.norm(K_raw, axis=1)
    if np.any(row_norm == 0):  # a bounded coordinate fixed by the equalities: the box must hold there
        raise DegenerateSetError("a bounded coordinate is fixed by the equalities; drop its bound.")
    K = K_raw / row_norm[:, None] if K_raw.size else K_raw
    admm_inverse = np.linalg.inv(np.eye(N.shape[1]) + rho * K.T @ K)
    return dict(
        kept=kept, K=K, row_norm=row_norm, gram=K @ K.T, admm_inverse=admm_inverse, admm_rows=K @ admm_inverse @ K.T
    )


def _broadest_shift(A, C, bounded, b_fixed: bool, d_fixed: bool) -> dict:
    """The :class:`ProjectionPlan` fields ``shift, shift_b, shift_d``: the broadest translation that exists
    (it lets a fixed ``b`` or ``d`` be overridden per sample too), or none.

    Raises:
        LinconError: ``b`` or ``d`` comes per sample and no translation follows it.
    """
    (m, n), p = A.shape, C.shape[0]
    for moves_b, moves_d in ((True, True), (True, False), (False, True)):
        if (moves_b and not m) or (moves_d and not p) or (not moves_b and not b_fixed) or (not moves_d and not d_fixed):
            continue
        shift = _translation(A, C, bounded, moves_b, moves_d, n)
        if shift is not None:
            return dict(shift=shift, shift_b=moves_b, shift_d=moves_d)
    if not (b_fixed and d_fixed):
        moving = " and ".join(name for name, fixed in (("b", b_fixed), ("d", d_fixed)) if not fixed)
        raise LinconError(
            f"{moving} given per sample, but the rows do not allow moving a centre with it (the moving rows must "
            "be independent of each other and of the fixed rows and bounds). Give b and d here, or pass "
            "center= per sample to project()."
        )
    return dict(shift=None, shift_b=False, shift_d=False)


def _centre(A, b, C, d, lower, upper, center) -> tuple:
    """``(c0, b0, d0)``: a strictly feasible centre, and the stored right-hand sides it is feasible for
    (rows whose ``b`` comes per sample get slack ``|a|``, distance 1, there).

    Raises:
        DegenerateSetError: the centre is not strictly feasible.
    """
    n, tol = A.shape[1], 1e-9
    if center is not None:
        c0 = _as_vector(center, n, "center")
    elif b is not None and d is not None:
        c0 = _interior_point(A, b, C, d, lower, upper, tol)
    else:  # a point strictly inside the fixed rows
        fixed_rows = A if b is not None else np.zeros((0, n))
        c0 = _interior_point(fixed_rows, b if b is not None else np.zeros(0), C, d, lower, upper, tol)
    b = A @ c0 + np.linalg.norm(A, axis=1) if b is None else b
    d = C @ c0 if d is None else d
    slack = b - A @ c0
    # the box as everywhere; the rows need strict slack here, not centre_defects' relative tolerance
    inside_box = not geometry.outside_box(c0, lower, upper).size
    if (
        np.any(slack <= 0)
        or not inside_box
        or (C.shape[0] and np.max(np.abs(C @ c0 - d)) > 1e-8 * (1 + np.abs(d).max()))
    ):
        raise DegenerateSetError("center must satisfy C c = d and every other row strictly.")
    return c0, b, d
