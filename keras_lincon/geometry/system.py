"""Constraint systems and boxes: validated float64 arrays, in numpy.

This module knows nothing of Keras. A feasible set is

    P = {x in R^n : A x <= b,  C x = d}   (optionally intersected with a box)

and :func:`as_constraint_system` is the one place where ``A, b, C, d`` are
checked; the rest of the geometry takes a :class:`ConstraintSystem` and does
not check it again. Points are measured against it by
:func:`keras_lincon.geometry.residual.violations`.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.linalg

from keras_lincon.errors import ConstraintShapeError, NonFiniteError
from keras_lincon.geometry.tolerances import CHECK_TOLERANCE  # noqa: F401  (re-exported)


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
    if not np.isfinite(arr).all():
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
    if not np.isfinite(arr).all():
        raise NonFiniteError(
            f"{name} contains NaN or infinity; right-hand sides must be finite "
            "(drop a constraint instead of giving it an infinite bound)."
        )
    return arr


def row_norms(M: np.ndarray) -> np.ndarray:
    """(k,) Euclidean norms of the rows of a (k, n) float array: ``np.linalg.norm(M, axis=1)``, bit for bit, cheaper."""
    return np.sqrt(np.add.reduce(M * M, axis=1))


def as_constraint_system(A, b=None, C=None, d=None) -> ConstraintSystem:
    """Validates and converts constraints to a :class:`ConstraintSystem`.

    Args:
        A: (m, n) inequality matrix; a 1-D array is one row. A
            :class:`ConstraintSystem` (with ``b, C, d`` None) is returned as
            it is: it was validated when it was made.
        b: (m,) right-hand side, scalar, or None for zeros (a cone).
        C: (p, n) equality matrix or None.
        d: (p,) equality right-hand side, scalar, or None for zeros.

    Raises:
        ConstraintShapeError: shapes disagree. NonFiniteError: NaN or inf.
    """
    if isinstance(A, ConstraintSystem) and b is None and C is None and d is None:
        return A  # validated when it was made
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
        norms = row_norms(M)
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


def equality_coordinates(C: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates on ``C x = d``: ``x = x0 + N z``.

    Args:
        C: (p, n); d: (p,).

    Returns:
        ``(x0, N)``: (n,) least-squares solution of ``C x = d`` (it solves
        the equalities only when they are consistent: the caller checks) and
        (n, r) orthonormal basis of ``null(C)`` (scipy's ``null_space``).
    """
    return np.linalg.lstsq(C, d, rcond=None)[0], scipy.linalg.null_space(C)
