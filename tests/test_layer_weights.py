"""Tests of keras_lincon.layers.layer_weights: the weights build creates, fixed or trainable."""

import numpy as np

import keras_lincon as klc


def test_generator_weights_are_fixed_and_follow_the_specs():
    layer = klc.LinearInequalityConstraint(klc.monotone_chain(4), box=(-1.0, 1.0))
    layer.build((None, 6))
    trainable = {v.name.split("/")[-1] for v in layer.trainable_weights}
    fixed = {v.name.split("/")[-1] for v in layer.non_trainable_weights}
    assert trainable == {"kernel", "bias"} and fixed and not trainable & fixed
    assert {"box_center", "box_inv_upper", "box_inv_lower"} <= fixed  # a box alone: its centre is a weight
    np.testing.assert_array_equal(np.asarray(layer.box_center_weight), layer.box_center)


def test_a_layer_rebuilt_from_its_config_has_nan_generators_until_loaded():
    layer = klc.LinearInequalityConstraint(klc.monotone_chain(4))
    clone = klc.LinearInequalityConstraint.from_config(layer.get_config())
    clone.build((None, 6))
    generator_values = [np.asarray(v) for v in clone.non_trainable_weights if "float" in str(v.dtype)]
    assert generator_values and all(np.isnan(v).all() for v in generator_values)
