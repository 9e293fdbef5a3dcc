"""Certain lower bounds on the vertex count: the only grounds for refusing a set up front.

Refusing on McMullen's upper bound refused small sets (a 16-vertex cut
polytope, cross-polytopes, the Birkhoff polytope B6: the bound ignores
structure). A refusal up front therefore needs a *lower* bound on the
vertex count, from a closed form that the rows certify; everything else is
enumerated (bounded by the time budget). Each rule below is exact on the
given floats: symmetries are checked on bitwise-equal normalised rows, and
every claimed vertex comes with a witness (a vertex of P and its orbit, or
a perfect matching).
"""

from __future__ import annotations

import math
import time

import numpy as np

from keras_lincon.geometry.double_description.closed_forms import perfect_matchings
from keras_lincon.geometry.generator_check import lp_support, maximise
from keras_lincon.geometry.residual import residual_scale
from keras_lincon.geometry.row_graph import coupled_blocks, find_root
from keras_lincon.geometry.system import as_constraint_system
from keras_lincon.geometry.tolerances import NORM_FLOOR, ORBIT_RTOL, SPAN_RTOL, TIGHT_RTOL

#: Seconds :func:`generator_lower_bound` may spend testing symmetries.
LOWER_BOUND_SECONDS = 0.5


def generator_lower_bound(A, b=None, C=None, d=None, *, seconds: float = LOWER_BOUND_SECONDS, seed: int = 0):
    """A true lower bound on the number of vertices of ``P = {x : A x <= b, C x = d}``.

    Unlike :func:`generator_upper_bound` (McMullen's, which ignores
    structure), this is only above 1 where the rows certify it:

    * a product of blocks (variables no row shares) has the product of the
      blocks' vertex counts; a variable with two finite bounds has 2 (a box
      in ``k`` dimensions: ``2^k``);
    * a block whose rows are symmetric under swapping coordinates (checked
      exactly) has at least the orbit of one of its vertices (an LP vertex)
      under the group the swaps generate (the permutahedron of order ``k``:
      ``k!``);
    * a block ``{x >= 0, C x = d}`` that is a bipartite perfect-matching
      polytope has one vertex per perfect matching (the Birkhoff polytope
      ``B_k``: ``k!``), counted exactly up to :data:`~.closed_forms.MATCHING_MAX_SIDE` nodes a
      side.

    Args:
        A: (m, n); b: (m,) or None; C: (p, n) or None; d: (p,) or None.
        seconds: time allowed for the symmetry search (its result stays a
            true bound when cut short).
        seed: seed of the LP objectives.

    Returns:
        ``(bound, rule)``: int bound (0 when a rule proves ``P`` empty) and a
        description of the rules used ("" when nothing certified more than 1).
    """
    system = as_constraint_system(A, b, C, d)
    A, b, C, d, n = system.A, system.b, system.C, system.d, system.dim
    deadline = time.monotonic() + seconds
    rng = np.random.default_rng(seed)
    coord, (row_blk, eq_blk) = coupled_blocks(n, A, C)
    bound, rules, uncertified = 1, [], False
    for j in range(int(coord.max()) + 1 if coord.size else 0):
        var, rows, eqs = coord == j, row_blk == j, eq_blk == j
        sub = (A[np.ix_(rows, var)], b[rows], C[np.ix_(eqs, var)], d[eqs])
        count, rule, nonempty = _block_lower_bound(*sub, rng, deadline)
        bound *= count
        uncertified |= not nonempty
        if count > 1 and rule not in rules:
            rules.append(rule)
        if count == 0:
            return 0, rule
    if bound > 1 and uncertified and lp_support(np.zeros(n), A, b, C, d) == -np.inf:
        return 0, "an empty set (LP)"
    blocks_used = int(coord.max()) + 1 if coord.size else 0
    rule = "; ".join(rules)
    if bound > 1 and blocks_used > 1:
        rule = f"a product of {blocks_used} independent blocks: {rule}"
    return bound, rule


def _block_lower_bound(A, b, C, d, rng, deadline) -> tuple[int, str, bool]:
    """``(bound, rule, nonempty)``: a true lower bound on the vertices of one coupled block.

    ``nonempty`` says whether the rule also certified that the block has a
    point (a product's bound needs every factor non-empty).
    """
    n = A.shape[1]
    if n == 1 and len(C) == 0:
        a = A[:, 0]
        hi = np.min(b[a > 0] / a[a > 0]) if np.any(a > 0) else np.inf
        lo = np.max(b[a < 0] / a[a < 0]) if np.any(a < 0) else -np.inf
        if lo > hi:
            return 0, "an empty interval", True
        return (2 if np.isfinite(lo) and np.isfinite(hi) and lo < hi else 1), "an interval", True
    matchings = perfect_matchings(A, b, C, d)
    if matchings is not None:
        return matchings, f"{matchings} perfect matchings of a bipartite matching polytope", True
    if n >= 2 and time.monotonic() < deadline:
        labels = _transposition_orbits(A, b, C, d, deadline)
        if len(np.unique(labels)) < n and np.linalg.matrix_rank(np.vstack([A, C])) == n:
            vertex = lp_vertex(A, b, C, d, rng)
            if vertex is not None:
                size = _orbit_size(vertex, labels)
                sizes = sorted(np.unique(labels, return_counts=True)[1].tolist(), reverse=True)
                return size, f"the orbit of an LP vertex under coordinate permutations (S_{sizes[0]}...)", True
    return 1, "", False


def _normalised_rows(A: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``[a_i, b_i] / max|a_i|`` for the nonzero rows: (m', n + 1), invariant under permuting columns."""
    peak = np.max(np.abs(A), axis=1) if A.size else np.zeros(len(A))
    keep = peak > 0
    return np.column_stack([A[keep], b[keep]]) / peak[keep, None]


def _sorted_rows(rows: np.ndarray) -> np.ndarray:
    return rows[np.lexsort(rows.T[::-1])] if len(rows) else rows


def _transposition_orbits(A, b, C, d, deadline: float) -> np.ndarray:
    """Orbits (labels, (n,)) of the group generated by coordinate swaps that map the rows onto themselves.

    A swap ``(i j)`` is an automorphism when the normalised inequality rows,
    columns ``i`` and ``j`` exchanged, are the same multiset (bitwise), and
    the swapped equality rows stay in the span of ``[C, d]``. Swaps that are
    automorphisms generate the full symmetric group on each connected orbit,
    so the group is a product of symmetric groups (the permutahedron: all of
    ``S_n``). Only coordinates with equal sorted columns are tried; the search
    stops at ``deadline`` (``time.monotonic()``) with the group found so far.
    """
    n = A.shape[1]
    rows = _normalised_rows(A, b)
    reference = _sorted_rows(rows)
    eq = np.column_stack([C, d]) if len(C) else None
    eq_basis = None
    if eq is not None:
        u, s, vt = np.linalg.svd(eq, full_matrices=False)
        eq_basis = vt[: int(np.sum(s > SPAN_RTOL * s[0]))] if s.size and s[0] > 0 else np.zeros((0, n + 1))
    parent = list(range(n))

    def is_automorphism(i, j):
        perm = np.arange(n + 1)
        perm[[i, j]] = perm[[j, i]]
        if not np.array_equal(_sorted_rows(rows[:, perm]), reference):
            return False
        if eq_basis is not None:
            swapped = eq[:, perm]
            resid = swapped - (swapped @ eq_basis.T) @ eq_basis
            if np.max(np.abs(resid)) > SPAN_RTOL * max(1.0, float(np.max(np.abs(eq)))):
                return False
        return True

    columns = np.sort(rows[:, :n], axis=0).T  # (n, m'): a column's sorted entries
    _, klass = np.unique(columns, axis=0, return_inverse=True)
    for k in np.unique(klass):
        members = np.flatnonzero(klass.reshape(-1) == k).tolist()
        for a_idx, i in enumerate(members):
            for j in members[a_idx + 1 :]:
                if time.monotonic() > deadline:
                    return np.array([find_root(parent, x) for x in range(n)])
                if find_root(parent, i) != find_root(parent, j) and is_automorphism(i, j):
                    parent[find_root(parent, j)] = find_root(parent, i)
    return np.array([find_root(parent, x) for x in range(n)])


def lp_vertex(A, b, C, d, rng) -> np.ndarray | None:
    """A vertex of ``P`` (checked: ``n`` independent tight rows) maximising a random bounded objective, or None."""
    n = A.shape[1]
    for _ in range(2):
        # c = A^T lam + C^T mu with lam > 0 bounds c.x by lam.b + mu.d: the LP
        # has an optimum whenever P is non-empty (and a vertex when pointed).
        c = rng.uniform(0.5, 1.5, len(A)) @ A + (rng.standard_normal(len(C)) @ C if len(C) else 0.0)
        res = maximise(c, A, b, C, d, method="highs-ds")
        if res.status != 0:
            continue
        x = res.x
        tight = A[np.abs(A @ x - b) <= TIGHT_RTOL * np.maximum(residual_scale(x, A, b), NORM_FLOOR)]
        if np.linalg.matrix_rank(np.vstack([tight, C]), tol=None) == n:
            return x
    return None


def _orbit_size(x: np.ndarray, labels: np.ndarray) -> int:
    """Size of the orbit of ``x`` under the product of symmetric groups on the orbits ``labels``."""
    size = 1
    tol = ORBIT_RTOL * max(1.0, float(np.max(np.abs(x))))
    for label in np.unique(labels):
        values = np.sort(x[labels == label])
        # Values within tol of their neighbour are one value (fewer distinct
        # values: a smaller orbit, so the bound stays a lower bound).
        runs = np.diff(np.flatnonzero(np.r_[True, np.diff(values) > tol, True]))
        size *= math.factorial(len(values)) // math.prod(math.factorial(int(r)) for r in runs)
    return size
