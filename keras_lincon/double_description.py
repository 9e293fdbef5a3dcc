"""Bounded, exact-first double description (numpy + pycddlib, no Keras).

:func:`enumerate_generators` turns ``P = {x : A x <= b, C x = d}`` into
vertices, extreme rays and a lineality basis with pycddlib 3, and guards the
three ways a plain cddlib call goes wrong:

* **Round-off.** Rows are first scaled by powers of two (exact in floating
  point) so that each row's largest entry lies in ``[1/2, 1)``. Small systems
  then run in exact rational arithmetic (``cdd.gmp``; ``Fraction(float)`` is
  exact), where a generator is a ray exactly when its first entry is ``0``.
  Larger systems, for which exact arithmetic is measured to be about 100-300
  times slower (see :data:`EXACT_MAX_BOUND`), run in floating point with a
  relative tolerance to tell rays from vertices, a soundness check (every
  generator satisfies the rows) and a completeness check (every edge of
  every simple vertex ends at a found vertex or ray; LP support values of
  ``P`` in row normals and random directions equal those of the
  generators; :mod:`keras_lincon.generator_check`); a failed check raises
  instead of returning a partial set.
  Integer or small-rational systems (denominators <= 10^6) always run
  exactly, as before (measured 5-20x slower than float, not 100x).
* **Unbounded work.** McMullen's upper bound on the generator count is
  computed first; far above ``max_generators`` (more than
  :data:`REFUSE_FACTOR` times) the call is refused at once with
  :class:`GeneratorExplosionError`. Runs whose bound says they may be long
  (above :data:`WORKER_MIN_BOUND`) go to a worker process, so Ctrl-C stops them
  promptly and ``time_budget`` ends them with
  :class:`ConstructionTimeoutError`; short runs stay in-process.
* **Raw cddlib errors** (``RuntimeError: Numerical inconsistency``, ...)
  become :class:`RepresentationCheckError` with advice.

Measured thresholds (random Gaussian polytopes, pycddlib 3.0.2, one core of a
shared 2-core machine; bound = McMullen(m + 1, n)):

======  =====  ========  ==========  =========  ============
n       m      bound     generators  float (s)  exact (s)
======  =====  ========  ==========  =========  ============
6       20     952       197         0.001      0.27
8       20     2,940     661         0.008      1.1 - 3.4
10      20     5,733     1,052       0.012      5.0
10      30     78,430    4,635       0.83       60
======  =====  ========  ==========  =========  ============

The float path's check cost 0.4-2 s on the last three rows (edge walk
0.06-0.8 s, the rest LPs), about the DD time. On 500 random 6-10 x 2-4
Gaussian systems with row scales 10^-6..10^6, plain float cddlib with the
``first column != 0`` rule was wrong or raised on 58; the float path here
matched the exact reference on all 500 (and raises when its check fails).
A worker process costs ~0.1 s (fork, measured with TensorFlow imported).
In-process runs (bound <= :data:`WORKER_MIN_BOUND`) cannot be interrupted
but take about a second at most.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import multiprocessing.connection
import signal
import time
from fractions import Fraction

import numpy as np

from keras_lincon.errors import (
    ConstraintShapeError,
    ConstructionTimeoutError,
    GeneratorExplosionError,
    InfeasibleError,
    LinconError,
    MissingDependencyError,
    NonFiniteError,
    RepresentationCheckError,
    TooManyGeneratorsError,
)
from keras_lincon.generator_check import ADVICE, check_generators, lp_support

logger = logging.getLogger("keras_lincon")

#: Refuse up front when the generator bound exceeds ``max_generators`` by this
#: factor (McMullen's bound is tight for cyclic polytopes but random systems
#: stay 10-30x below it, so a smaller factor would refuse feasible systems).
REFUSE_FACTOR = 100
#: Default wall-clock budget (seconds) of a worker-process run.
DEFAULT_TIME_BUDGET = 120.0
#: Exact arithmetic when the bound is at most this (measured: <= ~1-3 s).
EXACT_MAX_BOUND = 3_000
#: Worker process when the bound exceeds this (runs below take well under a
#: second in floating point and about a second exactly: no process overhead).
WORKER_MIN_BOUND = 2_000
#: A float generator ``(t, x)`` is a ray when ``|t| <= RAY_RTOL * max|x|``.
RAY_RTOL = 1e-12
ARITHMETICS = ("auto", "exact", "float")
# Largest denominator accepted when reading a float as a small rational.
_MAX_DENOMINATOR = 10**6


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


def _as_arrays(A, b, C, d):
    A = np.asarray(A, dtype=np.float64)
    if A.ndim != 2:
        raise ConstraintShapeError(f"A must be a 2-d (m, n) array; got shape {A.shape}.")
    m, n = A.shape
    b = np.zeros(m) if b is None else np.asarray(b, dtype=np.float64).reshape(-1)
    C = np.zeros((0, n)) if C is None else np.asarray(C, dtype=np.float64).reshape(-1, n)
    d = np.zeros(C.shape[0]) if d is None else np.asarray(d, dtype=np.float64).reshape(-1)
    if b.shape != (m,) or d.shape != (C.shape[0],):
        raise ConstraintShapeError(
            f"b must have shape ({m},) and d shape ({C.shape[0]},); got {b.shape} and {d.shape}."
        )
    for name, value in (("A", A), ("b", b), ("C", C), ("d", d)):
        if not np.all(np.isfinite(value)):
            raise NonFiniteError(f"{name} holds NaN or infinity; give finite coefficients.")
    return A, b, C, d


def normalised_table(A: np.ndarray, b: np.ndarray, C: np.ndarray, d: np.ndarray) -> np.ndarray:
    """cdd's H-table ``[b, -A; d, -C]`` (shape (m + p, n + 1)), rows scaled by powers of two.

    Each nonzero row is multiplied by ``2^-e`` so that its largest absolute
    entry lies in ``[1/2, 1)``; this is exact in binary floating point (a row
    for which it would not be, because entries would underflow, is kept).
    """
    table = np.vstack([np.column_stack([b, -A]), np.column_stack([d, -C])])
    peak = np.max(np.abs(table), axis=1) if table.size else np.zeros(len(table))
    exponent = np.where(peak > 0, np.frexp(peak)[1], 0)
    scaled = np.ldexp(table, -exponent[:, None])
    exact = np.all(np.ldexp(scaled, exponent[:, None]) == table, axis=1)
    return np.where(exact[:, None], scaled, table)


def _rational(value: float) -> Fraction:
    """The float as a rational: a small one if it rounds back exactly, else exactly."""
    small = Fraction(value).limit_denominator(_MAX_DENOMINATOR)
    return small if float(small) == value else Fraction(value)


def _cdd_modules():
    try:
        import cdd
        import cdd.gmp
    except ImportError:
        raise MissingDependencyError(
            "this constraint set needs double description, which needs pycddlib: "
            'pip install "keras-lincon[cdd]" (it builds against the cddlib and GMP headers: '
            "apt-get install libcdd-dev libgmp-dev, or brew install cddlib gmp). Sets whose "
            "blocks have full row rank (the checkerboard, monotone chains, boxes) never need it."
        ) from None
    return cdd, cdd.gmp


def _run_cdd(table: np.ndarray, num_ineq: int, exact: bool):
    """One cddlib run on a normalised table; returns float (vertices, rays, lineality).

    Generators are classified exactly (first entry zero) in rational
    arithmetic and with :data:`RAY_RTOL` in floating point. cddlib errors are
    re-raised as :class:`RepresentationCheckError`.
    """
    cdd, gmp = _cdd_modules()
    n = table.shape[1] - 1
    module = gmp if exact else cdd
    rows = [[_rational(float(v)) for v in row] for row in table] if exact else table.tolist()
    try:
        matrix = module.matrix_from_array(rows, lin_set=range(num_ineq, len(table)), rep_type=cdd.RepType.INEQUALITY)
        generators = module.copy_generators(module.polyhedron_from_matrix(matrix))
    except (RuntimeError, ValueError, ArithmeticError, TypeError) as exc:
        raise RepresentationCheckError(
            f"cddlib failed on {num_ineq} inequalities and {len(table) - num_ineq} equalities "
            f"in {n} dimensions ({'exact' if exact else 'floating-point'} arithmetic): "
            f"{type(exc).__name__}: {exc}. {ADVICE}" + ("." if exact else ", or pass arithmetic='exact'.")
        ) from exc
    lines = np.zeros(len(generators.array), dtype=bool)
    lines[sorted(generators.lin_set)] = True
    if exact:
        raw = generators.array
        is_point = np.array([row[0] != 0 for row in raw], dtype=bool) & ~lines
        # Divide in rationals, round once: vertices are correctly rounded.
        vertices = np.array(
            [[float(x / row[0]) for x in row[1:]] for row, p in zip(raw, is_point, strict=False) if p],
            dtype=np.float64,
        ).reshape(-1, n)
        array = np.array([[float(x) for x in row] for row in raw], dtype=np.float64).reshape(-1, n + 1)
    else:
        array = np.array(generators.array, dtype=np.float64).reshape(-1, n + 1)
        peak = np.max(np.abs(array[:, 1:]), axis=1) if n else np.zeros(len(array))
        is_point = (np.abs(array[:, 0]) > RAY_RTOL * peak) & ~lines
        vertices = array[is_point, 1:] / array[is_point, :1]
    return vertices, array[~is_point & ~lines, 1:], array[lines, 1:]


def _worker_main(conn, table, num_ineq, exact) -> None:
    # The parent handles Ctrl-C and terminates this process.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        result = ("ok", _run_cdd(table, num_ineq, exact))
    except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent
        result = ("error", type(exc).__name__, str(exc))
    try:
        conn.send(result)
    finally:
        conn.close()


def _start_method() -> str:
    # fork: no re-import of the parent (importing keras_lincon pulls in Keras
    # and TensorFlow: seconds); the child only runs cddlib. spawn elsewhere.
    return "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"


def _stop(proc) -> None:
    if proc.is_alive():
        proc.terminate()
        proc.join(2.0)
    if proc.is_alive():  # pragma: no cover - SIGTERM ignored
        proc.kill()
        proc.join()


def _run_in_worker(table, num_ineq, exact, time_budget, describe: str):
    """:func:`_run_cdd` in a child process, bounded by ``time_budget`` and Ctrl-C."""
    ctx = multiprocessing.get_context(_start_method())
    receiver, sender = ctx.Pipe(duplex=False)
    proc = ctx.Process(
        target=_worker_main,
        args=(sender, table, num_ineq, exact),
        daemon=True,
        name="keras_lincon-double-description",
    )
    start = time.monotonic()
    proc.start()
    sender.close()
    try:
        while True:
            left = None if time_budget is None else time_budget - (time.monotonic() - start)
            if left is not None and left <= 0:
                raise ConstructionTimeoutError(
                    f"double description of {describe} did not finish within time_budget="
                    f"{time_budget:g} s and was stopped. Split the constraints into "
                    "independent blocks, use fewer rows, put a box on a cone (box=...) "
                    "instead of listing bounds as rows, or pass a larger time_budget "
                    "(None waits without limit)."
                )
            # Wakes on a result, on the child's exit, or every 0.5 s (so that
            # the budget is checked; Ctrl-C interrupts the wait at once).
            ready = multiprocessing.connection.wait(
                [receiver, proc.sentinel], timeout=0.5 if left is None else min(0.5, left)
            )
            if receiver in ready:
                try:
                    message = receiver.recv()
                except EOFError:
                    message = None
                break
            if proc.sentinel in ready:
                message = receiver.recv() if receiver.poll() else None
                break
    finally:
        _stop(proc)
        receiver.close()
    if message is None:
        raise RepresentationCheckError(
            f"the double description worker for {describe} died without a result "
            f"(exit code {proc.exitcode}; a negative code is the signal, e.g. -9 when the "
            f"system ran out of memory). {ADVICE}."
        )
    if message[0] == "ok":
        return message[1]
    _, name, text = message
    cls = {
        "RepresentationCheckError": RepresentationCheckError,
        "MemoryError": MemoryError,
        "ImportError": ImportError,
    }.get(name, RepresentationCheckError)
    raise cls(text if name in ("RepresentationCheckError", "ImportError") else f"{name}: {text}")


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
        A: (m, n) inequality matrix; b: (m,) or None (zeros).
        C: (p, n) equality matrix or None; d: (p,) or None (zeros).
        max_generators: refuse more vertices + rays + lineality vectors.
        time_budget: seconds a worker-process run may take (None: no limit).
            In-process runs (bound <= :data:`WORKER_MIN_BOUND`) are short and
            not timed.
        allow_large: skip the up-front refusal of :class:`GeneratorExplosionError`.
        arithmetic: ``"auto"`` (exact when the bound is at most
            :data:`EXACT_MAX_BOUND` or all entries are small rationals, else
            floating point; if that fails its checks or cddlib raises, it
            is retried exactly in a worker within the rest of
            ``time_budget``), ``"exact"`` or ``"float"`` (no retry).
        verify: run the soundness/completeness check of
            :func:`check_generators`; None: on the floating-point path only
            (exact results are complete by construction).
        seed: seed of the check's random directions.

    Returns:
        ``(vertices (k, n), rays (r, n), lineality (l, n))`` float64 arrays.
        A cone (``b = 0, d = 0``) gets its apex, the origin, as vertex.

    Raises:
        ConstraintShapeError, NonFiniteError: bad input.
        GeneratorExplosionError: the bound exceeds ``REFUSE_FACTOR *
            max_generators`` (a :class:`TooManyGeneratorsError`).
        TooManyGeneratorsError: more than ``max_generators`` generators.
        ConstructionTimeoutError: a worker run exceeded ``time_budget``.
        InfeasibleError: ``P`` is empty.
        RepresentationCheckError: cddlib failed or a check failed.
        KeyboardInterrupt: Ctrl-C (a worker is terminated first).
    """
    if arithmetic not in ARITHMETICS:
        raise LinconError(f"arithmetic must be one of {ARITHMETICS}; got {arithmetic!r}.")
    if not isinstance(max_generators, (int, np.integer)) or max_generators < 1:
        raise LinconError(f"max_generators must be a positive int; got {max_generators!r}.")
    if time_budget is not None and not time_budget > 0:
        raise LinconError(f"time_budget must be a positive number of seconds or None; got {time_budget!r}.")
    A, b, C, d = _as_arrays(A, b, C, d)
    (m, n), p = A.shape, C.shape[0]
    table = normalised_table(A, b, C, d)
    eq_rank = int(np.linalg.matrix_rank(table[m:, 1:])) if p else 0  # rows normalised
    bound = generator_upper_bound(m, n - eq_rank)
    describe = f"{m} inequalities and {p} equalities in {n} dimensions"
    if bound > REFUSE_FACTOR * max_generators and not allow_large:
        raise GeneratorExplosionError(
            f"double description of {describe} refused: up to {bound:.3g} vertices and rays "
            f"are possible (McMullen's bound), more than {REFUSE_FACTOR} x max_generators="
            f"{max_generators}, and enumerating them could take hours. Split the constraints "
            "into independent blocks (variables no row shares), use fewer rows, put a box "
            "on a cone (box=...) instead of listing bounds as rows of A, use "
            "LinearInequalityConstraint with fallback=True (its default: such rows move to a scaled "
            "stage), or raise max_generators / pass allow_large=True to try anyway."
        )
    if arithmetic == "auto":
        exact = bound <= EXACT_MAX_BOUND or all(
            _rational(float(v)).denominator <= _MAX_DENOMINATOR for v in table.reshape(-1)
        )
    else:
        exact = arithmetic == "exact"
    in_worker = bound > WORKER_MIN_BOUND
    daemonic = multiprocessing.current_process().daemon
    if in_worker and daemonic:
        # Daemonic processes (e.g. a multiprocessing.Pool worker) may not start
        # children: run here, without time budget or prompt Ctrl-C.
        logger.warning(
            "keras_lincon: inside a daemonic process, double description runs in-process: time_budget is not applied."
        )
        in_worker = False
    if bound > max_generators or in_worker:
        # Warn when the result may be refused after the run (bound above the cap).
        logger.log(
            logging.WARNING if bound > max_generators else logging.INFO,
            "keras_lincon: double description of %s (%s arithmetic): up to %.3g generators are "
            "possible (max_generators=%d), this may take a while%s.",
            describe,
            "exact" if exact else "floating-point",
            bound,
            max_generators,
            f" (worker process, time budget {time_budget} s, Ctrl-C stops it)" if in_worker else "",
        )
    start = time.monotonic()
    homogeneous = not np.any(b) and not np.any(d)
    run = (table, m, describe, max_generators, homogeneous, verify, seed)
    try:
        return _generate(*run, exact=exact, in_worker=in_worker, time_budget=time_budget)
    except RepresentationCheckError as exc:
        left = None if time_budget is None else time_budget - (time.monotonic() - start)
        if exact or arithmetic != "auto" or (left is not None and left <= 0) or daemonic:
            raise
        # Floating point failed (cddlib error or a failed check): the exact
        # answer is still within reach if the budget allows it.
        logger.warning(
            "keras_lincon: %s Retrying in exact arithmetic (time budget left: %s s).",
            exc,
            "none" if left is None else f"{left:.3g}",
        )
        return _generate(*run, exact=True, in_worker=True, time_budget=left)


def _generate(table, m, describe, max_generators, homogeneous, verify, seed, *, exact, in_worker, time_budget):
    """One run of :func:`enumerate_generators` after the bound: cddlib, counts, checks."""
    n = table.shape[1] - 1
    if in_worker:
        vertices, rays, lineality = _run_in_worker(table, m, exact, time_budget, describe)
    else:
        vertices, rays, lineality = _run_cdd(table, m, exact)
    total = len(vertices) + len(rays) + len(lineality)
    if total > max_generators:
        raise TooManyGeneratorsError(
            f"double description produced {total} generators for {describe}, more than "
            f"max_generators={max_generators}. Split the constraints into independent blocks "
            "(method='auto' does this), use fewer constraints, or put a box on a cone "
            "(box=...) instead of listing bounds as rows of A; raise max_generators only if "
            "the layer can afford that many."
        )
    if total == 0 and not homogeneous:
        if not exact and lp_support(np.zeros(n), -table[:m, 1:], table[:m, 0], -table[m:, 1:], table[m:, 0]) != -np.inf:
            raise RepresentationCheckError(
                f"floating-point double description found no generator for {describe}, but "
                f"an LP finds a feasible point. {ADVICE}, or pass arithmetic='exact'."
            )
        raise InfeasibleError(
            f"the constraints A x <= b, C x = d have no solution (double description "
            f"found an empty set for {describe}). Check the signs of A and b: the layer "
            "needs a non-empty set."
        )
    if len(vertices) == 0:  # a cone: cddlib leaves out the apex
        vertices = np.zeros((1, n))
    if verify or (verify is None and not exact):
        check_generators(table, m, vertices, rays, lineality, seed=seed)
    return vertices, rays, lineality
