"""Centres: the point of ``P`` deepest inside a box and extra rows (one LP), in numpy and scipy.

:func:`deepest_point` is the LP behind every centre of the package (the box
rescaling's centre, the scaled stage's centres); :func:`interior_point_in_box`
is the checked centre of a box.
"""

from __future__ import annotations

import numpy as np
import scipy.optimize

from keras_lincon.errors import InfeasibleError
from keras_lincon.geometry.residual import max_violation
from keras_lincon.geometry.system import ConstraintSystem, as_constraint_system, equality_coordinates
from keras_lincon.geometry.tolerances import CHECK_TOLERANCE, INTERIOR_DEPTH, NORM_FLOOR


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
    center: np.ndarray | None
    if system.A.shape[0] == 0 and system.C.shape[0] == 0:
        center = _middle_of_box(lower, upper)
    else:
        center, depth = deepest_point(system, lower, upper)
        if center is None or depth <= INTERIOR_DEPTH:
            raise InfeasibleError(
                "the box and the constraints share no point strictly inside the box "
                "(every feasible point touches a box face or the intersection is "
                "empty). Widen the box or relax the constraints."
            )
    outside, worst = centre_defects(center, system, lower, upper)
    if outside.size or not worst <= CHECK_TOLERANCE:
        raise InfeasibleError(
            "could not find a centre for the box rescaling: the computed point is "
            f"{'outside the box' if outside.size else 'not in the feasible set'} "
            f"(worst relative violation {worst:.3g}). The box may be too narrow for the "
            "constraints' scale; pass box_center=... (a feasible point strictly inside the box)."
        )
    return center


def centre_defects(center: np.ndarray, system: ConstraintSystem, lower, upper) -> tuple[np.ndarray, float]:
    """The one check of a centre: ``(outside, worst)``, the coordinates of ``center`` (n,) not strictly
    inside ``(lower, upper)`` (NaN counts as outside) and its worst relative violation of ``system``.
    Callers word the error (a user's ``box_center``, a computed centre)."""
    return outside_box(center, lower, upper), max_violation(center[None], system, relative=True)


def outside_box(point: np.ndarray, lower, upper) -> np.ndarray:
    """Indices of the coordinates of ``point`` (n,) not strictly inside ``(lower, upper)`` (NaN: outside)."""
    return np.flatnonzero(~((point > lower) & (point < upper)))


def _middle_of_box(lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """The midpoint of a box with no rows: (n,); a bound -+ max(1, |bound|) on a half-open side, 0 on an open one."""
    fin_lo, fin_hi = np.isfinite(lower), np.isfinite(upper)
    with np.errstate(invalid="ignore"):  # inf - inf on the sides np.where does not pick
        return np.where(
            fin_lo & fin_hi,
            lower / 2 + upper / 2,
            np.where(
                fin_lo,
                lower + np.maximum(1.0, np.abs(lower)),
                np.where(fin_hi, upper - np.maximum(1.0, np.abs(upper)), 0.0),
            ),
        )


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
    width, offset, u_lo, u_hi = _box_coordinates(lower, upper)
    A_u, R_u, C_u = system.A * width, rows * width, system.C * width
    b_u, s_u = system.b - system.A @ offset, rhs - rows @ offset
    a_norm, r_norm = np.linalg.norm(A_u, axis=1), np.linalg.norm(R_u, axis=1)
    boxed = np.isfinite(u_lo) | np.isfinite(u_hi)
    cap = 0.5 if boxed.any() else _depth_cap(b_u, a_norm, s_u, r_norm)
    eye, upper_side, lower_side = np.eye(n), np.isfinite(u_hi), np.isfinite(u_lo)
    lhs = [
        np.column_stack([A_u, a_norm if strict_rows else np.zeros(A_u.shape[0])]),
        np.column_stack([R_u, r_norm]),
        np.column_stack([eye[upper_side], np.ones(upper_side.sum())]),
        np.column_stack([-eye[lower_side], np.ones(lower_side.sum())]),
    ]
    solution = _maximise_depth(
        np.vstack(lhs),
        np.concatenate([b_u, s_u, u_hi[upper_side], -u_lo[lower_side]]),
        np.column_stack([C_u, np.zeros(C_u.shape[0])]) if C_u.size else None,
        system.d - system.C @ offset if C_u.size else None,
        cap,
    )
    if solution is None:
        return None, 0.0
    return offset + width * solution[:n], float(solution[-1]) / cap


def _box_coordinates(lower: np.ndarray, upper: np.ndarray) -> tuple:
    """``c = offset + width * u``: ``(width, offset, u_lo, u_hi)``, all (n,), with ``u`` in ``[u_lo, u_hi]``.

    ``width`` is the box width where both sides are finite (else 1) and
    ``offset`` the lower side (else the upper one, else 0): ``u`` lies in
    ``[0, 1]`` on a finite box, ``[0, inf)`` or ``(-inf, 0]`` on a half-open one.
    """
    fin_lo, fin_hi = np.isfinite(lower), np.isfinite(upper)
    both = fin_lo & fin_hi
    width = np.where(both, upper - lower, 1.0)
    offset = np.where(fin_lo, lower, np.where(fin_hi, upper, 0.0))
    u_lo = np.where(fin_lo, 0.0, -np.inf)
    u_hi = np.where(both, 1.0, np.where(fin_hi, 0.0, np.inf))
    return width, offset, u_lo, u_hi


def _depth_cap(b: np.ndarray, a_norm: np.ndarray, s: np.ndarray, r_norm: np.ndarray) -> float:
    """The cap on the depth without a box: the rows' scale ``max(|s_j| / ||r_j||, |b_i| / ||a_i||, 1)``."""
    scales = np.concatenate([np.abs(s) / np.maximum(r_norm, NORM_FLOOR), np.abs(b) / np.maximum(a_norm, NORM_FLOOR)])
    return float(max(scales.max(initial=0.0), 1.0))


def _maximise_depth(A_ub, b_ub, A_eq, b_eq, cap: float) -> np.ndarray | None:
    """``max t`` over ``(u, t)`` with ``A_ub (u, t) <= b_ub``, ``A_eq (u, t) = b_eq``, ``t <= cap`` (HiGHS).

    Returns the (k + 1,) solution ``(u, t)``, or None when the LP has none.
    """
    cost = np.zeros(A_ub.shape[1])
    cost[-1] = -1.0
    result = scipy.optimize.linprog(
        cost,
        A_ub=A_ub,
        b_ub=b_ub,
        A_eq=A_eq,
        b_eq=b_eq,
        bounds=[(None, None)] * (A_ub.shape[1] - 1) + [(None, cap)],
        method="highs",
    )
    return result.x if result.status == 0 else None


def _deepest_point_on_equalities(system: ConstraintSystem, rows, rhs, strict_rows: bool):
    """:func:`deepest_point` without a box, in the coordinates of ``C c = d``: ``c = c0 + N u``.

    The same LP (same depth terms, norms and cap), with the equalities
    eliminated: HiGHS took 96 s on DC3's 1000-variable set with 500
    equalities when they were kept.
    """
    c0, null_basis = equality_coordinates(system.C, system.d)  # (n,), (n, r)
    if np.abs(system.C @ c0 - system.d).max(initial=0.0) > CHECK_TOLERANCE * (1.0 + np.abs(system.d).max()):
        return None, 0.0  # C c = d has no solution
    a_norm, r_norm = np.linalg.norm(system.A, axis=1), np.linalg.norm(rows, axis=1)
    cap = _depth_cap(system.b, a_norm, rhs, r_norm)
    depth_a = a_norm if strict_rows else np.zeros(system.A.shape[0])
    A_ub = np.vstack([np.column_stack([system.A @ null_basis, depth_a]), np.column_stack([rows @ null_basis, r_norm])])
    solution = _maximise_depth(A_ub, np.concatenate([system.b - system.A @ c0, rhs - rows @ c0]), None, None, cap)
    if solution is None:
        return None, 0.0
    return c0 + null_basis @ solution[:-1], float(solution[-1]) / cap
