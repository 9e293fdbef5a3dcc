"""Which rows of ``A`` get generators and which are scaled: the first step of a layer's plan.

Rows the user scales always go to the scaled stage; with ``fallback``, so
does every independent block of the remaining rows whose generator count
is certainly above the cap (a true lower bound, the rule by which
:func:`keras_lincon.h_to_v` refuses up front). Numpy only.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from keras_lincon import geometry
from keras_lincon.errors import ConstraintShapeError
from keras_lincon.geometry import blocks


@dataclasses.dataclass(frozen=True)
class RowSplit:
    """Which inequality rows of ``A`` go to which stage.

    ``generator`` / ``scaled``: sorted row indices of ``A``; ``moved``: rows the
    automatic fallback moved to the scaled stage (a subset of ``scaled``), with
    ``bounds`` a true lower bound on the generators of each moved block.
    """

    generator: tuple
    scaled: tuple
    moved: tuple
    bounds: tuple


def split_rows(
    system: geometry.ConstraintSystem,
    scaled=(),
    limit: float = geometry.DEFAULT_MAX_GENERATORS,
    fallback: bool = True,
    graph: tuple | None = None,
) -> RowSplit:
    """Splits the rows of ``system.A`` into generator rows and scaled rows.

    Rows in ``scaled`` always go to the scaled stage. With ``fallback``, every
    independent block of the remaining rows that certainly has more than
    ``limit`` generators (a true lower bound on its vertices,
    :func:`keras_lincon.geometry.generator_lower_bound`, the rule
    by which :func:`keras_lincon.h_to_v` refuses up front) moves to the
    scaled stage as a whole: its output is then exact but no longer covers
    the whole set freely (ray scaling towards a centre instead of
    generators). An upper bound alone (McMullen's) moves nothing: such
    blocks are enumerated, and the layer moves them only if that is refused
    (cap or time budget). Blocks with at most as many rows as variables never
    move (closed form or few generators).

    Args:
        system: all rows ``(A, b, C, d)``; ``scaled``: row indices of ``A``.
        limit: the generator cap (the layer's ``max_generators``).
        fallback: move blocks at all.
        graph: ``blocks(n, A, C)`` over every row, if the caller already decomposed them.

    Returns:
        A :class:`RowSplit`; ``bounds`` holds each moved block's lower bound.
    """
    m, n = system.A.shape
    scaled_set = set(int(i) for i in scaled)
    if any(i < 0 or i >= m for i in scaled_set):
        raise ConstraintShapeError(f"scaled_rows must be indices of rows of A (0..{m - 1}); got {sorted(scaled_set)}.")
    keep = np.array([i for i in range(m) if i not in scaled_set], dtype=int)
    moved, bounds = [], []
    if fallback and keep.size:
        if graph is not None and keep.size == m:  # the same graph: every row is a generator candidate
            coord, (row_blk, eq_blk) = graph
        else:
            coord, (row_blk, eq_blk) = blocks(n, system.A[keep], system.C)
        for j in range(int(coord.max()) + 1 if coord.size else 0):
            rows = keep[row_blk == j]
            var = coord == j
            eqs = eq_blk == j
            n_vars = int(np.sum(var))
            dim = n_vars - (np.linalg.matrix_rank(system.C[eqs]) if np.any(eqs) else 0)
            if rows.size <= dim or geometry.generator_upper_bound(rows.size, dim) <= limit:
                continue  # cannot exceed the cap: no lower bound needed
            bound, _ = geometry.generator_lower_bound(
                system.A[np.ix_(rows, var)], system.b[rows], system.C[np.ix_(eqs, var)], system.d[eqs]
            )
            if bound > limit:
                moved.extend(rows.tolist())
                bounds.append(bound)
    scaled_all = sorted(scaled_set | set(moved))
    generator = [i for i in range(m) if i not in set(scaled_all)]
    return RowSplit(tuple(generator), tuple(scaled_all), tuple(sorted(moved)), tuple(bounds))
