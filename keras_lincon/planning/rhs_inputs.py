"""Right-hand sides as layer inputs: parse ``rhs_input`` and plan the exact translation.

``rhs_input`` (``False``, ``True``, ``"b"``, ``"d"``, ``("b", "d")`` or
``{"b": rows, "d": bool}``) becomes an :class:`RhsInputs`; for right-hand sides
that move the set, :func:`plan_translation` finds ``T`` with ``A T = [E_b; 0]``,
``C T = [0 | I]`` and ``T = 0`` on the box's coordinates, so the layer's output
moved by ``T (beta - beta_0)`` is exact for every value. Numpy only.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from keras_lincon.errors import ConstraintShapeError
from keras_lincon.geometry import ConstraintSystem
from keras_lincon.tolerances import TRANSLATION_RTOL

#: The string values of ``rhs_input`` (besides ``False``/``True`` and a dict; see :func:`rhs_inputs`).
RHS_PARTS = ("b", "d")


_RHS_CHOICES = (
    "False (none), 'b' (b of every row of A), 'd' (d of every row of C), ('b', 'd') (both, two inputs), "
    "{'b': rows, 'd': True/False} (b of chosen rows: indices, a boolean mask or 'all'), or True "
    "(its first meaning: b of scaled_rows above their floor, else b of every row)"
)


@dataclasses.dataclass(frozen=True)
class RhsInputs:
    """Which right-hand sides a layer takes as inputs (the parsed ``rhs_input``).

    Attributes:
        floor: the first ``rhs_input=True`` (``b`` of ``scaled_rows``
            exact above their floor, or the shifted-apex form).
        b_rows: rows of ``A`` whose ``b`` is an input, in input order.
        d: whether the equalities' ``d`` (every row of ``C``) is an input.
    """

    floor: bool = False
    b_rows: tuple = ()
    d: bool = False

    @property
    def translated(self) -> bool:
        """Right-hand sides that move the set rigidly (exact for every value, no floor)."""
        return bool(self.b_rows) or self.d

    def part_sizes(self, p: int, floor_rows: int) -> tuple:
        """Last dimension of each right-hand-side input, in call order (``layer([h, *parts])``)."""
        if self.floor:
            return (floor_rows,)
        return ((len(self.b_rows),) if self.b_rows else ()) + ((p,) if self.d else ())

    def to_config(self, m: int):
        """JSON-safe value of ``rhs_input`` that parses back to this object (``m``: rows of ``A``)."""
        if not self.translated:
            return self.floor
        every = self.b_rows == tuple(range(m))
        return {"b": "all" if every else list(self.b_rows) if self.b_rows else None, "d": self.d}


def rhs_inputs(value, m: int, p: int) -> RhsInputs:
    """Parses ``rhs_input`` for a layer with ``m`` rows in ``A`` and ``p`` in ``C``.

    Accepts ``False``/``None``, ``True``, ``"b"``, ``"d"``, a sequence of those
    two strings, or ``{"b": rows, "d": bool}``; anything else raises an error
    that lists the choices.
    """
    given = value
    if value is None or value is False:
        return RhsInputs()
    if value is True or (isinstance(value, np.bool_) and bool(value)):
        return RhsInputs(floor=True)
    if isinstance(value, str):
        value = (value,)
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
        unknown = [v for v in value if v not in RHS_PARTS]
        if unknown or len(set(value)) != len(value):
            raise ConstraintShapeError(f"rhs_input={given!r} is not defined; the choices are {_RHS_CHOICES}.")
        value = {"b": "all" if "b" in value else None, "d": "d" in value}
    if not isinstance(value, dict) or set(value) - set(RHS_PARTS) or not value:
        raise ConstraintShapeError(f"rhs_input={given!r} is not defined; the choices are {_RHS_CHOICES}.")
    b_value, d_value = value.get("b"), value.get("d", False)
    if isinstance(b_value, (bool, np.bool_)):  # {"b": True}: every row
        b_value = "all" if b_value else None
    if not isinstance(d_value, (bool, np.bool_)):
        raise ConstraintShapeError(f"rhs_input's 'd' must be True or False; got {d_value!r}.")
    b_rows = row_indices(b_value, m, what="rhs_input's 'b'") if b_value is not None else ()
    if (b_value is not None and not b_rows) or (bool(d_value) and not p):
        missing = "rows of A" if b_value is not None and not b_rows else "equality rows C"
        raise ConstraintShapeError(f"rhs_input={value!r} asks for right-hand sides of {missing}, but there are none.")
    if not b_rows and not d_value:
        raise ConstraintShapeError(f"rhs_input={value!r} names no right-hand side; the choices are {_RHS_CHOICES}.")
    return RhsInputs(b_rows=b_rows, d=bool(d_value))


def row_indices(scaled_rows, m: int, what: str = "scaled_rows") -> tuple:
    """Sorted row indices of ``A`` from indices, an (m,) boolean mask or ``"all"``."""
    if scaled_rows is None:
        return ()
    if isinstance(scaled_rows, str):
        if scaled_rows != "all":
            raise ConstraintShapeError(f"{what} must be row indices, a boolean mask or 'all'; got {scaled_rows!r}.")
        return tuple(range(m))
    arr = np.asarray(scaled_rows)
    if arr.dtype == bool:
        if arr.shape != (m,):
            raise ConstraintShapeError(f"a boolean {what} mask needs shape ({m},) (one per row of A).")
        return tuple(np.flatnonzero(arr).tolist())
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ConstraintShapeError(f"{what} must be row indices of A (integers) or a boolean mask.")
    rows = sorted(set(arr.reshape(-1).astype(int).tolist()))
    if rows and (rows[0] < 0 or rows[-1] >= m):
        raise ConstraintShapeError(f"{what} must be indices of rows of A (0..{m - 1}); got {rows}.")
    return tuple(rows)


def plan_translation(system: ConstraintSystem, box, rhs: RhsInputs) -> tuple:
    """``(T, q)`` with ``x + T beta + q`` in the set of right-hand sides ``beta`` whenever ``x`` is
    in the set of the stored ones (``beta = [b of rhs.b_rows; d]``, (k,); ``T`` (n, k), ``q`` (n,)).

    ``T`` moves the input rows by exactly their change and leaves every other
    row, equality and bounded coordinate where it is (``A T = [E_b; 0]``,
    ``C T = [0 | I]``, ``T`` zero on the box's coordinates); ``q = -T beta_0``
    for the stored ``beta_0``. Such a ``T`` exists when those rows are
    linearly independent of each other and of the fixed ones; otherwise the
    set changes shape with ``beta`` and no translation is exact.

    Raises:
        ConstraintShapeError: no exact translation exists (with the fix).
    """
    n, m, p = system.dim, system.A.shape[0], system.C.shape[0]
    bounded = np.zeros(n, dtype=bool) if box is None else np.isfinite(box[0]) | np.isfinite(box[1])
    K = np.vstack([system.A, system.C, np.eye(n)[bounded]])
    k = len(rhs.b_rows) + (p if rhs.d else 0)
    R = np.zeros((K.shape[0], k))
    R[list(rhs.b_rows), np.arange(len(rhs.b_rows))] = 1.0
    if rhs.d:
        R[m + np.arange(p), len(rhs.b_rows) + np.arange(p)] = 1.0
    norms = np.maximum(np.linalg.norm(K, axis=1), 1e-300)  # equilibrated rows: scale-free residuals
    T = np.linalg.lstsq(K / norms[:, None], R / norms[:, None], rcond=None)[0]
    # one step of iterative refinement: K T = R to rounding, not to rounding times cond(K) (float64 outputs)
    T = T + np.linalg.lstsq(K / norms[:, None], (R - K @ T) / norms[:, None], rcond=None)[0]
    residual = np.abs(K @ T - R) / norms[:, None]
    if not np.all(residual <= TRANSLATION_RTOL * np.maximum(1.0, np.abs(T).max(initial=0.0))):
        bad = np.flatnonzero(residual.max(axis=1) > TRANSLATION_RTOL)
        names = [f"A[{i}]" if i < m else f"C[{i - m}]" if i < m + p else "the box" for i in bad[:8]]
        raise ConstraintShapeError(
            f"rhs_input: these right-hand sides cannot move the set without changing its shape (rows "
            f"{', '.join(dict.fromkeys(names))} depend on each other, or a box bounds the coordinates they move), "
            "so no output map is exact for every value. Make the input rows (and C) linearly independent of each "
            "other and of the fixed rows, or pass rhs_input=True with scaled_rows= (exact for b_s above a floor)."
        )
    beta0 = np.concatenate([system.b[list(rhs.b_rows)], system.d if rhs.d else np.zeros(0)])
    return T, -T @ beta0
