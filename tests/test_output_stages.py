"""Tests of keras_lincon.layers.output_stages: from the generator stage's point to the layer's output."""

import keras
import numpy as np

import keras_lincon as klc
from keras_lincon.layers.output_stages import stored_to_output


def test_without_a_scaled_stage_the_point_is_the_output():
    layer = klc.LinearInequalityConstraint(klc.monotone_chain(3))
    y = keras.ops.convert_to_tensor(np.array([[0.0, 1.0, 2.0]], "float32"))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(stored_to_output(layer._plan, layer, y, y, [])), y)


def test_translation_moves_the_stored_sets_point_by_t_beta():
    A = np.array([[1.0, 0.0], [0.0, 1.0]])
    layer = klc.LinearInequalityConstraint(A, np.zeros(2), rhs_input="b")
    layer.build([(None, 3), (None, 2)])
    y = keras.ops.convert_to_tensor(np.array([[-1.0, -2.0]], "float32"))  # a point of {x <= 0}
    beta = np.array([[3.0, 5.0]], "float32")
    out = keras.ops.convert_to_numpy(stored_to_output(layer._plan, layer, y, y, [beta]))
    np.testing.assert_allclose(out, [[2.0, 3.0]], rtol=1e-6)  # T = I, q = 0: moved by b


def test_shifted_apex_adds_the_samples_apex():
    A = np.array([[1.0, 0.0], [1.0, 1.0]])
    layer = klc.LinearInequalityConstraint(A, np.zeros(2), rhs_input=True)
    zero = keras.ops.zeros((1, 2))
    b_s = np.array([[1.0, 3.0]], "float32")
    out = keras.ops.convert_to_numpy(stored_to_output(layer._plan, layer, zero, zero, [b_s]))
    np.testing.assert_allclose(A @ out[0], b_s[0], rtol=1e-6)  # the apex lies on both rows
