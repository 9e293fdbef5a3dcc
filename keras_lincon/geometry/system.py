"""Constraint systems, boxes and the one residual formula, in numpy.

This module knows nothing of Keras. A feasible set is

    P = {x in R^n : A x <= b,  C x = d}   (optionally intersected with a box)

and every check in the package measures a point against it with
:func:`violations`, the single place where residuals are computed.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import scipy.linalg
import scipy.optimize
import scipy.sparse
import scipy.sparse.csgraph

from keras_lincon.errors import ConstraintShapeError, InfeasibleError, NonFiniteError

#: Relative tolerance of checks on float64 generators and centres:
#: ``a_i.v - b_i <= CHECK_TOLERANCE * (|b_i| + ||a_i|| ||v||)``.
CHECK_TOLERANCE = 1e-9


@dataclasses.dataclass(frozen=True, eq=False)
class ConstraintSystem:
    """Validated float64 constraint arrays: ``A x <= b`` and ``C x = d``.

    Shapes: ``A`` (m, n), ``b`` (m,), ``C`` (p, n), ``d`` (p,); ``m`` or ``p``
    may be zero.
    """

    A: np.ndarray
    b: np.ndarray
    C: np.ndarray
    d: np.ndarray

    @property
    def dim(self) -> int:
        return self.A.shape[1]

    @property
    def is_homogeneous(self) -> bool:
        return not np.any(self.b) and not np.any(self.d)


def _as_matrix(value, name: str, n: int | None) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ConstraintShapeError(
            f"{name} must be a numeric 2-D array of shape (rows, n); could not convert it to float: {exc}"
        ) from None
    if arr.ndim == 1 and n is not None and arr.size == n:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise ConstraintShapeError(
            f"{name} must be a 2-D array of shape (rows, n); got shape {arr.shape}. Pass one row per constraint."
        )
    if n is not None and arr.shape[1] != n:
        raise ConstraintShapeError(
            f"{name} has {arr.shape[1]} columns but A has {n}: every constraint "
            "matrix needs one column per output variable."
        )
    if not np.all(np.isfinite(arr)):
        raise NonFiniteError(
            f"{name} contains NaN or infinity at {int(np.sum(~np.isfinite(arr)))} "
            "entries; constraint coefficients must be finite numbers."
        )
    return arr


def _as_vector(value, name: str, rows: int, matrix_name: str) -> np.ndarray:
    if value is None:
        return np.zeros(rows)
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ConstraintShapeError(f"{name} must be numeric; could not convert it to float: {exc}") from None
    if arr.ndim == 0:
        arr = np.full(rows, float(arr))
    arr = arr.reshape(-1) if arr.ndim == 2 and 1 in arr.shape else arr
    if arr.shape != (rows,):
        raise ConstraintShapeError(
            f"{name} must have shape ({rows},), one entry per row of {matrix_name}; got shape {arr.shape}."
        )
    if not np.all(np.isfinite(arr)):
        raise NonFiniteError(
            f"{name} contains NaN or infinity; right-hand sides must be finite "
            "(drop a constraint instead of giving it an infinite bound)."
        )
    return arr


def as_constraint_system(A, b=None, C=None, d=None) -> ConstraintSystem:
    """Validates and converts constraints to a :class:`ConstraintSystem`.

    Args:
        A: (m, n) inequality matrix; a 1-D array is one row.
        b: (m,) right-hand side, scalar, or None for zeros (a cone).
        C: (p, n) equality matrix or None.
        d: (p,) equality right-hand side, scalar, or None for zeros.

    Raises:
        ConstraintShapeError: shapes disagree. NonFiniteError: NaN or inf.
    """
    if A is None:
        raise ConstraintShapeError("A is required: give the (m, n) matrix of A x <= b.")
    A_ = _as_matrix(A, "A", None)
    n = A_.shape[1]
    if n == 0:
        raise ConstraintShapeError("A has zero columns: the output dimension n must be >= 1.")
    b_ = _as_vector(b, "b", A_.shape[0], "A")
    if C is None:
        if d is not None and np.size(d):
            raise ConstraintShapeError("d was given without C: pass C as well for C x = d.")
        C_ = np.zeros((0, n))
    else:
        C_ = _as_matrix(C, "C", n)
    d_ = _as_vector(d, "d", C_.shape[0], "C")
    return ConstraintSystem(A_, b_, C_, d_)


def normalized_rows(system: ConstraintSystem) -> ConstraintSystem:
    """The same set with every row of ``A`` and ``C`` scaled to unit norm.

    Ranks, null spaces and closed forms are computed on these rows, so a row
    ``1e-12 x_2 <= 1`` counts as much as ``x_1 <= 1e12`` (scaling a row does
    not change the set). Zero rows are left as they are.
    """

    def scale(M, v):
        norms = np.linalg.norm(M, axis=1)
        norms = np.where(norms > 0, norms, 1.0)
        return M / norms[:, None], v / norms

    A, b = scale(system.A, system.b)
    C, d = scale(system.C, system.d)
    return ConstraintSystem(A, b, C, d)


def as_box(box, n: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Validates ``box = (lower, upper)`` (scalars, (n,) arrays, None or inf for a
    missing side) and returns two (n,) float64 arrays, or None for no box."""
    if box is None:
        return None
    try:
        lower, upper = box
    except (TypeError, ValueError):
        raise ConstraintShapeError(
            f"box must be a pair (lower, upper) of scalars or length-{n} arrays; got {box!r}."
        ) from None
    sides = []
    for name, value, missing in (("lower", lower, -np.inf), ("upper", upper, np.inf)):
        try:
            arr = np.asarray(missing if value is None else value, dtype=np.float64)
        except (TypeError, ValueError):
            raise ConstraintShapeError(f"box {name} bound must be numeric; got {value!r}.") from None
        if arr.ndim > 1 or (arr.ndim == 1 and arr.shape[0] != n):
            raise ConstraintShapeError(
                f"box {name} bound must be a scalar or have length {n} (one entry per output); got shape {arr.shape}."
            )
        sides.append(np.broadcast_to(arr, (n,)).copy())
    lo, hi = sides
    if np.any(np.isnan(lo)) or np.any(np.isnan(hi)):
        raise ConstraintShapeError("box bounds contain NaN; use -inf/inf for a missing side.")
    if np.any(lo == np.inf) or np.any(hi == -np.inf):
        raise ConstraintShapeError("box lower bounds cannot be +inf nor upper bounds -inf.")
    if np.any(lo >= hi):
        raise ConstraintShapeError(
            f"box lower bounds must be strictly below upper bounds; coordinate(s) "
            f"{np.flatnonzero(lo >= hi)[:8].tolist()} are not."
        )
    return lo, hi


def with_box(A, b=None, lower=None, upper=None) -> tuple[np.ndarray, np.ndarray]:
    """``A x <= b`` plus the rows ``x_i <= upper_i`` and ``-x_i <= -lower_i``.

    Bounds are scalars or (n,) arrays; infinite or None sides add no row.
    Returns (A', b') float64.
    """
    system = as_constraint_system(A, b)
    n = system.dim
    rows, rhs = [system.A], [system.b]
    eye = np.eye(n)
    if upper is not None:
        hi = np.broadcast_to(np.asarray(upper, dtype=np.float64), (n,))
        rows.append(eye[np.isfinite(hi)])
        rhs.append(hi[np.isfinite(hi)])
    if lower is not None:
        lo = np.broadcast_to(np.asarray(lower, dtype=np.float64), (n,))
        rows.append(-eye[np.isfinite(lo)])
        rhs.append(-lo[np.isfinite(lo)])
    return np.vstack(rows), np.concatenate(rhs)


def violations(x, A, b=None, C=None, d=None, *, relative: bool = False) -> np.ndarray:
    """Worst constraint violation of each point.

    Args:
        x: (..., n) points.
        A, b, C, d: the constraints, as in :func:`keras_lincon.h_to_v`; ``b``
            may also be (num_points, m) and ``d`` (num_points, p): one
            right-hand side per point.
        relative: divide each residual by ``|b_i| + ||a_i|| ||x||`` (the scale
            at which floating point can resolve it).

    Returns:
        (num_points,) float64: ``max(max_i a_i.x - b_i, max_j |c_j.x - d_j|)``
        per point (``-inf`` for a point when there are no constraints);
        ``<= 0`` means feasible. A point with a NaN or infinite coordinate
        gets ``+inf``: it satisfies nothing.
    """
    b_per_point, d_per_point = (v is not None and np.ndim(v) == 2 for v in (b, d))
    system = as_constraint_system(A, _first_row(b) if b_per_point else b, C, _first_row(d) if d_per_point else d)
    rhs = np.asarray(b, dtype=np.float64) if b_per_point else system.b
    eq_rhs = np.asarray(d, dtype=np.float64) if d_per_point else system.d
    points = np.asarray(x, dtype=np.float64)
    if points.shape[-1:] != (system.dim,):
        raise ConstraintShapeError(
            f"x must have last dimension {system.dim} (the columns of A); got shape {points.shape}."
        )
    points = points.reshape(-1, system.dim)
    finite = np.all(np.isfinite(points), axis=1)
    safe = np.where(finite[:, None], points, 0.0)
    ineq = safe @ system.A.T - rhs
    eq = np.abs(safe @ system.C.T - eq_rhs)
    if relative:
        norms = np.linalg.norm(safe, axis=1, keepdims=True)
        ineq = ineq / np.maximum(np.abs(rhs) + np.linalg.norm(system.A, axis=1) * norms, 1e-30)
        eq = eq / np.maximum(np.abs(eq_rhs) + np.linalg.norm(system.C, axis=1) * norms, 1e-30)
    both = np.hstack([ineq, eq])
    worst = both.max(axis=1) if both.shape[1] else np.full(points.shape[0], -math.inf)
    return np.where(finite, worst, math.inf)


def _first_row(per_point):
    """Row 0 of a (num_points, k) right-hand side, for the shape checks (None for no points)."""
    return np.asarray(per_point)[0] if len(per_point) else None


def max_violation(x, A, b=None, C=None, d=None, *, relative: bool = False) -> float:
    """Largest constraint violation over a batch of points.

    Same arguments as :func:`violations`. Returns a float; ``<= 0`` means
    every point is feasible (``-inf`` for no points or no constraints; ``inf``
    when a point holds NaN or infinity).
    """
    per_point = violations(x, A, b, C, d, relative=relative)
    return float(per_point.max()) if per_point.size else -math.inf


def interior_point_in_box(A, b=None, C=None, d=None, *, lower, upper) -> np.ndarray:
    """A point of ``P`` as deep inside the box ``[lower, upper]`` as possible.

    With no rows at all the box midpoint (or 0 / a bound -+ 1 for half-open
    sides) is used. Otherwise the LP ``max t s.t. A c <= b, C c = d,
    lower + t w <= c <= upper - t w`` (``w = upper - lower`` on finite sides)
    is solved in coordinates scaled by ``w``, so narrow boxes are as well
    conditioned as wide ones. The result is checked: strictly inside the box
    and in ``P`` to :data:`CHECK_TOLERANCE`. Returns (n,) float64.

    Raises:
        InfeasibleError: ``P`` misses the interior of the box, or the LP
            result fails the check.
    """
    system = as_constraint_system(A, b, C, d)
    n = system.dim
    lower = np.broadcast_to(np.asarray(lower, dtype=np.float64), (n,))
    upper = np.broadcast_to(np.asarray(upper, dtype=np.float64), (n,))
    fin_lo, fin_hi = np.isfinite(lower), np.isfinite(upper)
    if system.A.shape[0] == 0 and system.C.shape[0] == 0:
        center = np.where(
            fin_lo & fin_hi,
            lower / 2 + upper / 2,
            np.where(
                fin_lo,
                lower + np.maximum(1.0, np.abs(lower)),
                np.where(fin_hi, upper - np.maximum(1.0, np.abs(upper)), 0.0),
            ),
        )
    else:
        center, depth = deepest_point(system, lower, upper)
        if center is None or depth <= 1e-9:
            raise InfeasibleError(
                "the box and the constraints share no point strictly inside the box "
                "(every feasible point touches a box face or the intersection is "
                "empty). Widen the box or relax the constraints."
            )
    inside = (center > lower) & (center < upper)
    worst = max_violation(center[None], system.A, system.b, system.C, system.d, relative=True)
    if not np.all(inside) or not worst <= CHECK_TOLERANCE:
        raise InfeasibleError(
            "could not find a centre for the box rescaling: the computed point is "
            f"{'outside the box' if not np.all(inside) else 'not in the feasible set'} "
            f"(worst relative violation {worst:.3g}). The box may be too narrow for the "
            "constraints' scale; pass box_center=... (a feasible point strictly inside the box)."
        )
    return center


def deepest_point(
    system: ConstraintSystem, lower, upper, rows=None, rhs=None, *, strict_rows: bool = False
) -> tuple[np.ndarray | None, float]:
    """The LP behind every centre: a point of ``system`` deepest inside a box and extra rows.

    Solves ``max t`` s.t. ``A c <= b`` (``+ t ||a_i||`` if ``strict_rows``),
    ``C c = d``, ``r_j.c + t ||r_j|| <= s_j`` for the extra ``rows, rhs``,
    and ``lower + t w <= c <= upper - t w``, in coordinates ``c = offset + w u``
    scaled by the box width ``w`` (1 where a side is open), so narrow boxes
    are as well conditioned as wide ones; the row terms are measured in
    those coordinates too. ``t`` is capped (1/2 with a finite box side, else
    the rows' scale) so the LP is bounded.

    Args:
        system: ``(A, b, C, d)`` in ``n`` variables; lower, upper: (n,) box
            (infinite where open); rows, rhs: optional (m, n), (m,).

    Returns:
        ``(c, t)``: (n,) point and its depth as a fraction of the cap, or
        ``(None, 0.0)`` when the LP has no solution; ``t > 0`` means strictly inside.
    """
    n = system.dim
    rows = np.zeros((0, n)) if rows is None else np.asarray(rows, dtype=np.float64)
    rhs = np.zeros(0) if rhs is None else np.asarray(rhs, dtype=np.float64)
    if system.C.shape[0] and not (np.isfinite(lower).any() or np.isfinite(upper).any()):
        return _deepest_point_on_equalities(system, rows, rhs, strict_rows)
    fin_lo, fin_hi = np.isfinite(lower), np.isfinite(upper)
    both = fin_lo & fin_hi
    width = np.where(both, upper - lower, 1.0)
    offset = np.where(fin_lo, lower, np.where(fin_hi, upper, 0.0))
    A_u, R_u, C_u = system.A * width, rows * width, system.C * width
    b_u, s_u = system.b - system.A @ offset, rhs - rows @ offset
    a_norm, r_norm = np.linalg.norm(A_u, axis=1), np.linalg.norm(R_u, axis=1)
    u_lo = np.where(fin_lo, 0.0, -np.inf)
    u_hi = np.where(both, 1.0, np.where(fin_hi, 0.0, np.inf))
    if (fin_lo | fin_hi).any():
        cap = 0.5
    else:
        scales = np.concatenate([np.abs(s_u) / np.maximum(r_norm, 1e-300), np.abs(b_u) / np.maximum(a_norm, 1e-300)])
        cap = float(max(scales.max(initial=0.0), 1.0))
    eye = np.eye(n)
    lhs = [
        np.column_stack([A_u, a_norm if strict_rows else np.zeros(A_u.shape[0])]),
        np.column_stack([R_u, r_norm]),
        np.column_stack([eye[np.isfinite(u_hi)], np.ones(np.isfinite(u_hi).sum())]),
        np.column_stack([-eye[np.isfinite(u_lo)], np.ones(np.isfinite(u_lo).sum())]),
    ]
    cost = np.zeros(n + 1)
    cost[-1] = -1.0
    result = scipy.optimize.linprog(
        cost,
        A_ub=np.vstack(lhs),
        b_ub=np.concatenate([b_u, s_u, u_hi[np.isfinite(u_hi)], -u_lo[np.isfinite(u_lo)]]),
        A_eq=np.column_stack([C_u, np.zeros(C_u.shape[0])]) if C_u.size else None,
        b_eq=system.d - system.C @ offset if C_u.size else None,
        bounds=[(None, None)] * n + [(None, cap)],
        method="highs",
    )
    if result.status != 0:
        return None, 0.0
    return offset + width * result.x[:n], float(result.x[-1]) / cap


def _deepest_point_on_equalities(system: ConstraintSystem, rows, rhs, strict_rows: bool):
    """:func:`deepest_point` without a box, in the coordinates of ``C c = d``: ``c = c0 + N u``.

    The same LP (same depth terms, norms and cap), with the equalities
    eliminated: HiGHS took 96 s on DC3's 1000-variable set with 500
    equalities when they were kept.
    """
    null_basis = scipy.linalg.null_space(system.C)  # (n, r)
    c0 = np.linalg.lstsq(system.C, system.d, rcond=None)[0]
    if np.abs(system.C @ c0 - system.d).max(initial=0.0) > CHECK_TOLERANCE * (1.0 + np.abs(system.d).max()):
        return None, 0.0  # C c = d has no solution
    a_norm, r_norm = np.linalg.norm(system.A, axis=1), np.linalg.norm(rows, axis=1)
    scales = np.concatenate([np.abs(rhs) / np.maximum(r_norm, 1e-300), np.abs(system.b) / np.maximum(a_norm, 1e-300)])
    cap = float(max(scales.max(initial=0.0), 1.0))
    depth_a = a_norm if strict_rows else np.zeros(system.A.shape[0])
    cost = np.zeros(null_basis.shape[1] + 1)
    cost[-1] = -1.0
    result = scipy.optimize.linprog(
        cost,
        A_ub=np.vstack(
            [np.column_stack([system.A @ null_basis, depth_a]), np.column_stack([rows @ null_basis, r_norm])]
        ),
        b_ub=np.concatenate([system.b - system.A @ c0, rhs - rows @ c0]),
        bounds=[(None, None)] * null_basis.shape[1] + [(None, cap)],
        method="highs",
    )
    if result.status != 0:
        return None, 0.0
    return c0 + null_basis @ result.x[:-1], float(result.x[-1]) / cap


def blocks(n: int, *row_matrices: np.ndarray) -> tuple[np.ndarray, list]:
    """Connected components of the variable/row graph over all given rows.

    Args:
        n: number of variables.
        *row_matrices: (m_j, n) matrices; a variable and a row are linked when
            the coefficient is non-zero. Single-variable rows (the box) need
            not be passed: they couple nothing.

    Returns:
        ``(coord_block, row_blocks)``: (n,) int block per variable, ``-1`` for a
        variable that no given row touches; blocks are numbered 0..k-1 in order
        of their first variable. ``row_blocks[j]`` is (m_j,) int (-1 for an
        all-zero row).
    """
    mats = [np.asarray(m, dtype=np.float64).reshape(-1, n) for m in row_matrices]
    stacked = np.vstack(mats) if mats else np.zeros((0, n))
    incidence = scipy.sparse.csr_matrix(stacked != 0)
    num_rows = stacked.shape[0]
    graph = scipy.sparse.bmat([[None, incidence], [incidence.T, None]], format="csr") if num_rows else None
    coord_block = np.full(n, -1)
    row_block = np.full(num_rows, -1)
    if num_rows:
        _, labels = scipy.sparse.csgraph.connected_components(graph, directed=False)
        row_labels, var_labels = labels[:num_rows], labels[num_rows:]
        touched = np.asarray(incidence.sum(axis=0)).ravel() > 0
        mapping: dict = {}
        for j in np.flatnonzero(touched):
            coord_block[j] = mapping.setdefault(var_labels[j], len(mapping))
        nonzero_rows = np.asarray(incidence.sum(axis=1)).ravel() > 0
        for i in np.flatnonzero(nonzero_rows):
            row_block[i] = mapping[row_labels[i]]
    splits = np.cumsum([m.shape[0] for m in mats])[:-1]
    return coord_block, list(np.split(row_block, splits))
