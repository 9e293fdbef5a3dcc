"""Generators of a polyhedron (its V-representation), in numpy.

This module knows nothing of Keras. A polyhedron is held as

    P = sum_j conv(vertices of block j) + cone(rays) + span(lineality)

where the lineality space is kept implicit: only an orthonormal basis of its
orthogonal complement (``row_space``, at most one row per constraint) is
stored, so free coordinates and large null spaces cost no ``n x n`` matrix.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

from keras_lincon.errors import ConstraintShapeError, NonFiniteError, RepresentationCheckError
from keras_lincon.geometry.residual import worst_residuals
from keras_lincon.geometry.system import ConstraintSystem, row_norms
from keras_lincon.geometry.tolerances import CHECK_TOLERANCE, MERGE_RTOL, NORM_FLOOR, RANK_RTOL

# MERGE_RTOL (:mod:`.tolerances`): below the 1e-8 of a thin triangle's short
# side, above the round-off of floating-point double description (~1e-13..1e-10).


def merge_close_rows(rows, *, unit: bool = False, rtol: float = MERGE_RTOL) -> np.ndarray:
    """Identifies generators closer than a relative tolerance: (k, n) -> (k', n), sorted.

    The one rule by which near-duplicate generators (float round-off of a
    degenerate vertex, or one vertex reached twice) are counted once, so
    that counts do not depend on the order or the scale of the rows:

    * vertices (``unit=False``): ``u`` and ``v`` are one vertex when
      ``||u - v|| <= rtol * max(extent, max_ij |v_ij|)``, ``extent`` the
      largest coordinate range of the set (``max_j (max_i v_ij - min_i
      v_ij)``): scaling the set (or its rows) changes nothing, and a set
      whose size is below ``rtol`` of its distance from the origin, which
      floating-point arithmetic cannot resolve, is one point whichever
      arithmetic computed it;
    * rays (``unit=True``): scaled to unit length (zero rows dropped), then
      one ray when the unit vectors are within ``rtol``.

    Clusters are single-linkage (connected components of the "closer than"
    graph, from a KD-tree): independent of the row order, unlike rounding to
    a grid, where two copies of a vertex can straddle a grid line. Each
    cluster keeps its lexicographically smallest member.

    Args:
        rows: (k, n) float array. unit: rows are directions (rays).
        rtol: relative tolerance (default :data:`MERGE_RTOL`).

    Returns:
        (k', n) float64 array, rows in lexicographic order (first column most
        significant).
    """
    rows = np.asarray(rows, dtype=np.float64)
    if len(rows) == 0:
        return rows + 0.0
    if unit:
        norms = row_norms(rows)
        rows = rows[norms > 0] / norms[norms > 0, None]
    rows = rows + 0.0  # folds -0.0 into 0.0 (sorting and printing)
    if len(rows) == 0:
        return rows
    order = np.lexsort(rows.T[::-1])
    rows = rows[order]
    if len(rows) == 1:
        return rows
    if unit:
        tol = rtol
    else:
        tol = rtol * max(float(np.max(np.ptp(rows, axis=0))), float(np.max(np.abs(rows))))
    pairs = _close_pairs(rows, tol)
    if len(pairs) == 0:
        return rows
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(len(rows), len(rows)))
    _, labels = connected_components(graph, directed=False)
    # rows are sorted, so a cluster's first occurrence is its smallest member
    _, first = np.unique(labels, return_index=True)
    return rows[np.sort(first)]


#: :func:`merge_close_rows` compares all pairs of up to this many rows directly (no KD-tree to build).
_ALL_PAIRS_ROWS = 32


def _close_pairs(rows: np.ndarray, tol: float) -> np.ndarray:
    """(q, 2) index pairs ``i < j`` of (k, n) rows with ``||r_i - r_j|| <= tol``.

    A KD-tree's ``query_pairs`` (squared distances against ``tol**2``), or
    the same comparison on all pairs at once for a few rows.
    """
    if len(rows) <= _ALL_PAIRS_ROWS:
        diff = rows[:, None, :] - rows[None, :, :]
        close = np.add.reduce(diff * diff, axis=2) <= tol * tol
        if np.count_nonzero(close) == len(rows):  # only the diagonal: no pair (the common case)
            return np.zeros((0, 2), dtype=np.intp)
        return np.argwhere(np.triu(close, 1))
    from scipy.spatial import cKDTree

    return cKDTree(rows).query_pairs(tol, output_type="ndarray")


def orthonormal_rows(vectors: np.ndarray, n: int) -> np.ndarray:
    """Orthonormal basis (k, n) of the row span of ``vectors`` (?, n).

    Deterministic: the largest-magnitude entry of each basis row is positive.
    """
    vectors = np.asarray(vectors, dtype=np.float64).reshape(-1, n)
    if vectors.size == 0:
        return np.zeros((0, n))
    _, s, vt = np.linalg.svd(vectors, full_matrices=False)
    rank = int(np.sum(s > RANK_RTOL * s[0])) if s.size and s[0] > 0 else 0
    basis = vt[:rank]
    signs = np.sign(basis[np.arange(rank), np.argmax(np.abs(basis), axis=1)])
    return basis * signs[:, None]


def complement_parts(basis: np.ndarray, n: int) -> tuple:
    """The complement of an orthonormal (k, n) basis in two parts, without its unit vectors.

    Returns:
        ``(free, rest)``: (f,) coordinates ``basis`` does not touch (their
        unit vectors belong to the complement) and (n - k - f, n) the other
        orthonormal vectors, from a (small) complete QR on the touched
        coordinates. :func:`orthogonal_complement` stacks them in this order.
    """
    touched = np.flatnonzero(np.any(basis != 0, axis=0))
    free = np.setdiff1d(np.arange(n), touched)
    rest = np.zeros((0, n))
    if touched.size:
        q, _ = scipy.linalg.qr(basis[:, touched].T, mode="full")
        local = q[:, basis.shape[0] :].T
        rest = np.zeros((local.shape[0], n))
        rest[:, touched] = local
    return free, rest


def orthogonal_complement(basis: np.ndarray, n: int) -> np.ndarray:
    """Orthonormal basis (n - k, n) of the complement of an orthonormal (k, n) basis.

    Coordinates that ``basis`` does not touch get unit vectors; only the
    touched coordinates need a (small) complete QR (:func:`complement_parts`).
    """
    free, rest = complement_parts(basis, n)
    unit = np.zeros((free.size, n))
    unit[np.arange(free.size), free] = 1.0  # not np.eye(n)[free]: no second n x n array
    return np.vstack([unit, rest])


class VRepresentation:
    """Generators of a polyhedron, ``P = sum_j conv(V_j) + cone(R) + span(L)``.

    Args:
        vertices: (p, n) points; ``vertex_blocks[i]`` says which block row
            ``i`` belongs to. One block is plain Minkowski-Weyl; several blocks
            mean a Minkowski sum (a product when their supports are disjoint,
            as :func:`~keras_lincon.h_to_v` makes them).
        rays: (r, n) extreme rays.
        lineality: (l, n) basis of the lineality space, or None when
            ``row_space`` is given instead.
        vertex_blocks: (p,) int block index of each vertex, 0..n_blocks-1
            (default: one block).
        method: how it was computed (``closed_form``, ``cdd``, ``blocks`` ...).
        seconds: wall time of the computation.
        row_space: (k, n) orthonormal basis of the orthogonal complement of the
            lineality space (the row space of the constraints). Either this or
            ``lineality`` is needed; the other is derived on first access.

    ``lineality`` of a set with many free directions is large (``n x n`` for
    a set with no rows); the layer only uses ``row_space``.
    """

    def __init__(
        self,
        vertices,
        rays,
        lineality=None,
        vertex_blocks=None,
        method: str = "given",
        seconds: float = 0.0,
        *,
        row_space=None,
    ):
        vertices = np.asarray(vertices, dtype=np.float64)
        if vertices.ndim != 2 or vertices.shape[0] == 0:
            raise ConstraintShapeError(
                "vertices must be a 2-D array with at least one row (a cone has "
                f"the single vertex 0); got shape {vertices.shape}."
            )
        n = vertices.shape[1]
        rays = np.asarray(rays, dtype=np.float64).reshape(-1, n)
        if vertex_blocks is None:
            vertex_blocks = np.zeros(vertices.shape[0])
        blocks = np.asarray(vertex_blocks, dtype=np.int64).reshape(-1)
        if blocks.shape[0] != vertices.shape[0]:
            raise ConstraintShapeError(
                f"vertex_blocks has {blocks.shape[0]} entries for "
                f"{vertices.shape[0]} vertices; give one block index per vertex."
            )
        if blocks.size and (blocks.min() != 0 or not np.all(np.bincount(blocks))):
            raise ConstraintShapeError("vertex_blocks must use every index 0..n_blocks-1.")
        if lineality is None and row_space is None:
            raise ConstraintShapeError("give the lineality basis or its complement row_space (or both).")
        arrays = {"vertices": vertices, "rays": rays, "vertex_blocks": blocks}
        if lineality is not None:
            arrays["lineality"] = np.asarray(lineality, dtype=np.float64).reshape(-1, n)
        if row_space is not None:
            arrays["row_space"] = np.asarray(row_space, dtype=np.float64).reshape(-1, n)
        for name, arr in arrays.items():
            if not np.isfinite(arr).all():
                raise NonFiniteError(f"{name} contains NaN or infinity.")
            arr.setflags(write=False)
        self.vertices, self.rays, self.vertex_blocks = vertices, rays, blocks
        self._lineality = arrays.get("lineality")
        self._row_space = arrays.get("row_space")
        self.method, self.seconds = method, float(seconds)

    @property
    def lineality(self) -> np.ndarray:
        """(l, n) orthonormal basis of the lineality space (computed on first use)."""
        if self._lineality is None:
            assert self._row_space is not None  # __init__ refuses both None
            lineality = orthogonal_complement(self._row_space, self.dim)
            lineality.setflags(write=False)
            self._lineality = lineality
        return self._lineality

    def lineality_parts(self) -> tuple:
        """``(unit_columns, rest)``: the lineality basis as unit vectors on
        ``unit_columns`` (f,) followed by the (l - f, n) rows ``rest``, in the
        order of :attr:`lineality`, without forming the unit vectors (a box
        alone on n = 20,000 outputs has 20,000 of them)."""
        if self._lineality is None:
            assert self._row_space is not None  # __init__ refuses both None
            return complement_parts(self._row_space, self.dim)
        return np.zeros(0, dtype=np.int64), self._lineality

    @property
    def row_space(self) -> np.ndarray:
        """(k, n) orthonormal basis of the complement of the lineality space."""
        if self._row_space is None:
            assert self._lineality is not None  # __init__ refuses both None
            row_space = orthogonal_complement(orthonormal_rows(self._lineality, self.dim), self.dim)
            row_space.setflags(write=False)
            self._row_space = row_space
        return self._row_space

    @property
    def dim(self) -> int:
        """Ambient dimension n."""
        return self.vertices.shape[1]

    @property
    def lineality_dim(self) -> int:
        """Dimension of the lineality space, without forming its basis."""
        if self._lineality is not None and self._row_space is None:
            return orthonormal_rows(self._lineality, self.dim).shape[0]
        return self.dim - self.row_space.shape[0]

    @property
    def n_blocks(self) -> int:
        return int(self.vertex_blocks.max()) + 1

    @property
    def n_generators(self) -> int:
        """Vertices + rays + the lineality dimension."""
        return self.vertices.shape[0] + self.rays.shape[0] + self.lineality_dim

    @property
    def is_cone(self) -> bool:
        """True when the only vertex is the origin (``P = cone(R) + span(L)``)."""
        return self.vertices.shape[0] == 1 and not np.any(self.vertices)

    def block_vertices(self) -> list[np.ndarray]:
        """Vertices of each block, in block order: list of (p_j, n) arrays."""
        return [self.vertices[self.vertex_blocks == j] for j in range(self.n_blocks)]

    def sample(self, num: int, seed: int | None = None, scale: float = 1.0) -> np.ndarray:
        """Random points of ``P``: (num, n) float64, for tests and demos.

        Convex weights are Dirichlet(1) per block; ray coefficients are
        ``scale`` times |normal| and normal draws (this forms the lineality
        basis: ``n x n`` for a set without rows).
        """
        rng = np.random.default_rng(seed)
        x = np.zeros((num, self.dim))
        for verts in self.block_vertices():
            x += rng.dirichlet(np.ones(len(verts)), size=num) @ verts
        x += scale * np.abs(rng.standard_normal((num, self.rays.shape[0]))) @ self.rays
        lineality = self.lineality
        x += scale * rng.standard_normal((num, lineality.shape[0])) @ lineality
        return x

    def __repr__(self) -> str:
        return (
            f"VRepresentation(n={self.dim}, vertices={self.vertices.shape[0]} in "
            f"{self.n_blocks} block(s), rays={self.rays.shape[0]}, "
            f"lineality={self.lineality_dim}, method={self.method!r}, "
            f"seconds={self.seconds:.4g})"
        )


def check_representation(rep: VRepresentation, system: ConstraintSystem, tol: float = CHECK_TOLERANCE) -> None:
    """Raises RepresentationCheckError unless every generator satisfies ``system``.

    Vertices must satisfy ``A v <= b`` and ``C v = d``; rays ``A r <= 0`` and
    ``C r = 0``; the lineality space must lie in ``A l = 0, C l = 0`` (checked
    on an explicit basis, or as: every row of ``A`` and ``C`` lies in
    ``row_space``). All relative, as in :func:`keras_lincon.geometry.residual.violations`,
    with tolerance ``tol``. For several vertex blocks, each vertex is checked
    after adding the other blocks' first vertices (a point of the Minkowski sum).
    """
    zero_b, zero_d = np.zeros_like(system.b), np.zeros_like(system.d)
    checks = {
        "vertex": _worst_residual(_minkowski_points(rep), system, system.b, system.d),
        "ray": _worst_residual(rep.rays, system, zero_b, zero_d),
        "lineality": _lineality_residual(rep, system),
    }
    failed = {k: v for k, v in checks.items() if not v <= tol}
    if failed:
        raise RepresentationCheckError(
            failed,
            f"the computed generators violate the constraints (worst relative "
            f"violation by kind: {failed}, tolerance {tol:g}). The system is "
            "numerically ill-conditioned: rescale rows of A to similar norms, "
            "give integer or rational coefficients (exact arithmetic), or use "
            "method='cdd'.",
        )


def _minkowski_points(rep: VRepresentation) -> np.ndarray:
    """(p, n): each vertex plus the first vertex of every other block (points of the Minkowski sum)."""
    if rep.n_blocks == 1:
        return rep.vertices
    blocks = rep.block_vertices()
    base = sum(v[0] for v in blocks)
    return np.vstack([base - blk[0] + blk for blk in blocks])


def _worst_residual(vectors: np.ndarray, system: ConstraintSystem, rhs, eq_rhs) -> float:
    """The largest relative residual of (k, n) ``vectors`` on the rows (``-inf`` for none)."""
    if vectors.shape[0] == 0:
        return -np.inf
    return float(np.max(worst_residuals(vectors, system, rhs, eq_rhs, relative=True)))


def _lineality_residual(rep: VRepresentation, system: ConstraintSystem) -> float:
    """How far the lineality space is from ``A l = 0, C l = 0``: an explicit basis by its residuals,
    an implicit one by the part of each row of ``A`` and ``C`` outside ``row_space`` (relative)."""
    if rep._lineality is not None:
        lin = rep._lineality
        return _worst_residual(np.vstack([lin, -lin]), system, np.zeros_like(system.b), np.zeros_like(system.d))
    rows = np.vstack([system.A, system.C])
    if not rows.size:
        return -np.inf
    basis = rep.row_space
    outside = rows - (rows @ basis.T) @ basis
    norms = np.maximum(row_norms(rows), NORM_FLOOR)
    return float(np.max(row_norms(outside) / norms))
