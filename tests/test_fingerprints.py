"""Tests of keras_lincon.layers.fingerprints: the host and in-graph fingerprints agree and see every single change."""

import numpy as np
import pytest

import keras_lincon as klc
from keras_lincon.layers.fingerprints import graph_fingerprint, host_fingerprint

A = klc.checkerboard((4, 4), (2, 2))


@pytest.mark.parametrize("dtype", ["float32", "int32", "float64"])
def test_graph_fingerprint_equals_host_fingerprint(dtype):
    import tensorflow as tf

    rng = np.random.default_rng(1)
    value = (rng.standard_normal((70, 130)) * 1e3).astype(dtype)
    expected = host_fingerprint(value)
    assert int(graph_fingerprint(value)) == expected
    assert int(tf.function(graph_fingerprint)(value)) == expected
    assert int(tf.function(graph_fingerprint, jit_compile=True)(value)) == expected


def test_fingerprint_sees_every_single_change():
    value = np.random.default_rng(2).standard_normal(1000).astype("float32")
    reference = host_fingerprint(value)
    for i in range(0, 1000, 37):
        changed = value.copy()
        changed[i] = np.nextafter(changed[i], np.float32(np.inf))  # one ulp
        assert host_fingerprint(changed) != reference
    assert host_fingerprint(value[::-1].copy()) != reference  # a permutation


def test_fingerprint_tells_mirrored_generators_apart():
    # the generators of monotone_chain(4) and -monotone_chain(4): the same rows up to signs and order
    # (collided when the fingerprint summed raw bit patterns: two sign flips cancel modulo 2**32)
    a = klc.LinearInequalityConstraint(klc.monotone_chain(4))
    b = klc.LinearInequalityConstraint(-klc.monotone_chain(4))
    a.build((None, 4))
    b.build((None, 4))
    assert host_fingerprint(a.generators.numpy()) != host_fingerprint(b.generators.numpy())
    rng = np.random.default_rng(5)
    for _ in range(200):
        rows = rng.standard_normal((4, 4)).astype("float32")
        flipped = rows.copy()
        i, j = rng.choice(4, 2, replace=False)
        flipped[[i, j]] = -rows[[j, i]]
        assert host_fingerprint(rows) != host_fingerprint(flipped)
