"""Tests of keras_lincon.geometry.double_description: bounds, closed forms, tables and the vertex walk."""

import itertools
import math
from fractions import Fraction

import cdd
import cdd.gmp
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keras_lincon.geometry import double_description as dd
from keras_lincon.geometry.double_description import tables, upper_bounds
from tests.polytope_families import (
    birkhoff,
    cross_polytope,
    cut_polytope_5,
    exact_reference,
    metric_polytope,
    permutahedron,
    same_rows,
)


def test_normalised_table_is_exact_power_of_two_scaling():
    table = np.array([[3e6, 1e6, -2.5e5], [1e-7, 0.0, 3e-7], [0.0, 0.0, 0.0]])
    scaled = dd.normalised_table(-table[:, 1:], table[:, 0], np.zeros((0, 2)), np.zeros(0))
    nonzero = table[:2] != 0
    ratio = scaled[:2][nonzero] / table[:2][nonzero]
    assert np.all(np.log2(ratio) % 1 == 0) and np.array_equal(scaled[:2] == 0, ~nonzero)
    assert np.all((np.abs(scaled[:2]).max(axis=1) >= 0.5) & (np.abs(scaled[:2]).max(axis=1) < 1))
    assert not np.any(scaled[2])


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
