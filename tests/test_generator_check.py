"""Tests of keras_lincon.geometry.generator_check: soundness and completeness of float generators."""

import numpy as np
import pytest

from keras_lincon.errors import RepresentationCheckError
from keras_lincon.geometry import double_description as dd
from keras_lincon.geometry import generator_check
from tests.polytope_families import seed_10122


def test_check_catches_dropped_vertex_and_misread_ray():
    A, b = seed_10122()
    table = dd.normalised_table(A, b, np.zeros((0, 3)), np.zeros(0))
    v, r, l = dd.enumerate_generators(A, b, max_generators=1000, arithmetic="exact")
    dd.check_generators(table, len(A), v, r, l)  # the right answer passes
    for i in range(len(v)):  # every single missing vertex is found by the edge walk
        with pytest.raises(RepresentationCheckError, match="missed a vertex|incomplete"):
            dd.check_generators(table, len(A), np.delete(v, i, axis=0), r, l)
    misread = np.vstack([v, 1e16 * r[:1]])  # what `first column != 0` produced
    with pytest.raises(RepresentationCheckError):
        dd.check_generators(table, len(A), misread, r[1:], l)


def test_lp_support_bounded_unbounded_and_empty():
    A, b, C, d = np.vstack([np.eye(2), -np.eye(2)]), np.ones(4), np.zeros((0, 2)), np.zeros(0)
    assert generator_check.lp_support(np.array([1.0, 1.0]), A, b, C, d) == pytest.approx(2.0)
    assert generator_check.lp_support(np.array([1.0, 0.0]), A[:1], b[:1], C, d) == pytest.approx(1.0)
    assert generator_check.lp_support(np.array([-1.0, 0.0]), A[:1], b[:1], C, d) == np.inf
    assert generator_check.lp_support(np.zeros(2), A, np.r_[-1.0, 1.0, -1.0, 1.0], C, d) == -np.inf


def test_lineality_outside_the_set_is_unsound():
    table = dd.normalised_table(np.array([[1.0, 0.0]]), np.ones(1), np.zeros((0, 2)), np.zeros(0))
    vertices, rays = np.zeros((1, 2)), np.array([[-1.0, 0.0]])
    generator_check.check_generators(table, 1, vertices + [[1.0, 0.0]], rays, np.array([[0.0, 1.0]]))
    with pytest.raises(RepresentationCheckError, match="lineality outside the set"):
        generator_check.check_generators(table, 1, vertices + [[1.0, 0.0]], rays, np.array([[1.0, 1.0]]))
