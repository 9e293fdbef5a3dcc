"""Tests of keras_lincon.planning.scaling_plan (the scaled stage, numpy only)."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import keras_lincon as klc
from keras_lincon import geometry
from keras_lincon.errors import ConstraintShapeError, InfeasibleError, LinconError, NoStrictInteriorError
from keras_lincon.planning import scaling_plan as sl
from tests.scaling_reference import scale_map

CHECKER = klc.checkerboard((8, 8), (2, 2))
TOL = 1e-9  # float64 reference maps: relative violations at round-off level


def points_in(A, b, x0, z):
    """Points of ``{A y <= b}`` (x0 strictly inside): ``z`` scaled towards x0 as far as needed."""
    centered = z - x0
    ratio = (centered @ A.T) / (b - A @ x0)
    return x0 + centered / np.maximum(ratio.max(axis=1, keepdims=True), 1.0)


def coupled_system(rng, n, m):
    """A random polytope coupling all n variables, with a known interior point."""
    A = rng.standard_normal((m, n))
    x0 = rng.uniform(-0.3, 0.3, n)
    b = A @ x0 + rng.uniform(0.5, 1.5, m)
    return A, b, x0


def assert_feasible(x, stage, A_g, b_g, rhs=None, C=None, d=None):
    G, h = geometry.with_box(np.vstack([A_g, stage.rows]), np.concatenate([b_g, stage.rhs]), stage.lower, stage.upper)
    if rhs is not None:  # per-sample right-hand side of the scaled rows
        m_g = A_g.shape[0]
        worst = np.max(
            (x @ stage.rows.T - rhs)
            / (np.abs(rhs) + np.linalg.norm(stage.rows, axis=1) * np.linalg.norm(x, axis=1, keepdims=True))
        )
        assert worst <= TOL
        G, h = (
            G[np.r_[0:m_g, m_g + stage.rows.shape[0] : G.shape[0]]],
            h[np.r_[0:m_g, m_g + stage.rows.shape[0] : h.size]],
        )
    assert geometry.max_violation(x, G, h, C, d, relative=True) <= TOL


# ------------------------------------------------------------ blocks and centres


def test_blocks_of_checkerboard_and_free_coordinates():
    A = np.zeros((2, 5))
    A[0, [0, 1]] = 1.0
    A[1, 3] = 1.0
    coord, (rows,) = sl.blocks(5, A)
    assert coord.tolist() == [0, 0, -1, 1, -1]
    assert rows.tolist() == [0, 1]
    coord, (rows,) = sl.blocks(64, CHECKER)
    assert coord.max() == 3 and np.all(coord >= 0) and sorted(rows.tolist()) == [0, 1, 2, 3]


def test_blocks_couple_across_matrices():
    A = np.array([[1.0, 1.0, 0.0, 0.0]])
    S = np.array([[0.0, 1.0, 1.0, 0.0]])
    coord, (g, s) = sl.blocks(4, A, S)
    assert coord.tolist() == [0, 0, 0, -1] and g.tolist() == [0] and s.tolist() == [0]


def test_deepest_center_of_cone_with_box():
    stage = sl.plan(CHECKER, box=(-1.0, 1.0))
    np.testing.assert_allclose(stage.center, 0.0, atol=1e-9)  # the paper's apex
    strict = sl.plan(CHECKER, box=(-1.0, 1.0), strict_generator_rows=True)
    assert np.all(CHECKER @ strict.center < -1e-3)  # strictly inside every cone row
    assert np.all(np.abs(strict.center) < 1.0)


def test_user_center_is_validated():
    A, b = np.array([[1.0, 1.0]]), np.array([1.0])
    with pytest.raises(InfeasibleError, match="violates the generator rows"):
        sl.plan(A, b, box=(-1.0, 1.0), center=[0.9, 0.9])
    with pytest.raises(NoStrictInteriorError, match="strictly inside the box"):
        sl.plan(A, b, box=(-1.0, 1.0), center=[-1.0, 0.0])
    with pytest.raises(NoStrictInteriorError, match=r"scaled row\(s\) \[0\]"):
        sl.plan(A, b, scaled_rows=[[1.0, 0.0]], scaled_rhs=[0.2], center=[0.2, 0.0])
    with pytest.raises(NoStrictInteriorError, match="generator rows"):
        sl.plan(A, b, box=(-1.0, 1.0), center=[0.5, 0.5], strict_generator_rows=True)
    with pytest.raises(ConstraintShapeError, match="length-2"):
        sl.plan(A, b, box=(-1.0, 1.0), center=[0.0, 0.0, 0.0])
    with pytest.raises(ConstraintShapeError, match="finite"):
        sl.plan(A, b, box=(-1.0, 1.0), center=[np.nan, 0.0])


def test_no_strict_interior_is_a_clear_error():
    # generator row x0 >= 0, scaled row x0 <= 0: they meet only on a face
    with pytest.raises(NoStrictInteriorError, match="strictly inside the scaled rows"):
        sl.plan([[-1.0, 0.0]], [0.0], scaled_rows=[[1.0, 0.0]], scaled_rhs=[0.0])
    with pytest.raises(NoStrictInteriorError):
        sl.plan([[1.0, 0.0]], [-2.0], box=(-1.0, 1.0))  # x0 <= -2 misses the box


def test_bad_arguments():
    with pytest.raises(ConstraintShapeError, match="all zero"):
        sl.plan(CHECKER, scaled_rows=np.zeros((1, 64)), scaled_rhs=[1.0])
    with pytest.raises(ConstraintShapeError, match="columns"):
        sl.plan(CHECKER, scaled_rows=np.ones((1, 3)), scaled_rhs=[1.0])
    with pytest.raises(ConstraintShapeError, match="without scaled_rows"):
        sl.plan(CHECKER, scaled_rhs=[1.0])
    with pytest.raises(ConstraintShapeError, match="input_dependent needs"):
        sl.plan(CHECKER, box=(-1, 1), input_dependent=True)
    stage = sl.plan(CHECKER, box=(-1.0, 1.0))
    with pytest.raises(LinconError, match="mode must be one of"):
        scale_map(stage, np.zeros((1, 64)), mode="nearest")


# ------------------------------------------------------------ maps


@pytest.mark.parametrize("mode", sl.MODES)
def test_feasible_points_are_kept(mode):
    rng = np.random.default_rng(0)
    stage = sl.plan(CHECKER, box=(-1.0, 1.0), strict_generator_rows=(mode == "clip_scale"))
    sign = CHECKER.sum(axis=0)  # +1 / -1: the sign of each pixel's block row
    y = -sign * rng.uniform(0.0, 0.99, (20, 64))  # inside every row and the box
    assert geometry.max_violation(y, CHECKER) <= 0
    np.testing.assert_allclose(scale_map(stage, y, mode=mode), y, atol=1e-12)


def test_free_coordinates_are_clipped_and_per_block_is_a_ray_scaling():
    A = np.zeros((1, 4))
    A[0, :2] = [1.0, 1.0]
    stage = sl.plan(A, [1.0], box=(-1.0, 1.0))
    y = np.array([[3.0, -5.0, 7.0, -0.2]])
    for mode in sl.MODES[1:]:
        x = scale_map(stage, y, mode=mode)
        np.testing.assert_allclose(x[:, 2:], [[1.0, -0.2]])
    x = scale_map(stage, y, mode="per_block")
    d, e = x[0, :2] - stage.center[:2], y[0, :2] - stage.center[:2]
    assert abs(d[0] * e[1] - d[1] * e[0]) < 1e-12 and np.dot(d, e) > 0  # same ray from the centre


def test_per_block_equals_global_on_one_block():
    rng = np.random.default_rng(1)
    A, b, x0 = coupled_system(rng, 6, 12)
    stage = sl.plan(A, b, box=(-2.0, 2.0), scaled_rows=A[:3] + 0.1, scaled_rhs=b[:3] + 1.0)
    assert stage.n_blocks == 1 and np.all(stage.coord_block == 0)
    y = points_in(A, b, x0, rng.standard_normal((30, 6)) * 10)
    np.testing.assert_allclose(scale_map(stage, y, mode="per_block"), scale_map(stage, y, mode="global"))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**31 - 1),
    n=st.integers(15, 40),
    m=st.integers(50, 300),
    scale_exp=st.integers(-6, 6),
    mode=st.sampled_from(sl.MODES),
)
def test_random_coupled_systems_all_rows_scaled_are_feasible(seed, n, m, scale_exp, mode):
    """Sets whose generators would explode: every row scaled, any input scale."""
    rng = np.random.default_rng(seed)
    A, b, x0 = coupled_system(rng, n, m)
    half = m // 2  # half generator rows (points of them given), half scaled rows
    stage = sl.plan(
        A[:half],
        b[:half],
        scaled_rows=A[half:],
        scaled_rhs=b[half:],
        box=(-3.0, 3.0),
        strict_generator_rows=(mode == "clip_scale"),
    )
    y = points_in(A[:half], b[:half], x0, x0 + rng.standard_normal((16, n)) * 10.0**scale_exp)
    assert_feasible(scale_map(stage, y, mode=mode), stage, A[:half], b[:half])


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), mode=st.sampled_from(sl.MODES))
def test_per_sample_rhs_above_floor_is_feasible(seed, mode):
    rng = np.random.default_rng(seed)
    n = 12
    budget_rows = np.vstack([np.ones(n), rng.uniform(0.0, 1.0, (3, n))])  # budget-like coupled rows
    floor = rng.uniform(0.5, 2.0, 4)
    stage = sl.plan(
        -np.eye(n),
        np.zeros(n),
        scaled_rows=budget_rows,
        scaled_rhs=floor,
        input_dependent=True,
        box=(None, 1.5),
        strict_generator_rows=(mode == "clip_scale"),
    )
    rhs = floor + rng.exponential(3.0, (32, 4))
    y = np.abs(rng.standard_normal((32, n))) * 10.0 ** rng.integers(-6, 7, (32, 1))
    x = scale_map(stage, y, rhs, mode=mode)
    assert_feasible(x, stage, -np.eye(n), np.zeros(n), rhs=rhs)


def test_per_sample_rhs_below_floor_can_fail():
    """The floor is the exactness condition: below it the map may leave the set."""
    # generator rows x >= 0.2 keep the centre at a.c >= 0.4; floor 1.0
    stage = sl.plan(-np.eye(2), np.full(2, -0.2), scaled_rows=[[1.0, 1.0]], scaled_rhs=[1.0], input_dependent=True)
    assert stage.center.sum() >= 0.4 - 1e-9
    ok = scale_map(stage, np.array([[2.0, 2.0]]), np.array([[1.0]]))
    assert ok.sum() <= 1.0 + 1e-12
    x = scale_map(stage, np.array([[2.0, 2.0]]), np.array([[0.3]]))  # below a.c: not exact
    assert x.sum() > 0.3 + 1e-3


@pytest.mark.parametrize("mode", sl.MODES)
def test_equality_blocks_keep_their_equalities(mode):
    rng = np.random.default_rng(3)
    C = np.array([[1.0, 1.0, 1.0, 0.0, 0.0]])
    A = np.array([[0.0, 0.0, 0.0, 1.0, -1.0]])
    stage = sl.plan(A, [0.5], C, [0.3], box=(-1.0, 1.0))
    assert stage.block_has_equality.tolist() == [True, False]
    z = rng.standard_normal((40, 5)) * 5
    z[:, :3] += (0.3 - z[:, :3].sum(axis=1, keepdims=True)) / 3  # on the equality
    z[:, 3:] = points_in(A[:, 3:], np.array([0.5]), np.zeros(2), z[:, 3:])
    x = scale_map(stage, z, mode=mode)
    assert_feasible(x, stage, A, np.array([0.5]), C=C, d=np.array([0.3]))
