"""Tests of keras_lincon.geometry.representation: merging, bases, VRepresentation and its self-check."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial import cKDTree

from keras_lincon import geometry
from keras_lincon.errors import ConstraintShapeError, RepresentationCheckError
from keras_lincon.geometry import representation
from keras_lincon.geometry.representation import merge_close_rows


def test_merge_close_rows_is_relative_and_order_free():
    rng = np.random.default_rng(0)
    base = rng.standard_normal((20, 3))
    noisy = np.vstack([base, base + 1e-12 * rng.standard_normal(base.shape)])
    for scale in (1e-12, 1.0, 1e9):
        assert len(merge_close_rows(noisy * scale)) == 20
        assert len(merge_close_rows(rng.permutation(noisy) * scale + 5 * scale)) == 20
    thin = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1e-8]])
    assert len(merge_close_rows(thin)) == 3 and len(merge_close_rows(thin, rtol=1e-7)) == 2
    rays = np.array([[1.0, 0.0], [2.0, 1e-13], [0.0, 3.0]])
    assert len(merge_close_rows(rays, unit=True)) == 2


@settings(max_examples=40, deadline=None)
@given(st.integers(1, representation._ALL_PAIRS_ROWS), st.integers(1, 4), st.integers(0, 2**32 - 1))
def test_all_pairs_and_kd_tree_find_the_same_close_pairs(k, n, seed):
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, 3, (k, n)) + 0.3 * rng.standard_normal((k, n)) * (rng.random((k, 1)) < 0.5)
    for tol in (0.0, 0.1, 0.5):
        pairs = {tuple(p) for p in representation._close_pairs(rows, tol).tolist()}
        assert pairs == {tuple(sorted(p)) for p in cKDTree(rows).query_pairs(tol, output_type="ndarray").tolist()}


def test_vertex_blocks_must_use_every_index():
    with pytest.raises(ConstraintShapeError, match="every index"):
        geometry.VRepresentation(np.zeros((2, 2)), np.zeros((0, 2)), vertex_blocks=[0, 2], row_space=np.eye(2))
    with pytest.raises(ConstraintShapeError, match="every index"):
        geometry.VRepresentation(np.zeros((2, 2)), np.zeros((0, 2)), vertex_blocks=[1, 1], row_space=np.eye(2))
    rep = geometry.VRepresentation(np.eye(2), np.zeros((0, 2)), vertex_blocks=[1, 0], row_space=np.eye(2))
    assert rep.n_blocks == 2


def test_check_representation_names_the_failing_kind():
    s = geometry.as_constraint_system([[1.0, 0.0], [0.0, 1.0]], [1.0, 1.0])
    good = geometry.h_to_v(s)
    geometry.check_representation(good, s)
    bad_vertex = geometry.VRepresentation([[2.0, 0.0]], good.rays, row_space=good.row_space)
    with pytest.raises(RepresentationCheckError, match="vertex"):
        geometry.check_representation(bad_vertex, s)
    bad_line = geometry.VRepresentation(good.vertices, good.rays, lineality=[[1.0, 0.0]])
    with pytest.raises(RepresentationCheckError, match="lineality"):
        geometry.check_representation(bad_line, s)
    two_blocks = geometry.VRepresentation(
        [[0.5, 0.0], [0.0, 0.5]], np.zeros((0, 2)), vertex_blocks=[0, 1], row_space=np.eye(2)
    )
    with pytest.raises(
        RepresentationCheckError, match="vertex"
    ):  # the Minkowski sum (0.5, 0.5) + rays... no rays: fine
        geometry.check_representation(two_blocks, geometry.as_constraint_system([[1.0, 1.0]], [0.9]))
