"""Soundness and completeness checks of generators (numpy + scipy, no Keras).

Used by :mod:`keras_lincon.geometry.double_description` on its floating-point path:
:func:`check_generators` raises :class:`RepresentationCheckError` when a
vertex, ray or lineality vector is outside ``P`` or when ``P`` has a vertex
or direction the generators miss.
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.optimize

from keras_lincon.errors import RepresentationCheckError
from keras_lincon.geometry.residual import residual_scale, worst_residuals
from keras_lincon.geometry.system import ConstraintSystem
from keras_lincon.geometry.tolerances import CHECK_RTOL, EDGE_RTOL, MAX_BASIS_COND, SUPPORT_RTOL, TIGHT_RTOL

logger = logging.getLogger("keras_lincon")

# CHECK_RTOL: the soundness check's relative residual; SUPPORT_RTOL: the
# completeness check's support values (LP accuracy); see :mod:`.tolerances`.
#: Random directions of the completeness check (besides the row normals).
NUM_DIRECTIONS = 16
#: At most this many row normals (a random subset) join the random directions.
MAX_ROW_DIRECTIONS = 32

#: Remedies appended to numerical-failure messages.
ADVICE = (
    "Rescale the rows of A to similar norms, give integer or rational "
    "coefficients, split the system into independent blocks, or use fewer rows"
)


def maximise(c, A, b, C, d, **options):
    """``max c.x`` over ``P = {x : A x <= b, C x = d}`` (free variables): scipy's ``linprog`` result.

    ``options``: ``method`` and ``options`` of ``linprog`` (default ``"highs"``).
    """
    return scipy.optimize.linprog(
        -c,
        A_ub=A if len(A) else None,
        b_ub=b if len(A) else None,
        A_eq=C if len(C) else None,
        b_eq=d if len(C) else None,
        bounds=(None, None),
        **{"method": "highs", **options},
    )


def lp_support(c, A, b, C, d) -> float | None:
    """``max c.x`` over ``P`` (``inf`` if unbounded, ``-inf`` if empty, None if the LP failed)."""
    for presolve in (True, False):
        res = maximise(c, A, b, C, d, options={"presolve": presolve})
        if res.status in (0, 3):
            return float(-res.fun) if res.status == 0 else np.inf
        # HiGHS' presolve has reported "infeasible" for feasible unbounded
        # problems with rows of very different scales: retry without it.
    return -np.inf if res.status == 2 else None


def _generator_support(c, vertices, rays, lineality) -> float:
    scale = np.linalg.norm(c)
    for vecs in (rays, lineality):
        if vecs.size:
            dots = vecs @ c / (np.linalg.norm(vecs, axis=1) * scale)
            if np.max(dots if vecs is rays else np.abs(dots)) > CHECK_RTOL:
                return np.inf
    return float(np.max(vertices @ c)) if vertices.size else -np.inf


def _check_neighbours(A: np.ndarray, b: np.ndarray, vertices: np.ndarray, rays: np.ndarray) -> None:
    """Every edge of every simple vertex of ``{A x <= b}`` ends at a found vertex or ray.

    A vertex ``u`` with exactly ``n`` tight, independent rows ``M`` has the
    ``n`` edge directions ``e_k = -M^{-1} e_k``; the edge ends where the first
    other row becomes tight (a vertex) or never (an extreme ray). Degenerate
    or ill-conditioned vertices are skipped (the LP directions still cover
    them). Vectorised over chunks of vertices: O(p n^2 m) flops.
    """
    from scipy.spatial import cKDTree

    m, n = A.shape
    if n == 0 or m == 0:
        return
    row_norm = np.linalg.norm(A, axis=1)
    reach = max(1.0, float(np.max(np.linalg.norm(vertices, axis=1))))
    tree = cKDTree(vertices)
    unit_rays = rays / np.linalg.norm(rays, axis=1, keepdims=True) if len(rays) else rays
    slack_all = b[None, :] - vertices @ A.T  # (p, m)
    tight_all = np.abs(slack_all) <= TIGHT_RTOL * residual_scale(vertices, A, b)
    simple = np.flatnonzero(tight_all.sum(axis=1) == n)
    chunk = max(1, 2_000_000 // max(1, n * m))
    for lo in range(0, len(simple), chunk):
        idx = simple[lo : lo + chunk]
        tight, slack = tight_all[idx], slack_all[idx]
        rows = np.nonzero(tight)[1].reshape(len(idx), n)  # the n tight rows, sorted
        M = A[rows]  # (k, n, n)
        cond = np.linalg.cond(M)
        ok = np.isfinite(cond) & (cond < MAX_BASIS_COND)
        idx, tight, slack, M = idx[ok], tight[ok], slack[ok], M[ok]
        if not len(idx):
            continue
        edges = -np.transpose(np.linalg.inv(M), (0, 2, 1))  # [i, k]: a_k.e = -1, others 0
        rate = np.einsum("ikn,mn->ikm", edges, A)  # (k, n, m)
        grow = rate > EDGE_RTOL * row_norm[None, None, :] * np.linalg.norm(edges, axis=2)[:, :, None]
        grow &= ~tight[:, None, :]
        ratio = np.where(grow, np.maximum(slack, 0.0)[:, None, :] / np.where(grow, rate, 1.0), np.inf)
        step = ratio.min(axis=2)  # (k, n)
        bounded = np.isfinite(step)
        ends = vertices[idx][:, None, :] + np.where(bounded, step, 0.0)[:, :, None] * edges
        dist, _ = tree.query(ends[bounded])
        if np.any(dist > SUPPORT_RTOL * reach):
            w = ends[bounded][int(np.argmax(dist))]
            raise RepresentationCheckError(
                "floating-point double description missed a vertex (near "
                f"{np.round(w, 6).tolist()[:6]}, a neighbour of a found vertex). "
                f"{ADVICE}, or pass arithmetic='exact'."
            )
        if np.any(~bounded):
            unbounded = edges[~bounded]
            unbounded = unbounded / np.linalg.norm(unbounded, axis=1, keepdims=True)
            best = (unbounded @ unit_rays.T).max(axis=1) if len(rays) else np.full(len(unbounded), -np.inf)
            if np.any(best < 1 - CHECK_RTOL):
                raise RepresentationCheckError(
                    "floating-point double description missed an extreme ray (an "
                    "unbounded edge of a found vertex points in no found ray's direction). "
                    f"{ADVICE}, or pass arithmetic='exact'."
                )


def check_generators(
    table: np.ndarray,
    num_ineq: int,
    vertices,
    rays,
    lineality,
    *,
    seed: int = 0,
    num_directions: int = NUM_DIRECTIONS,
) -> None:
    """Soundness and completeness of generators against a normalised H-table.

    Soundness: every vertex satisfies the rows, rays and lineality vectors
    their homogeneous versions, relative to :data:`CHECK_RTOL`. Completeness:
    in each row normal and in ``num_directions`` random directions ``c``,
    ``max c.x`` over ``P`` (an LP, HiGHS) equals the maximum over the
    generators (``inf`` when a ray has ``c.r > 0`` or a lineality vector
    ``c.l != 0``). Costs ``min(m, 32) + num_directions`` LPs. On its own this catches
    a missing vertex only when a test direction lies in its normal cone
    (measured: 55% of single dropped vertices on random 6-10 x 2-4 systems),
    so for a pointed set without equalities it also walks every edge of
    every simple vertex (:func:`_check_neighbours`): a vertex's neighbours
    must be found vertices and its unbounded edges found rays, which, the
    graph of a polytope being connected, leaves no vertex out.

    Raises:
        RepresentationCheckError: a generator is outside ``P`` or ``P`` has a
            point or direction the generators miss.
    """
    system = ConstraintSystem(-table[:num_ineq, 1:], table[:num_ineq, 0], -table[num_ineq:, 1:], table[num_ineq:, 0])
    what = f"{num_ineq} inequalities in {system.dim} dimensions"
    _check_soundness(system, vertices, rays, lineality, what)
    if len(system.C) == 0 and len(lineality) == 0 and len(vertices):
        _check_neighbours(system.A, system.b, vertices, rays)
    _check_support(system, vertices, rays, lineality, what, np.random.default_rng(seed), num_directions)


def _check_soundness(system: ConstraintSystem, vertices, rays, lineality, what: str) -> None:
    """Every vertex satisfies the rows, every ray and lineality vector their homogeneous versions (relative)."""
    zero_b, zero_d = np.zeros_like(system.b), np.zeros_like(system.d)
    for kind, vecs, rhs, eq_rhs in (
        ("vertex", vertices, system.b, system.d),
        ("ray", rays, zero_b, zero_d),
        ("lineality", np.vstack([lineality, -lineality]), zero_b, zero_d),  # both signs: |a.l|
    ):
        if not vecs.size:
            continue
        worst = np.max(worst_residuals(vecs, system, rhs, eq_rhs, relative=True), initial=-np.inf)
        if worst > CHECK_RTOL:
            raise RepresentationCheckError(
                f"floating-point double description returned a {kind} outside the set "
                f"(relative violation {worst:.3g} > {CHECK_RTOL:g}) for {what}. "
                f"{ADVICE}, or pass arithmetic='exact'."
            )


def _check_support(system: ConstraintSystem, vertices, rays, lineality, what: str, rng, num_directions: int) -> None:
    """``P`` and the generators reach as far in the row normals (32 at most) and ``num_directions`` random ones."""
    A, b, C, d, n = system.A, system.b, system.C, system.d, system.dim
    # LP optima are accurate to HiGHS' feasibility tolerance (1e-7 absolute
    # on rows of norm ~1), scaled by how far the set reaches.
    reach = max(1.0, float(np.max(np.linalg.norm(vertices, axis=1), initial=0.0)))
    normals = A if len(A) <= MAX_ROW_DIRECTIONS else A[rng.choice(len(A), MAX_ROW_DIRECTIONS, replace=False)]
    directions = np.vstack([normals, rng.standard_normal((num_directions, n))])
    for c in directions:
        if not np.any(c):
            continue
        h_side = lp_support(c, A, b, C, d)
        if h_side is None or (h_side == -np.inf and len(vertices)):
            # No verdict, or "empty" although a vertex passed the soundness check.
            logger.debug("keras_lincon: completeness LP inconclusive in one direction")
            continue
        v_side = _generator_support(c, vertices, rays, lineality)
        same: bool | np.bool_
        if np.isfinite(h_side) and np.isfinite(v_side):
            same = abs(h_side - v_side) <= SUPPORT_RTOL * np.linalg.norm(c) * reach
        else:
            same = h_side == v_side
        if not same:
            raise RepresentationCheckError(
                "floating-point double description returned an incomplete set of "
                f"generators for {what}: in a test "
                f"direction the set reaches {h_side:.6g} but the generators only "
                f"{v_side:.6g} (a vertex or ray went missing or was misclassified). "
                f"{ADVICE}, or pass arithmetic='exact' (slower, but exact)."
            )
