"""Tests of keras_lincon.geometry.builders: the checkerboard and monotone chains."""

import numpy as np
import pytest

import keras_lincon as klc


def test_checkerboard_matches_reference_layout():
    A = klc.checkerboard()
    assert A.shape == (16, 784)
    img = A.reshape(16, 28, 28)
    assert img[0, 0, 0] == 1 and img[1, 0, 7] == -1 and img[4, 7, 0] == -1 and img[5, 7, 7] == 1
    np.testing.assert_array_equal(np.abs(A).sum(axis=1), np.full(16, 49))
    np.testing.assert_array_equal(np.abs(A).sum(axis=0), np.ones(784))
    rep = klc.h_to_v(A)
    assert rep.method == "blocks(closed_form)"
    assert rep.rays.shape == (16, 784) and rep.lineality.shape == (768, 784)


def test_monotone_chain():
    A = klc.monotone_chain(6)
    rep = klc.h_to_v(A)
    assert rep.rays.shape == (5, 6) and rep.lineality.shape == (1, 6)
    x = rep.sample(100, seed=0)
    assert np.all(np.diff(x, axis=1) >= -1e-12)


def test_builders_refuse_what_they_cannot_build():
    with pytest.raises(klc.ConstraintShapeError, match="split evenly"):
        klc.checkerboard((28, 28), (3, 3))
    with pytest.raises(klc.ConstraintShapeError, match="n >= 2"):
        klc.monotone_chain(1)
