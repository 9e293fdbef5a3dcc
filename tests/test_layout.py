"""Tests of keras_lincon.planning.layout: the generator layout, its paths and the cost model."""

import numpy as np
import pytest

import keras_lincon as klc
from keras_lincon.geometry import VRepresentation
from keras_lincon.planning import layout as layout_lib


@pytest.mark.parametrize(
    "rays,expected",
    [
        (np.diag([1.0, 2.0, 0.5]), ([0, 1, 2], [1.0, 2.0, 0.5])),
        (-np.eye(3)[[2, 0]], ([2, 0], [-1.0, -1.0])),
        (np.eye(3) + 1e-15 * np.ones((3, 3)), ([0, 1, 2], [1.0, 1.0, 1.0])),  # h_to_v's rounding
        (np.eye(3)[[0, 0]] * [[1.0], [2.0]], None),  # two rays on one coordinate
        (np.array([[1.0, 1.0, 0.0]]), None),  # not a unit vector
    ],
)
def test_coordinate_generators_are_detected(rays, expected):
    rep = VRepresentation(np.zeros((1, 3)), rays, np.zeros((0, 3)))
    found = layout_lib.coordinate_generators(rep)
    if expected is None:
        assert found is None
    else:
        np.testing.assert_array_equal(found[0], expected[0])
        np.testing.assert_allclose(found[1], expected[1])


def test_coordinate_generators_read_a_row_space_without_forming_the_lineality():
    """A representation holding only its row space gives what the explicit lineality basis gives."""
    from keras_lincon.geometry.representation import orthogonal_complement

    on_4_5 = -np.eye(6)[[4, 5]]
    for row_space, rays, expected in [
        (np.zeros((0, 6)), np.zeros((0, 6)), "coordinates"),  # lineality = every unit vector
        (np.eye(6)[[4, 5]], on_4_5, "coordinates"),  # rays on 4, 5; unit vectors on 0..3
        (np.array([[0.6, 0.8, 0, 0, 0, 0], [0, 0, 0, 0, 1.0, 0], [0, 0, 0, 0, 0, 1.0]]), on_4_5, None),  # mixed
    ]:
        lazy = VRepresentation(np.zeros((1, 6)), rays, None, row_space=row_space)
        found = layout_lib.coordinate_generators(lazy)
        assert lazy._lineality is None
        explicit = VRepresentation(np.zeros((1, 6)), rays, orthogonal_complement(row_space, 6))
        reference = layout_lib.coordinate_generators(explicit)
        if expected is None:
            assert found is None and reference is None
        else:
            np.testing.assert_array_equal(found[0], reference[0])
            np.testing.assert_allclose(found[1], reference[1])


def test_diagonal_path_needs_every_coordinate_and_the_lineality_first():
    def path(A):
        return klc.LinearInequalityConstraint(A, units=4).layout["generator_path"]

    assert path(-np.eye(4)) == "diagonal"  # x >= 0: 4 rays, in any order h_to_v gives them
    assert path(-np.eye(4)[2:]) == "diagonal"  # x0, x1 free (lineality), then rays
    assert path(-np.eye(4)[:2]) == "gather"  # the lineality's coordinates (2, 3) come last
    assert path(np.array([[1.0, -1.0, 0.0, 0.0]])) == "dense"


def test_plan_layout_of_a_box_alone_is_the_diagonal_path_and_round_trips():
    rep = klc.h_to_v(np.zeros((0, 5)), np.zeros(0))  # R^5: lineality only
    lay = layout_lib.plan_layout(rep)
    assert (lay.n_lineality, lay.n_rays, lay.generator_path, lay.vertex_path) == (5, 0, "diagonal", "none")
    assert layout_lib.GeneratorLayout.from_config(lay.to_config()) == lay


def test_plan_layout_of_disjoint_polytopes_gathers_their_vertices():
    A = klc.checkerboard((4, 4), (2, 2))
    G, h = klc.geometry.with_box(A, None, -np.ones(16), np.ones(16))
    lay = layout_lib.plan_layout(klc.h_to_v(G, h))
    assert lay.vertex_path in ("gather", "dense") and lay.n_vertex_blocks >= 1 and lay.block_size >= 2


def test_a_single_point_is_refused():
    rep = VRepresentation(np.zeros((1, 2)), np.zeros((0, 2)), np.zeros((0, 2)))  # {0}
    with pytest.raises(klc.DegenerateSetError, match="single point"):
        layout_lib.plan_layout(rep)


def test_older_layouts_default_to_version_1_and_unknown_paths_are_refused():
    assert layout_lib.GeneratorLayout.from_config({"n_rays": 1, "n_lineality": 0, "n_basis": 1}).version == 1
    with pytest.raises(klc.GeneratorMismatchError, match="newer keras_lincon"):
        layout_lib.GeneratorLayout.from_config({"n_rays": 1, "n_lineality": 0, "n_basis": 1, "vertex_path": "x"})


@pytest.mark.parametrize("input_dim,units,expected", [(4, 1000, "projected"), (1000, 4, "direct")])
def test_call_mode_picks_the_cheaper_path(input_dim, units, expected):
    # a dense lineality of dimension units - 1: direct costs k (n - 1) + (n - 1) n, projected k n + 2 n
    lay = layout_lib.GeneratorLayout(n_rays=0, n_lineality=units - 1, n_basis=1)
    assert layout_lib.call_mode(lay, input_dim, units) == expected
