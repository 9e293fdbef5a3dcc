"""Polytope families and references for the geometry tests and benchmarks/double_description.py.

Our own builders of the classic test families (issue 21; not the cddlib or
lrslib files, which are GPL). Each returns (A, b, C, d) with C, d None when
there are no equalities. ``FAMILIES``: name -> (builder, exact vertex
count); the ``SLOW`` ones run with make test-all. The references
(``exact_reference``, ``naive_float_cdd``) call pycddlib directly.
"""

import itertools
import math
from fractions import Fraction

import cdd
import cdd.gmp
import numpy as np
import pytest
from hypothesis import strategies as st

from keras_lincon.geometry import double_description as dd


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


def random_system(data, rows, dims):
    m, n = data.draw(rows), data.draw(dims)
    seed = data.draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((m, n))
    b = np.abs(rng.standard_normal(m)) + 0.1
    scale = 10.0 ** rng.uniform(-6, 6, m)  # rows of wildly different norms
    return A * scale[:, None], b * scale


def scaled_system(seed, axis):
    """Random system with rows (axis=0) or columns (axis=1) scaled by 10^-8..10^8."""
    rng = np.random.default_rng(seed)
    m, n = rng.integers(6, 16), rng.integers(2, 6)
    A, b = rng.standard_normal((m, n)), np.abs(rng.standard_normal(m)) + 0.1
    scale = 10.0 ** rng.uniform(-8, 8, A.shape[axis])
    if axis == 0:
        return A * scale[:, None], b * scale
    return A * scale[None, :], b


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
