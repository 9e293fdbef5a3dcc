"""The row graph: which variables the rows couple, in numpy and scipy.

Variables linked by a shared row form one block; ``P`` is the product of
its blocks' sets, so :func:`keras_lincon.h_to_v` and the certain lower
bound work block by block. :func:`blocks` is the sparse-graph version for
any size, :func:`coupled_blocks` the same answer cheaper on the small tables
double description sees. :func:`single_variable_rows` finds the rows that
couple nothing (bounds such as ``x_j >= 0``).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse
import scipy.sparse.csgraph


def single_variable_rows(rows) -> np.ndarray:
    """Which rows have exactly one nonzero coefficient (a bound on one variable).

    Args:
        rows: (m, n) array.

    Returns:
        (m,) bool.
    """
    return np.count_nonzero(rows, axis=1) == 1


def find_root(parent: list, i: int) -> int:
    """The root of ``i`` in a union-find forest ``parent`` (list of ints), halving the path on the way."""
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


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


#: :func:`coupled_blocks` runs a union-find in Python up to this many nonzero coefficients.
_SMALL_BLOCKS_NONZEROS = 256


def _small_coupled_blocks(n: int, m: int, r: int, row_idx: list, col_idx: list):
    """:func:`coupled_blocks` of a few nonzeros (``row_idx``, ``col_idx`` in row-major order): a union-find."""
    parent = list(range(n))
    last_row, last_col = -1, -1
    first = [-1] * r  # each row's first variable
    for i, j in zip(row_idx, col_idx, strict=True):
        if i == last_row:
            a, b = find_root(parent, last_col), find_root(parent, j)
            if a != b:
                parent[max(a, b)] = min(a, b)  # a block's root is its first variable
        else:
            first[i] = j
        last_row, last_col = i, j
    touched = set(col_idx)
    mapping: dict = {}
    coord = [mapping.setdefault(find_root(parent, j), len(mapping)) if j in touched else -1 for j in range(n)]
    row_block = [coord[j] if j >= 0 else -1 for j in first]
    coord_arr, row_arr = np.array(coord, dtype=np.int64), np.array(row_block, dtype=np.int64)
    return coord_arr, (row_arr[:m], row_arr[m:])


def coupled_blocks(n: int, A: np.ndarray, C: np.ndarray):
    """:func:`blocks` of ``A`` and ``C`` (the same output), cheaper on small tables.

    Dense label propagation (a few numpy sweeps) instead of a sparse graph:
    about 10x cheaper on the small tables double description sees. Large
    tables (over 4e6 entries) and long chains (more than 16 sweeps) go to
    :func:`blocks`.
    """
    if (len(A) + len(C)) * n > 4_000_000:
        return blocks(n, A, C)
    support = np.vstack([A, C]) != 0  # (r, n)
    row_idx, col_idx = np.nonzero(support)  # row-major: each row's columns in order
    if len(row_idx) <= _SMALL_BLOCKS_NONZEROS:
        return _small_coupled_blocks(n, len(A), len(support), row_idx.tolist(), col_idx.tolist())
    big = n
    labels = np.arange(n)
    for _ in range(16):
        row_min = np.where(support, labels[None, :], big).min(axis=1, initial=big)
        new = np.minimum(labels, np.where(support, row_min[:, None], big).min(axis=0, initial=big))
        if np.array_equal(new, labels):
            break
        labels = new
    else:
        return blocks(n, A, C)
    touched = support.any(axis=0)
    _, coord = np.unique(np.where(touched, labels, -1), return_inverse=True)
    coord = coord.reshape(-1) - (0 if touched.all() else 1)  # -1 stays -1, blocks 0..k-1 in order
    coord = np.where(touched, coord, -1)
    first = np.where(support.any(axis=1), np.argmax(support, axis=1), -1)
    row_block = np.where(first >= 0, coord[np.maximum(first, 0)], -1)
    return coord, (row_block[: len(A)], row_block[len(A) :])
