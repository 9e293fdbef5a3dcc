"""Tests of keras_lincon.models.vae_saving: a ConstrainedVAE's config and its 0.1.0 variable layout."""

import keras
import numpy as np
import pytest

import keras_lincon as klc
from keras_lincon.models import ConstrainedVAE

A8 = klc.checkerboard((8, 8), (2, 2))


def make_vae(A=A8, b=None, **kwargs):
    keras.utils.set_random_seed(0)
    encoder = keras.Sequential([keras.Input((8, 8)), keras.layers.Flatten(), keras.layers.Dense(16)])
    return ConstrainedVAE(encoder, keras.layers.Dense(16), A, b, latent_dim=2, box=(-1.0, 1.0), **kwargs)


def same_config(config, expected) -> bool:
    """Equal configs; of the output layer only its class and rows (the round trip through a file, weights
    included, is in test_constrained_vae)."""
    layer, expected_layer = config.pop("output_layer"), dict(expected).pop("output_layer")
    rest = {k: v for k, v in expected.items() if k != "output_layer"}
    keys = ("A", "b", "box", "rhs_input", "scaled_rows")
    return (
        config == rest
        and layer["class_name"] == expected_layer["class_name"]
        and all(layer["config"].get(k) == expected_layer["config"].get(k) for k in keys)
    )


@pytest.mark.parametrize(
    "kwargs",
    [dict(), dict(prior="mixture", prior_components=3, likelihood_scale="learned", kl_weight=0.5)],
)
def test_config_round_trip(kwargs):
    vae = make_vae(**kwargs)
    config = vae.get_config()
    assert "rhs_input" not in config  # as in configs written before rhs_input existed
    assert (config["latent_dim"], config["output_shape"], config["input_shape"]) == (2, [8, 8], [8, 8])
    again = ConstrainedVAE.from_config(config)
    assert same_config(again.get_config(), config)


def test_conditional_config_keeps_rhs_input():
    A = np.vstack([A8, np.ones((1, 64))])
    vae = make_vae(A=A, b=np.r_[np.zeros(len(A8)), -30.0], scaled_rows=[len(A8)], rhs_input=True)
    config = vae.get_config()
    assert config["rhs_input"] == vae.output_constraint.rhs_input
    again = ConstrainedVAE.from_config(config)
    assert again.rhs_input and again.rhs_dim == 1 and same_config(again.get_config(), config)


def test_own_variables_keep_the_0_1_0_order():
    vae = make_vae(prior="mixture", prior_components=3, likelihood_scale="learned")
    names = [v.name for v in vae._stored_variables()]
    assert names == ["log_likelihood_scale", "prior_locs", "prior_log_scales", "prior_logits"]
    store = {}
    vae.save_own_variables(store)
    assert sorted(store) == ["0", "1", "2", "3"]
    other = make_vae(prior="mixture", prior_components=3, likelihood_scale="learned")
    other.latent_prior.prior_locs.assign(np.zeros((3, 2), "float32"))
    other.load_own_variables(store)
    for mine, theirs in zip(vae._stored_variables(), other._stored_variables(), strict=True):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())


def test_a_file_of_another_prior_is_refused():
    store = {}
    make_vae(prior="mixture").save_own_variables(store)
    with pytest.raises(klc.LinconError, match="holds 3 variables.*this model has 0.*prior, prior_components"):
        make_vae().load_own_variables(store)
