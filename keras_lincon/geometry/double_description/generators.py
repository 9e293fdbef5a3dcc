"""`enumerate_generators`: bound, arithmetic and place of one double description, its count and checks."""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import time

import numpy as np

from keras_lincon.errors import (
    GeneratorExplosionError,
    InfeasibleError,
    LinconError,
    RepresentationCheckError,
    TooManyGeneratorsError,
)
from keras_lincon.geometry.double_description.cddlib import run_cdd
from keras_lincon.geometry.double_description.closed_forms import cross_polytope_vertices, matching_vertices
from keras_lincon.geometry.double_description.lower_bound import generator_lower_bound
from keras_lincon.geometry.double_description.tables import h_table, power_of_two_rows, small_rationals
from keras_lincon.geometry.double_description.upper_bounds import bound_for_any_rank, generator_upper_bound
from keras_lincon.geometry.double_description.vertex_walk import CapGuard, VertexWalk
from keras_lincon.geometry.double_description.worker import run_in_worker
from keras_lincon.geometry.generator_check import ADVICE, check_generators, lp_support
from keras_lincon.geometry.representation import merge_close_rows
from keras_lincon.geometry.system import ConstraintSystem, as_constraint_system

logger = logging.getLogger("keras_lincon")

#: Default wall-clock budget (seconds) of a worker-process run.
DEFAULT_TIME_BUDGET = 120.0
#: Exact arithmetic when the bound is at most this (measured: <= ~1-3 s).
EXACT_MAX_BOUND = 3_000
#: Worker process when the bound exceeds this (runs below take well under a
#: second in floating point and about a second exactly: no process overhead).
WORKER_MIN_BOUND = 2_000
ARITHMETICS = ("auto", "exact", "float")


def enumerate_generators(
    A,
    b=None,
    C=None,
    d=None,
    *,
    max_generators: int,
    time_budget: float | None = DEFAULT_TIME_BUDGET,
    allow_large: bool = False,
    arithmetic: str = "auto",
    verify: bool | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vertices, extreme rays and lineality of ``P = {x : A x <= b, C x = d}``.

    ``P = conv(vertices) + cone(rays) + span(lineality)``.

    Args:
        A: (m, n) inequality matrix, or a validated
            :class:`~keras_lincon.geometry.system.ConstraintSystem` (then
            ``b, C, d`` are None); b: (m,) or None (zeros).
        C: (p, n) equality matrix or None; d: (p,) or None (zeros).
        max_generators: refuse more vertices + rays + lineality vectors.
        time_budget: seconds a worker-process run may take (None: no limit).
            In-process runs (bound <= :data:`WORKER_MIN_BOUND`) are short, not timed.
        allow_large: skip the up-front refusal of :class:`GeneratorExplosionError`
            (the run is then still bounded by ``time_budget`` and counted).
        arithmetic: ``"auto"`` (exact when the bound is at most :data:`EXACT_MAX_BOUND`
            or all entries are small rationals, else floating point; if that fails its
            checks or cddlib raises, it is retried exactly in a worker within the rest
            of ``time_budget``), ``"exact"`` or ``"float"`` (no retry). ``"auto"`` and
            ``"float"`` also accept a complete :class:`VertexWalk`'s answer (every vertex,
            combinatorially certified; coordinates solved in float64 from bases of
            condition <= 1e4); ``"exact"`` always waits for cddlib.
        verify: run the soundness/completeness check of
            :func:`check_generators`; None: on the floating-point path only
            (exact results are complete by construction).
        seed: seed of the check's random directions.

    Returns:
        ``(vertices (k, n), rays (r, n), lineality (l, n))`` float64 arrays;
        vertices and rays as :func:`~keras_lincon.geometry.representation.merge_close_rows`
        leaves them (near-duplicates merged, unit rays, sorted).
        A cone (``b = 0, d = 0``) gets its apex, the origin, as vertex.

    Raises:
        ConstraintShapeError, NonFiniteError: bad input. InfeasibleError: ``P`` is empty.
        GeneratorExplosionError: a true lower bound on the count exceeds ``max_generators``
            (:func:`generator_lower_bound`; a :class:`TooManyGeneratorsError`, ``reason == "bound"``).
        TooManyGeneratorsError: the run counted more than ``max_generators`` (``reason == "count"``).
        ConstructionTimeoutError: a worker run exceeded ``time_budget`` (``reason == "time"``).
        RepresentationCheckError: cddlib failed or a check failed.
        KeyboardInterrupt: Ctrl-C (a worker is terminated first).
    """
    _check_options(arithmetic, max_generators, time_budget)
    system = as_constraint_system(A, b, C, d)
    closed = _closed_form(system, max_generators)
    if closed is not None:
        return closed
    return _double_description(_Run(system, max_generators, time_budget, arithmetic, verify, seed), allow_large)


def _closed_form(system: ConstraintSystem, max_generators: int) -> tuple | None:
    """The generators of a set that needs no enumeration (cross12: 34 s in exact cddlib, B7: minutes), or None."""
    closed = cross_polytope_vertices(system.A, system.b, system.C)
    if closed is None:
        closed = matching_vertices(system.A, system.b, system.C, system.d, limit=max_generators)
    if closed is None:
        return None
    # distinct exact points: merging only sorts them
    return merge_close_rows(closed), np.zeros((0, system.dim)), np.zeros((0, system.dim))


def _double_description(run: _Run, allow_large: bool) -> tuple:
    """:func:`enumerate_generators` by cddlib: arithmetic and place from McMullen's bound, guarded past the cap."""
    system = run.system
    bound = _steering_bound(run.raw, system.A.shape[0], system.dim, system.C.shape[0], run.max_generators)
    if run.arithmetic == "auto":
        exact = bound <= EXACT_MAX_BOUND or small_rationals(run.raw)
    else:
        exact = run.arithmetic == "exact"
    daemonic = multiprocessing.current_process().daemon
    in_worker = bound > WORKER_MIN_BOUND and not daemonic
    _announce(run, bound, exact, in_worker, daemonic)
    start = time.monotonic()
    if bound > run.max_generators:  # McMullen allows more than the cap
        run.guard = _guard(run, allow_large, in_worker)
    try:
        return _generate(run, exact=exact, in_worker=in_worker, time_budget=run.time_budget)
    except RepresentationCheckError as exc:
        left = None if run.time_budget is None else run.time_budget - (time.monotonic() - start)
        if exact or run.arithmetic != "auto" or (left is not None and left <= 0) or daemonic:
            raise
        # Floating point failed (cddlib error or a failed check): the exact
        # answer is still within reach if the budget allows it.
        logger.warning(
            "keras_lincon: %s Retrying in exact arithmetic (time budget left: %s s).",
            exc,
            "none" if left is None else f"{left:.3g}",
        )
        return _generate(run, exact=True, in_worker=True, time_budget=left)


def check_max_generators(max_generators) -> None:
    """Raises :class:`LinconError` unless ``max_generators`` is a positive int."""
    if not isinstance(max_generators, (int, np.integer)) or max_generators < 1:
        raise LinconError(f"max_generators must be a positive int; got {max_generators!r}.")


def _check_options(arithmetic: str, max_generators, time_budget) -> None:
    if arithmetic not in ARITHMETICS:
        raise LinconError(f"arithmetic must be one of {ARITHMETICS}; got {arithmetic!r}.")
    check_max_generators(max_generators)
    if time_budget is not None and not time_budget > 0:
        raise LinconError(f"time_budget must be a positive number of seconds or None; got {time_budget!r}.")


@dataclasses.dataclass
class _Run:
    """One double description: the system, the options, and what the run makes on the way."""

    system: ConstraintSystem
    max_generators: int
    time_budget: float | None
    arithmetic: str
    verify: bool | None
    seed: int
    guard: CapGuard | None = None
    table: np.ndarray | None = None  # the normalised table (float runs, checks), made when needed

    def __post_init__(self):
        # Exact runs read the rows as given (integer rows stay integers: smaller
        # numbers for GMP than rows scaled by powers of two); float runs and
        # checks use the normalised table (power_of_two_rows, made when needed).
        system = self.system
        self.raw = h_table(system.A, system.b, system.C, system.d)
        self.num_ineq = system.A.shape[0]
        self.describe = f"{self.num_ineq} inequalities and {system.C.shape[0]} equalities in {system.dim} dimensions"


def _steering_bound(raw: np.ndarray, m: int, n: int, p: int, max_generators: int) -> float:
    """McMullen's bound for the rank of the equalities (it steers arithmetic and worker only).

    A tiny set skips the rank: when the bound for every rank they could have
    leaves the run exact, in-process and unguarded, so does the true one (no
    SVD, no worker, no walk: a few rows cost what cddlib costs).
    """
    bound = bound_for_any_rank(m, n, p) if p else generator_upper_bound(m, n)
    if bound > min(WORKER_MIN_BOUND, EXACT_MAX_BOUND, max_generators) and p:
        eq_rank = int(np.linalg.matrix_rank(power_of_two_rows(raw[m:])[:, 1:]))  # rows normalised
        bound = generator_upper_bound(m, n - eq_rank)
    return bound


def _announce(run: _Run, bound: float, exact: bool, in_worker: bool, daemonic: bool) -> None:
    """Logs a run that may be long (a warning when the bound is above the cap) or that cannot be bounded in time."""
    if daemonic and bound > WORKER_MIN_BOUND:
        # Daemonic processes (e.g. a multiprocessing.Pool worker) may not start
        # children: run here, without time budget or prompt Ctrl-C.
        logger.warning(
            "keras_lincon: inside a daemonic process, double description runs in-process: time_budget is not applied."
        )
    if bound > run.max_generators or in_worker:
        # Warn when the result may be refused after the run (bound above the cap).
        logger.log(
            logging.WARNING if bound > run.max_generators else logging.INFO,
            "keras_lincon: double description of %s (%s arithmetic): McMullen's upper bound allows "
            "up to %.3g generators (a bound, not a count; max_generators=%d), this may take a while%s.",
            run.describe,
            "exact" if exact else "floating-point",
            bound,
            run.max_generators,
            f" (worker process, time budget {run.time_budget} s, Ctrl-C stops it)" if in_worker else "",
        )


def _guard(run: _Run, allow_large: bool, in_worker: bool) -> CapGuard | None:
    """What keeps a set McMullen allows above the cap from running long: a :class:`CapGuard` for a
    worker run (None in-process, where the certain lower bound is checked at once)."""
    system, describe, max_generators = run.system, run.describe, run.max_generators

    def refuse_if_certainly_above() -> None:
        # Only a *lower* bound above the cap refuses without a finished run.
        lower, rule = generator_lower_bound(system, seed=run.seed)
        if lower > max_generators:
            raise GeneratorExplosionError(
                f"double description of {describe} refused: the set certainly has more vertices "
                f"than max_generators={max_generators}: it is certainly above the cap (bound: at "
                f"least {lower:,} vertices, from {rule}). Split the constraints into independent "
                "blocks (variables no row shares), use fewer rows, put a box on a cone (box=...) "
                "instead of listing bounds as rows of A, use LinearInequalityConstraint with "
                "fallback=True (its default: such rows move to a scaled stage), or raise "
                "max_generators.",
                bound=lower,
                rule=rule,
            )

    check = None if allow_large else refuse_if_certainly_above
    if in_worker:
        # While the worker runs (the parent would only wait): the lower bound,
        # then a walk along the vertex graph that counts past the cap.
        # A complete walk may also answer first, unless exact coordinates were asked for.
        walk = VertexWalk(system.A, system.b, system.C, system.d, max_generators, run.seed)
        return CapGuard(check, walk, describe, may_answer=run.arithmetic != "exact")
    if check is not None:
        check()
    return None


def _generate(run: _Run, *, exact: bool, in_worker: bool, time_budget):
    """One run of :func:`enumerate_generators` after the bound: cddlib, counts, checks."""
    n = run.raw.shape[1] - 1
    if run.table is None and (not exact or run.verify):
        run.table = power_of_two_rows(run.raw)
    source = run.raw if exact else run.table
    assert source is not None  # float runs made the table just above
    if in_worker:
        args: tuple = (source, run.num_ineq, exact, time_budget, run.describe) + ((run.guard,) if run.guard else ())
        vertices, rays, lineality = run_in_worker(*args)
    else:
        vertices, rays, lineality = run_cdd(source, run.num_ineq, exact)
    # Near-duplicates (float round-off at degenerate vertices) are one generator.
    vertices, rays = merge_close_rows(vertices), merge_close_rows(rays, unit=True)
    total = len(vertices) + len(rays) + len(lineality)
    if total > run.max_generators:
        raise TooManyGeneratorsError(
            f"double description of {run.describe} is above the cap after {total} generators "
            f"(max_generators={run.max_generators}; the run finished and counted them). Split the "
            "constraints into independent blocks (method='auto' does this), use fewer "
            "constraints, or put a box on a cone (box=...) instead of listing bounds as rows "
            "of A; raise max_generators only if the layer can afford that many."
        )
    if total == 0 and not run.system.is_homogeneous:
        _raise_empty(run, exact)
    if len(vertices) == 0:  # a cone: cddlib leaves out the apex
        vertices = np.zeros((1, n))
    if run.verify or (run.verify is None and not exact):
        assert run.table is not None  # made above for float runs and verified ones
        check_generators(run.table, run.num_ineq, vertices, rays, lineality, seed=run.seed)
    return vertices, rays, lineality


def _raise_empty(run: _Run, exact: bool):
    """No generator: the set is empty (InfeasibleError), unless float cddlib missed what an LP finds."""
    m, table = run.num_ineq, run.table
    if not exact:
        assert table is not None  # _generate made it for the float run
        support = lp_support(np.zeros(table.shape[1] - 1), -table[:m, 1:], table[:m, 0], -table[m:, 1:], table[m:, 0])
        if support != -np.inf:
            raise RepresentationCheckError(
                f"floating-point double description found no generator for {run.describe}, but "
                f"an LP finds a feasible point. {ADVICE}, or pass arithmetic='exact'."
            )
    raise InfeasibleError(
        f"the constraints A x <= b, C x = d have no solution (double description "
        f"found an empty set for {run.describe}). Check the signs of A and b: the layer "
        "needs a non-empty set."
    )
