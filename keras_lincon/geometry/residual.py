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
from keras_lincon.geometry.system import ConstraintSystem, as_constraint_system, row_norms
from keras_lincon.geometry.tolerances import RESIDUAL_FLOOR


def residual_scale(points: np.ndarray, rows: np.ndarray, rhs) -> np.ndarray:
    """``|rhs_i| + ||row_i|| ||x||``: the scale of each row's residual at each point.

    Args:
        points: (k, n) points, or one (n,) point; rows: (m, n); rhs: (m,) or (k, m).

    Returns:
        (k, m) float64, or (m,) for one point.
    """
    point_norms = np.linalg.norm(points) if points.ndim == 1 else row_norms(points)[:, None]
    return np.abs(rhs) + row_norms(rows) * point_norms


def worst_residuals(points, system: ConstraintSystem, rhs=None, eq_rhs=None, *, relative: bool = False) -> np.ndarray:
    """:func:`violations` of (k, n) float64 points on a validated system, without checking it again.

    ``rhs`` (m,) or (k, m) and ``eq_rhs`` (p,) or (k, p) replace ``b`` and
    ``d`` when given (zeros measure rays). Returns (k,) float64.
    """
    finite = np.isfinite(points).all(axis=1)
    all_finite = bool(finite.all())
    safe = points if all_finite else np.where(finite[:, None], points, 0.0)
    point_norms = row_norms(safe)[:, None] if relative else None
    worst = np.full(points.shape[0], -math.inf)
    for rows, right, absolute in (
        (system.A, system.b if rhs is None else rhs, False),
        (system.C, system.d if eq_rhs is None else eq_rhs, True),
    ):
        if rows.shape[0] == 0:
            continue
        residual = safe @ rows.T - right
        if absolute:
            residual = np.abs(residual)
        if relative:
            residual = residual / np.maximum(np.abs(right) + row_norms(rows) * point_norms, RESIDUAL_FLOOR)
        worst = np.maximum(worst, residual.max(axis=1))
    return worst if all_finite else np.where(finite, worst, math.inf)


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
