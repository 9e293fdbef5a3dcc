"""McMullen's upper bounds: they steer arithmetic and the worker, never refuse (numpy-free)."""

from __future__ import annotations

import math


def vertex_upper_bound(num_constraints: int, dim: int) -> float:
    """McMullen's upper bound on the vertices of a ``dim``-polytope with ``num_constraints`` facets."""
    if dim <= 1:
        return 2.0
    m, d = num_constraints, dim
    if m <= d:
        return 1.0

    def comb(a, k):
        return math.comb(a, k) if 0 <= k <= a else 0

    return float(comb(m - (d + 1) // 2, d // 2) + comb(m - d // 2 - 1, (d + 1) // 2 - 1))


def generator_upper_bound(num_inequalities: int, dim: int) -> float:
    """Upper bound on vertices + extreme rays of ``{x in R^dim : A x <= b}``.

    They are the extreme rays of the homogenised cone
    ``{(t, x) : t >= 0, A x <= t b}`` (``m + 1`` facets in ``dim + 1``
    dimensions), i.e. the vertices of a ``dim``-polytope with ``m + 1``
    facets. ``dim`` is the dimension left after the equalities. With a
    lineality space the true count may exceed it (the bound is not monotone
    in ``dim``): it steers refusal, arithmetic and worker choice only.
    """
    return vertex_upper_bound(num_inequalities + 1, max(dim, 0))


def bound_for_any_rank(num_inequalities: int, dim: int, num_equalities: int) -> float:
    """The largest :func:`generator_upper_bound` over the ranks ``num_equalities`` equalities may have.

    An upper bound on the bound for the true rank, without computing it (inf
    when there are too many ranks to try: the caller computes the rank).
    """
    ranks = min(num_equalities, dim)
    if ranks > 16:
        return math.inf
    return max(generator_upper_bound(num_inequalities, dim - r) for r in range(ranks + 1))
