"""Bounded, exact-first double description (numpy + pycddlib, no Keras).

:func:`enumerate_generators` turns ``P = {x : A x <= b, C x = d}`` into
vertices, extreme rays and a lineality basis with pycddlib 3, and guards the
three ways a plain cddlib call goes wrong:

* **Round-off.** Small systems run in exact rational arithmetic
  (``cdd.gmp``; ``Fraction(float)`` is exact; integer rows go in as coprime
  integers), where a generator is a ray exactly when its first entry is
  ``0``. Larger systems, for which exact arithmetic is measured to be about
  100-300 times slower (see :data:`EXACT_MAX_BOUND`), run in floating point
  on rows scaled by powers of two (exact in floating point; each row's
  largest entry in ``[1/2, 1)``), with a relative tolerance to tell rays
  from vertices, a soundness check (every generator satisfies the rows) and
  a completeness check (every edge of every simple vertex ends at a found
  vertex or ray; LP support values of ``P`` in row normals and random
  directions equal those of the generators;
  :mod:`keras_lincon.geometry.generator_check`); a failed check raises instead of
  returning a partial set. Integer or small-rational systems (denominators
  <= 10^6) always run exactly (measured 5-20x slower than float, not 100x).
* **Unbounded work.** A call is refused without a finished run only when a
  *true lower bound* on the vertex count exceeds ``max_generators``
  (:class:`GeneratorExplosionError`, ``reason == "bound"``, "certainly above
  the cap"; :func:`generator_lower_bound`: products of intervals,
  symmetric-group orbits, perfect-matching polytopes), never on McMullen's
  upper bound, which ignores structure and refused 16-vertex sets (it only
  steers arithmetic and the worker). Every other set is enumerated; runs
  that McMullen's bound says may be long (above :data:`WORKER_MIN_BOUND`) go
  to a worker process, so Ctrl-C stops them promptly and ``time_budget``
  ends them with :class:`ConstructionTimeoutError` (``reason == "time"``).
  When the bound exceeds the cap, the parent, otherwise idle, guards the run
  after :data:`GUARD_DELAY`: the lower bound first (a refusal in ~0.1 s),
  then a :class:`VertexWalk` along the edges of simple vertices, which stops
  cddlib with :class:`TooManyGeneratorsError` (``reason == "count"``, "above
  the cap after N generators") once it has counted past the cap (cddlib has
  no hook to stop at a count), or answers instead of cddlib when it ends
  complete (the permutahedra). A finished run over the cap raises the same
  error. The worker process is kept between calls (a fork costs ~30 ms with
  TensorFlow imported, more than a small exact run) and replaced after a
  timeout, Ctrl-C, a guard's refusal or an error. Cross-polytopes (``2^n``
  rows, 2n vertices) are recognised and need no enumeration.
* **Near-duplicates.** Vertices and rays closer than
  :data:`keras_lincon.geometry.representation.MERGE_RTOL` (relative) are one
  generator (:func:`keras_lincon.geometry.representation.merge_close_rows`) before
  they are counted, so counts do not depend on the order or scale of rows.
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
A worker process start costs 10-30 ms (fork, measured with TensorFlow
imported), once: the process is kept. In-process runs (bound <= :data:`WORKER_MIN_BOUND`) cannot be interrupted
but take about a second at most.
"""

from __future__ import annotations

import collections
import logging
import math
import multiprocessing
import multiprocessing.connection
import os
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
from keras_lincon.geometry.generator_check import ADVICE, check_generators, lp_support
from keras_lincon.geometry.representation import merge_close_rows
from keras_lincon.geometry.system import blocks as _system_blocks

logger = logging.getLogger("keras_lincon")

#: Default wall-clock budget (seconds) of a worker-process run.
DEFAULT_TIME_BUDGET = 120.0
#: Exact arithmetic when the bound is at most this (measured: <= ~1-3 s).
EXACT_MAX_BOUND = 3_000
#: Worker process when the bound exceeds this (runs below take well under a
#: second in floating point and about a second exactly: no process overhead).
WORKER_MIN_BOUND = 2_000
#: Seconds a worker run goes unwatched before the parent starts its guard
#: (the certain lower bound, then the vertex walk): short runs never pay for
#: it, and a set certainly above the cap is still refused within ~0.1 s.
GUARD_DELAY = 0.05
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


def _bound_for_any_rank(num_inequalities: int, dim: int, num_equalities: int) -> float:
    """The largest :func:`generator_upper_bound` over the ranks ``num_equalities`` equalities may have.

    An upper bound on the bound for the true rank, without computing it (inf
    when there are too many ranks to try: the caller computes the rank).
    """
    ranks = min(num_equalities, dim)
    if ranks > 16:
        return math.inf
    return max(generator_upper_bound(num_inequalities, dim - r) for r in range(ranks + 1))


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
    return _power_of_two_rows(np.vstack([np.column_stack([b, -A]), np.column_stack([d, -C])]))


def _power_of_two_rows(table: np.ndarray) -> np.ndarray:
    """:func:`normalised_table` of an H-table ``[b, -A; d, -C]`` already stacked."""
    peak = np.max(np.abs(table), axis=1) if table.size else np.zeros(len(table))
    exponent = np.where(peak > 0, np.frexp(peak)[1], 0)
    scaled = np.ldexp(table, -exponent[:, None])
    exact = np.all(np.ldexp(scaled, exponent[:, None]) == table, axis=1)
    return np.where(exact[:, None], scaled, table)


def _rational(value: float) -> Fraction:
    """The float as a rational: a small one if it rounds back exactly, else exactly."""
    small = Fraction(value).limit_denominator(_MAX_DENOMINATOR)
    return small if float(small) == value else Fraction(value)


def _exact_rows(table: np.ndarray) -> list:
    """Rows of ``table`` as exact rationals for ``cdd.gmp``: integer rows as coprime ints (fastest in GMP)."""
    integral = np.all(table == np.round(table), axis=1) & np.all(np.abs(table) < 2.0**53, axis=1)
    if integral.all():  # the common case (integer rows), at once: int64 is exact below 2^53
        ints = table.astype(np.int64)
        g = np.gcd.reduce(ints, axis=1) if ints.shape[1] else np.zeros(len(ints), dtype=np.int64)
        return (ints // np.where(g > 1, g, 1)[:, None]).tolist()
    rows = []
    for row, is_int in zip(table, integral, strict=True):
        if is_int:
            ints = [int(v) for v in row]
            g = math.gcd(*ints)
            rows.append([v // g for v in ints] if g > 1 else ints)
        else:
            rows.append([_rational(float(v)) for v in row])
    return rows


def _small_rationals(table: np.ndarray) -> bool:
    """Whether every entry is a rational with denominator <= :data:`_MAX_DENOMINATOR` (integers: at once)."""
    if np.all(table == np.round(table)):
        return True
    return all(_rational(float(v)).denominator <= _MAX_DENOMINATOR for v in table.reshape(-1))


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
    if not low > 0 or float(np.max(radius)) - low > 1e-12 * low:
        return None
    codes = (A > 0).astype(np.int64) @ (np.int64(1) << np.arange(n, dtype=np.int64))
    if len(np.unique(codes)) != m:
        return None
    return low * np.vstack([np.eye(n), -np.eye(n)])


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
    rows = _exact_rows(table) if exact else table.tolist()
    try:
        matrix = module.matrix_from_array(rows, lin_set=range(num_ineq, len(table)), rep_type=cdd.RepType.INEQUALITY)
        generators = module.copy_generators(module.polyhedron_from_matrix(matrix))
    except (RuntimeError, ValueError, ArithmeticError, TypeError) as exc:
        raise RepresentationCheckError(
            f"cddlib failed on {num_ineq} inequalities and {len(table) - num_ineq} equalities "
            f"in {n} dimensions ({'exact' if exact else 'floating-point'} arithmetic): "
            f"{type(exc).__name__}: {exc}. {ADVICE}" + ("." if exact else ", or pass arithmetic='exact'.")
        ) from exc
    raw = generators.array  # a property that builds the rows (Fractions) on every access: once
    lines = np.zeros(len(raw), dtype=bool)
    lines[sorted(generators.lin_set)] = True
    if exact:
        is_point = np.array([row[0] != 0 for row in raw], dtype=bool) & ~lines
        # x / t as one integer division (xn td) / (xd tn): Python's int true
        # division rounds correctly, so vertices are correctly rounded, without
        # the gcd of a Fraction division (several times faster on many vertices).
        # cddlib scales vertices to t = 1: then x = xn / xd, read from the
        # Fraction's slots (its properties cost twice as much).
        points = []
        for row, point in zip(raw, is_point, strict=True):
            if point:
                t = row[0]
                if t == 1:
                    try:
                        points.append([x._numerator / x._denominator for x in row[1:]])
                        continue
                    except AttributeError:  # not a fractions.Fraction: the public properties
                        pass
                tn, td = t.numerator, t.denominator
                points.append([(x.numerator * td) / (x.denominator * tn) for x in row[1:]])
        vertices = np.array(points, dtype=np.float64).reshape(-1, n)
        array = np.zeros((len(raw), n + 1))
        for i in np.flatnonzero(~is_point):
            array[i] = [float(x) for x in raw[i]]
    else:
        array = np.array(raw, dtype=np.float64).reshape(-1, n + 1)
        peak = np.max(np.abs(array[:, 1:]), axis=1) if n else np.zeros(len(array))
        is_point = (np.abs(array[:, 0]) > RAY_RTOL * peak) & ~lines
        vertices = array[is_point, 1:] / array[is_point, :1]
    return vertices, array[~is_point & ~lines, 1:], array[lines, 1:]


def _worker_main(conn) -> None:
    """Loop of the kept worker process: (table, num_ineq, exact) in, a result out."""
    # The parent handles Ctrl-C and terminates this process.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        try:
            result = ("ok", _run_cdd(*task))
        except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent
            result = ("error", type(exc).__name__, str(exc))
        try:
            conn.send(result)
        except (BrokenPipeError, OSError):
            return


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


# The kept worker: (pid of the process that started it, process, connection).
_WORKER: tuple | None = None


def shutdown_worker() -> None:
    """Stops the kept double-description worker process, if any (the next run starts a new one)."""
    global _WORKER
    worker, _WORKER = _WORKER, None
    if worker is not None and worker[0] == os.getpid():
        _stop(worker[1])
        worker[2].close()


def _worker():
    """The kept worker process and its connection, started (forked) on first use."""
    global _WORKER
    if _WORKER is not None and (_WORKER[0] != os.getpid() or not _WORKER[1].is_alive()):
        shutdown_worker()  # a dead worker, or one that belongs to our parent (we were forked)
    if _WORKER is None:
        ctx = multiprocessing.get_context(_start_method())
        here, there = ctx.Pipe(duplex=True)
        proc = ctx.Process(target=_worker_main, args=(there,), daemon=True, name="keras_lincon-double-description")
        proc.start()
        there.close()
        _WORKER = (os.getpid(), proc, here)
    return _WORKER[1], _WORKER[2]


def _run_in_worker(table, num_ineq, exact, time_budget, describe: str, guard: _CapGuard | None = None):
    """:func:`_run_cdd` in the kept worker process, bounded by ``time_budget`` and Ctrl-C.

    A timeout, Ctrl-C or a dead worker ends the process (cddlib cannot be
    interrupted otherwise); the next call starts a new one. While it runs,
    the parent advances ``guard`` (if given: the certain lower bound, then
    the vertex walk, in slices of 50 ms), which stops the worker by raising
    as soon as the set is certainly, or counted, above the cap.
    """
    proc, conn = _worker()
    start = time.monotonic()
    message, finished = None, False
    try:
        conn.send((table, num_ineq, exact))
        while True:
            left = None if time_budget is None else time_budget - (time.monotonic() - start)
            if left is not None and left <= 0:
                raise ConstructionTimeoutError(
                    f"double description of {describe} did not finish within the time budget "
                    f"(time_budget={time_budget:g} s) and was stopped: the set may have too many "
                    "generators, or is only slow to enumerate. Split the constraints into "
                    "independent blocks, use fewer rows, put a box on a cone (box=...) "
                    "instead of listing bounds as rows, or pass a larger time_budget "
                    "(None waits without limit)."
                )
            timeout = 0.5 if left is None else min(0.5, left)
            if guard is not None and not guard.done:
                # Most runs end within GUARD_DELAY: they never pay for the guard.
                wait_more = GUARD_DELAY - (time.monotonic() - start)
                if wait_more <= 0:
                    found = guard.step(0.05 if left is None else min(0.05, left))  # raises past the cap
                    if found is not None:  # the walk found every vertex first: cddlib is not needed
                        return found, np.zeros((0, found.shape[1])), np.zeros((0, found.shape[1]))
                    timeout = 0.0
                else:
                    timeout = min(timeout, wait_more)
            # Wakes on a result, on the child's exit, or every 0.5 s (so that
            # the budget is checked; Ctrl-C interrupts the wait at once).
            ready = multiprocessing.connection.wait([conn, proc.sentinel], timeout=timeout)
            if conn in ready or proc.sentinel in ready:
                try:
                    message = conn.recv() if conn.poll() else None
                except (EOFError, OSError):
                    message = None
                finished = message is not None
                break
    finally:
        if not finished:
            shutdown_worker()
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
        allow_large: skip the up-front refusal of :class:`GeneratorExplosionError`
            (the run is then still bounded by ``time_budget`` and counted).
        arithmetic: ``"auto"`` (exact when the bound is at most
            :data:`EXACT_MAX_BOUND` or all entries are small rationals, else
            floating point; if that fails its checks or cddlib raises, it
            is retried exactly in a worker within the rest of
            ``time_budget``), ``"exact"`` or ``"float"`` (no retry). ``"auto"``
            and ``"float"`` also accept a complete :class:`VertexWalk`'s
            answer (every vertex, combinatorially certified; coordinates
            solved in float64 from bases of condition <= 1e4); ``"exact"``
            always waits for cddlib.
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
        ConstraintShapeError, NonFiniteError: bad input.
        GeneratorExplosionError: a true lower bound on the count exceeds
            ``max_generators`` (:func:`generator_lower_bound`; a
            :class:`TooManyGeneratorsError` with ``reason == "bound"``).
        TooManyGeneratorsError: the run counted more than ``max_generators``
            generators (``reason == "count"``).
        ConstructionTimeoutError: a worker run exceeded ``time_budget``
            (``reason == "time"``).
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
    # Closed forms that need no enumeration (cross12: 34 s in exact cddlib, B7: minutes)
    closed = cross_polytope_vertices(A, b, C)
    if closed is None:
        closed = matching_vertices(A, b, C, d, limit=max_generators)
    if closed is not None:  # distinct exact points: merging only sorts them
        return merge_close_rows(closed), np.zeros((0, n)), np.zeros((0, n))
    # Exact runs read the rows as given (integer rows stay integers: smaller
    # numbers for GMP than rows scaled by powers of two); float runs and
    # checks use the normalised table (:func:`normalised_table`, made when needed).
    raw = np.vstack([np.column_stack([b, -A]), np.column_stack([d, -C])])
    # McMullen's bound (steers arithmetic and worker only) needs the rank of
    # the equalities; a tiny set skips it: when the bound for every rank they
    # could have leaves the run exact, in-process and unguarded, so does the
    # true one (no SVD, no worker, no walk: a few rows cost what cddlib costs).
    bound = _bound_for_any_rank(m, n, p) if p else generator_upper_bound(m, n)
    if bound > min(WORKER_MIN_BOUND, EXACT_MAX_BOUND, max_generators) and p:
        eq_rank = int(np.linalg.matrix_rank(_power_of_two_rows(raw[m:])[:, 1:]))  # rows normalised
        bound = generator_upper_bound(m, n - eq_rank)
    describe = f"{m} inequalities and {p} equalities in {n} dimensions"

    def refuse_if_certainly_above() -> None:
        # Only a *lower* bound above the cap refuses without a finished run.
        lower, rule = generator_lower_bound(A, b, C, d, seed=seed)
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

    if arithmetic == "auto":
        exact = bound <= EXACT_MAX_BOUND or _small_rationals(raw)
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
            "keras_lincon: double description of %s (%s arithmetic): McMullen's upper bound allows "
            "up to %.3g generators (a bound, not a count; max_generators=%d), this may take a while%s.",
            describe,
            "exact" if exact else "floating-point",
            bound,
            max_generators,
            f" (worker process, time budget {time_budget} s, Ctrl-C stops it)" if in_worker else "",
        )
    start = time.monotonic()
    homogeneous = not np.any(b) and not np.any(d)
    guard = None
    if bound > max_generators:  # McMullen allows more than the cap
        check = None if allow_large else refuse_if_certainly_above
        if in_worker:
            # While the worker runs (the parent would only wait): the lower bound,
            # then a walk along the vertex graph that counts past the cap.
            # A complete walk may also answer first, unless exact coordinates were asked for.
            walk = VertexWalk(A, b, C, d, max_generators, seed)
            guard = _CapGuard(check, walk, describe, may_answer=arithmetic != "exact")
        elif check is not None:
            check()
    table = None if exact else _power_of_two_rows(raw)  # the exact path makes it only to verify
    run = (table, raw, m, describe, max_generators, homogeneous, verify, seed, guard)
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


def _generate(
    table, raw, m, describe, max_generators, homogeneous, verify, seed, guard, *, exact, in_worker, time_budget
):
    """One run of :func:`enumerate_generators` after the bound: cddlib, counts, checks.

    ``table``: the normalised H-table (float runs, checks; None: made from
    ``raw`` when needed); ``raw``: the rows as given (exact runs).
    """
    n = raw.shape[1] - 1
    if table is None and (not exact or verify):
        table = _power_of_two_rows(raw)
    source = raw if exact else table
    if in_worker:
        args = (source, m, exact, time_budget, describe) + ((guard,) if guard is not None else ())
        vertices, rays, lineality = _run_in_worker(*args)
    else:
        vertices, rays, lineality = _run_cdd(source, m, exact)
    # Near-duplicates (float round-off at degenerate vertices) are one generator.
    vertices, rays = merge_close_rows(vertices), merge_close_rows(rays, unit=True)
    total = len(vertices) + len(rays) + len(lineality)
    if total > max_generators:
        raise TooManyGeneratorsError(
            f"double description of {describe} is above the cap after {total} generators "
            f"(max_generators={max_generators}; the run finished and counted them). Split the "
            "constraints into independent blocks (method='auto' does this), use fewer "
            "constraints, or put a box on a cone (box=...) instead of listing bounds as rows "
            "of A; raise max_generators only if the layer can afford that many."
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


# ------------------------------------------------------- certain lower bounds
#
# Refusing on McMullen's upper bound refused small sets (a 16-vertex cut
# polytope, cross-polytopes, the Birkhoff polytope B6: the bound ignores
# structure). A refusal up front therefore needs a *lower* bound on the
# vertex count, from a closed form that the rows certify; everything else is
# enumerated (bounded by the time budget). Each rule below is exact on the
# given floats: symmetries are checked on bitwise-equal normalised rows, and
# every claimed vertex comes with a witness (a vertex of P and its orbit, or
# a perfect matching).

#: Seconds :func:`generator_lower_bound` may spend testing symmetries.
LOWER_BOUND_SECONDS = 0.5
#: Coordinates of an LP vertex closer than this (relative) count as equal
#: (fewer distinct values make a smaller orbit: the bound stays true).
_ORBIT_RTOL = 1e-7
#: Exact perfect-matching counts up to this many rows a side (subset DP).
_MATCHING_MAX_SIDE = 16


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
        eq_basis = vt[: int(np.sum(s > 1e-12 * s[0]))] if s.size and s[0] > 0 else np.zeros((0, n + 1))
    parent = list(range(n))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def is_automorphism(i, j):
        perm = np.arange(n + 1)
        perm[[i, j]] = perm[[j, i]]
        if not np.array_equal(_sorted_rows(rows[:, perm]), reference):
            return False
        if eq_basis is not None:
            swapped = eq[:, perm]
            resid = swapped - (swapped @ eq_basis.T) @ eq_basis
            if np.max(np.abs(resid)) > 1e-12 * max(1.0, float(np.max(np.abs(eq)))):
                return False
        return True

    columns = np.sort(rows[:, :n], axis=0).T  # (n, m'): a column's sorted entries
    _, klass = np.unique(columns, axis=0, return_inverse=True)
    for k in np.unique(klass):
        members = np.flatnonzero(klass.reshape(-1) == k)
        for a_idx, i in enumerate(members):
            for j in members[a_idx + 1 :]:
                if time.monotonic() > deadline:
                    return np.array([find(x) for x in range(n)])
                if find(i) != find(j) and is_automorphism(i, j):
                    parent[find(j)] = find(i)
    return np.array([find(x) for x in range(n)])


def _lp_vertex(A, b, C, d, rng) -> np.ndarray | None:
    """A vertex of ``P`` (checked: ``n`` independent tight rows) maximising a random bounded objective, or None."""
    import scipy.optimize

    n = A.shape[1]
    for _ in range(2):
        # c = A^T lam + C^T mu with lam > 0 bounds c.x by lam.b + mu.d: the LP
        # has an optimum whenever P is non-empty (and a vertex when pointed).
        c = rng.uniform(0.5, 1.5, len(A)) @ A + (rng.standard_normal(len(C)) @ C if len(C) else 0.0)
        res = scipy.optimize.linprog(
            -c,
            A_ub=A if len(A) else None,
            b_ub=b if len(A) else None,
            A_eq=C if len(C) else None,
            b_eq=d if len(C) else None,
            bounds=(None, None),
            method="highs-ds",
        )
        if res.status != 0:
            continue
        x = res.x
        scale = np.abs(b) + np.linalg.norm(A, axis=1) * np.linalg.norm(x)
        tight = A[np.abs(A @ x - b) <= 1e-9 * np.maximum(scale, 1e-300)]
        if np.linalg.matrix_rank(np.vstack([tight, C]), tol=None) == n:
            return x
    return None


def _orbit_size(x: np.ndarray, labels: np.ndarray) -> int:
    """Size of the orbit of ``x`` under the product of symmetric groups on the orbits ``labels``."""
    size = 1
    tol = _ORBIT_RTOL * max(1.0, float(np.max(np.abs(x))))
    for label in np.unique(labels):
        values = np.sort(x[labels == label])
        # Values within tol of their neighbour are one value (fewer distinct
        # values: a smaller orbit, so the bound stays a lower bound).
        runs = np.diff(np.flatnonzero(np.r_[True, np.diff(values) > tol, True]))
        size *= math.factorial(len(values)) // math.prod(math.factorial(int(r)) for r in runs)
    return size


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
    if len(C) == 0 or len(A) < n or np.any(b != 0):
        return None
    nonzero = A != 0
    if np.any(nonzero.sum(axis=1) != 1) or np.any(A[nonzero] >= 0):
        return None
    if not np.array_equal(np.unique(np.nonzero(nonzero)[1]), np.arange(n)):
        return None
    support = C != 0
    peak = np.max(np.abs(C), axis=1)
    if np.any(peak == 0) or np.any(C[support] <= 0):
        return None
    if np.any(np.abs(C - support * peak[:, None]) > 0) or np.any(d != peak):
        return None
    # repeated equalities are one node; the rows in np.unique's (lexicographic)
    # order, from their bytes (several times cheaper on a few rows)
    keys = sorted({row.tobytes() for row in support})
    support = np.frombuffer(b"".join(keys), dtype=bool).reshape(len(keys), n)
    if np.any(support.sum(axis=0) != 2):
        return None
    ends = np.nonzero(support.T)[1].reshape(n, 2)  # (n, 2) equality nodes of each variable, ascending
    neighbours: list = [[] for _ in range(len(support))]  # through the edges in their order
    for u, v in ends.tolist():
        neighbours[u].append(v)
        neighbours[v].append(u)
    # two-colour the equality nodes
    colour = [-1] * len(support)
    for start in range(len(support)):
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
    side = np.array(colour)
    position = np.zeros(len(support), dtype=int)
    for which in (0, 1):
        nodes = np.flatnonzero(side == which)
        position[nodes] = np.arange(len(nodes))
    left_first = np.where(side[ends[:, 0]] == 0, ends[:, 0], ends[:, 1])
    right = np.where(side[ends[:, 0]] == 0, ends[:, 1], ends[:, 0])
    return int(np.sum(side == 0)), int(np.sum(side == 1)), np.column_stack([position[left_first], position[right]])


def _perfect_matchings(A, b, C, d) -> int | None:
    """Vertices of a perfect-matching polytope (:func:`_matching_graph`; a lower bound past 16 nodes), or None."""
    graph = _matching_graph(A, b, C, d)
    return None if graph is None else _count_matchings(graph)


def _count_matchings(graph) -> int | None:
    """:func:`_perfect_matchings` of a graph from :func:`_matching_graph`."""
    k, k_right, ends = graph
    if k != k_right:
        return 0  # the two sides' sums differ: empty
    adjacency = np.zeros((k, k), dtype=np.int64)
    np.add.at(adjacency, (ends[:, 0], ends[:, 1]), 1)  # parallel edges: several variables
    if k > _MATCHING_MAX_SIDE:
        # van der Waerden (Egorychev-Falikman): an r-regular bipartite graph has
        # at least k! (r/k)^k perfect matchings; rounded down, a true bound.
        simple = adjacency > 0
        r = int(simple.sum(axis=1)[0])
        if np.all(simple.sum(axis=1) == r) and np.all(simple.sum(axis=0) == r):
            return int(math.floor(math.exp(math.lgamma(k + 1) + k * math.log(r / k)) * (1 - 1e-9)))
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
    matchings = _perfect_matchings(A, b, C, d)
    if matchings is not None:
        return matchings, f"{matchings} perfect matchings of a bipartite matching polytope", True
    if n >= 2 and time.monotonic() < deadline:
        labels = _transposition_orbits(A, b, C, d, deadline)
        if len(np.unique(labels)) < n and np.linalg.matrix_rank(np.vstack([A, C])) == n:
            vertex = _lp_vertex(A, b, C, d, rng)
            if vertex is not None:
                size = _orbit_size(vertex, labels)
                sizes = sorted(np.unique(labels, return_counts=True)[1].tolist(), reverse=True)
                return size, f"the orbit of an LP vertex under coordinate permutations (S_{sizes[0]}...)", True
    return 1, "", False


#: :func:`coupled_blocks` runs a union-find in Python up to this many nonzero coefficients.
_SMALL_BLOCKS_NONZEROS = 256


def _small_coupled_blocks(n: int, m: int, r: int, row_idx: list, col_idx: list):
    """:func:`coupled_blocks` of a few nonzeros (``row_idx``, ``col_idx`` in row-major order): a union-find."""
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    last_row, last_col = -1, -1
    first = [-1] * r  # each row's first variable
    for i, j in zip(row_idx, col_idx, strict=True):
        if i == last_row:
            a, b = find(last_col), find(j)
            if a != b:
                parent[max(a, b)] = min(a, b)  # a block's root is its first variable
        else:
            first[i] = j
        last_row, last_col = i, j
    touched = set(col_idx)
    mapping: dict = {}
    coord = [mapping.setdefault(find(j), len(mapping)) if j in touched else -1 for j in range(n)]
    row_block = [coord[j] if j >= 0 else -1 for j in first]
    coord_arr, row_arr = np.array(coord, dtype=np.int64), np.array(row_block, dtype=np.int64)
    return coord_arr, (row_arr[:m], row_arr[m:])


def coupled_blocks(n: int, A: np.ndarray, C: np.ndarray):
    """:func:`keras_lincon.geometry.system.blocks` of ``A`` and ``C`` (the same output), cheaper on small tables.

    Dense label propagation (a few numpy sweeps) instead of a sparse graph:
    about 10x cheaper on the small tables double description sees. Large
    tables (over 4e6 entries) and long chains (more than 16 sweeps) go to
    :func:`keras_lincon.geometry.system.blocks`.
    """
    if (len(A) + len(C)) * n > 4_000_000:
        return _system_blocks(n, A, C)
    support = np.vstack([A, C]) != 0  # (r, n)
    row_idx, col_idx = np.nonzero(support)  # row-major: each row's columns in order
    if len(row_idx) <= _SMALL_BLOCKS_NONZEROS:
        return _small_coupled_blocks(n, len(A), len(support), row_idx.tolist(), col_idx.tolist())
    big = n
    labels = np.arange(n)
    for _ in range(16):
        row_min = np.where(support, labels[None, :], big).min(axis=1, initial=big)
        new = np.minimum(labels, np.where(support, row_min[:, None], big).min(axis=0, initial=big))
        if np.array_equal(new, labels):
            break
        labels = new
    else:
        return _system_blocks(n, A, C)
    touched = support.any(axis=0)
    _, coord = np.unique(np.where(touched, labels, -1), return_inverse=True)
    coord = coord.reshape(-1) - (0 if touched.all() else 1)  # -1 stays -1, blocks 0..k-1 in order
    coord = np.where(touched, coord, -1)
    first = np.where(support.any(axis=1), np.argmax(support, axis=1), -1)
    row_block = np.where(first >= 0, coord[np.maximum(first, 0)], -1)
    return coord, (row_block[: len(A)], row_block[len(A) :])


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
      ``B_k``: ``k!``), counted exactly up to :data:`_MATCHING_MAX_SIDE` nodes a
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
    A, b, C, d = _as_arrays(A, b, C, d)
    n = A.shape[1]
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


class VertexWalk:
    """Counts vertices of ``P = {x : A x <= b, C x = d}`` by walking its edges, to stop at a cap.

    cddlib cannot be stopped when its count passes ``max_generators``; this
    walk, run by the parent while the worker enumerates, can: breadth-first
    from an LP vertex along the edges of *simple* vertices (exactly
    ``dim`` tight rows). An edge from a simple vertex with basis ``B`` that
    leaves row ``k`` ends where a row ``j`` becomes tight; when ``j`` is
    unique with a clear margin, the end is the simple vertex with basis
    ``B - {k} + {j}``, so each counted vertex is identified by its tight rows
    (combinatorially, not by coordinates) and the count is a true lower bound.
    Degenerate vertices and ties are not expanded or counted (the walk then
    counts less, never more). Equalities are eliminated first
    (``x = x0 + N z``); a set with lineality is not walked.

    When the walk ends with every vertex simple and expanded, every edge
    bounded with a clear blocking row and every basis well conditioned
    (:data:`COMPLETE_COND`), it has found *all* vertices (the graph of a
    polytope is connected, Balinski): :attr:`complete` is then True and
    :meth:`vertices` returns them (each solved from its basis in float64),
    so the caller may stop cddlib. The permutahedra are such polytopes.

    Args:
        A: (m, n); b: (m,); C: (p, n); d: (p,) float arrays.
        cap: stop (``passed`` becomes True) once more than ``cap`` vertices are found.
        seed: seed of the starting LP's objective.
    """

    #: Slack (relative to the row norm, rows are unit) below which a row is tight.
    TIGHT = 1e-9
    #: Relative gap the first blocking row needs over the second one.
    MARGIN = 1e-7
    #: Largest condition number (1-norm) of a basis for a complete walk's
    #: coordinates (relative error ~ COMPLETE_COND * eps ~ 1e-12).
    COMPLETE_COND = 1e4

    def __init__(self, A, b, C, d, cap: int, seed: int = 0):
        self.cap, self.count, self.passed, self.done = int(cap), 0, False, False
        self._exhaustive = True  # no vertex or edge skipped so far
        self._points: list = []
        self._affine = None  # (x0, N) when equalities were eliminated
        self._problem = (A, b, C, d)
        self._seed = seed
        self._queue: collections.deque = collections.deque()
        self._seen: set = set()

    def _start(self) -> None:
        A, b, C, d = self._problem
        if len(C):
            # x = x0 + N z: a particular solution and a null-space basis of C
            x0 = np.linalg.lstsq(C, d, rcond=None)[0]
            if np.max(np.abs(C @ x0 - d), initial=0.0) > 1e-9 * max(1.0, float(np.max(np.abs(d)))):
                self.done, self._exhaustive = True, False
                return
            _, s, vt = np.linalg.svd(C)
            rank = int(np.sum(s > 1e-12 * s[0])) if s.size else 0
            N = vt[rank:].T
            A, b = A @ N, b - A @ x0
            self._affine = (x0, N)
        norms = np.linalg.norm(A, axis=1)
        keep = norms > 0
        A, b = A[keep] / norms[keep, None], b[keep] / norms[keep]
        self._A, self._b = A, b
        dim = A.shape[1]
        if dim == 0 or np.linalg.matrix_rank(A) < dim:
            self.done, self._exhaustive = True, False  # a point, or lineality: nothing to walk
            return
        vertex = _lp_vertex(A, b, np.zeros((0, dim)), np.zeros(0), np.random.default_rng(self._seed))
        basis = None if vertex is None else self._simple_basis(vertex)
        if basis is None:
            self.done, self._exhaustive = True, False  # the start is degenerate: no certified walk
            return
        self._seen.add(basis)
        self._queue.append(basis)
        self.count = 1

    def _simple_basis(self, x) -> tuple | None:
        slack = self._b - self._A @ x
        tight = np.flatnonzero(np.abs(slack) <= self.TIGHT * max(1.0, float(np.max(np.abs(x)))))
        return tuple(tight.tolist()) if len(tight) == self._A.shape[1] else None

    def step(self, seconds: float) -> bool:
        """Walks for about ``seconds``; returns ``passed`` (more than ``cap`` vertices found)."""
        stop = time.monotonic() + seconds
        if not self._seen and not self.done:
            self._start()
        A, b = getattr(self, "_A", None), getattr(self, "_b", None)
        while self._queue and not self.passed and time.monotonic() < stop:
            m, dim = A.shape
            # a batch of queued bases at once: numpy over (K, dim, m), not a Python loop per vertex
            size = max(1, min(len(self._queue), 256, 2_000_000 // max(1, dim * m)))
            bases = [self._queue.popleft() for _ in range(size)]
            self._expand(A, b, bases)
        if not self._queue:
            self.done = True
        return self.passed

    def _expand(self, A: np.ndarray, b: np.ndarray, bases: list) -> None:
        """Finds the neighbours of the simple vertices with the given bases (K tuples of dim rows)."""
        m, dim = A.shape
        rows = np.array(bases)  # (K, dim)
        M = A[rows]  # (K, dim, dim)
        try:
            inv = np.linalg.inv(M)
        except np.linalg.LinAlgError:  # one singular basis in the batch: one at a time
            if len(bases) > 1:
                for basis in bases:
                    self._expand(A, b, [basis])
            else:
                self._exhaustive = False
            return
        cond = np.abs(M).sum(axis=1).max(axis=1) * np.abs(inv).sum(axis=1).max(axis=1)  # 1-norms
        x = np.einsum("kij,kj->ki", inv, b[rows])  # (K, dim)
        slack = b[None, :] - x @ A.T  # (K, m)
        scale = np.maximum(1.0, np.abs(x).max(axis=1))
        others = np.ones((len(bases), m), dtype=bool)
        others[np.arange(len(bases))[:, None], rows] = False
        degenerate = np.any(others & (slack <= self.TIGHT * scale[:, None]), axis=1)
        # ill-conditioned (tight rows not certain) or degenerate after all: not expanded
        usable = (cond <= 1e8) & ~degenerate & (m - dim >= 2)
        self._exhaustive &= bool(usable.all()) and bool(np.all(cond <= self.COMPLETE_COND))
        if not usable.any():
            return
        keep = np.flatnonzero(usable)
        inv, x, slack, others, scale = inv[keep], x[keep], slack[keep], others[keep], scale[keep]
        self._points.extend(x)
        edges = -np.transpose(inv, (0, 2, 1))  # edges[i, k]: a_{B_l}.e_k = -delta_kl
        rate = edges @ A.T  # (K, dim, m)
        grow = others[:, None, :] & (rate > 1e-12 * np.linalg.norm(edges, axis=2)[:, :, None])
        ratio = np.where(grow, slack[:, None, :] / np.where(grow, rate, 1.0), np.inf)
        # a bounded edge whose first blocking row is unique with a margin (else: a ray or a tie)
        two = np.partition(ratio, 1, axis=2)[:, :, :2]
        with np.errstate(invalid="ignore"):  # inf - inf: an unbounded edge, not clear
            gap = two[:, :, 1] - two[:, :, 0]
        clear = np.isfinite(two[:, :, 0]) & (gap > self.MARGIN * np.maximum(two[:, :, 0], scale[:, None]))
        self._exhaustive &= bool(clear.all())  # a ray or a tie: not a certified enumeration
        blocking = np.argmin(ratio, axis=2)  # (K, dim)
        for i, k in zip(*np.nonzero(clear), strict=True):
            basis = bases[keep[i]]
            nxt = tuple(sorted(basis[:k] + basis[k + 1 :] + (int(blocking[i, k]),)))
            if nxt not in self._seen:
                self._seen.add(nxt)
                self._queue.append(nxt)
                self.count += 1
                if self.count > self.cap:
                    self.passed = True
                    return

    @property
    def complete(self) -> bool:
        """The walk has ended and found every vertex (a polytope, all vertices simple; see the class)."""
        return self.done and self._exhaustive and not self.passed and self.count == len(self._points) > 0

    def vertices(self) -> np.ndarray:
        """(count, n) the vertices found (all of them when :attr:`complete`), in the original coordinates."""
        z = np.array(self._points).reshape(len(self._points), -1)
        if self._affine is None:
            return z
        x0, N = self._affine
        return x0[None, :] + z @ N.T


class _CapGuard:
    """What the parent does while the worker runs, to stop it as soon as the set is above the cap.

    First (once) ``check``, the certain lower bound of
    :func:`generator_lower_bound`, which raises :class:`GeneratorExplosionError`
    ("certainly above the cap"); then :class:`VertexWalk` steps, and
    :class:`TooManyGeneratorsError` ("above the cap after N generators") once
    the walk has counted more than the cap. Off the critical path: a run the
    guard does not stop costs no more than cddlib's own time. With
    ``may_answer``, a complete walk (:attr:`VertexWalk.complete`) is the
    answer and cddlib is stopped.
    """

    def __init__(self, check, walk: VertexWalk, describe: str, may_answer: bool = True):
        self._check, self.walk, self.describe, self.may_answer = check, walk, describe, may_answer

    @property
    def done(self) -> bool:
        return self._check is None and self.walk.done

    def step(self, seconds: float) -> np.ndarray | None:
        """Advances the guard; raises past the cap; returns all vertices when the walk completes."""
        if self._check is not None:
            check, self._check = self._check, None
            check()
            return None
        if self.walk.done:
            return None
        if self.walk.step(seconds):
            raise TooManyGeneratorsError(
                f"double description of {self.describe} is above the cap after {self.walk.count} "
                f"generators: a walk along the edges of its simple vertices counted more than "
                f"max_generators={self.walk.cap} distinct vertices while cddlib ran, so the run was "
                "stopped. Split the constraints into independent blocks (method='auto' does "
                "this), use fewer constraints, or put a box on a cone (box=...) instead of "
                "listing bounds as rows of A; raise max_generators only if the layer can "
                "afford that many."
            )
        return self.walk.vertices() if self.may_answer and self.walk.complete else None
