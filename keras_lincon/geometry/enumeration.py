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
* ``cdd``: double description (pycddlib 3, see
  :mod:`keras_lincon.geometry.double_description`): exact rational arithmetic whenever
  the set is small enough, floating point with completeness checks above,
  closed forms (cross-polytopes, perfect-matching polytopes), refused up
  front only when a true lower bound on the count exceeds the cap, else
  bounded in time and by a count, and interruptible. Near-duplicate
  generators are identified by one relative rule
  (:func:`~keras_lincon.geometry.representation.merge_close_rows`).
* ``blocks``: the constraint graph (variables linked by a shared row) is split
  into connected components; ``P`` is the product of the components' sets, so
  a box in ``n`` dimensions costs ``2 n`` vertices instead of ``2^n``.
  Variables that no constraint touches are pure lineality.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import numpy as np
import scipy.linalg

from keras_lincon.errors import (
    ConstraintShapeError,
    DegenerateSetError,
    InfeasibleError,
    LinconError,
    TooManyGeneratorsError,
)
from keras_lincon.geometry import double_description
from keras_lincon.geometry.representation import (  # noqa: F401  (re-exported)
    MERGE_RTOL,
    RANK_RTOL,
    VRepresentation,
    check_representation,
    merge_close_rows,
    orthonormal_rows,
)
from keras_lincon.geometry.system import (  # noqa: F401  (re-exported)
    CHECK_TOLERANCE,
    ConstraintSystem,
    as_box,
    as_constraint_system,
    interior_point_in_box,
    max_violation,
    normalized_rows,
    violations,
    with_box,
)

logger = logging.getLogger("keras_lincon")

#: Default cap on the vertices + rays of one representation (the lineality
#: space is implicit and costs nothing).
DEFAULT_MAX_GENERATORS = 20_000
METHODS = ("auto", "cdd", "closed_form", "blocks")


# ---------------------------------------------------------------- helpers


def _canonical(vertices, rays, row_space):
    """Vertices and rays reduced modulo the lineality space, unit rays, near-duplicates merged, sorted.

    ``row_space`` (k, n) is an orthonormal basis of the complement of the
    lineality space; reducing keeps the component inside it (O(n k) a row).
    A ray is dropped when its reduced part is below ``1e-12`` of its own
    norm (it lay in the lineality space): a ray's length means nothing, so no
    absolute threshold (rays of tiny rows are tiny). Near-duplicates are
    identified by :func:`merge_close_rows` (:data:`MERGE_RTOL`).
    """
    if row_space.shape[0] < row_space.shape[1]:  # a lineality space to reduce by (else: exact as given)
        vertices = (vertices @ row_space.T) @ row_space
        norms = np.linalg.norm(rays, axis=1)
        rays = (rays @ row_space.T) @ row_space
        rays = rays[np.linalg.norm(rays, axis=1) > 1e-12 * norms]
    return merge_close_rows(vertices), merge_close_rows(rays, unit=True)


def _full_row_rank(A: np.ndarray) -> bool:
    if A.shape[0] == 0:
        return True
    if A.shape[0] > A.shape[1]:
        return False
    s = np.linalg.svd(A, compute_uv=False)
    return bool(s[-1] > RANK_RTOL * s[0])


def _closed_form_generators(A: np.ndarray, b: np.ndarray):
    """``{A x <= b}`` for full-row-rank A: apex A^+ b, rays -(A^+)^T.

    Returns (apex (1, n), rays (m, n), row_space (m, n)). One thin QR of A^T,
    O(n m^2): A^T = Q R, A^+ = Q R^{-T}; Q^T spans the row space, the
    complement of the lineality space null(A).
    """
    m, n = A.shape
    if m == 0:
        return np.zeros((1, n)), np.zeros((0, n)), np.zeros((0, n))
    q, r = scipy.linalg.qr(A.T, mode="economic")
    # np.linalg.solve: scipy's solve_triangular costs ~8 ms a call here (BLAS dispatch).
    pinv = np.linalg.solve(r, q.T).T  # (n, m)
    apex = (pinv @ b)[None, :]
    rays = -pinv.T  # A r_i = -e_i; rays lie in the row space
    return apex, rays, q.T


def _closed_form_on_equalities(system: ConstraintSystem):
    """``{A x <= b, C x = d}`` for ``C`` of full row rank and ``A`` of full row rank on ``null(C)``:
    ``x = x0 + N z`` (``x0 = C^+ d``, ``N`` an orthonormal basis of ``null(C)``), the closed form
    on ``A N z <= b - A x0``, mapped back. Returns (vertices, rays, row_space) or None when the
    ranks do not allow it (double description then)."""
    A, b, C, d = system.A, system.b, system.C, system.d
    if not _full_row_rank(C):
        return None
    null_basis = scipy.linalg.null_space(C)  # (n, r)
    particular = np.linalg.lstsq(C, d, rcond=None)[0]
    reduced = A @ null_basis
    # a row constant on C x = d (parallel to C's rows) reduces to ~0, which a relative rank test misses
    constant = np.linalg.norm(reduced, axis=1) <= 1e-9 * np.linalg.norm(A, axis=1)
    if reduced.shape[1] == 0 or constant.any() or not _full_row_rank(reduced):
        return None
    apex, rays, _ = _closed_form_generators(reduced, b - A @ particular)
    vertices, rays = particular + apex @ null_basis.T, rays @ null_basis.T

    def refine(points, rhs):  # one step of iterative refinement onto C x = rhs: float64 layers use these as is
        return points - np.linalg.lstsq(C, (points @ C.T - rhs).T, rcond=None)[0].T

    return refine(vertices, d), refine(rays, 0.0), orthonormal_rows(np.vstack([A, C]), system.dim)


def _components(system: ConstraintSystem):
    """Blocks of coupled variables (see :func:`keras_lincon.geometry.system.blocks`):
    list of (var_idx, A_rows, C_rows), and the number of untouched variables."""
    # dense label propagation: same blocks as system.blocks, ~10x cheaper on small systems
    coord, (a_block, c_block) = double_description.coupled_blocks(system.dim, system.A, system.C)
    components = [
        (np.flatnonzero(coord == j), np.flatnonzero(a_block == j), np.flatnonzero(c_block == j))
        for j in range(int(coord.max()) + 1 if coord.size else 0)
    ]
    return components, int(np.sum(coord < 0))


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


def _solve(unit_rows: ConstraintSystem, original: ConstraintSystem, use_closed_form: bool, dd_options: dict):
    """Generators of one (sub)system: ((vertices, rays, row_space), method).

    The closed form works on ``unit_rows`` (rows scaled to unit norm); double
    description gets the ``original`` rows, whose exact values it can use.
    """
    if use_closed_form and unit_rows.C.shape[0] == 0 and _full_row_rank(unit_rows.A):
        return _closed_form_generators(unit_rows.A, unit_rows.b), "closed_form"
    if use_closed_form and unit_rows.C.shape[0]:  # equalities: the closed form in null(C)'s coordinates
        found = _closed_form_on_equalities(unit_rows)
        if found is not None:
            return found, "closed_form"
    vertices, rays, _ = double_description.enumerate_generators(
        original.A, original.b, original.C, original.d, **dd_options
    )
    # The lineality space of a non-empty set is null([A; C]): its complement is
    # the row space, whatever basis cdd returned for it.
    return (vertices, rays, orthonormal_rows(np.vstack([unit_rows.A, unit_rows.C]), unit_rows.dim)), "cdd"


def _subsystem(system: ConstraintSystem, var_idx, a_rows, c_rows) -> ConstraintSystem:
    return ConstraintSystem(
        system.A[np.ix_(a_rows, var_idx)],
        system.b[a_rows],
        system.C[np.ix_(c_rows, var_idx)],
        system.d[c_rows],
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
    time_budget: float | None = double_description.DEFAULT_TIME_BUDGET,
    allow_large: bool = False,
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
        max_generators: refuse representations with more vertices + rays than
            this (up front only when a true lower bound on the count exceeds
            it, else after counting; see :mod:`keras_lincon.geometry.double_description`).
        tol: relative tolerance of the self-check (see
            :func:`check_representation`).
        time_budget: seconds a long double description may run (in a worker
            process, so Ctrl-C also stops it); None for no limit.
        allow_large: run double description even when a lower bound on the
            count is above ``max_generators`` (the count is still checked).

    Returns:
        A :class:`VRepresentation` with unit-norm rays, orthonormal lineality
        and rays/vertices reduced modulo the lineality space.

    Raises:
        ConstraintShapeError, NonFiniteError: bad input.
        InfeasibleError: ``P`` is empty. DegenerateSetError: ``P`` is a point.
        TooManyGeneratorsError: more than ``max_generators`` generators;
            ``reason`` says which rule: ``"bound"`` (a
            :class:`GeneratorExplosionError`: certainly above the cap, no
            enumeration) or ``"count"`` (above the cap after counting).
        ConstructionTimeoutError: double description exceeded ``time_budget``
            (``reason == "time"``).
        MissingDependencyError: the set needs pycddlib, which is not installed.
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
    # Scaling a row does not change the set; unit rows keep ranks and closed
    # forms independent of how the user scaled them.
    work = normalized_rows(system)

    if method == "closed_form" and (work.C.shape[0] or not _full_row_rank(work.A)):
        raise LinconError(
            "method='closed_form' needs no equalities and A with full row "
            f"rank; A has shape {system.A.shape} and rank "
            f"{np.linalg.matrix_rank(work.A)}. Use method='auto'."
        )
    if method in ("cdd", "closed_form"):
        everything = np.arange(n)
        components, n_free = [(everything, np.arange(work.A.shape[0]), np.arange(work.C.shape[0]))], 0
    else:
        components, n_free = _components(work)
    # One block that holds every variable and row (method='cdd', or a coupled
    # set): the systems themselves, no copies.
    whole = (
        len(components) == 1
        and components[0][0].size == n
        and components[0][1].size == work.A.shape[0]
        and components[0][2].size == work.C.shape[0]
    )
    blocks, ray_parts, row_parts, used_parts = [], [], [], set()
    for var_idx, a_rows, c_rows in components:
        if a_rows.size == 0 and c_rows.size == 0:
            continue
        # The closed form on equalities needs A of full row rank on null(C):
        # with more rows than n - p it certainly fails, so it is not tried.
        closed_form = method in ("auto", "closed_form") and not (
            c_rows.size and a_rows.size > var_idx.size - c_rows.size
        )
        (v, r, q), how = _solve(
            work if whole else _subsystem(work, var_idx, a_rows, c_rows),
            system if whole else _subsystem(system, var_idx, a_rows, c_rows),
            closed_form,
            dict(max_generators=max_generators, time_budget=time_budget, allow_large=allow_large),
        )
        used_parts.add(how)
        if how != "cdd" or q.shape[0] < q.shape[1]:
            # (double description returns merged, sorted generators: with no
            # lineality to reduce them by, they are canonical already)
            v, r = _canonical(v, r, q)
        blocks.append(_embed(v, var_idx, n))
        ray_parts.append(_embed(r, var_idx, n))
        row_parts.append(_embed(q, var_idx, n))
    if len(ray_parts) == 1:  # canonical already (embedding keeps the order)
        rays = ray_parts[0]
    else:
        rays = merge_close_rows(np.vstack(ray_parts), unit=True) if ray_parts else np.zeros((0, n))
    row_space = np.vstack(row_parts) if row_parts else np.zeros((0, n))
    used = "+".join(sorted(used_parts)) or "free"
    if method in ("auto", "blocks") and (method == "blocks" or len(components) + n_free > 1):
        used = f"blocks({used})"
    if not blocks:
        blocks = [np.zeros((1, n))]

    # Single-vertex blocks are constants: fold them into one offset point.
    points = [blk for blk in blocks if len(blk) == 1]
    polytopes = [blk for blk in blocks if len(blk) > 1]
    offset = sum(points) if points else np.zeros((1, n))
    vertex_list = ([offset] if np.any(offset) or not polytopes else []) + polytopes
    vertex_blocks = np.concatenate([np.full(len(v), j) for j, v in enumerate(vertex_list)])

    if len(vertex_list) == 1 and len(vertex_list[0]) == 1 and rays.shape[0] == 0 and row_space.shape[0] == n:
        what = (
            "{0}" if not np.any(vertex_list[0]) else f"the single point {np.round(vertex_list[0][0], 6).tolist()[:8]}"
        )
        raise DegenerateSetError(
            f"the constraints leave only {what}: every output would be that "
            "constant, so there is nothing to learn. Check for pairs of opposite "
            "rows (a_i x <= 0 and -a_i x <= 0) that pin variables, or drop "
            "constraints."
        )
    total = sum(len(v) for v in vertex_list) + rays.shape[0]
    if total > max_generators:
        raise TooManyGeneratorsError(
            f"the representation is above the cap after {total} generators (vertices and rays "
            f"of all blocks), more than max_generators={max_generators}. Use fewer coupled constraints, a box "
            "(box=...) instead of bound rows, or raise max_generators."
        )
    rep = VRepresentation(
        vertices=np.vstack(vertex_list),
        rays=rays,
        vertex_blocks=vertex_blocks,
        method=used,
        seconds=time.perf_counter() - start,
        row_space=row_space,
    )
    check_representation(rep, system, tol)
    logger.debug("h_to_v: %r", rep)
    return rep


def _embed(rows: np.ndarray, var_idx: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros((rows.shape[0], n))
    out[:, var_idx] = rows
    return out


# ------------------------------------------------------- constraint builders


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
