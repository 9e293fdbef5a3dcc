"""Tests of keras_lincon.layers.generator_kernel: both call modes give the same points of the generator set."""

import keras
import numpy as np
import pytest

import keras_lincon as klc
from keras_lincon.layers.generator_kernel import NONNEG_FUNCTIONS, generator_outputs
from keras_lincon.planning.options import NONNEG_CHOICES


def test_every_nonneg_choice_has_a_map_that_is_nonnegative():
    assert tuple(NONNEG_FUNCTIONS) == NONNEG_CHOICES
    x = keras.ops.convert_to_tensor(np.linspace(-3, 3, 13, dtype="float32"))
    for f in NONNEG_FUNCTIONS.values():
        assert np.all(keras.ops.convert_to_numpy(f(x)) >= 0)


@pytest.mark.parametrize("nonneg", NONNEG_CHOICES)
def test_direct_and_projected_modes_agree_and_stay_in_the_cone(nonneg):
    A = klc.monotone_chain(5)  # a cone with a lineality direction (1, ..., 1)
    layers = [klc.LinearInequalityConstraint(A, call_mode=mode, nonneg=nonneg) for mode in ("direct", "projected")]
    x = np.random.default_rng(0).normal(size=(16, 3)).astype("float32")
    outs = []
    for layer in layers:
        layer.build((None, 3))
        layer.kernel.assign(np.random.default_rng(1).normal(size=layer.kernel.shape).astype("float32"))
        layer.bias.assign(np.random.default_rng(2).normal(size=layer.bias.shape).astype("float32"))
        y = keras.ops.convert_to_numpy(
            generator_outputs(keras.ops.convert_to_tensor(x), layer, layer._layout, layer._call_mode, nonneg)
        )
        assert klc.max_violation(y, A, relative=True) <= 1e-5
        outs.append(y)
    assert outs[0].shape == outs[1].shape == (16, 5)
