"""Polyhedral geometry in numpy: from constraints to generators.

This module knows nothing of Keras. It turns an H-representation

    P = {x in R^n : A x <= b,  C x = d}

into a V-representation (Minkowski-Weyl)

    P = sum_j conv(vertices of block j) + cone(rays) + span(lineality)

which :class:`keras_lincon.LinearInequalityConstraint` combines with learned
coefficients so that every output lies in ``P`` by construction.

Three ways to get there, chosen per independent block of variables:

* ``closed_form``: for ``A`` with full row rank and no equalities,
  ``P = {A^+ b} + cone(-(A^+)^T e_i) + null(A)``. O(n m^2), milliseconds.
* ``cdd``: double description (pycddlib 3); exact rational arithmetic
  (``cdd.gmp``) when every entry is integer- or small-rational-valued,
  floating point otherwise.
* ``blocks``: the constraint graph (variables linked by a shared row) is split
  into connected components; ``P`` is the product of the components' sets, so
  a box in ``n`` dimensions costs ``2 n`` vertices instead of ``2^n``.
  Variables that no constraint touches are pure lineality.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from fractions import Fraction
from typing import Optional, Sequence

import numpy as np
import scipy.linalg
import scipy.optimize
import scipy.sparse
import scipy.sparse.csgraph

from keras_lincon.errors import (
    ConstraintShapeError,
    DegenerateSetError,
    InfeasibleError,
    LinconError,
    NonFiniteError,
    RepresentationCheckError,
    TooManyGeneratorsError,
)

logger = logging.getLogger("keras_lincon")

#: Default cap on vertices + rays + lineality vectors of one representation.
DEFAULT_MAX_GENERATORS = 20_000
#: Relative tolerance of the self-check run on every computed representation:
#: ``a_i.v - b_i <= CHECK_TOLERANCE * (|b_i| + ||a_i|| ||v||)`` for vertices,
#: ``a_i.r <= CHECK_TOLERANCE * ||a_i|| ||r||`` for rays (and ``|a_i.l|`` for
#: lineality vectors), likewise ``|c_j.x - d_j|`` for equalities.
CHECK_TOLERANCE = 1e-9
METHODS = ("auto", "cdd", "closed_form", "blocks")
# Largest denominator accepted when reading a float as an exact rational.
_MAX_DENOMINATOR = 10**6
# Relative singular-value cut-off for ranks and null spaces.
_RANK_RTOL = 1e-10


@dataclasses.dataclass(frozen=True, eq=False)
class ConstraintSystem:
    """Validated float64 constraint arrays: ``A x <= b`` and ``C x = d``.

    Shapes: ``A`` (m, n), ``b`` (m,), ``C`` (p, n), ``d`` (p,); ``m`` or ``p``
    may be zero.
    """

    A: np.ndarray
    b: np.ndarray
    C: np.ndarray
    d: np.ndarray

    @property
    def dim(self) -> int:
        return self.A.shape[1]

    @property
    def is_homogeneous(self) -> bool:
        return not np.any(self.b) and not np.any(self.d)


def _as_matrix(value, name: str, n: Optional[int]) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ConstraintShapeError(
            f"{name} must be a numeric 2-D array of shape (rows, n); could not "
            f"convert it to float: {exc}"
        ) from None
    if arr.ndim == 1 and n is not None and arr.size == n:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise ConstraintShapeError(
            f"{name} must be a 2-D array of shape (rows, n); got shape "
            f"{arr.shape}. Pass one row per constraint."
        )
    if n is not None and arr.shape[1] != n:
        raise ConstraintShapeError(
            f"{name} has {arr.shape[1]} columns but A has {n}: every constraint "
            "matrix needs one column per output variable."
        )
    if not np.all(np.isfinite(arr)):
        raise NonFiniteError(
            f"{name} contains NaN or infinity at {int(np.sum(~np.isfinite(arr)))} "
            "entries; constraint coefficients must be finite numbers."
        )
    return arr


def _as_vector(value, name: str, rows: int, matrix_name: str) -> np.ndarray:
    if value is None:
        return np.zeros(rows)
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ConstraintShapeError(
            f"{name} must be numeric; could not convert it to float: {exc}"
        ) from None
    if arr.ndim == 0:
        arr = np.full(rows, float(arr))
    arr = arr.reshape(-1) if arr.ndim == 2 and 1 in arr.shape else arr
    if arr.shape != (rows,):
        raise ConstraintShapeError(
            f"{name} must have shape ({rows},), one entry per row of "
            f"{matrix_name}; got shape {arr.shape}."
        )
    if not np.all(np.isfinite(arr)):
        raise NonFiniteError(
            f"{name} contains NaN or infinity; right-hand sides must be finite "
            "(drop a constraint instead of giving it an infinite bound)."
        )
    return arr


def as_constraint_system(A, b=None, C=None, d=None) -> ConstraintSystem:
    """Validates and converts constraints to a :class:`ConstraintSystem`.

    Args:
        A: (m, n) inequality matrix; a 1-D array is one row.
        b: (m,) right-hand side, scalar, or None for zeros (a cone).
        C: (p, n) equality matrix or None.
        d: (p,) equality right-hand side, scalar, or None for zeros.

    Raises:
        ConstraintShapeError: shapes disagree. NonFiniteError: NaN or inf.
    """
    if A is None:
        raise ConstraintShapeError("A is required: give the (m, n) matrix of A x <= b.")
    A_ = _as_matrix(A, "A", None)
    n = A_.shape[1]
    if n == 0:
        raise ConstraintShapeError("A has zero columns: the output dimension n must be >= 1.")
    b_ = _as_vector(b, "b", A_.shape[0], "A")
    if C is None:
        if d is not None and np.size(d):
            raise ConstraintShapeError("d was given without C: pass C as well for C x = d.")
        C_ = np.zeros((0, n))
    else:
        C_ = _as_matrix(C, "C", n)
    d_ = _as_vector(d, "d", C_.shape[0], "C")
    return ConstraintSystem(A_, b_, C_, d_)


@dataclasses.dataclass(frozen=True, eq=False)
class VRepresentation:
    """Generators of a polyhedron, ``P = sum_j conv(V_j) + cone(R) + span(L)``.

    Attributes:
        vertices: (p, n) float64 points; ``vertex_blocks[i]`` says which
            block row ``i`` belongs to. One block is plain Minkowski-Weyl;
            several blocks mean a Minkowski sum (a product when their supports
            are disjoint, as :func:`h_to_v` makes them).
        rays: (r, n) float64 extreme rays, unit norm, orthogonal to lineality.
        lineality: (l, n) float64 orthonormal basis of the lineality space.
        vertex_blocks: (p,) int block index of each vertex, 0..n_blocks-1.
        method: how it was computed (``closed_form``, ``cdd``, ``blocks`` ...).
        seconds: wall time of the computation.
    """

    vertices: np.ndarray
    rays: np.ndarray
    lineality: np.ndarray
    vertex_blocks: np.ndarray
    method: str = "given"
    seconds: float = 0.0

    def __post_init__(self):
        vertices = np.asarray(self.vertices, dtype=np.float64)
        if vertices.ndim != 2 or vertices.shape[0] == 0:
            raise ConstraintShapeError(
                "vertices must be a 2-D array with at least one row (a cone has "
                f"the single vertex 0); got shape {vertices.shape}."
            )
        n = vertices.shape[1]
        rays = np.asarray(self.rays, dtype=np.float64).reshape(-1, n)
        lineality = np.asarray(self.lineality, dtype=np.float64).reshape(-1, n)
        blocks = np.asarray(self.vertex_blocks, dtype=np.int64).reshape(-1)
        if blocks.shape[0] != vertices.shape[0]:
            raise ConstraintShapeError(
                f"vertex_blocks has {blocks.shape[0]} entries for "
                f"{vertices.shape[0]} vertices; give one block index per vertex."
            )
        if blocks.size and (blocks.min() != 0 or set(np.unique(blocks)) != set(range(blocks.max() + 1))):
            raise ConstraintShapeError("vertex_blocks must use every index 0..n_blocks-1.")
        for name, arr in (("vertices", vertices), ("rays", rays), ("lineality", lineality)):
            if not np.all(np.isfinite(arr)):
                raise NonFiniteError(f"{name} contains NaN or infinity.")
            arr.setflags(write=False)
        blocks.setflags(write=False)
        object.__setattr__(self, "vertices", vertices)
        object.__setattr__(self, "rays", rays)
        object.__setattr__(self, "lineality", lineality)
        object.__setattr__(self, "vertex_blocks", blocks)

    @property
    def dim(self) -> int:
        """Ambient dimension n."""
        return self.vertices.shape[1]

    @property
    def n_blocks(self) -> int:
        return int(self.vertex_blocks.max()) + 1

    @property
    def n_generators(self) -> int:
        return self.vertices.shape[0] + self.rays.shape[0] + self.lineality.shape[0]

    @property
    def is_cone(self) -> bool:
        """True when the only vertex is the origin (``P = cone(R) + span(L)``)."""
        return self.vertices.shape[0] == 1 and not np.any(self.vertices)

    def block_vertices(self) -> list[np.ndarray]:
        """Vertices of each block, in block order: list of (p_j, n) arrays."""
        return [self.vertices[self.vertex_blocks == j] for j in range(self.n_blocks)]

    def sample(self, num: int, seed: Optional[int] = None, scale: float = 1.0) -> np.ndarray:
        """Random points of ``P``: (num, n) float64, for tests and demos.

        Convex weights are Dirichlet(1) per block; ray and lineality
        coefficients are ``scale`` times |normal| and normal draws.
        """
        rng = np.random.default_rng(seed)
        x = np.zeros((num, self.dim))
        for verts in self.block_vertices():
            x += rng.dirichlet(np.ones(len(verts)), size=num) @ verts
        x += scale * np.abs(rng.standard_normal((num, self.rays.shape[0]))) @ self.rays
        x += scale * rng.standard_normal((num, self.lineality.shape[0])) @ self.lineality
        return x

    def __repr__(self) -> str:
        return (
            f"VRepresentation(n={self.dim}, vertices={self.vertices.shape[0]} in "
            f"{self.n_blocks} block(s), rays={self.rays.shape[0]}, "
            f"lineality={self.lineality.shape[0]}, method={self.method!r}, "
            f"seconds={self.seconds:.4g})"
        )


# ---------------------------------------------------------------- helpers


def _orthonormal_rows(vectors: np.ndarray, n: int) -> np.ndarray:
    """Orthonormal basis (k, n) of the row span of ``vectors`` (?, n)."""
    if vectors.size == 0:
        return np.zeros((0, n))
    _, s, vt = np.linalg.svd(vectors, full_matrices=False)
    rank = int(np.sum(s > _RANK_RTOL * max(1.0, s[0])))
    basis = vt[:rank]
    # Sign convention: largest-magnitude entry positive, for determinism.
    signs = np.sign(basis[np.arange(rank), np.argmax(np.abs(basis), axis=1)])
    return basis * signs[:, None]


def _unique_sorted_rows(rows: np.ndarray) -> np.ndarray:
    if rows.shape[0] <= 1:
        return rows
    keys = np.round(rows, 10) + 0.0  # +0.0 folds -0.0 into 0.0
    order = np.lexsort(keys.T[::-1])  # numeric, first column most significant
    keys, rows = keys[order], rows[order]
    keep = np.r_[True, np.any(keys[1:] != keys[:-1], axis=1)]
    return rows[keep]


def _canonical(vertices, rays, lineality, n, orthogonal=False):
    """Orthonormal lineality, rays and vertices reduced modulo it, unit rays.

    ``orthogonal=True`` promises that ``lineality`` is already orthonormal and
    orthogonal to rays and vertices (the closed form), skipping O(n^3) work.
    """
    basis = lineality if orthogonal else _orthonormal_rows(lineality, n)
    if basis.size and not orthogonal:
        vertices = vertices - (vertices @ basis.T) @ basis
        rays = rays - (rays @ basis.T) @ basis
    norms = np.linalg.norm(rays, axis=1)
    scale = max(1.0, float(norms.max())) if norms.size else 1.0
    rays = rays[norms > 1e-12 * scale]
    rays = rays / np.linalg.norm(rays, axis=1, keepdims=True)
    return _unique_sorted_rows(vertices), _unique_sorted_rows(rays), basis


def _exact_entries(values: np.ndarray) -> Optional[list]:
    """Entries as ints/Fractions when all are integer or small-rational valued."""
    flat = values.reshape(-1)
    if np.all(flat == np.round(flat)) and np.all(np.abs(flat) < 2**53):
        return [int(v) for v in flat]
    out = []
    for v in flat:
        frac = Fraction(float(v)).limit_denominator(_MAX_DENOMINATOR)
        if float(frac) != v:
            return None
        out.append(frac)
    return out


def _vertex_upper_bound(num_constraints: int, dim: int) -> float:
    """McMullen's upper bound on the vertices of a polytope (m facets, dim d)."""
    if dim <= 1:
        return 2.0
    m, d = num_constraints, dim
    if m <= d:
        return 1.0

    def comb(a, k):
        return math.comb(a, k) if 0 <= k <= a else 0

    return float(comb(m - (d + 1) // 2, d // 2) + comb(m - d // 2 - 1, (d + 1) // 2 - 1))


def _cdd_generators(system: ConstraintSystem, max_generators: int):
    """Double description with pycddlib. Returns (vertices, rays, lineality)."""
    try:
        import cdd
        import cdd.gmp
    except ImportError as exc:  # pragma: no cover - install problem
        raise ImportError(
            "pycddlib>=3 is needed for double description: install the system "
            "packages libcdd-dev and libgmp-dev, then `pip install 'pycddlib>=3,<4'`."
        ) from exc
    A, b, C, d = system.A, system.b, system.C, system.d
    m, n = A.shape
    table = np.vstack([np.column_stack([b, -A]), np.column_stack([d, -C])])
    bound = _vertex_upper_bound(m, n)
    if bound > max_generators:
        # cddlib cannot be interrupted: say so before a possibly long run.
        logger.warning(
            "keras_lincon: double description on %d constraints in %d dimensions: up to %.3g "
            "vertices are possible (max_generators=%d), this may take a while. Independent "
            "blocks, fewer constraints or box=... on a cone avoid it.", m, n, bound, max_generators,
        )
    exact = _exact_entries(table)
    if exact is not None:
        module = cdd.gmp
        rows = np.array(exact, dtype=object).reshape(table.shape).tolist()
    else:
        module = cdd
        rows = table.tolist()
    matrix = module.matrix_from_array(
        rows, lin_set=range(m, m + C.shape[0]), rep_type=cdd.RepType.INEQUALITY
    )
    generators = module.copy_generators(module.polyhedron_from_matrix(matrix))
    array = np.array(generators.array, dtype=np.float64).reshape(-1, n + 1)
    if len(array) > max_generators:
        raise TooManyGeneratorsError(
            f"double description produced {len(array)} generators for {m} "
            f"constraints in {n} dimensions, more than max_generators="
            f"{max_generators}. Split the constraints into independent blocks "
            "(method='auto' does this), use fewer constraints, or put a box on a "
            "cone (box=...) instead of listing bounds as rows of A; raise "
            "max_generators only if the layer can afford that many."
        )
    if len(array) == 0:
        if system.is_homogeneous:
            return np.zeros((1, n)), np.zeros((0, n)), np.zeros((0, n))
        raise InfeasibleError(
            f"the constraints A x <= b, C x = d have no solution (double "
            f"description found an empty set for a group of {m} inequalities "
            f"and {C.shape[0]} equalities on {n} variables). Check the signs of "
            "A and b: the layer needs a non-empty set."
        )
    is_line = np.zeros(len(array), dtype=bool)
    is_line[sorted(generators.lin_set)] = True
    is_point = (array[:, 0] != 0) & ~is_line
    vertices = array[is_point, 1:] / array[is_point, :1]
    rays = array[~is_point & ~is_line, 1:]
    lineality = array[is_line, 1:]
    if vertices.shape[0] == 0:  # cdd leaves out the apex of a pointed cone
        vertices = np.zeros((1, n))
    return vertices, rays, lineality


def _full_row_rank(A: np.ndarray) -> bool:
    if A.shape[0] == 0:
        return True
    if A.shape[0] > A.shape[1]:
        return False
    s = np.linalg.svd(A, compute_uv=False)
    return bool(s[-1] > _RANK_RTOL * max(1.0, s[0]))


def _closed_form_generators(A: np.ndarray, b: np.ndarray):
    """``{A x <= b}`` for full-row-rank A: apex A^+ b, rays -(A^+)^T, null(A)."""
    m, n = A.shape
    if m == 0:
        return np.zeros((1, n)), np.zeros((0, n)), np.eye(n)
    # One Householder QR of A^T gives both parts in O(n^2 m): A^T = Q R with
    # Q = [Q1 Q2]; Q2 spans null(A), and A^+ = Q1 R1^{-T}.
    q, r = scipy.linalg.qr(A.T, mode="full")
    pinv = scipy.linalg.solve_triangular(r[:m], q[:, :m].T).T  # (n, m) = Q1 R1^{-T}
    apex = (pinv @ b)[None, :]
    rays = -pinv.T  # A r_i = -e_i; rays lie in the row space, orthogonal to null(A)
    lineality = q[:, m:].T
    return apex, rays, lineality


def _components(system: ConstraintSystem):
    """Connected components of the variable graph: list of (var_idx, A_rows, C_rows)."""
    rows = np.vstack([system.A, system.C]) != 0
    num_rows, n = rows.shape
    if num_rows == 0:
        return []
    incidence = scipy.sparse.csr_matrix(rows)
    graph = scipy.sparse.bmat([[None, incidence], [incidence.T, None]], format="csr")
    _, labels = scipy.sparse.csgraph.connected_components(graph, directed=False)
    row_labels, var_labels = labels[:num_rows], labels[num_rows:]
    components = []
    for label in np.unique(var_labels):
        var_idx = np.flatnonzero(var_labels == label)
        row_idx = np.flatnonzero(row_labels == label)
        components.append(
            (
                var_idx,
                row_idx[row_idx < system.A.shape[0]],
                row_idx[row_idx >= system.A.shape[0]] - system.A.shape[0],
            )
        )
    return components


def _check_empty_rows(system: ConstraintSystem) -> None:
    """Rows with all-zero coefficients must read 0 <= b_i or 0 = d_j."""
    zero_a = ~np.any(system.A != 0, axis=1)
    zero_c = ~np.any(system.C != 0, axis=1)
    bad = np.flatnonzero(zero_a & (system.b < 0))
    bad_eq = np.flatnonzero(zero_c & (system.d != 0))
    if bad.size or bad_eq.size:
        raise InfeasibleError(
            f"the set is empty: row(s) {bad.tolist()} of A are zero with b < 0"
            f" and row(s) {bad_eq.tolist()} of C are zero with d != 0, so no x "
            "satisfies them. Remove those rows or fix their right-hand sides."
        )


def _solve(system: ConstraintSystem, use_closed_form: bool, max_generators: int):
    """Generators of one (sub)system; closed form where it applies."""
    if use_closed_form and system.C.shape[0] == 0 and _full_row_rank(system.A):
        return _closed_form_generators(system.A, system.b), "closed_form"
    return _cdd_generators(system, max_generators), "cdd"


def _subsystem(system: ConstraintSystem, var_idx, a_rows, c_rows) -> ConstraintSystem:
    return ConstraintSystem(
        system.A[np.ix_(a_rows, var_idx)],
        system.b[a_rows],
        system.C[np.ix_(c_rows, var_idx)],
        system.d[c_rows],
    )


def check_representation(
    rep: VRepresentation, system: ConstraintSystem, tol: float = CHECK_TOLERANCE
) -> None:
    """Raises RepresentationCheckError unless every generator satisfies ``system``.

    Vertices must satisfy ``A v <= b`` and ``C v = d``; rays ``A r <= 0`` and
    ``C r = 0``; lineality vectors ``A l = 0`` and ``C l = 0``; all relative to
    ``|b_i| + ||a_i|| ||.||`` with tolerance ``tol``. For a representation with
    several vertex blocks, each vertex is checked after adding the other
    blocks' first vertices (a point of the Minkowski sum).
    """
    A, b, C, d = system.A, system.b, system.C, system.d
    blocks = rep.block_vertices()
    base = sum(v[0] for v in blocks)
    points = np.vstack([base - blk[0] + blk for blk in blocks])
    row_norm_a = np.linalg.norm(A, axis=1)
    row_norm_c = np.linalg.norm(C, axis=1)

    def worst(residual, rhs, row_norm, vecs, two_sided):
        if residual.size == 0:
            return -np.inf
        scale = np.abs(rhs)[None, :] + row_norm[None, :] * np.linalg.norm(vecs, axis=1)[:, None]
        value = np.abs(residual) if two_sided else residual
        return float(np.max(value / np.maximum(scale, 1e-300)))

    checks = {
        "vertex": max(
            worst(points @ A.T - b, b, row_norm_a, points, False),
            worst(points @ C.T - d, d, row_norm_c, points, True),
        ),
        "ray": max(
            worst(rep.rays @ A.T, 0 * b, row_norm_a, rep.rays, False),
            worst(rep.rays @ C.T, 0 * d, row_norm_c, rep.rays, True),
        ),
        "lineality": max(
            worst(rep.lineality @ A.T, 0 * b, row_norm_a, rep.lineality, True),
            worst(rep.lineality @ C.T, 0 * d, row_norm_c, rep.lineality, True),
        ),
    }
    failed = {k: v for k, v in checks.items() if v > tol}
    if failed:
        raise RepresentationCheckError(
            f"the computed generators violate the constraints (worst relative "
            f"violation by kind: {failed}, tolerance {tol:g}). The system is "
            "numerically ill-conditioned: rescale rows of A to similar norms, "
            "give integer or rational coefficients (exact arithmetic), or use "
            "method='cdd'."
        )


def h_to_v(
    A,
    b=None,
    C=None,
    d=None,
    *,
    method: str = "auto",
    max_generators: int = DEFAULT_MAX_GENERATORS,
    tol: float = CHECK_TOLERANCE,
) -> VRepresentation:
    """Computes generators of ``P = {x : A x <= b, C x = d}``.

    Args:
        A: (m, n) inequality matrix.
        b: (m,) right-hand side; None or zeros gives the paper's cone ``A x <= 0``.
        C: optional (p, n) equality matrix. d: (p,) right-hand side.
        method: ``"auto"`` (independent blocks, each by closed form when ``A``
            has full row rank and no equalities, else by double description),
            ``"blocks"`` (blocks, double description in each), ``"cdd"`` (one
            double description of the whole system) or ``"closed_form"``
            (whole system; needs full row rank and no equalities).
        max_generators: refuse representations with more generators than this.
        tol: relative tolerance of the self-check (see
            :func:`check_representation`).

    Returns:
        A :class:`VRepresentation` with unit-norm rays, orthonormal lineality
        and rays/vertices reduced modulo the lineality space.

    Raises:
        ConstraintShapeError, NonFiniteError: bad input.
        InfeasibleError: ``P`` is empty. DegenerateSetError: ``P`` is a point.
        TooManyGeneratorsError: more than ``max_generators`` generators.
        RepresentationCheckError: numerical failure of the self-check.

    Example:
        >>> rep = h_to_v([[1.0, -1.0]])          # x_1 <= x_2
        >>> rep.rays.shape, rep.lineality.shape
        ((1, 2), (1, 2))
    """
    if method not in METHODS:
        raise LinconError(f"method must be one of {METHODS}; got {method!r}.")
    if not isinstance(max_generators, (int, np.integer)) or max_generators < 1:
        raise LinconError(f"max_generators must be a positive int; got {max_generators!r}.")
    start = time.perf_counter()
    system = as_constraint_system(A, b, C, d)
    n = system.dim
    _check_empty_rows(system)

    if method == "cdd":
        (vertices, rays, lineality), used = _cdd_generators(system, max_generators), "cdd"
        vertices, rays, lineality = _canonical(vertices, rays, lineality, n)
        blocks = [vertices]
    elif method == "closed_form":
        if system.C.shape[0] or not _full_row_rank(system.A):
            raise LinconError(
                "method='closed_form' needs no equalities and A with full row "
                f"rank; A has shape {system.A.shape} and rank "
                f"{np.linalg.matrix_rank(system.A)}. Use method='auto'."
            )
        vertices, rays, lineality = _canonical(
            *_closed_form_generators(system.A, system.b), n, orthogonal=True
        )
        blocks, used = [vertices], "closed_form"
    else:
        blocks, ray_parts, line_parts, used_parts = [], [], [], set()
        components = _components(system)
        touched = np.zeros(n, dtype=bool)
        for var_idx, a_rows, c_rows in components:
            if a_rows.size == 0 and c_rows.size == 0:
                continue
            touched[var_idx] = True
            sub = _subsystem(system, var_idx, a_rows, c_rows)
            (v, r, l), how = _solve(sub, method == "auto", max_generators)
            used_parts.add(how)
            v, r, l = _canonical(v, r, l, len(var_idx), orthogonal=how == "closed_form")
            embed = lambda rows: _embed(rows, var_idx, n)  # noqa: E731
            blocks.append(embed(v))
            ray_parts.append(embed(r))
            line_parts.append(embed(l))
        free = np.flatnonzero(~touched)
        line_parts.append(np.eye(n)[free])
        rays = _unique_sorted_rows(np.vstack(ray_parts)) if ray_parts else np.zeros((0, n))
        lineality = np.vstack(line_parts)
        used = "+".join(sorted(used_parts)) or "free"
        if method == "blocks" or len(components) > 1:
            used = f"blocks({used})"
        if not blocks:
            blocks = [np.zeros((1, n))]

    # Single-vertex blocks are constants: fold them into one offset point.
    points = [blk for blk in blocks if len(blk) == 1]
    polytopes = [blk for blk in blocks if len(blk) > 1]
    offset = sum(points) if points else np.zeros((1, n))
    vertex_list = ([offset] if np.any(offset) or not polytopes else []) + polytopes
    vertex_blocks = np.concatenate([np.full(len(v), j) for j, v in enumerate(vertex_list)])

    if len(vertex_list) == 1 and len(vertex_list[0]) == 1 and rays.shape[0] == 0 and lineality.shape[0] == 0:
        what = "{0}" if not np.any(vertex_list[0]) else f"the single point {np.round(vertex_list[0][0], 6).tolist()[:8]}"
        raise DegenerateSetError(
            f"the constraints leave only {what}: every output would be that "
            "constant, so there is nothing to learn. Check for pairs of opposite "
            "rows (a_i x <= 0 and -a_i x <= 0) that pin variables, or drop "
            "constraints."
        )
    total = sum(len(v) for v in vertex_list) + rays.shape[0] + lineality.shape[0]
    if total > max_generators:
        raise TooManyGeneratorsError(
            f"the representation has {total} generators, more than "
            f"max_generators={max_generators}. Use fewer constraints, a box on a "
            "cone (box=...), or raise max_generators."
        )
    rep = VRepresentation(
        vertices=np.vstack(vertex_list),
        rays=rays,
        lineality=lineality,
        vertex_blocks=vertex_blocks,
        method=used,
        seconds=time.perf_counter() - start,
    )
    check_representation(rep, system, tol)
    logger.debug("h_to_v: %r", rep)
    return rep


def _embed(rows: np.ndarray, var_idx: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros((rows.shape[0], n))
    out[:, var_idx] = rows
    return out


def as_box(box, n: int) -> Optional[tuple[np.ndarray, np.ndarray]]:
    """Validates ``box = (lower, upper)`` (scalars, (n,) arrays, None or inf for a
    missing side) and returns two (n,) float64 arrays, or None for no box."""
    if box is None:
        return None
    try:
        lower, upper = box
    except (TypeError, ValueError):
        raise ConstraintShapeError(
            f"box must be a pair (lower, upper) of scalars or length-{n} arrays; got {box!r}."
        ) from None
    lo = np.broadcast_to(np.asarray(lower if lower is not None else -np.inf, dtype=np.float64), (n,)).copy()
    hi = np.broadcast_to(np.asarray(upper if upper is not None else np.inf, dtype=np.float64), (n,)).copy()
    if np.any(np.isnan(lo)) or np.any(np.isnan(hi)):
        raise ConstraintShapeError("box bounds contain NaN; use -inf/inf for a missing side.")
    if np.any(lo >= hi):
        raise ConstraintShapeError(
            f"box lower bounds must be strictly below upper bounds; coordinate(s) "
            f"{np.flatnonzero(lo >= hi)[:8].tolist()} are not."
        )
    return lo, hi


def with_box(A, b=None, lower=None, upper=None) -> tuple[np.ndarray, np.ndarray]:
    """``A x <= b`` plus the rows ``x_i <= upper_i`` and ``-x_i <= -lower_i``.

    Bounds are scalars or (n,) arrays; infinite or None sides add no row.
    Returns (A', b') float64.
    """
    system = as_constraint_system(A, b)
    n = system.dim
    rows, rhs = [system.A], [system.b]
    eye = np.eye(n)
    if upper is not None:
        hi = np.broadcast_to(np.asarray(upper, dtype=np.float64), (n,))
        rows.append(eye[np.isfinite(hi)])
        rhs.append(hi[np.isfinite(hi)])
    if lower is not None:
        lo = np.broadcast_to(np.asarray(lower, dtype=np.float64), (n,))
        rows.append(-eye[np.isfinite(lo)])
        rhs.append(-lo[np.isfinite(lo)])
    return np.vstack(rows), np.concatenate(rhs)


def violations(x, A, b=None, C=None, d=None, *, relative: bool = False) -> np.ndarray:
    """Worst constraint violation of each point.

    Args:
        x: (..., n) points.
        A, b, C, d: the constraints, as in :func:`h_to_v`.
        relative: divide each residual by ``|b_i| + ||a_i|| ||x||`` (the scale
            at which floating point can resolve it).

    Returns:
        (num_points,) float64: ``max(max_i a_i.x - b_i, max_j |c_j.x - d_j|)``
        per point (``-inf`` for a point when there are no constraints);
        ``<= 0`` means feasible.
    """
    system = as_constraint_system(A, b, C, d)
    points = np.asarray(x, dtype=np.float64)
    if points.shape[-1:] != (system.dim,):
        raise ConstraintShapeError(
            f"x must have last dimension {system.dim} (the columns of A); got shape {points.shape}."
        )
    points = points.reshape(-1, system.dim)
    ineq = points @ system.A.T - system.b
    eq = np.abs(points @ system.C.T - system.d)
    if relative:
        norms = np.linalg.norm(points, axis=1, keepdims=True)
        ineq = ineq / np.maximum(np.abs(system.b) + np.linalg.norm(system.A, axis=1) * norms, 1e-30)
        eq = eq / np.maximum(np.abs(system.d) + np.linalg.norm(system.C, axis=1) * norms, 1e-30)
    both = np.hstack([ineq, eq])
    return both.max(axis=1) if both.shape[1] else np.full(points.shape[0], -math.inf)


def max_violation(x, A, b=None, C=None, d=None, *, relative: bool = False) -> float:
    """Largest constraint violation over a batch of points.

    Same arguments as :func:`violations`. Returns a float; ``<= 0`` means
    every point is feasible (``-inf`` for no points or no constraints).
    """
    per_point = violations(x, A, b, C, d, relative=relative)
    return float(per_point.max()) if per_point.size else -math.inf


def interior_point_in_box(A, b=None, C=None, d=None, *, lower, upper) -> np.ndarray:
    """A point of ``P`` as deep inside the box ``[lower, upper]`` as possible.

    Solves the LP ``max t s.t. A c <= b, C c = d, lower + t w <= c <= upper - t w``
    with ``w = upper - lower`` (finite sides only). Used as the centre of the
    box rescaling. Returns (n,) float64.

    Raises:
        InfeasibleError: ``P`` misses the interior of the box.
    """
    system = as_constraint_system(A, b, C, d)
    n = system.dim
    lower = np.broadcast_to(np.asarray(lower, dtype=np.float64), (n,))
    upper = np.broadcast_to(np.asarray(upper, dtype=np.float64), (n,))
    width = np.where(np.isfinite(upper - lower), upper - lower, 1.0)
    cost = np.zeros(n + 1)
    cost[-1] = -1.0
    rows, rhs = [np.column_stack([system.A, np.zeros(system.A.shape[0])])], [system.b]
    fin_hi, fin_lo = np.isfinite(upper), np.isfinite(lower)
    eye = np.eye(n)
    rows.append(np.column_stack([eye[fin_hi], width[fin_hi]]))
    rhs.append(upper[fin_hi])
    rows.append(np.column_stack([-eye[fin_lo], width[fin_lo]]))
    rhs.append(-lower[fin_lo])
    result = scipy.optimize.linprog(
        cost,
        A_ub=np.vstack(rows),
        b_ub=np.concatenate(rhs),
        A_eq=np.column_stack([system.C, np.zeros(system.C.shape[0])]) if system.C.size else None,
        b_eq=system.d if system.C.size else None,
        bounds=[(None, None)] * n + [(None, 0.5)],
        method="highs",
    )
    if result.status != 0 or result.x[-1] <= 1e-9:
        raise InfeasibleError(
            "the box and the constraints share no point strictly inside the box "
            "(every feasible point touches a box face or the intersection is "
            "empty). Widen the box or relax the constraints."
        )
    return result.x[:n]


# ------------------------------------------------------- constraint builders


def checkerboard(
    image_shape: Sequence[int] = (28, 28), grid: Sequence[int] = (4, 4)
) -> np.ndarray:
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
            A[r * grid_c + c, r * bh:(r + 1) * bh, c * bw:(c + 1) * bw] = (-1.0) ** (r + c)
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
