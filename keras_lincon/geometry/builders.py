"""Constraint builders: the paper's checkerboard and monotone chains, as numpy matrices."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from keras_lincon.errors import ConstraintShapeError


def checkerboard(image_shape: Sequence[int] = (28, 28), grid: Sequence[int] = (4, 4)) -> np.ndarray:
    """The paper's checkerboard constraint on a flattened image.

    The image is cut into ``grid`` blocks; block (r, c) gets sign
    ``(-1)^(r+c)`` and the row ``sign * (sum of the block's pixels) <= 0``.

    Args:
        image_shape: (height, width) in pixels; each must divide by the grid.
        grid: (rows, cols) of blocks.

    Returns:
        A: (rows * cols, height * width) float64, row-major pixel order.
    """
    height, width = (int(s) for s in image_shape)
    grid_r, grid_c = (int(g) for g in grid)
    if grid_r < 1 or grid_c < 1 or height % grid_r or width % grid_c:
        raise ConstraintShapeError(
            f"image_shape {tuple(image_shape)} must split evenly into grid "
            f"{tuple(grid)} blocks (e.g. 28x28 with 4x4 blocks of 7x7)."
        )
    bh, bw = height // grid_r, width // grid_c
    A = np.zeros((grid_r * grid_c, height, width))
    for r in range(grid_r):
        for c in range(grid_c):
            A[r * grid_c + c, r * bh : (r + 1) * bh, c * bw : (c + 1) * bw] = (-1.0) ** (r + c)
    return A.reshape(grid_r * grid_c, height * width)


def monotone_chain(n: int) -> np.ndarray:
    """``x_1 <= x_2 <= ... <= x_n`` as ``A x <= 0``: A (n-1, n) float64."""
    if n < 2:
        raise ConstraintShapeError(f"a monotone chain needs n >= 2 variables; got {n}.")
    A = np.zeros((n - 1, n))
    idx = np.arange(n - 1)
    A[idx, idx] = 1.0
    A[idx, idx + 1] = -1.0
    return A
