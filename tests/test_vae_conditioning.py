"""Tests of keras_lincon.models.vae_conditioning: the ConstrainedVAE's output layer and right-hand sides b_s."""

import keras
import numpy as np
import pytest

import keras_lincon as klc
from keras_lincon.models import ConstrainedVAE
from keras_lincon.models.vae_conditioning import output_layer

TOL = klc.layers.FLOAT32_TOLERANCE


def both_rhs_vae():
    """Outputs (4,) with y0 >= -b0, y1 >= -b1 (b an input) and sum(y) = d (d an input): b_s = [b0, b1, d]."""
    keras.utils.set_random_seed(0)
    encoder = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu")])
    return ConstrainedVAE(
        encoder,
        keras.layers.Dense(8, activation="relu"),
        -np.eye(4)[:2],
        np.zeros(2),
        C=np.ones((1, 4)),
        d=[0.0],
        rhs_input=("b", "d"),
        latent_dim=2,
    )


def test_b_then_d_are_split_from_one_rhs_array():
    vae = both_rhs_vae()
    assert vae.rhs_input and vae.rhs_dim == 3
    features = np.random.default_rng(0).normal(size=(6, 8)).astype("float32")
    rhs = np.random.default_rng(1).normal(size=(6, 3)).astype("float32")
    np.testing.assert_array_equal(
        vae._constrain(features, rhs), vae.output_constraint([features, rhs[:, :2], rhs[:, 2:]])
    )
    y = np.asarray(vae.decode(np.random.default_rng(2).normal(size=(6, 2)).astype("float32"), rhs=rhs))
    assert np.all(y[:, :2] >= -rhs[:, :2] - TOL * 10)
    np.testing.assert_allclose(y.sum(axis=1), rhs[:, 2], atol=1e-4)


def test_one_rhs_is_repeated_for_every_sample():
    vae = both_rhs_vae()
    one = np.array([1.0, 2.0, 5.0], "float32")
    assert tuple(vae._rhs(one, 4).shape) == (4, 3)
    np.testing.assert_array_equal(vae._rhs(one, 4), np.repeat(one[None], 4, axis=0))
    samples = np.asarray(vae.sample(4, seed=0, rhs=one))
    np.testing.assert_allclose(samples.sum(axis=1), 5.0, atol=1e-4)


def test_posterior_head_and_decoder_see_b_s():
    vae = both_rhs_vae()
    z = np.zeros((2, 2), "float32")
    rhs = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], "float32")
    np.testing.assert_array_equal(vae._with_rhs(z, rhs), np.concatenate([z, rhs], axis=1))
    assert vae._with_rhs(z, None) is z
    assert vae.decoder.kernel.shape[0] == 2 + 3  # [z, b_s]
    assert vae.posterior_head.kernel.shape[0] == 8 + 3  # [encoder(x), b_s]


def test_output_layer_is_dense_for_the_twin_and_checks_its_size():
    dense = output_layer(None, None, (2, 3))
    assert isinstance(dense, keras.layers.Dense) and dense.units == 6 and dense.name == "unconstrained_output"
    with pytest.raises(klc.ConstraintShapeError, match=r"5 columns but output_shape \(2, 3\) has 6 values"):
        output_layer(None, klc.monotone_chain(5), (2, 3))


def test_output_layer_from_a_saved_config():
    layer = output_layer(None, klc.monotone_chain(4), (4,), box=(-1.0, 1.0))
    again = output_layer(keras.saving.serialize_keras_object(layer), None, (4,))
    assert isinstance(again, klc.LinearInequalityConstraint) and again.name == "constrained_output"
    assert again.get_config() == layer.get_config()
