"""Tests of keras_lincon.geometry.double_description: exact-first, bounded, interruptible DD."""

import itertools
import math
import multiprocessing
import os
import time
from fractions import Fraction

import cdd
import cdd.gmp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import keras_lincon as klc
from keras_lincon.errors import (
    ConstructionTimeoutError,
    GeneratorExplosionError,
    InfeasibleError,
    LinconError,
    RepresentationCheckError,
    TooManyGeneratorsError,
)
from keras_lincon.geometry import double_description as dd
from keras_lincon.geometry import enumeration
from keras_lincon.geometry.double_description import generators, tables, upper_bounds, worker
from keras_lincon.geometry.representation import merge_close_rows
from tests.conftest import run_python


def exact_reference(A, b):
    """Vertices, rays, lineality count of {A x <= b} by cdd.gmp on the exact rationals of A, b."""
    n = A.shape[1]
    rows = [[Fraction(float(x)) for x in row] for row in np.column_stack([b, -A])]
    mat = cdd.gmp.matrix_from_array(rows, rep_type=cdd.RepType.INEQUALITY)
    gen = cdd.gmp.copy_generators(cdd.gmp.polyhedron_from_matrix(mat))
    lines = set(gen.lin_set)
    verts = [[float(x / r[0]) for x in r[1:]] for i, r in enumerate(gen.array) if r[0] != 0 and i not in lines]
    rays = [[float(x) for x in r[1:]] for i, r in enumerate(gen.array) if r[0] == 0 and i not in lines]
    verts = np.array(verts, dtype=float).reshape(-1, n)
    if len(verts) == 0 and len(gen.array):
        verts = np.zeros((1, n))  # cdd leaves out a cone's apex
    return verts, np.array(rays, dtype=float).reshape(-1, n), len(lines)


def same_rows(X, Y, *, unit=False, rtol=1e-7):
    """Row sets equal up to order (rays: up to positive scale) by nearest matching."""
    if X.shape != Y.shape:
        return False
    if len(X) == 0:
        return True
    if unit and len(X):
        X = X / np.linalg.norm(X, axis=1, keepdims=True)
        Y = Y / np.linalg.norm(Y, axis=1, keepdims=True)
    scale = max(1.0, float(np.abs(Y).max(initial=0.0)))
    dist = np.linalg.norm(X[:, None, :] - Y[None, :, :], axis=2)
    return bool(np.all(dist.min(axis=1) <= rtol * scale) and np.all(dist.min(axis=0) <= rtol * scale))


def naive_float_cdd(A, b):
    """The former classification: float cdd, vertex iff first column != 0."""
    mat = cdd.matrix_from_array(np.column_stack([b, -A]).tolist(), rep_type=cdd.RepType.INEQUALITY)
    arr = np.array(cdd.copy_generators(cdd.polyhedron_from_matrix(mat)).array)
    return arr[arr[:, 0] != 0, 1:] / arr[arr[:, 0] != 0, :1], arr[arr[:, 0] == 0, 1:]


def seed_10122():
    rng = np.random.default_rng(10122)
    A = rng.standard_normal((8, 3))
    return A, abs(rng.standard_normal(8)) + 0.1


@pytest.mark.parametrize("arithmetic", ["auto", "exact", "float"])
def test_seed_10122_rays_not_vertices(arithmetic):
    A, b = seed_10122()
    naive_vertices, _ = naive_float_cdd(A, b)
    assert np.abs(naive_vertices).max() > 1e12  # the defect: a ray read as a vertex
    ref_v, ref_r, _ = exact_reference(A, b)
    v, r, l = dd.enumerate_generators(A, b, max_generators=1000, arithmetic=arithmetic)
    assert (len(v), len(r), len(l)) == (len(ref_v), len(ref_r), 0)
    assert same_rows(v, ref_v) and same_rows(r, ref_r, unit=True)
    assert np.abs(v).max() < 1e3


def random_system(data, rows, dims):
    m, n = data.draw(rows), data.draw(dims)
    seed = data.draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((m, n))
    b = np.abs(rng.standard_normal(m)) + 0.1
    scale = 10.0 ** rng.uniform(-6, 6, m)  # rows of wildly different norms
    return A * scale[:, None], b * scale


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_auto_matches_exact_reference(data):
    A, b = random_system(data, st.integers(6, 10), st.integers(2, 4))
    ref_v, ref_r, ref_l = exact_reference(A, b)
    v, r, l = dd.enumerate_generators(A, b, max_generators=10_000)
    assert (len(v), len(r), len(l)) == (len(ref_v), len(ref_r), ref_l)
    assert same_rows(v, ref_v) and same_rows(r, ref_r, unit=True)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_float_path_is_right_or_raises(data):
    """Floating point with checks: the exact generators, or a RepresentationCheckError."""
    A, b = random_system(data, st.integers(6, 10), st.integers(2, 4))
    ref_v, ref_r, ref_l = exact_reference(A, b)
    try:
        v, r, l = dd.enumerate_generators(A, b, max_generators=10_000, arithmetic="float")
    except RepresentationCheckError:
        return
    assert (len(v), len(r), len(l)) == (len(ref_v), len(ref_r), ref_l)
    assert same_rows(v, ref_v, rtol=1e-6) and same_rows(r, ref_r, unit=True, rtol=1e-6)


def test_cone_equalities_lineality_and_empty():
    v, r, l = dd.enumerate_generators(-np.eye(3), None, max_generators=10)
    assert np.array_equal(v, np.zeros((1, 3))) and len(r) == 3 and len(l) == 0
    # x0 + x1 <= 0 with x2 = 1: apex on the plane, one ray, one line
    v, r, l = dd.enumerate_generators([[1.0, 1.0, 0.0]], None, C=[[0.0, 0.0, 1.0]], d=[1.0], max_generators=10)
    assert len(r) == 1 and len(l) == 1 and np.allclose(v @ [0, 0, 1], 1.0)
    assert np.allclose(l @ [1, 1, 0], 0) and np.allclose(r @ [0, 0, 1], 0)
    for arithmetic in ("exact", "float"):
        with pytest.raises(InfeasibleError, match="no solution"):
            dd.enumerate_generators([[1.0, 0.0], [-1.0, 0.0]], [-1.0, -1.0], max_generators=10, arithmetic=arithmetic)


def test_random_80_rows_in_20d_are_refused_by_their_count_not_the_bound():
    """McMullen's bound (5e11) no longer refuses: it runs, and the walk stops it past the cap."""
    rng = np.random.default_rng(0)
    A = rng.standard_normal((80, 20))
    start = time.perf_counter()
    with pytest.raises(TooManyGeneratorsError, match=r"80 inequalities .* above the cap after 20001") as info:
        dd.enumerate_generators(A, np.ones(80), max_generators=20_000, time_budget=60.0)
    assert time.perf_counter() - start < 10.0
    assert info.value.reason == "count" and not isinstance(info.value, GeneratorExplosionError)
    assert not multiprocessing.active_children()


def test_allow_large_runs_then_counts():
    cube = np.vstack([np.eye(6), -np.eye(6)])  # 64 vertices: 2^6, a product of intervals
    with pytest.raises(GeneratorExplosionError, match=r"certainly above the cap \(bound: at least 64") as info:
        dd.enumerate_generators(cube, np.ones(12), max_generators=1)
    assert info.value.reason == "bound" and info.value.bound == 64
    with pytest.raises(TooManyGeneratorsError, match="above the cap after 64 generators") as info:
        dd.enumerate_generators(cube, np.ones(12), max_generators=1, allow_large=True)
    assert not isinstance(info.value, GeneratorExplosionError) and info.value.reason == "count"


def test_worker_gives_same_result(monkeypatch):
    A, b = seed_10122()
    here = dd.enumerate_generators(A, b, max_generators=1000)
    calls = []
    real = worker.run_in_worker
    monkeypatch.setattr(generators, "WORKER_MIN_BOUND", 0)
    monkeypatch.setattr(generators, "run_in_worker", lambda *a: calls.append(1) or real(*a))
    there = dd.enumerate_generators(A, b, max_generators=1000)
    assert calls and all(np.array_equal(x, y) for x, y in zip(here, there, strict=False))


def test_time_budget_stops_worker():
    rng = np.random.default_rng(1)  # exact arithmetic: about a minute
    A, b = rng.standard_normal((30, 10)), abs(rng.standard_normal(30)) + 0.1
    start = time.perf_counter()
    with pytest.raises(
        ConstructionTimeoutError,
        match=r"30 inequalities .* did not finish within the time budget \(time_budget=0.3 s\)",
    ):
        dd.enumerate_generators(A, b, max_generators=20_000, arithmetic="exact", time_budget=0.3)
    assert time.perf_counter() - start < 5.0
    assert not multiprocessing.active_children()


@pytest.mark.parametrize("where", ["here", "worker"])
def test_cddlib_error_becomes_library_error(monkeypatch, request, where):
    def boom(*args, **kwargs):
        raise RuntimeError("Numerical inconsistency is found.  Use the GMP exact arithmetic.")

    monkeypatch.setattr(cdd, "polyhedron_from_matrix", boom)
    monkeypatch.setattr(cdd.gmp, "polyhedron_from_matrix", boom)
    if where == "worker":  # fork: a new child sees the patched functions too
        monkeypatch.setattr(generators, "WORKER_MIN_BOUND", 0)
        dd.shutdown_worker()
        request.addfinalizer(dd.shutdown_worker)  # no worker with the patched cddlib stays
    A, b = seed_10122()
    for arithmetic in ("exact", "float"):
        with pytest.raises(RepresentationCheckError, match="Numerical inconsistency.*Rescale"):
            dd.enumerate_generators(A, b, max_generators=1000, arithmetic=arithmetic)


def test_bad_arguments():
    with pytest.raises(LinconError, match="arithmetic"):
        dd.enumerate_generators(np.eye(2), max_generators=10, arithmetic="fast")
    with pytest.raises(LinconError, match="time_budget"):
        dd.enumerate_generators(np.eye(2), max_generators=10, time_budget=0)
    with pytest.raises(LinconError, match="max_generators"):
        dd.enumerate_generators(np.eye(2), max_generators=0)


def test_normalised_table_is_exact_power_of_two_scaling():
    table = np.array([[3e6, 1e6, -2.5e5], [1e-7, 0.0, 3e-7], [0.0, 0.0, 0.0]])
    scaled = dd.normalised_table(-table[:, 1:], table[:, 0], np.zeros((0, 2)), np.zeros(0))
    nonzero = table[:2] != 0
    ratio = scaled[:2][nonzero] / table[:2][nonzero]
    assert np.all(np.log2(ratio) % 1 == 0) and np.array_equal(scaled[:2] == 0, ~nonzero)
    assert np.all((np.abs(scaled[:2]).max(axis=1) >= 0.5) & (np.abs(scaled[:2]).max(axis=1) < 1))
    assert not np.any(scaled[2])


CTRL_C = """
import os, signal, sys, threading, time, types, multiprocessing
import numpy as np
# import the numpy-only module without the package (which loads Keras)
pkg = types.ModuleType("keras_lincon"); pkg.__path__ = [PACKAGE_DIR]
sys.modules["keras_lincon"] = pkg
from keras_lincon.geometry import double_description as dd
# Ctrl-C as in a terminal: a Python started with SIGINT ignored (as a background job of a
# non-interactive shell can be) keeps ignoring it, and then no KeyboardInterrupt ever comes
signal.signal(signal.SIGINT, signal.default_int_handler)
rng = np.random.default_rng(1)
A, b = rng.standard_normal((30, 10)), abs(rng.standard_normal(30)) + 0.1
threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT)).start()
start = time.perf_counter()
try:
    dd.enumerate_generators(A, b, max_generators=20000, arithmetic="exact", time_budget=None)
    print("finished")
except KeyboardInterrupt:
    print("interrupted", round(time.perf_counter() - start, 2), len(multiprocessing.active_children()))
"""


def test_ctrl_c_stops_worker_promptly():
    code = CTRL_C.replace("PACKAGE_DIR", repr(os.path.dirname(klc.__file__)))
    out = run_python(code, timeout=60).split()
    assert out[0] == "interrupted", out
    assert float(out[1]) < 4.0 and out[2] == "0"  # the signal came at 1 s; no child left


@pytest.mark.slow
def test_worker_fork_with_tensorflow_imported():
    out = run_python(
        """
        import tensorflow as tf, numpy as np
        tf.constant(1.0) + 1.0  # TF's thread pools are running
        from keras_lincon.geometry import double_description as dd
        from keras_lincon.geometry.double_description import generators, worker
        generators.WORKER_MIN_BOUND = 0
        rng = np.random.default_rng(1)
        A, b = rng.standard_normal((20, 6)), abs(rng.standard_normal(20)) + 0.1
        v, r, l = dd.enumerate_generators(A, b, max_generators=10000)
        print(len(v), len(r), worker._start_method())
        """,
        timeout=300,
    ).split()
    assert int(out[0]) > 1 and out[2] == "fork"


def test_possibly_long_run_is_announced(caplog):
    A, b = seed_10122()  # 8 rows in 3 dims: McMullen allows 16, no certain bound: it runs
    with caplog.at_level("WARNING", logger="keras_lincon"):
        with pytest.raises(TooManyGeneratorsError, match=r"above the cap after \d+ generators") as info:
            dd.enumerate_generators(A, b, max_generators=4)
    assert info.value.reason == "count" and not isinstance(info.value, GeneratorExplosionError)
    assert "may take a while" in caplog.text and "8 inequalities" in caplog.text
    assert "a bound, not a count" in caplog.text


def test_daemonic_process_runs_in_process(monkeypatch, caplog):
    monkeypatch.setattr(generators, "WORKER_MIN_BOUND", 0)
    monkeypatch.setattr(multiprocessing.current_process(), "daemon", True, raising=False)
    A, b = seed_10122()
    with caplog.at_level("WARNING", logger="keras_lincon"):
        v, r, l = dd.enumerate_generators(A, b, max_generators=1000)
    assert "daemonic" in caplog.text and len(v) == len(exact_reference(A, b)[0])


def scaled_system(seed, axis):
    """Random system with rows (axis=0) or columns (axis=1) scaled by 10^-8..10^8."""
    rng = np.random.default_rng(seed)
    m, n = rng.integers(6, 16), rng.integers(2, 6)
    A, b = rng.standard_normal((m, n)), np.abs(rng.standard_normal(m)) + 0.1
    scale = 10.0 ** rng.uniform(-8, 8, A.shape[axis])
    if axis == 0:
        return A * scale[:, None], b * scale
    return A * scale[None, :], b


def test_row_scaling_fixes_numerical_inconsistency():
    A, b = scaled_system(0, axis=0)  # 14 x 4
    with pytest.raises(RuntimeError, match="Numerical inconsistency"):  # plain float cddlib
        naive_float_cdd(A, b)
    ref_v, ref_r, _ = exact_reference(A, b)
    for arithmetic in ("auto", "float"):
        v, r, _ = dd.enumerate_generators(A, b, max_generators=10_000, arithmetic=arithmetic)
        assert same_rows(v, ref_v, rtol=1e-6) and same_rows(r, ref_r, unit=True, rtol=1e-6)


def test_natural_cddlib_error_is_wrapped_and_auto_retries_exactly(monkeypatch, caplog):
    A, b = scaled_system(77, axis=1)  # 6 x 5, columns 10^+-8 apart: float cddlib fails
    with pytest.raises(RepresentationCheckError, match="cddlib failed.*Numerical inconsistency"):
        dd.enumerate_generators(A, b, max_generators=10_000, arithmetic="float")
    ref_v, ref_r, _ = exact_reference(A, b)
    monkeypatch.setattr(generators, "EXACT_MAX_BOUND", 0)  # auto picks floating point first
    with caplog.at_level("WARNING", logger="keras_lincon"):
        v, r, _ = dd.enumerate_generators(A, b, max_generators=10_000)
    assert "Retrying in exact arithmetic" in caplog.text
    assert same_rows(v, ref_v) and same_rows(r, ref_r, unit=True)


# ------------------------------------------------ families with known counts
# Our own builders of the classic test families (issue 21; not the cddlib or
# lrslib files, which are GPL). Each returns (A, b, C, d) with C, d None
# when there are no equalities; the benchmark reuses them.


def cross_polytope(d):
    """{x : s.x <= 1 for all 2^d sign vectors s}: 2^d rows in d dims, 2d vertices (+-e_i)."""
    signs = np.array(list(itertools.product((-1.0, 1.0), repeat=d)))
    return signs, np.ones(len(signs)), None, None


def _pair_index(p):
    return {e: i for i, e in enumerate(itertools.combinations(range(p), 2))}


def metric_polytope(p):
    """MET_p: the 4 C(p, 3) triangle inequalities on the C(p, 2) distances.

    ``x_ij <= x_ik + x_jk`` (3 per triangle) and ``x_ij + x_ik + x_jk <= 2``.
    MET_6 (lrslib's mp6): 80 rows in 15 dims, 544 vertices.
    """
    col = _pair_index(p)
    rows, rhs = [], []
    for i, j, k in itertools.combinations(range(p), 3):
        edges = [col[(i, j)], col[(i, k)], col[(j, k)]]
        for e in edges:
            row = np.zeros(len(col))
            row[edges], row[e] = -1.0, 1.0
            rows.append(row)
            rhs.append(0.0)
        row = np.zeros(len(col))
        row[edges] = 1.0
        rows.append(row)
        rhs.append(2.0)
    return np.array(rows), np.array(rhs), None, None


def cut_polytope_5():
    """CUT_5 (lrslib's cp5): 56 facets in 10 dims, 16 vertices (the cuts of K5).

    The facets are the switchings of the hypermetric triangle inequality
    (b = (1, 1, -1, 0, 0), 40 facets) and of the pentagonal one
    (b = (1, 1, 1, -1, -1), 16 facets): ``sum_{i<j} b_i b_j x_ij <= 0``,
    switched by a cut ``S``: ``a_ij -> -a_ij`` on the cut's edges and
    ``0 -> -a.delta(S)``.
    """
    col = _pair_index(5)
    pairs = list(col)
    kinds = set(itertools.permutations((1, 1, -1, 0, 0))) | set(itertools.permutations((1, 1, 1, -1, -1)))
    facets = set()
    for weights in kinds:
        a = np.array([weights[i] * weights[j] for i, j in pairs], dtype=float)
        for mask in range(16):
            cut = np.array([float((mask >> i & 1) != (mask >> j & 1)) for i, j in pairs])
            facets.add((*np.where(cut > 0, -a, a).tolist(), float(-(a @ cut))))
    table = np.array(sorted(facets))
    return table[:, :-1], table[:, -1], None, None


def birkhoff(k):
    """B_k: doubly stochastic k x k matrices: x >= 0, row and column sums 1; k! vertices."""
    C = np.zeros((2 * k, k * k))
    for i in range(k):
        C[i, i * k : (i + 1) * k] = 1.0
        C[k + i, i::k] = 1.0
    return -np.eye(k * k), np.zeros(k * k), C, np.ones(2 * k)


def permutahedron(k):
    """Permutahedron of order k: sum_S x >= |S|(|S|+1)/2 for every proper subset, sum x = k(k+1)/2; k! vertices."""
    rows, rhs = [], []
    for size in range(1, k):
        for subset in itertools.combinations(range(k), size):
            row = np.zeros(k)
            row[list(subset)] = -1.0
            rows.append(row)
            rhs.append(-size * (size + 1) / 2)
    return np.array(rows), np.array(rhs), np.ones((1, k)), np.array([k * (k + 1) / 2])


def moment_points(n, d):
    """n integer points on the moment curve (t, t^2, ..., t^d), t = -(n-1)//2 .. : (n, d) int."""
    t = np.arange(n) - (n - 1) // 2
    return np.array([[int(s) ** e for e in range(1, d + 1)] for s in t], dtype=object)


def dual_cyclic(n, d):
    """The polar of the cyclic polytope C(n, d): n rows in d dims, as many vertices as C(n, d) has facets.

    Rows ``n v_i - sum_j v_j`` (integers) with right-hand side n: McMullen's
    upper bound is attained, so these are the sets where the bound is right.
    """
    V = moment_points(n, d)
    A = n * V - V.sum(axis=0)
    return np.array(A, dtype=float), np.full(n, float(n)), None, None


def cyclic(n, d):
    """The cyclic polytope C(n, d) = conv(n moment-curve points): its facets (exact cdd) and n vertices."""
    from tests.conftest import h_from_v

    A, b = h_from_v(moment_points(n, d).tolist(), [])
    return A, b, None, None


def upper_bound_theorem(n, d):
    """Facets of C(n, d) (McMullen's bound for n facets in d dims, dual form)."""
    return int(dd.vertex_upper_bound(n, d))


# name -> (builder, exact vertex count); "slow" ones run with make test-all
FAMILIES = {
    "cp5": (cut_polytope_5, 16),
    "mp6": (lambda: metric_polytope(6), 544),
    "met5": (lambda: metric_polytope(5), 32),
    **{f"cross{k}": ((lambda k=k: cross_polytope(k)), 2 * k) for k in range(3, 13)},
    **{f"B{k}": ((lambda k=k: birkhoff(k)), math.factorial(k)) for k in range(2, 8)},
    **{f"perm{k}": ((lambda k=k: permutahedron(k)), math.factorial(k)) for k in range(2, 8)},
    **{f"cyclic{n}_{d}": ((lambda n=n, d=d: cyclic(n, d)), n) for n, d in ((8, 4), (12, 4), (20, 4), (10, 6), (14, 6))},
    **{
        f"dualcyclic{n}_{d}": ((lambda n=n, d=d: dual_cyclic(n, d)), upper_bound_theorem(n, d))
        for n, d in ((20, 4), (40, 4), (100, 4), (12, 6), (16, 6), (20, 6), (14, 8))
    },
}
SLOW = {
    *("B7", "cyclic14_6"),
    *("dualcyclic100_4", "dualcyclic20_6", "dualcyclic14_8"),
}
NOT_A_TEST = {"B7"}  # test_birkhoff_7: vertices or the time budget


def family_params(slow: bool):
    return [
        pytest.param(name, marks=pytest.mark.slow) if name in SLOW else name
        for name in FAMILIES
        if name not in NOT_A_TEST and (slow or name not in SLOW)
    ]


@pytest.mark.parametrize("method", ["auto", "cdd"])
@pytest.mark.parametrize("name", family_params(slow=True))
def test_h_to_v_exact_counts_of_families(name, method):
    build, expected = FAMILIES[name]
    A, b, C, d = build()
    rep = klc.h_to_v(A, b, C, d, method=method)
    assert rep.rays.shape[0] == 0 and rep.vertices.shape[0] == expected, (name, rep)


def test_family_builders_have_the_published_sizes():
    assert cut_polytope_5()[0].shape == (56, 10)
    assert metric_polytope(6)[0].shape == (80, 15)
    assert birkhoff(7)[0].shape == (49, 49) and birkhoff(7)[2].shape == (14, 49)
    assert permutahedron(7)[0].shape == (126, 7)
    assert cross_polytope(12)[0].shape == (4096, 12)
    assert upper_bound_theorem(100, 4) == 4850  # <= 5,000 vertices


@pytest.mark.parametrize("name", ["perm8", "perm9", "perm10", "B8", "B9", "B10"])
@pytest.mark.parametrize("method", ["auto", "cdd"])
def test_sets_truly_above_the_cap_are_refused_at_once_naming_the_rule(name, method):
    k = int(name[-2:]) if name.endswith("10") else int(name[-1])
    A, b, C, d = (permutahedron if name.startswith("perm") else birkhoff)(k)
    start = time.perf_counter()
    refused = r"certainly above the cap \(bound: at least [\d,]+ vertices"
    with pytest.raises(GeneratorExplosionError, match=refused) as info:
        klc.h_to_v(A, b, C, d, method=method)
    assert time.perf_counter() - start < 5.0
    assert info.value.reason == "bound" and info.value.bound == math.factorial(k)
    assert ("perfect matchings" if name.startswith("B") else "coordinate permutations") in info.value.rule


def test_birkhoff_7_is_never_refused_by_the_bound():
    A, b, C, d = birkhoff(7)
    assert dd.generator_lower_bound(A, b, C, d)[0] == 5040  # <= the default cap: it must run
    start = time.perf_counter()
    rep = klc.h_to_v(A, b, C, d)  # the perfect matchings, not cddlib (which runs past 120 s)
    assert rep.vertices.shape[0] == 5040 and time.perf_counter() - start < 10.0
    assert set(np.unique(rep.vertices)) == {0.0, 1.0} and np.allclose(rep.vertices.sum(axis=1), 7)


def test_birkhoff_7_by_cddlib_ends_by_the_time_budget(monkeypatch):
    """Without the closed form (cddlib alone), B7 is refused by the time budget, saying so."""
    monkeypatch.setattr(generators, "matching_vertices", lambda *args, **kwargs: None)
    A, b, C, d = birkhoff(7)
    start = time.perf_counter()
    try:
        v, _, _ = dd.enumerate_generators(A, b, C, d, max_generators=20_000, time_budget=2.0)
    except ConstructionTimeoutError as exc:
        assert exc.reason == "time" and "did not finish within the time budget" in str(exc)
    else:
        assert len(v) == 5040
    assert time.perf_counter() - start < 6.0


def test_matching_polytopes_match_exact_cdd():
    rng = np.random.default_rng(3)
    for k in (3, 4, 5):
        keep = rng.random(k * k) < 0.7  # a bipartite graph, not the full grid
        keep[np.arange(k) * (k + 1)] = True  # with a perfect matching
        A, b, C, d = birkhoff(k)
        A, b, C = A[np.ix_(keep, keep)], b[keep], C[:, keep]
        v = dd.matching_vertices(A, b, C, d, limit=10**6)
        table = np.vstack([np.column_stack([b, -A]), np.column_stack([d, -C])])
        rows = [[Fraction(float(x)) for x in r] for r in table]
        mat = cdd.gmp.matrix_from_array(rows, lin_set=range(len(A), len(rows)), rep_type=cdd.RepType.INEQUALITY)
        ref = np.array(cdd.gmp.copy_generators(cdd.gmp.polyhedron_from_matrix(mat)).array, dtype=float)
        assert same_rows(v, ref[:, 1:] / ref[:, :1])
        assert dd.generator_lower_bound(A, b, C, d)[0] == len(v)
    A, b, C, d = birkhoff(4)
    A2, b2 = np.vstack([A, np.ones((1, 16))]), np.r_[b, 3.0]  # one more row: not recognised
    assert dd.matching_vertices(A2, b2, C, d, limit=10**6) is None
    assert dd.matching_vertices(A, b, C, d, limit=10) is None  # 24 > limit


def test_lower_bound_rules():
    box = np.vstack([np.eye(5), -np.eye(5)])
    assert dd.generator_lower_bound(box, np.ones(10)) == (32, "a product of 5 independent blocks: an interval")
    assert dd.generator_lower_bound(box, np.r_[np.ones(5), -2 * np.ones(5)])[0] == 0  # empty: no refusal
    assert dd.generator_lower_bound(*cut_polytope_5())[0] <= 16
    assert dd.generator_lower_bound(*metric_polytope(6))[0] <= 544
    for k in range(2, 8):
        assert dd.generator_lower_bound(*permutahedron(k))[0] == math.factorial(k)
        assert dd.generator_lower_bound(*birkhoff(k))[0] == math.factorial(k)
    # a 3 x 4 grid: no perfect matching, the set is empty
    C = np.zeros((7, 12))
    for i in range(3):
        C[i, i * 4 : (i + 1) * 4] = 1.0
    for j in range(4):
        C[3 + j, j::4] = 1.0
    assert dd.generator_lower_bound(-np.eye(12), np.zeros(12), C, np.ones(7))[0] == 0
    # symmetric but not a permutahedron: a cross-polytope (2d vertices, orbit of e_1)
    for k in (3, 6):
        assert dd.generator_lower_bound(*cross_polytope(k))[0] <= 2 * k


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_lower_bound_never_exceeds_the_exact_count(data):
    """On random symmetric-ish systems (rows closed under swapping two coordinates) and random ones."""
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    n = data.draw(st.integers(2, 4))
    A = rng.integers(-2, 3, (data.draw(st.integers(3, 7)), n)).astype(float)
    b = rng.integers(1, 4, len(A)).astype(float)
    if data.draw(st.booleans()):  # close the rows under the swap of coordinates 0 and 1
        A, b = np.vstack([A, A[:, [1, 0, *range(2, n)]]]), np.r_[b, b]
    ref_v, ref_r, _ = exact_reference(A, b)
    if len(ref_v) == 0:
        return
    bound, _ = dd.generator_lower_bound(A, b)
    assert bound <= len(ref_v) + len(ref_r)


def test_vertex_walk_counts_at_most_the_vertices_and_all_of_a_simple_one():
    for seed in range(6):
        rng = np.random.default_rng(seed)
        A = rng.standard_normal((14, 4))
        b = A @ rng.uniform(-0.2, 0.2, 4) + rng.uniform(0.5, 1.5, 14)
        ref_v, _, _ = exact_reference(A, b)
        walk = dd.VertexWalk(A, b, np.zeros((0, 4)), np.zeros(0), cap=10**6)
        while not walk.done:
            walk.step(1.0)
        assert walk.count == len(ref_v)  # generic: simple, all reached
    # degenerate (cross-polytope): nothing certified, nothing counted wrongly
    A, b, _, _ = cross_polytope(5)
    walk = dd.VertexWalk(A, b, np.zeros((0, 5)), np.zeros(0), cap=10**6)
    walk.step(1.0)
    assert walk.count <= 10


# ------------------------------------------------------ scale and duplicates


def triangle(points):
    """H-representation (3, 2), (3,) of the triangle with the given (3, 2) vertices (computed in floats)."""
    A, b = [], []
    for i in range(3):
        p, q, r = points[i], points[(i + 1) % 3], points[(i + 2) % 3]
        normal = np.array([q[1] - p[1], p[0] - q[0]])
        normal = -normal if normal @ (r - p) > 0 else normal
        A.append(normal)
        b.append(normal @ p)
    return np.array(A), np.array(b)


TRIANGLES = {
    "scaled by 1e-11": [[0.0, 0.0], [1e-11, 0.0], [0.0, 1e-11]],
    "scaled by 1e-11, off the origin": [[1e-11, 2e-11], [3e-11, 2e-11], [1e-11, 5e-11]],
    "thin (side 1e-8 of the others)": [[0.0, 0.0], [1.0, 0.0], [1.0, 1e-8]],
    "thin and small": [[0.0, 0.0], [1e-3, 0.0], [1e-3, 1e-11]],
}
METHODS = ["auto", "cdd", "blocks"]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("which", list(TRIANGLES))
def test_triangles_keep_three_vertices_at_any_scale(which, method):
    A, b = triangle(np.array(TRIANGLES[which]))
    for row_scale in (1e-12, 1.0, 1e12):
        rep = klc.h_to_v(A * row_scale, b * row_scale, method=method)
        assert rep.vertices.shape[0] == 3 and rep.rays.shape[0] == 0


@pytest.mark.parametrize("method", [*METHODS, "closed_form"])
@pytest.mark.parametrize("slope", [1e2, 1e5, 1e8])
def test_steep_cone_keeps_both_rays_at_any_row_scale(slope, method):
    A = np.array([[slope, -1.0], [-slope, -1.0]])  # x_2 >= slope |x_1|: rays (+-1, slope)
    expected = np.array([[-1.0, slope], [1.0, slope]]) / np.hypot(1.0, slope)
    for s1, s2 in itertools.product((1e-12, 1.0, 1e12), repeat=2):
        rep = klc.h_to_v(A * np.array([[s1], [s2]]), method=method)
        assert rep.rays.shape == (2, 2)
        assert np.allclose(np.sort(rep.rays, axis=0), np.sort(expected, axis=0), atol=1e-12)


def test_rays_of_very_different_lengths_are_both_kept():
    v, r = enumeration._canonical(np.zeros((1, 2)), np.array([[1e13, 0.0], [0.0, 1e-3]]), np.eye(2))
    assert r.shape == (2, 2)


def kkd_like(seed=0, spread=1e-12):
    """A kkd18_4-like system (our own): 18 rows in 4 dims whose degenerate vertices split into near-duplicates.

    The 16 facets of the 4-d cross-polytope (each vertex lies on 8 of them)
    with right-hand sides moved by a relative ``spread``, so each degenerate
    vertex becomes a cluster of vertices ~1e-9 apart at coordinates ~1e3, and
    two cutting rows. Exact double description counts 56-64 vertices,
    floating point ~20: merged at :data:`MERGE_RTOL` both give 20.
    """
    rng = np.random.default_rng(seed)
    signs = np.array(list(itertools.product((-1.0, 1.0), repeat=4)))
    b = 1e3 * (1.0 + rng.uniform(-spread, spread, 16))
    cuts = np.array([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, -1.0]])
    return np.vstack([signs, cuts]), np.r_[b, 500.0, 500.0]


def test_kkd_like_counts_do_not_depend_on_arithmetic():
    A, b = kkd_like(0)
    ref_v, _, _ = exact_reference(A, b)
    assert len(ref_v) > 40  # the near-duplicates exist
    counts = {len(dd.enumerate_generators(A, b, max_generators=10**4, arithmetic=a)[0]) for a in ("exact", "float")}
    counts |= {len(klc.h_to_v(A, b, method=m).vertices) for m in ("auto", "cdd")}
    assert counts == {20}


def near_degenerate_system(data):
    """Random systems, some with rows that cut a vertex's corner by ~1e-12 (near-duplicate vertices), or kkd-like."""
    if data.draw(st.booleans()):
        return kkd_like(data.draw(st.integers(0, 2**16)))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    m, n = data.draw(st.integers(6, 12)), data.draw(st.integers(2, 4))
    A = rng.standard_normal((m, n))
    b = np.abs(rng.standard_normal(m)) + 0.1
    vertices, _, _ = exact_reference(A, b)
    if data.draw(st.booleans()) and len(vertices):
        # rows in the normal cone of a vertex v, moved by ~1e-12: valid rows that
        # cut (or miss) a tiny corner, so v splits into near-duplicates
        v = vertices[0]
        tight = A[np.abs(A @ v - b) <= 1e-9 * (np.abs(b) + np.linalg.norm(A, axis=1) * np.linalg.norm(v))]
        extra = rng.uniform(0.1, 1.0, (3, len(tight))) @ tight
        shift = 1e-12 * rng.uniform(-1, 1, 3) * np.linalg.norm(extra, axis=1) * max(1.0, np.linalg.norm(v))
        A, b = np.vstack([A, extra]), np.r_[b, extra @ v + shift]
    return A, b


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_counts_do_not_change_when_rows_are_shuffled_or_rescaled(data):
    A, b = near_degenerate_system(data)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))

    def counts(A, b, method):
        try:
            rep = klc.h_to_v(A, b, method=method)
        except (klc.DegenerateSetError, klc.InfeasibleError) as exc:
            return type(exc).__name__
        return rep.vertices.shape[0], rep.rays.shape[0], rep.lineality_dim

    for method in ("auto", "cdd"):
        reference = counts(A, b, method)
        for _ in range(2):
            perm = rng.permutation(len(A))
            scale = 10.0 ** rng.uniform(-6, 6, len(A))
            assert counts(A[perm] * scale[:, None], b[perm] * scale, method) == reference
    float_counts = dd.enumerate_generators(A, b, max_generators=10**4, arithmetic="exact")
    try:
        other = dd.enumerate_generators(A, b, max_generators=10**4, arithmetic="float")
    except RepresentationCheckError:
        return  # the float path may refuse (its checks), never miscount
    assert [len(x) for x in other] == [len(x) for x in float_counts]


def test_a_complete_walk_answers_with_the_exact_vertices(monkeypatch):
    """Simple polytopes whose walk ends complete are answered by the walk: the same vertices as exact cdd."""
    monkeypatch.setattr(worker, "GUARD_DELAY", 0.0)
    monkeypatch.setattr(generators, "WORKER_MIN_BOUND", 0)
    answered = []
    real = dd.VertexWalk.vertices
    monkeypatch.setattr(dd.VertexWalk, "vertices", lambda self: answered.append(1) or real(self))
    for seed in range(4):
        rng = np.random.default_rng(seed)
        A = rng.standard_normal((14, 4))
        b = A @ rng.uniform(-0.2, 0.2, 4) + rng.uniform(0.5, 1.5, 14)
        ref_v, _, _ = exact_reference(A, b)
        v, r, l = dd.enumerate_generators(A, b, max_generators=80)  # McMullen allows 90: guarded
        assert same_rows(v, ref_v, rtol=1e-10) and len(r) == len(l) == 0
    A, b, C, d = permutahedron(6)
    v, _, _ = dd.enumerate_generators(A, b, C, d, max_generators=20_000)
    expected = np.array(list(itertools.permutations(range(1, 7))), dtype=float)
    assert same_rows(v, expected, rtol=1e-12)
    assert answered  # the walk did answer (not only cddlib)


def test_cross_polytope_closed_form_only_when_exact():
    A, b, _, _ = cross_polytope(5)
    rng = np.random.default_rng(0)
    perm, scale = rng.permutation(len(A)), rng.uniform(0.5, 2.0, len(A))
    v = dd.cross_polytope_vertices(A[perm] * scale[:, None], 3.0 * b[perm] * scale, np.zeros((0, 5)))
    ref_v, _, _ = exact_reference(A, 3.0 * b)
    assert same_rows(v, ref_v)
    moved = b.copy()
    moved[7] = 1.5  # one facet moved: not a cross-polytope, enumerated instead
    assert dd.cross_polytope_vertices(A, moved, np.zeros((0, 5))) is None
    assert dd.cross_polytope_vertices(A[1:], b[1:], np.zeros((0, 5))) is None
    v, _, _ = dd.enumerate_generators(A, moved, max_generators=1000)
    assert same_rows(v, exact_reference(A, moved)[0])


# ------------------------------------------------ the small-set path (cheap overhead)


def test_exact_rows_integer_tables_are_coprime_integers():
    table = np.array([[4.0, -2.0, 6.0], [0.0, 0.0, 0.0], [3.0, 5.0, -7.0], [-8.0, 0.0, 4.0]])
    assert tables.exact_rows(table) == [[2, -1, 3], [0, 0, 0], [3, 5, -7], [-2, 0, 1]]
    mixed = np.vstack([table, [0.5, 1.0, 0.1]])  # one non-integer row: Fractions there only
    rows = tables.exact_rows(mixed)
    assert rows[:4] == [[2, -1, 3], [0, 0, 0], [3, 5, -7], [-2, 0, 1]]
    assert rows[4] == [Fraction(1, 2), Fraction(1), Fraction(1, 10)]


def test_bound_for_any_rank_covers_the_true_rank():
    for m, n, p in itertools.product(range(0, 12), range(1, 9), range(0, 5)):
        hi = upper_bounds.bound_for_any_rank(m, n, p)
        for rank in range(min(p, n) + 1):
            assert dd.generator_upper_bound(m, n - rank) <= hi


@pytest.mark.parametrize("name", ["perm2", "perm3", "perm4", "cyclic8_4", "B3", "cross3"])
def test_tiny_sets_run_in_process_without_rank_or_guard(monkeypatch, name):
    """A tiny set (McMullen's bound small for any rank of its equalities) runs
    cddlib in-process, exactly, with no worker, no rank and no walk; its result is
    canonical (merged and sorted) as h_to_v needs it."""
    build, expected = FAMILIES[name]
    A, b, C, d = build()

    def forbidden(*args, **kwargs):
        raise AssertionError("not for a tiny set")

    monkeypatch.setattr(generators, "run_in_worker", forbidden)
    monkeypatch.setattr(generators, "VertexWalk", forbidden)
    monkeypatch.setattr(generators, "generator_lower_bound", forbidden)
    with monkeypatch.context() as patch:
        patch.setattr(np.linalg, "matrix_rank", forbidden)
        vertices, rays, _ = dd.enumerate_generators(A, b, C, d, max_generators=20_000)
    assert len(vertices) == expected and len(rays) == 0
    assert np.array_equal(vertices, merge_close_rows(vertices))  # sorted, merged
    for method in ("auto", "cdd"):
        rep = klc.h_to_v(A, b, C, d, method=method)
        assert rep.vertices.shape[0] == expected and np.array_equal(rep.vertices, merge_close_rows(rep.vertices))


def test_canonical_form_is_unchanged_by_the_small_set_shortcuts():
    """h_to_v skips re-merging what double description already merged: the same as merging again."""
    rng = np.random.default_rng(11)
    for _ in range(20):
        A = rng.integers(-3, 4, (8, 3)).astype(float)
        b = rng.integers(0, 4, 8).astype(float)
        for method in ("auto", "cdd"):
            try:
                rep = klc.h_to_v(A, b, method=method)
            except LinconError:
                continue
            assert np.array_equal(rep.vertices, merge_close_rows(rep.vertices))
            assert np.allclose(rep.rays, merge_close_rows(rep.rays, unit=True), rtol=0, atol=1e-15)
