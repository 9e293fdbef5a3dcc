"""Closed forms that need no enumeration: cross-polytopes and perfect-matching polytopes.

Each is recognised exactly on the given floats and answers with exact
vertices (``+-r e_i``; 0/1 incidence vectors of perfect matchings): cross12
took 34 s in exact cddlib and B7 minutes.
"""

from __future__ import annotations

import math

import numpy as np

from keras_lincon.geometry.row_graph import single_variable_rows
from keras_lincon.geometry.tolerances import CROSS_RADIUS_RTOL, LOWER_BOUND_MARGIN

#: Exact perfect-matching counts up to this many rows a side (subset DP).
MATCHING_MAX_SIDE = 16


def cross_polytope_vertices(A: np.ndarray, b: np.ndarray, C: np.ndarray) -> np.ndarray | None:
    """The 2n vertices ``+-r e_i`` when ``{A x <= b}`` is a cross-polytope ``{s.x <= r, s in {-1, 1}^n}``, else None.

    Recognised on the floats: no equalities, ``2^n`` rows, each a positive
    multiple ``t_i s_i`` of a distinct sign vector ``s_i`` (exactly), and
    ``b_i / t_i = r > 0`` the same for every row up to 1e-12 relative (else
    double description runs as usual).

    Returns:
        (2n, n) float64 vertices, or None.
    """
    m, n = A.shape
    if len(C) or n < 2 or n > 40 or m != 2**n:
        return None
    magnitude = np.abs(A)
    if np.any(magnitude[:, 0] == 0) or np.any(magnitude != magnitude[:, :1]):
        return None
    radius = b / magnitude[:, 0]
    low = float(np.min(radius))
    # Radii equal up to round-off (1e-12 relative, far below MERGE_RTOL: the
    # true vertices of such a set are near-duplicates of +-r e_i); the smallest
    # radius keeps every vertex inside every row.
    if not low > 0 or float(np.max(radius)) - low > CROSS_RADIUS_RTOL * low:
        return None
    codes = (A > 0).astype(np.int64) @ (np.int64(1) << np.arange(n, dtype=np.int64))
    if len(np.unique(codes)) != m:
        return None
    return low * np.vstack([np.eye(n), -np.eye(n)])


def _matching_graph(A, b, C, d):
    """The bipartite graph whose perfect-matching polytope ``{x >= 0, C x = d}`` is, or None.

    Recognised when the inequalities are exactly ``-x_e <= 0`` (every
    variable, nothing else) and each equality is a positive multiple of
    ``sum_{e in S} x_e = 1``, every variable lies in exactly two equalities,
    and the equalities split into two sides (a bipartite graph: equalities are
    nodes, variables edges). Its vertices are the perfect matchings
    (Birkhoff-von Neumann; the Birkhoff polytope B_k has k!).

    Returns:
        None, or ``(k_left, k_right, ends)`` with ``ends`` (n, 2) int: the
        left and right node of each variable's edge.
    """
    n = A.shape[1]
    if len(C) == 0 or len(A) < n or b.any() or not _is_orthant(A) or not _is_unit_sums(C, d):
        return None
    # repeated equalities are one node; the rows in np.unique's (lexicographic)
    # order, from their bytes (several times cheaper on a few rows)
    keys = sorted({row.tobytes() for row in C != 0})
    support = np.frombuffer(b"".join(keys), dtype=bool).reshape(len(keys), n)
    if (support.sum(axis=0) != 2).any():
        return None
    ends = np.nonzero(support.T)[1].reshape(n, 2)  # (n, 2) equality nodes of each variable, ascending
    side = _two_colouring(len(support), ends)
    if side is None:
        return None
    position = np.zeros(len(support), dtype=int)
    for which in (0, 1):
        nodes = np.flatnonzero(side == which)
        position[nodes] = np.arange(len(nodes))
    left_first = np.where(side[ends[:, 0]] == 0, ends[:, 0], ends[:, 1])
    right = np.where(side[ends[:, 0]] == 0, ends[:, 1], ends[:, 0])
    return int(np.sum(side == 0)), int(np.sum(side == 1)), np.column_stack([position[left_first], position[right]])


def _is_orthant(A: np.ndarray) -> bool:
    """Whether the rows are exactly ``-t x_j <= 0`` (``t > 0``), every variable in at least one."""
    nonzero = A != 0
    if not single_variable_rows(A).all() or (A[nonzero] >= 0).any():
        return False
    return bool(nonzero.any(axis=0).all())


def _is_unit_sums(C: np.ndarray, d: np.ndarray) -> bool:
    """Whether each equality is ``t sum_{e in S} x_e = t`` (``t > 0``)."""
    support = C != 0
    peak = np.abs(C).max(axis=1)
    if (peak == 0).any() or (C[support] <= 0).any():
        return False
    return not ((C != support * peak[:, None]).any() or (d != peak).any())


def _two_colouring(num_nodes: int, ends: np.ndarray) -> np.ndarray | None:
    """(num_nodes,) 0/1 sides of a graph with the (e, 2) edges ``ends``, or None when it has an odd cycle."""
    neighbours: list = [[] for _ in range(num_nodes)]  # through the edges in their order
    for u, v in ends.tolist():
        neighbours[u].append(v)
        neighbours[v].append(u)
    colour = [-1] * num_nodes
    for start in range(num_nodes):
        if colour[start] >= 0:
            continue
        colour[start], stack = 0, [start]
        while stack:
            u = stack.pop()
            for v in neighbours[u]:
                if colour[v] < 0:
                    colour[v] = 1 - colour[u]
                    stack.append(v)
                elif colour[v] == colour[u]:
                    return None  # odd cycle: not bipartite
    return np.array(colour)


def perfect_matchings(A, b, C, d) -> int | None:
    """Vertices of a perfect-matching polytope (:func:`_matching_graph`; a lower bound past 16 nodes), or None."""
    graph = _matching_graph(A, b, C, d)
    return None if graph is None else _count_matchings(graph)


def _count_matchings(graph) -> int | None:
    """:func:`perfect_matchings` of a graph from :func:`_matching_graph`."""
    k, k_right, ends = graph
    if k != k_right:
        return 0  # the two sides' sums differ: empty
    adjacency = np.zeros((k, k), dtype=np.int64)
    np.add.at(adjacency, (ends[:, 0], ends[:, 1]), 1)  # parallel edges: several variables
    if k > MATCHING_MAX_SIDE:
        # van der Waerden (Egorychev-Falikman): an r-regular bipartite graph has
        # at least k! (r/k)^k perfect matchings; rounded down, a true bound.
        simple = adjacency > 0
        r = int(simple.sum(axis=1)[0])
        if np.all(simple.sum(axis=1) == r) and np.all(simple.sum(axis=0) == r):
            return int(math.floor(math.exp(math.lgamma(k + 1) + k * math.log(r / k)) * (1 - LOWER_BOUND_MARGIN)))
        return None
    edges = [[(1 << v, w) for v, w in enumerate(row) if w] for row in adjacency.tolist()]
    counts = {0: 1}  # subset DP over the right side: matchings of the first rows
    for u in range(k):
        nxt: dict = {}
        for mask, c in counts.items():
            for bit, w in edges[u]:  # w parallel edges
                if not mask & bit:
                    nxt[mask | bit] = nxt.get(mask | bit, 0) + c * w
        counts = nxt
    return sum(counts.values())


def matching_vertices(A, b, C, d, limit: int) -> np.ndarray | None:
    """The vertices of a perfect-matching polytope (the Birkhoff polytope ...) without enumeration by cddlib.

    When :func:`_matching_graph` recognises ``{x >= 0, C x = d}`` as the
    perfect-matching polytope of a bipartite graph, its vertices are the
    0/1 incidence vectors of the perfect matchings (Birkhoff-von Neumann):
    listed here by a depth-first search, exactly. None when not recognised or
    when there are more than ``limit`` (the caller refuses or enumerates).

    Returns:
        (k, n) float64 0/1 vertices, or None.
    """
    graph = _matching_graph(A, b, C, d)
    if graph is None:
        return None
    k, k_right, ends = graph
    n = A.shape[1]
    if k != k_right:
        return None  # empty: let the general path say so
    count = _count_matchings(graph)
    if count is not None and count > limit:
        return None  # counted first (a subset DP): no search for a refusal
    by_left: list = [[] for _ in range(k)]  # (edge, right node), edges in order
    for e, (u, v) in enumerate(ends.tolist()):
        by_left[u].append((e, v))
    found: list = []
    chosen: list = []
    used = [False] * k

    def extend(u: int) -> bool:
        if u == k:
            found.append(list(chosen))
            return len(found) <= limit
        for e, v in by_left[u]:
            if not used[v]:
                used[v] = True
                chosen.append(e)
                going = extend(u + 1)
                chosen.pop()
                used[v] = False
                if not going:
                    return False
        return True

    if not extend(0) or not found:
        return None
    vertices = np.zeros((len(found), n))
    rows = np.repeat(np.arange(len(found)), k)
    vertices[rows, np.array(found).reshape(-1)] = 1.0
    return vertices
