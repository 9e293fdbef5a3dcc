"""The one residual formula of the package, in numpy.

Every check measures points against ``P = {x : A x <= b, C x = d}`` here:
the residual of a row is ``a_i.x - b_i`` (inequalities) or ``|c_j.x - d_j|``
(equalities), and the *relative* residual divides it by
:func:`residual_scale`, ``|b_i| + ||a_i|| ||x||``, the scale at which
floating point can resolve it (tolerances: :mod:`.tolerances`).
:func:`violations` validates its arguments; :func:`worst_residuals` is the
same formula on a :class:`~keras_lincon.geometry.system.ConstraintSystem`
that was validated already.
"""

from __future__ import annotations

import math

import numpy as np

from keras_lincon.errors import ConstraintShapeError
from keras_lincon.geometry.system import ConstraintSystem, as_constraint_system
from keras_lincon.geometry.tolerances import RESIDUAL_FLOOR


def residual_scale(points: np.ndarray, rows: np.ndarray, rhs) -> np.ndarray:
    """``|rhs_i| + ||row_i|| ||x||``: the scale of each row's residual at each point.

    Args:
        points: (k, n) points, or one (n,) point; rows: (m, n); rhs: (m,) or (k, m).

    Returns:
        (k, m) float64, or (m,) for one point.
    """
    if points.ndim == 1:
        return np.abs(rhs) + np.linalg.norm(rows, axis=1) * np.linalg.norm(points)
    return np.abs(rhs) + np.linalg.norm(rows, axis=1) * np.linalg.norm(points, axis=1, keepdims=True)


def worst_residuals(points, system: ConstraintSystem, rhs=None, eq_rhs=None, *, relative: bool = False) -> np.ndarray:
    """:func:`violations` of (k, n) float64 points on a validated system, without checking it again.

    ``rhs`` (m,) or (k, m) and ``eq_rhs`` (p,) or (k, p) replace ``b`` and
    ``d`` when given (zeros measure rays). Returns (k,) float64.
    """
    rhs = system.b if rhs is None else rhs
    eq_rhs = system.d if eq_rhs is None else eq_rhs
    finite = np.all(np.isfinite(points), axis=1)
    safe = np.where(finite[:, None], points, 0.0)
    ineq = safe @ system.A.T - rhs
    eq = np.abs(safe @ system.C.T - eq_rhs)
    if relative:
        ineq = ineq / np.maximum(residual_scale(safe, system.A, rhs), RESIDUAL_FLOOR)
        eq = eq / np.maximum(residual_scale(safe, system.C, eq_rhs), RESIDUAL_FLOOR)
    both = np.hstack([ineq, eq])
    worst = both.max(axis=1) if both.shape[1] else np.full(points.shape[0], -math.inf)
    return np.where(finite, worst, math.inf)


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
    return worst_residuals(points.reshape(-1, system.dim), system, rhs, eq_rhs, relative=relative)


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
