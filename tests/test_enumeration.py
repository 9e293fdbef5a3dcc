"""Tests of keras_lincon.geometry.enumeration: H -> V conversion, checks and errors."""

import itertools

import numpy as np
import pytest
import scipy.optimize
import scipy.spatial
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import keras_lincon as klc
from keras_lincon.geometry import double_description, enumeration
from tests.conftest import h_from_v


def contains(rep: klc.VRepresentation, point, *, direction=False, tol=1e-7) -> bool:
    """LP test: is ``point`` in P (or, with direction=True, in its recession cone)?"""
    n = rep.dim
    blocks = rep.block_vertices()
    columns, n_conv = [], 0
    if not direction:
        for verts in blocks:
            columns.append(verts.T)
            n_conv += len(verts)
    columns += [rep.rays.T, rep.lineality.T, -rep.lineality.T]
    M = np.hstack([c for c in columns if c.size] or [np.zeros((n, 0))])
    eq_rows, eq_rhs = [M], [np.asarray(point, float)]
    if not direction:
        start = 0
        for verts in blocks:  # convex weights sum to one per block
            row = np.zeros(M.shape[1])
            row[start : start + len(verts)] = 1.0
            start += len(verts)
            eq_rows.append(row[None])
            eq_rhs.append(np.ones(1))
    if M.shape[1] == 0:
        return bool(np.allclose(point, 0, atol=tol))
    # minimise the residual slack to stay robust to round-off
    k = M.shape[1]
    A_eq = np.vstack(eq_rows)
    m = A_eq.shape[0]
    A = np.hstack([A_eq, np.eye(m), -np.eye(m)])
    cost = np.r_[np.zeros(k), np.ones(2 * m)]
    res = scipy.optimize.linprog(cost, A_eq=A, b_eq=np.concatenate(eq_rhs), bounds=(0, None), method="highs")
    return res.status == 0 and res.fun <= tol * max(1.0, np.abs(point).max())


def same_set(rep_a, rep_b):
    for verts in rep_b.block_vertices():
        base = sum(v[0] for v in rep_b.block_vertices()) - verts[0]
        for v in verts:
            assert contains(rep_a, base + v)
    for r in np.vstack([rep_b.rays, rep_b.lineality, -rep_b.lineality]):
        assert contains(rep_a, r, direction=True)


# ----------------------------------------------------------- round trips


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 5), st.integers(0, 10_000))
def test_simplicial_cone_round_trip_recovers_rays(n, seed):
    rng = np.random.default_rng(seed)
    rays = rng.integers(-5, 6, size=(n, n))
    assume(abs(np.linalg.det(rays)) > 0.5)
    A, b = h_from_v(np.zeros((1, n), int), rays)
    rep = klc.h_to_v(A, b)
    assert rep.is_cone and rep.lineality.shape == (0, n)
    expected = rays / np.linalg.norm(rays, axis=1, keepdims=True)
    got = rep.rays
    assert got.shape == expected.shape
    # same rays up to order
    dist = np.linalg.norm(expected[:, None, :] - got[None, :, :], axis=2)
    assert np.all(dist.min(axis=1) < 1e-9)


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 4), st.integers(0, 10_000))
def test_polytope_round_trip_recovers_hull_vertices(n, seed):
    rng = np.random.default_rng(seed)
    points = rng.integers(-6, 7, size=(n + 4, n))
    try:
        hull = scipy.spatial.ConvexHull(points)
    except scipy.spatial.QhullError:
        assume(False)
    A, b = h_from_v(points, np.zeros((0, n), int))
    rep = klc.h_to_v(A, b)
    expected = np.unique(points[hull.vertices], axis=0)
    got = np.unique(np.round(rep.vertices, 9), axis=0)
    np.testing.assert_allclose(got, expected, atol=1e-9)
    assert rep.rays.shape[0] == 0 and rep.lineality.shape[0] == 0


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 4), st.integers(1, 3), st.integers(0, 10_000), st.booleans())
def test_closed_form_agrees_with_double_description(m, extra, seed, apex):
    rng = np.random.default_rng(seed)
    n = m + extra
    A = rng.integers(-4, 5, size=(m, n)).astype(float)
    assume(np.linalg.matrix_rank(A) == m and np.all(np.any(A != 0, axis=1)))
    b = rng.integers(-3, 4, size=m).astype(float) if apex else None
    closed = klc.h_to_v(A, b, method="closed_form")
    exact = klc.h_to_v(A, b, method="cdd")
    same_set(closed, exact)
    same_set(exact, closed)
    np.testing.assert_allclose(closed.lineality.T @ closed.lineality, exact.lineality.T @ exact.lineality, atol=1e-9)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(st.lists(st.integers(1, 3), min_size=2, max_size=3), st.integers(0, 10_000))
def test_blocks_agree_with_double_description(sizes, seed):
    rng = np.random.default_rng(seed)
    n = sum(sizes) + 1  # one untouched variable: pure lineality
    rows, rhs, start = [], [], 0
    for size in sizes:  # a bounded random polytope per block: box plus a cut
        for j in range(size):
            for sign in (1, -1):
                row = np.zeros(n)
                row[start + j] = sign
                rows.append(row)
                rhs.append(int(rng.integers(1, 4)))
        cut = np.zeros(n)
        cut[start : start + size] = rng.integers(-2, 3, size=size)
        rows.append(cut)
        rhs.append(int(rng.integers(0, 3)))
        start += size
    A, b = np.array(rows), np.array(rhs, float)
    auto = klc.h_to_v(A, b)
    exact = klc.h_to_v(A, b, method="cdd")
    assert auto.method.startswith("blocks")
    assert auto.n_blocks >= 2
    same_set(auto, exact)
    same_set(exact, auto)
    # product structure: far fewer vertices than the product enumerates
    assert auto.vertices.shape[0] <= exact.vertices.shape[0] + 1


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(
    st.integers(1, 5),
    st.integers(1, 6),
    st.integers(0, 100_000),
    st.sampled_from(["cone", "polyhedron", "equality"]),
)
def test_every_generated_point_is_feasible(n, m, seed, kind):
    """Property: points built from the generators satisfy the constraints."""
    rng = np.random.default_rng(seed)
    A = rng.integers(-3, 4, size=(m, n)).astype(float)
    b = None if kind == "cone" else rng.integers(-2, 5, size=m).astype(float)
    C = rng.integers(-2, 3, size=(1, n)).astype(float) if kind == "equality" else None
    d = rng.integers(-1, 2, size=1).astype(float) if kind == "equality" else None
    try:
        rep = klc.h_to_v(A, b, C, d)
    except (klc.InfeasibleError, klc.DegenerateSetError):
        assume(False)
    for scale in (1e-6, 1.0, 1e6):
        x = rep.sample(50, seed=seed, scale=scale)
        assert klc.max_violation(x, A, b, C, d, relative=True) <= 1e-9


# ---------------------------------------------------------- known sets


def test_probability_simplex_has_unit_vertices():
    rep = klc.h_to_v(-np.eye(4), C=np.ones((1, 4)), d=[1.0])
    np.testing.assert_allclose(rep.vertices, np.eye(4)[::-1], atol=1e-12)
    assert rep.rays.shape[0] == 0 and rep.lineality.shape[0] == 0
    assert rep.method == "cdd"


def test_box_costs_two_vertices_per_coordinate():
    n = 300
    A = np.vstack([np.eye(n), -np.eye(n)])
    rep = klc.h_to_v(A, np.ones(2 * n))
    assert rep.n_blocks == n and rep.vertices.shape == (2 * n, n)
    np.testing.assert_array_equal(np.bincount(rep.vertex_blocks), np.full(n, 2))


def test_halfspace_cone_rays_and_lineality():
    rep = klc.h_to_v([[1.0, -1.0]])  # x1 <= x2
    np.testing.assert_allclose(rep.rays, [[-1 / np.sqrt(2), 1 / np.sqrt(2)]])
    np.testing.assert_allclose(np.abs(rep.lineality), [[1 / np.sqrt(2), 1 / np.sqrt(2)]])
    assert rep.is_cone


def test_shifted_cone_has_apex_vertex():
    rep = klc.h_to_v(np.eye(2), [1.0, 2.0])  # x <= (1, 2)
    np.testing.assert_allclose(rep.vertices, [[1.0, 2.0]])
    assert not rep.is_cone
    np.testing.assert_allclose(rep.rays, [[-1.0, 0.0], [0.0, -1.0]])


def test_fractional_coefficients_use_exact_arithmetic():
    A = np.array([[0.5, -0.25], [-1 / 3, 1.0]])
    rep = klc.h_to_v(A, [0.5, 1.0], method="cdd")
    np.testing.assert_allclose(A @ rep.vertices[0], [0.5, 1.0], atol=1e-12)


def test_irrational_coefficients_fall_back_to_floats():
    A = np.array([[np.pi, -1.0], [-1.0, np.e], [-1.0, -1.0]])
    rep = klc.h_to_v(A, [1.0, 1.0, 5.0], method="cdd")
    assert rep.vertices.shape[0] == 3


def test_free_variables_are_lineality_and_all_free_is_whole_space():
    rep = klc.h_to_v(np.zeros((0, 3)))
    np.testing.assert_allclose(rep.lineality, np.eye(3))
    rep = klc.h_to_v([[1.0, 0.0, 0.0]])
    assert rep.lineality.shape == (2, 3) and rep.rays.shape == (1, 3)


def test_small_checkerboard_agrees_with_exact_double_description():
    A = klc.checkerboard((8, 8), (2, 2))
    fast, exact = klc.h_to_v(A), klc.h_to_v(A, method="cdd")
    np.testing.assert_allclose(fast.rays, exact.rays, atol=1e-12)
    np.testing.assert_allclose(fast.lineality.T @ fast.lineality, exact.lineality.T @ exact.lineality, atol=1e-12)


@pytest.mark.slow
def test_full_checkerboard_agrees_with_exact_double_description():
    A = klc.checkerboard()
    fast, exact = klc.h_to_v(A), klc.h_to_v(A, method="cdd")
    np.testing.assert_allclose(fast.rays, exact.rays, atol=1e-12)


def test_representation_is_deterministic_and_read_only():
    A = np.random.default_rng(0).integers(-3, 4, size=(4, 5)).astype(float)
    r1, r2 = klc.h_to_v(A), klc.h_to_v(A)
    np.testing.assert_array_equal(r1.rays, r2.rays)
    np.testing.assert_array_equal(r1.lineality, r2.lineality)
    with pytest.raises(ValueError):
        r1.rays[0, 0] = 1.0
    assert "rays=" in repr(r1)


# ------------------------------------------------------------ max_violation


# ----------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "kwargs, error, pattern",
    [
        (dict(A=[[1.0, 0.0]], b=[1.0, 2.0]), klc.ConstraintShapeError, r"b must have shape \(1,\)"),
        (dict(A=np.ones((2, 2, 2))), klc.ConstraintShapeError, "2-D array"),
        (dict(A=[[1.0, 0.0]], C=[[1.0, 0.0, 0.0]]), klc.ConstraintShapeError, "C has 3 columns"),
        (dict(A=[[1.0, 0.0]], d=[1.0]), klc.ConstraintShapeError, "d was given without C"),
        (dict(A=[["a", "b"]]), klc.ConstraintShapeError, "numeric"),
        (dict(A=[[np.nan, 1.0]]), klc.NonFiniteError, "NaN or infinity"),
        (dict(A=[[1.0, 1.0]], b=[np.inf]), klc.NonFiniteError, "right-hand sides must be finite"),
        (dict(A=[[1.0], [-1.0]], b=[-1.0, -1.0]), klc.InfeasibleError, "no solution"),
        (dict(A=[[0.0, 0.0]], b=[-1.0]), klc.InfeasibleError, "zero with b < 0"),
        (dict(A=np.vstack([np.eye(2), -np.eye(2)])), klc.DegenerateSetError, r"only \{0\}"),
        (dict(A=[[1.0], [-1.0]], b=[2.0, -2.0]), klc.DegenerateSetError, "single point"),
        (
            dict(A=np.vstack([np.eye(6), -np.eye(6)]), b=np.ones(12), method="cdd", max_generators=10),
            klc.TooManyGeneratorsError,
            r"certainly above the cap \(bound: at least 64 vertices",
        ),
        (dict(A=[[1.0, 0.0]], method="fast"), klc.LinconError, "method must be one of"),
        (dict(A=[[1.0, 0.0], [2.0, 0.0]], method="closed_form"), klc.LinconError, "full row"),
    ],
)
def test_errors_name_the_problem(kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        klc.h_to_v(**kwargs)


def test_errors_are_value_errors():
    for cls in (
        klc.InfeasibleError,
        klc.DegenerateSetError,
        klc.TooManyGeneratorsError,
        klc.ConstraintShapeError,
        klc.NonFiniteError,
        klc.RepresentationCheckError,
    ):
        assert issubclass(cls, klc.LinconError) and issubclass(cls, ValueError)


def test_self_check_rejects_wrong_generators(monkeypatch):
    original = enumeration.closed_form_generators

    def broken(A, b):
        apex, rays, lineality = original(A, b)
        return apex, -rays, lineality  # flipped rays leave the cone

    monkeypatch.setattr(enumeration, "closed_form_generators", broken)
    with pytest.raises(klc.RepresentationCheckError, match="violate the constraints"):
        klc.h_to_v([[1.0, -1.0, 0.0]])


def test_vertex_upper_bound_grows_like_a_box():
    assert double_description.vertex_upper_bound(2 * 3, 3) >= 8
    assert double_description.vertex_upper_bound(60, 30) > 1e10
    assert list(itertools.islice((double_description.vertex_upper_bound(m, 1) for m in (2, 3)), 2)) == [2.0, 2.0]


def test_float_double_description_matches_hull_of_its_vertices():
    A = np.array([[np.pi, -1.0], [-1.0, np.e], [-1.0, -1.0]])
    b = np.array([1.0, 1.0, 5.0])
    rep = klc.h_to_v(A, b, method="cdd")
    # each vertex makes two constraints tight
    tight = np.abs(rep.vertices @ A.T - b) < 1e-9
    assert np.all(tight.sum(axis=1) == 2)


def test_possibly_long_double_description_is_announced(caplog):
    A = np.vstack([np.eye(6), -np.eye(6), np.ones((1, 6))])  # coupled: one block, 13 rows in 6 dims
    with caplog.at_level("WARNING", logger="keras_lincon"):
        # orbits of its vertices under S_6 have at most 30 elements: no certain bound above 30
        with pytest.raises(klc.TooManyGeneratorsError, match=r"above the cap after \d+ generators") as info:
            klc.h_to_v(A, np.r_[np.ones(12), 3.0], max_generators=30)
    assert info.value.reason == "count"
    assert "may take a while" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="keras_lincon"):
        klc.h_to_v(A, np.r_[np.ones(12), 3.0])  # within the default cap: silent
    assert "may take a while" not in caplog.text


@pytest.mark.parametrize(
    "A, b, C, d", [([[2.0, 2.0]], [3.0], [[2.0, 2.0]], [0.0]), ([[3.0, 3.0]], [-1.0], [[1.0, 1.0]], [-1.0])]
)
def test_equalities_with_a_row_parallel_to_them(A, b, C, d):
    """A row of A parallel to C is constant on C x = d: the closed form on equalities leaves it to cdd."""
    rep = klc.h_to_v(A, b, C, d)
    x = rep.sample(50, seed=0)
    assert klc.max_violation(x, A, b, C, d, relative=True) <= 1e-9


def test_equalities_closed_form_matches_double_description():
    rng = np.random.default_rng(3)
    for _ in range(10):
        n = int(rng.integers(3, 7))
        p = int(rng.integers(1, n))
        m = int(rng.integers(1, n - p + 1))
        A, C, x0 = rng.normal(size=(m, n)), rng.normal(size=(p, n)), rng.normal(size=n)
        b, d = A @ x0 + rng.uniform(0.1, 1.0, m), C @ x0
        fast, exact = klc.h_to_v(A, b, C, d), klc.h_to_v(A, b, C, d, method="cdd")
        assert fast.method == "closed_form"
        same_set(fast, exact)
        same_set(exact, fast)
