"""Tests of keras_lincon.models.ConstrainedVAE."""

import keras
import numpy as np
import pytest
import tensorflow_probability as tfp

import keras_lincon as klc
from keras_lincon import datasets
from keras_lincon.models import ConstrainedVAE
from tests.conftest import run_python

tfd = tfp.distributions
TOL = klc.layers.FLOAT32_TOLERANCE
A8 = klc.checkerboard((8, 8), (2, 2))


@pytest.fixture(scope="module")
def digits():
    return datasets.load("digits", max_train=512, max_test=128)


def make_vae(**kwargs):
    encoder = keras.Sequential([keras.Input((8, 8)), keras.layers.Flatten(), keras.layers.Dense(32, activation="relu")])
    decoder = keras.Sequential([keras.layers.Dense(32, activation="relu")])
    kwargs.setdefault("box", (-1.0, 1.0))
    return ConstrainedVAE(encoder, decoder, kwargs.pop("A", A8), latent_dim=kwargs.pop("latent_dim", 3),
                          output_shape=(8, 8), **kwargs)


def output_layer_check(vae, y):
    return vae.output_constraint.assert_constraints(np.asarray(y).reshape(len(y), -1))


def test_fit_trains_and_every_output_is_feasible(digits):
    vae = make_vae()
    assert vae.built
    vae.compile(optimizer=keras.optimizers.Adam(3e-3))
    history = vae.fit(digits.x_train, epochs=4, batch_size=64, verbose=0, validation_data=(digits.x_test,))
    h = history.history
    assert h["loss"][-1] < h["loss"][0]
    assert {"reconstruction", "kl", "max_violation", "val_loss"} <= set(h)
    assert max(h["max_violation"]) <= TOL
    recon = vae.predict(digits.x_test, verbose=0)
    assert recon.shape == (128, 8, 8)
    output_layer_check(vae, recon)
    samples = vae.sample(2000, seed=1)
    assert samples.shape == (2000, 8, 8)
    output_layer_check(vae, samples)
    codes = vae.encode(digits.x_test)
    assert codes.shape == (128, 3)
    output_layer_check(vae, vae.decode(codes))


def test_seeded_sampling_is_reproducible():
    vae = make_vae()
    a, b, c = vae.sample(16, seed=7), vae.sample(16, seed=7), vae.sample(16, seed=8)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_latent_constraints_hold_for_codes(digits):
    latent_A = -np.eye(3)  # non-negative codes
    vae = make_vae(latent_A=latent_A, latent_dim=4)
    vae.compile(optimizer="adam")
    vae.fit(digits.x_train, epochs=1, batch_size=64, verbose=0)
    codes = np.asarray(vae.encode(digits.x_test))
    assert codes.shape == (128, 3)
    assert klc.max_violation(codes, latent_A, relative=True) <= TOL
    samples_codes = np.asarray(vae.code(vae.prior().sample(500, seed=(1, 2))))
    assert np.all(samples_codes >= -TOL * (1 + np.abs(samples_codes)))
    output_layer_check(vae, vae.sample(100, seed=0))


def test_mixture_prior_uses_monte_carlo_kl(digits):
    vae = make_vae(prior="mixture", prior_components=4)
    vae.compile(optimizer="adam")
    history = vae.fit(digits.x_train, epochs=1, batch_size=64, verbose=0)
    assert np.isfinite(history.history["kl"][-1])
    assert len([w for w in vae.trainable_weights if "prior" in w.path]) == 3


def test_custom_tfp_prior_trains_but_cannot_be_saved(digits, tmp_path):
    prior = tfd.MultivariateNormalDiag(loc=np.zeros(3, "float32"), scale_diag=np.full(3, 2.0, "float32"))
    vae = make_vae(prior=prior)
    vae.compile(optimizer="adam")
    vae.fit(digits.x_train[:128], epochs=1, verbose=0)
    with pytest.raises(klc.LinconError, match="custom prior"):
        vae.save(tmp_path / "vae.keras")
    bad = make_vae(prior=tfd.Normal(0.0, 1.0))
    with pytest.raises(klc.LinconError, match="event shape"):
        bad.prior()


def test_unconstrained_twin_has_dense_output():
    vae = make_vae(A=None, box=None)
    assert isinstance(vae.output_constraint, keras.layers.Dense)
    assert vae.sample(4, seed=0).shape == (4, 8, 8)


def test_learned_likelihood_scale(digits):
    vae = make_vae(likelihood_scale="learned")
    vae.compile(optimizer="adam")
    vae.fit(digits.x_train[:128], epochs=1, verbose=0)
    assert any("log_likelihood_scale" in w.path for w in vae.trainable_weights)


SAVE = """
import numpy as np, keras, keras_lincon as klc
from keras_lincon import datasets
from tests.test_models import make_vae
data = datasets.load("digits", max_train=256, max_test=32)
vae = make_vae(latent_A=-np.eye(3), latent_dim=4, prior="mixture", prior_components=3)
vae.compile(optimizer="adam")
vae.fit(data.x_train, epochs=1, verbose=0)
np.save("{tmp}/recon.npy", vae.predict(data.x_test, verbose=0))
np.save("{tmp}/samples.npy", np.asarray(vae.sample(64, seed=11)))
vae.save("{tmp}/vae.keras")
"""


def test_save_and_load_in_fresh_process_reproduces_everything(tmp_path):
    run_python(SAVE.format(tmp=tmp_path))
    out = run_python(f"""
        import numpy as np, keras, keras_lincon as klc
        from unittest import mock
        from keras_lincon import datasets
        with mock.patch.object(klc.polyhedra, "h_to_v", side_effect=AssertionError("reran h_to_v")):
            vae = keras.saving.load_model("{tmp_path}/vae.keras")
        data = datasets.load("digits", max_train=256, max_test=32)
        np.testing.assert_array_equal(vae.predict(data.x_test, verbose=0), np.load("{tmp_path}/recon.npy"))
        np.testing.assert_array_equal(np.asarray(vae.sample(64, seed=11)), np.load("{tmp_path}/samples.npy"))
        print("ok", type(vae).__name__)
    """)
    assert "ok ConstrainedVAE" in out


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        (dict(latent_dim=0), "latent_dim must be a positive int"),
        (dict(A=klc.checkerboard((4, 4), (2, 2))), "16 columns but output_shape"),
        (dict(likelihood_scale=-1.0), "likelihood_scale"),
        (dict(prior="laplace"), "prior must be"),
    ],
)
def test_errors(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        make_vae(**kwargs)


def test_decoder_must_give_flat_features():
    encoder = keras.Sequential([keras.Input((8, 8)), keras.layers.Flatten(), keras.layers.Dense(8)])
    decoder = keras.Sequential([keras.layers.Dense(64), keras.layers.Reshape((8, 8))])
    with pytest.raises(klc.ConstraintShapeError, match="flat features"):
        ConstrainedVAE(encoder, decoder, A8, latent_dim=2, output_shape=(8, 8))


def test_input_shape_required_without_input_layer():
    with pytest.raises(klc.LinconError, match="input_shape"):
        ConstrainedVAE(keras.layers.Dense(4), keras.layers.Dense(4), A8, latent_dim=2)


@pytest.mark.parametrize("prior", ["normal", "mixture"])
def test_prior_samples_follow_the_prior_and_are_seeded(prior):
    import tensorflow as tf

    vae = make_vae(prior=prior, prior_components=3, latent_dim=2)
    seed = tf.constant([3, 0], tf.int32)
    plain = vae.prior_sample(20_000, seed).numpy()
    graph = tf.function(lambda s: vae.prior_sample(20_000, s))(seed).numpy()
    np.testing.assert_array_equal(plain, graph)
    reference = vae.prior().sample(20_000, seed=(1, 2)).numpy()
    np.testing.assert_allclose(plain.mean(axis=0), reference.mean(axis=0), atol=0.05)
    np.testing.assert_allclose(plain.std(axis=0), reference.std(axis=0), atol=0.05)


def test_xla_compiled_training(digits):
    vae = make_vae(prior="mixture", prior_components=2)
    vae.compile(optimizer="adam", jit_compile=True)
    history = vae.fit(digits.x_train[:256], epochs=2, batch_size=64, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert max(history.history["max_violation"]) <= TOL
