"""Tests of keras_lincon.tolerances: the table states the contract the code uses."""

import numpy as np

import keras_lincon as klc
from keras_lincon import tolerances


def test_the_layer_and_its_checks_use_the_stated_contract():
    assert klc.layers.FLOAT32_TOLERANCE is tolerances.FLOAT32_TOLERANCE == 1e-5
    assert tolerances.FLOAT64_TOLERANCE == 1e-10
    for name in ("FLOAT32_TOLERANCE", "FLOAT64_TOLERANCE", "LOAD_TOLERANCE", "MIN_RELATIVE_SLACK", "TRANSLATION_RTOL"):
        assert name in tolerances.__doc__, f"{name} is not in the table"


def test_outputs_meet_the_float32_contract_at_any_input_scale():
    A = klc.checkerboard((6, 6), (2, 2))
    layer = klc.LinearInequalityConstraint(A, box=(-1.0, 1.0))
    for scale in (1e-3, 1.0, 1e6):
        x = np.random.default_rng(0).normal(size=(64, 5)).astype("float32") * scale
        assert layer.max_violation(layer(x), relative=True) <= tolerances.FLOAT32_TOLERANCE
