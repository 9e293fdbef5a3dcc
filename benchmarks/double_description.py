"""h_to_v on families with known vertex counts, side by side with exact pycddlib (issue 21).

For each family (the builders of ``tests/polytope_families.py``, our
own, not the GPL cddlib/lrslib files) it times, in this one process and
interleaved round by round so that both sides see the same machine load:

* ``pycddlib``: exact pycddlib on the same rows, as a user would call it:
  ``cdd.gmp.matrix_from_array`` of ``Fraction(float)`` rows ``[b, -A]``
  (equalities in ``lin_set``), ``polyhedron_from_matrix``, ``copy_generators``;
* ``h_to_v``: ``keras_lincon.h_to_v(A, b, C, d, method=...)`` with its
  defaults (cap 20,000 generators, time budget 120 s), which checks the
  count and returns float64 generators.

It prints (in ms) the median of ``--repeats`` rounds (``--small-repeats`` rounds
where one round takes under 50 ms: millisecond timings on a shared machine
need more of them), the ratio h_to_v / pycddlib, h_to_v's extra time over
pycddlib in ms (its fixed overhead: validation, block split, checks) and
whether the vertex count is exact. The worker process that long runs use is
kept between calls; it is started once before timing (its first start, a
fork, is printed separately). Then the refusals: permutahedra and Birkhoff
polytopes of order 8 to 10 (above the cap: the time to refuse and the rule),
and with ``--b7`` the Birkhoff polytope B7 (5,040 vertices) under the
default time budget.

Run (repository root): python benchmarks/double_description.py [--all] [--b7] [--repeats 3] [--small-repeats 41]
"""

import argparse
import logging
import os
import platform
import statistics
import sys
import time
from fractions import Fraction

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import cdd  # noqa: E402
import cdd.gmp  # noqa: E402
import numpy as np  # noqa: E402

import keras_lincon as klc  # noqa: E402
from keras_lincon.geometry import double_description as dd  # noqa: E402
from keras_lincon.geometry.double_description import worker  # noqa: E402
from tests.polytope_families import FAMILIES, SLOW, birkhoff, permutahedron  # noqa: E402


def pycddlib_exact(A, b, C, d) -> int:
    """Exact pycddlib on the rows as given; returns the number of generators."""
    rows = [[Fraction(float(x)) for x in row] for row in np.column_stack([b, -A])]
    lin = []
    if C is not None:
        lin = range(len(rows), len(rows) + len(C))
        rows += [[Fraction(float(x)) for x in row] for row in np.column_stack([d, -C])]
    matrix = cdd.gmp.matrix_from_array(rows, lin_set=lin, rep_type=cdd.RepType.INEQUALITY)
    return len(cdd.gmp.copy_generators(cdd.gmp.polyhedron_from_matrix(matrix)).array)


def h_to_v_count(A, b, C, d, method) -> int:
    rep = klc.h_to_v(A, b, C, d, method=method)
    return rep.vertices.shape[0] + rep.rays.shape[0]


def _arguments(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--all", action="store_true", help="also the slow families (cross10-12, B6, perm7, ...)")
    parser.add_argument("--b7", action="store_true", help="also B7 under the default time budget (up to 120 s)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--small-repeats", type=int, default=41, help="rounds where one takes under 50 ms")
    parser.add_argument("--methods", default="auto,cdd")
    parser.add_argument("--only", default="", help="comma-separated family names")
    return parser.parse_args(argv)


def _time_family(name: str, methods: list, repeats: int, small_repeats: int) -> str:
    """One row of the table: medians of interleaved rounds (pycddlib, then each method), ratios, extra ms."""
    build, expected = FAMILIES[name]
    A, b, C, d = build()
    times = {key: [] for key in ["pycddlib", *methods]}
    counts = {}
    rounds, done = repeats, 0
    while done < rounds:
        round_start = time.perf_counter()
        for key in times:  # interleaved: both sides see the same load
            t0 = time.perf_counter()
            if key == "pycddlib":
                counts[key] = pycddlib_exact(A, b, C, d)
            else:
                counts[key] = h_to_v_count(A, b, C, d, key)
            times[key].append(time.perf_counter() - t0)
        done += 1
        if done == 1 and time.perf_counter() - round_start < 0.05:
            rounds = max(rounds, small_repeats)
    base = statistics.median(times["pycddlib"])
    line = f"{name:18s} {A.shape[0]:5d} {A.shape[1]:4d} {expected:8d} {1e3 * base:11.3f}"
    for method in methods:
        t = statistics.median(times[method])
        line += f" {1e3 * t:16.3f} {t / base:6.2f} {1e3 * (t - base):6.2f}"
    exact = all(counts[m] == expected for m in methods) and counts["pycddlib"] == expected
    return line + f"  {'yes' if exact else 'NO ' + str(counts)}"


def _print_refusals(methods: list) -> None:
    print("\n# refusals of sets above the cap (max_generators=20,000)")
    for label, build, k in [(f"perm{k}", permutahedron, k) for k in (8, 9, 10)] + [
        (f"B{k}", birkhoff, k) for k in (8, 9, 10)
    ]:
        A, b, C, d = build(k)
        for method in methods:
            t0 = time.perf_counter()
            try:
                klc.h_to_v(A, b, C, d, method=method)
                outcome = "NOT REFUSED"
            except klc.TooManyGeneratorsError as exc:
                outcome = f"reason={exc.reason}: {exc.rule or ''}"
            print(f"{label:7s} {method:5s} {time.perf_counter() - t0:7.3f} s  {outcome}", flush=True)


def _print_b7() -> None:
    A, b, C, d = birkhoff(7)
    t0 = time.perf_counter()
    try:
        rep = klc.h_to_v(A, b, C, d)
        outcome = f"{rep.vertices.shape[0]} vertices"
    except (klc.TooManyGeneratorsError, klc.ConstructionTimeoutError) as exc:
        outcome = f"refused, reason={exc.reason}: {str(exc)[:160]}"
    print(f"\nB7 (default time budget {dd.DEFAULT_TIME_BUDGET:g} s): {time.perf_counter() - t0:.1f} s, {outcome}")


def main(argv=None) -> None:
    args = _arguments(argv)
    logging.getLogger("keras_lincon").setLevel(logging.ERROR)  # the 'may take a while' notes
    methods = args.methods.split(",")
    names = args.only.split(",") if args.only else [n for n in FAMILIES if n != "B7" and (args.all or n not in SLOW)]
    print(
        f"# {platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, numpy {np.__version__}"
    )
    start = time.perf_counter()
    worker.run_in_worker(
        dd.normalised_table(np.eye(1), np.ones(1), np.zeros((0, 1)), np.zeros(0)), 1, True, 10.0, "warm-up"
    )
    print(f"# worker process start (fork, once per process): {time.perf_counter() - start:.3f} s")
    header = f"{'family':18s} {'rows':>5s} {'dim':>4s} {'vertices':>8s} {'pycddlib ms':>11s}"
    for method in methods:
        header += f" {'h_to_v ' + method + ' ms':>16s} {'ratio':>6s} {'+ms':>6s}"
    print(header + "  exact?")
    for name in names:
        print(_time_family(name, methods, args.repeats, args.small_repeats), flush=True)
    _print_refusals(methods)
    if args.b7:
        _print_b7()


if __name__ == "__main__":
    main()
