"""Tests of keras_lincon.geometry.double_description: exact-first, bounded, interruptible DD runs."""

import itertools
import multiprocessing
import os
import time

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
from keras_lincon.geometry.double_description import generators, worker
from keras_lincon.geometry.representation import merge_close_rows
from tests.conftest import run_python
from tests.polytope_families import (
    FAMILIES,
    exact_reference,
    naive_float_cdd,
    permutahedron,
    random_system,
    same_rows,
    scaled_system,
    seed_10122,
)


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
