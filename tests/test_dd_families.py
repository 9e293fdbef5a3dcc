"""h_to_v and double description on families with known counts, at any scale and order (issue 21)."""

import itertools
import math
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import keras_lincon as klc
from keras_lincon.errors import (
    ConstructionTimeoutError,
    GeneratorExplosionError,
    LinconError,
    RepresentationCheckError,
)
from keras_lincon.geometry import double_description as dd
from keras_lincon.geometry import enumeration
from keras_lincon.geometry.double_description import generators
from keras_lincon.geometry.representation import merge_close_rows
from tests.polytope_families import (
    FAMILIES,
    TRIANGLES,
    birkhoff,
    cross_polytope,
    cut_polytope_5,
    exact_reference,
    family_params,
    kkd_like,
    metric_polytope,
    near_degenerate_system,
    permutahedron,
    triangle,
    upper_bound_theorem,
)


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


def test_kkd_like_counts_do_not_depend_on_arithmetic():
    A, b = kkd_like(0)
    ref_v, _, _ = exact_reference(A, b)
    assert len(ref_v) > 40  # the near-duplicates exist
    counts = {len(dd.enumerate_generators(A, b, max_generators=10**4, arithmetic=a)[0]) for a in ("exact", "float")}
    counts |= {len(klc.h_to_v(A, b, method=m).vertices) for m in ("auto", "cdd")}
    assert counts == {20}


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
