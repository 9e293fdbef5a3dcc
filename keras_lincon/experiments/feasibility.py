"""Which outputs count as feasible in the experiments' reports."""

from __future__ import annotations

import numpy as np

from keras_lincon import geometry
from keras_lincon.layers import FLOAT32_TOLERANCE

#: Relative tolerance under which a row counts as feasible (the layer's stated float32 tolerance).
FEASIBLE = FLOAT32_TOLERANCE


def feasible_mask(y, A: np.ndarray, box: tuple | None = (-1.0, 1.0)) -> np.ndarray:
    """Per sample: True when every constraint row (and box row) holds within :data:`FEASIBLE`.

    Args:
        y: outputs, shape ``(N, ...)``; flattened to ``(N, n)``.
        A: constraint rows ``A y <= 0``, shape ``(m, n)``.
        box: ``(low, high)`` bounds added as rows, or None.

    Returns:
        Boolean array of shape ``(N,)``; NaN or infinite rows count as infeasible.
    """
    y = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
    G, h = geometry.with_box(A, None, *box) if box is not None else (A, np.zeros(len(A)))
    mask = geometry.violations(y, G, h, relative=True) <= FEASIBLE
    return mask & np.all(np.isfinite(y), axis=1)


def feasible_share(y, A: np.ndarray, box: tuple | None = (-1.0, 1.0)) -> float:
    """Share of samples of ``y`` (shape ``(N, ...)``) that :func:`feasible_mask` accepts."""
    return float(np.mean(feasible_mask(y, A, box)))
