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

import numpy as np

from keras_lincon.errors import DegenerateSetError, InfeasibleError, LinconError, TooManyGeneratorsError
from keras_lincon.geometry import double_description
from keras_lincon.geometry.closed_form import closed_form_generators, closed_form_on_equalities, full_row_rank
from keras_lincon.geometry.double_description.generators import check_max_generators
from keras_lincon.geometry.representation import (
    VRepresentation,
    check_representation,
    merge_close_rows,
    orthonormal_rows,
)
from keras_lincon.geometry.row_graph import coupled_blocks
from keras_lincon.geometry.system import ConstraintSystem, as_constraint_system, normalized_rows, row_norms
from keras_lincon.geometry.tolerances import CHECK_TOLERANCE, RAY_DROP_RTOL

logger = logging.getLogger("keras_lincon")

#: Default cap on the vertices + rays of one representation (the lineality
#: space is implicit and costs nothing).
DEFAULT_MAX_GENERATORS = 20_000
METHODS = ("auto", "cdd", "closed_form", "blocks")


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
    row_graph: tuple | None = None,
) -> VRepresentation:
    """Computes generators of ``P = {x : A x <= b, C x = d}``.

    Args:
        A: (m, n) inequality matrix, or a :class:`ConstraintSystem` (validated
            already: then ``b, C, d`` are None and it is not checked again).
        b: (m,) right-hand side; None or zeros gives the paper's cone ``A x <= 0``.
        C: optional (p, n) equality matrix. d: (p,) right-hand side.
        method: ``"auto"`` (independent blocks, each by closed form when ``A``
            has full row rank and no equalities, else by double description),
            ``"blocks"`` (blocks, double description in each), ``"cdd"`` (one
            double description of the whole system) or ``"closed_form"``
            (whole system; needs full row rank and no equalities).
        max_generators: refuse representations with more vertices + rays than
            this (up front only when a true lower bound on the count exceeds
            it, else after counting; see :mod:`.double_description`).
        tol: relative tolerance of the self-check (:func:`check_representation`).
        time_budget: seconds a long double description may run (in a worker process; Ctrl-C stops it too).
        allow_large: run double description even when a lower bound on the
            count is above ``max_generators`` (the count is still checked).
        row_graph: ``blocks(n, A, C)`` of these rows if the caller has it (the layer's plan does).

    Returns:
        A :class:`VRepresentation` with unit-norm rays, orthonormal lineality
        and rays/vertices reduced modulo the lineality space.

    Raises:
        ConstraintShapeError, NonFiniteError: bad input.
        InfeasibleError: ``P`` is empty. DegenerateSetError: ``P`` is a point.
        TooManyGeneratorsError: more than ``max_generators`` generators;
            ``reason`` says which rule: ``"bound"`` (a :class:`GeneratorExplosionError`:
            certainly above the cap, no enumeration) or ``"count"`` (after counting).
        ConstructionTimeoutError: double description exceeded ``time_budget`` (``reason == "time"``).
        MissingDependencyError: the set needs pycddlib, which is not installed.
        RepresentationCheckError: numerical failure of the self-check.

    Example:
        >>> rep = h_to_v([[1.0, -1.0]])          # x_1 <= x_2
        >>> rep.rays.shape, rep.lineality.shape
        ((1, 2), (1, 2))
    """
    _check_options(method, max_generators)
    start, system = time.perf_counter(), as_constraint_system(A, b, C, d)
    dd_options = {"max_generators": max_generators, "time_budget": time_budget, "allow_large": allow_large}
    rep = _generators(system, method, dd_options, start, row_graph)
    check_representation(rep, system, tol)
    logger.debug("h_to_v: %r", rep)
    return rep


def _check_options(method: str, max_generators) -> None:
    if method not in METHODS:
        raise LinconError(f"method must be one of {METHODS}; got {method!r}.")
    check_max_generators(max_generators)


def _generators(system: ConstraintSystem, method: str, dd_options: dict, start: float, graph=None) -> VRepresentation:
    """:func:`h_to_v` before its self-check: blocks, each solved, assembled."""
    # Scaling a row does not change the set; unit rows keep ranks and closed
    # forms independent of how the user scaled them.
    work = normalized_rows(system)
    components, n_free = _split(system, work, method, graph)
    # One block that holds every variable and row (method='cdd', or a coupled
    # set): the systems themselves, no copies.
    whole = len(components) == 1 and all(
        idx.size == size for idx, size in zip(components[0], (system.dim, len(system.A), len(system.C)), strict=True)
    )
    parts = [
        _solve_component(system, work, component, whole, method, dd_options)
        for component in components
        if component[1].size or component[2].size
    ]
    used = "+".join(sorted({how for how, *_ in parts})) or "free"
    if method in ("auto", "blocks") and (method == "blocks" or len(components) + n_free > 1):
        used = f"blocks({used})"
    vertex_list, rays, row_space = _assemble(parts, system.dim)
    _refuse_degenerate_or_large(vertex_list, rays, row_space, dd_options["max_generators"])
    return VRepresentation(
        vertices=np.vstack(vertex_list),
        rays=rays,
        vertex_blocks=np.concatenate([np.full(len(v), j) for j, v in enumerate(vertex_list)]),
        method=used,
        seconds=time.perf_counter() - start,
        row_space=row_space,
    )


def _split(system: ConstraintSystem, work: ConstraintSystem, method: str, graph=None) -> tuple:
    """The blocks to solve: ``(components, n_free)``, each component ``(var_idx, a_rows, c_rows)``.

    ``method='cdd'`` and ``'closed_form'`` solve the whole system as one;
    the others split it by the row graph, decomposed once here (its zero
    rows are the rows no block holds). Raises for an empty set (a zero row
    that nothing satisfies) and for a closed form the ranks do not allow.
    """
    m, p = len(work.A), len(work.C)
    if method not in ("cdd", "closed_form"):
        # dense label propagation: same blocks as row_graph.blocks, ~10x cheaper on small systems
        coord, (a_block, c_block) = graph if graph is not None else coupled_blocks(system.dim, work.A, work.C)
        _check_empty_rows(system, a_block < 0, c_block < 0)
        if coord.size and not coord.any() and not a_block.any() and not c_block.any():
            return [(np.arange(system.dim), np.arange(m), np.arange(p))], 0  # one block holds everything
        components = [
            (np.flatnonzero(coord == j), np.flatnonzero(a_block == j), np.flatnonzero(c_block == j))
            for j in range(int(coord.max()) + 1 if coord.size else 0)
        ]
        return components, int(np.sum(coord < 0))
    _check_empty_rows(system, ~np.any(system.A != 0, axis=1), ~np.any(system.C != 0, axis=1))
    if method == "closed_form" and (p or not full_row_rank(work.A)):
        raise LinconError(
            "method='closed_form' needs no equalities and A with full row "
            f"rank; A has shape {system.A.shape} and rank "
            f"{np.linalg.matrix_rank(work.A)}. Use method='auto'."
        )
    return [(np.arange(system.dim), np.arange(m), np.arange(p))], 0


def _check_empty_rows(system: ConstraintSystem, zero_a: np.ndarray, zero_c: np.ndarray) -> None:
    """Rows with all-zero coefficients (the masks ``zero_a``, ``zero_c``) must read 0 <= b_i or 0 = d_j."""
    if not (zero_a.any() or zero_c.any()):
        return
    bad = np.flatnonzero(zero_a & (system.b < 0))
    bad_eq = np.flatnonzero(zero_c & (system.d != 0))
    if bad.size or bad_eq.size:
        raise InfeasibleError(
            f"the set is empty: row(s) {bad.tolist()} of A are zero with b < 0"
            f" and row(s) {bad_eq.tolist()} of C are zero with d != 0, so no x "
            "satisfies them. Remove those rows or fix their right-hand sides."
        )


def _solve_component(system, work, component, whole: bool, method: str, dd_options: dict) -> tuple:
    """One block's ``(how, vertices, rays, row_space)``, canonical and embedded in all ``n`` coordinates."""
    var_idx, a_rows, c_rows = component
    # The closed form on equalities needs A of full row rank on null(C):
    # with more rows than n - p it certainly fails, so it is not tried.
    closed_form = method in ("auto", "closed_form") and not (c_rows.size and a_rows.size > var_idx.size - c_rows.size)
    (v, r, q), how = _solve(
        work if whole else _subsystem(work, var_idx, a_rows, c_rows),
        system if whole else _subsystem(system, var_idx, a_rows, c_rows),
        closed_form,
        dd_options,
    )
    if how != "cdd" or q.shape[0] < q.shape[1]:
        # (double description returns merged, sorted generators: with no
        # lineality to reduce them by, they are canonical already)
        v, r = _canonical(v, r, q)
    if whole:  # already in all n coordinates, in order
        return how, v, r, q
    n = system.dim
    return how, _embed(v, var_idx, n), _embed(r, var_idx, n), _embed(q, var_idx, n)


def _solve(unit_rows: ConstraintSystem, original: ConstraintSystem, use_closed_form: bool, dd_options: dict):
    """Generators of one (sub)system: ((vertices, rays, row_space), method).

    The closed form works on ``unit_rows`` (rows scaled to unit norm); double
    description gets the ``original`` rows, whose exact values it can use.
    """
    if use_closed_form and unit_rows.C.shape[0] == 0 and full_row_rank(unit_rows.A):
        return closed_form_generators(unit_rows.A, unit_rows.b), "closed_form"
    if use_closed_form and unit_rows.C.shape[0]:  # equalities: the closed form in null(C)'s coordinates
        found = closed_form_on_equalities(unit_rows)
        if found is not None:
            return found, "closed_form"
    vertices, rays, _ = double_description.enumerate_generators(original, **dd_options)
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


def _canonical(vertices, rays, row_space):
    """Vertices and rays reduced modulo the lineality space, unit rays, near-duplicates merged, sorted.

    ``row_space`` (k, n) is an orthonormal basis of the complement of the
    lineality space; reducing keeps the component inside it (O(n k) a row).
    A ray is dropped when its reduced part is below :data:`RAY_DROP_RTOL` of
    its own norm (it lay in the lineality space): a ray's length means
    nothing, so no absolute threshold (rays of tiny rows are tiny).
    Near-duplicates are identified by :func:`merge_close_rows` (:data:`MERGE_RTOL`).
    """
    if row_space.shape[0] < row_space.shape[1]:  # a lineality space to reduce by (else: exact as given)
        vertices = (vertices @ row_space.T) @ row_space
        norms = row_norms(rays)
        rays = (rays @ row_space.T) @ row_space
        rays = rays[row_norms(rays) > RAY_DROP_RTOL * norms]
    return merge_close_rows(vertices), merge_close_rows(rays, unit=True)


def _embed(rows: np.ndarray, var_idx: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros((rows.shape[0], n))
    out[:, var_idx] = rows
    return out


def _assemble(parts: list, n: int) -> tuple:
    """The blocks' generators as one set: ``(vertex_list, rays (r, n), row_space (k, n))``.

    Single-vertex blocks are constants: they fold into one offset point,
    listed first (when nonzero, or when it is all there is).
    """
    ray_parts = [r for _, _, r, _ in parts]
    if len(ray_parts) == 1:  # canonical already (embedding keeps the order)
        rays = ray_parts[0]
    else:
        rays = merge_close_rows(np.vstack(ray_parts), unit=True) if ray_parts else np.zeros((0, n))
    row_space = np.vstack([q for *_, q in parts]) if parts else np.zeros((0, n))
    blocks = [v for _, v, _, _ in parts] or [np.zeros((1, n))]
    points = [blk for blk in blocks if len(blk) == 1]
    polytopes = [blk for blk in blocks if len(blk) > 1]
    offset = sum(points) if points else np.zeros((1, n))
    vertex_list = ([offset] if np.any(offset) or not polytopes else []) + polytopes
    return vertex_list, rays, row_space


def _refuse_degenerate_or_large(vertex_list: list, rays: np.ndarray, row_space: np.ndarray, max_generators: int):
    """Raises for a set that is one point (:class:`DegenerateSetError`) or has more generators than the cap."""
    n = row_space.shape[1]
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
