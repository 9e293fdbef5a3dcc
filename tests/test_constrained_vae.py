"""Tests of keras_lincon.models.ConstrainedVAE."""

import importlib.util
import io
import zipfile

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

import keras_lincon as klc
from keras_lincon.experiments import datasets
from keras_lincon.models import ConstrainedVAE, LatentPrior
from keras_lincon.models.distribute import fit_distributed
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
    return ConstrainedVAE(
        encoder, decoder, kwargs.pop("A", A8), latent_dim=kwargs.pop("latent_dim", 3), output_shape=(8, 8), **kwargs
    )


def output_layer_check(vae, y):
    return vae.output_constraint.assert_constraints(np.asarray(y).reshape(len(y), -1))


def test_fit_trains_and_every_output_is_feasible(digits):
    vae = make_vae()
    assert vae.built
    # plain fit: Keras's own steps, the ELBO in compute_loss
    assert type(vae).train_step is keras.Model.train_step and type(vae).test_step is keras.Model.test_step
    vae.compile(optimizer=keras.optimizers.Adam(3e-3))
    history = vae.fit(digits.x_train, epochs=4, batch_size=64, verbose=0, validation_data=(digits.x_test,))
    h = history.history
    assert h["loss"][-1] < h["loss"][0]
    assert {"reconstruction", "kl", "max_violation", "val_loss", "val_kl", "val_max_violation"} <= set(h)
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
from keras_lincon.experiments import datasets
from tests.test_constrained_vae import make_vae
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
        from keras_lincon.experiments import datasets
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


def test_loss_is_reconstruction_plus_weighted_kl_plus_regularizers(digits):
    encoder = keras.Sequential(
        [
            keras.Input((8, 8)),
            keras.layers.Flatten(),
            keras.layers.Dense(32, activation="relu", kernel_regularizer=keras.regularizers.L2(0.1)),
        ]
    )
    vae = ConstrainedVAE(
        encoder,
        keras.Sequential([keras.layers.Dense(32, activation="relu")]),
        A8,
        latent_dim=3,
        box=(-1.0, 1.0),
        output_shape=(8, 8),
        kl_weight=0.5,
    )
    vae.compile(optimizer="adam")
    x = digits.x_test
    logs = vae.evaluate(x, batch_size=len(x), verbose=0, return_dict=True)  # one batch: one sampled pass
    penalty = 0.1 * float(np.sum(np.square(encoder.layers[-1].kernel.numpy())))
    assert penalty > 1.0
    np.testing.assert_allclose(logs["loss"], logs["reconstruction"] + 0.5 * logs["kl"] + penalty, rtol=1e-5)
    assert logs["max_violation"] <= TOL
    # the posterior is sampled in evaluation (an ELBO estimate), not in predict
    again = vae.evaluate(x, batch_size=len(x), verbose=0, return_dict=True)
    assert again["reconstruction"] != logs["reconstruction"]
    np.testing.assert_array_equal(vae.predict(x, verbose=0), vae.predict(x, verbose=0))


def test_sample_weight_and_compiled_loss_are_refused(digits):
    vae = make_vae()
    vae.compile(optimizer="adam")
    x = digits.x_train[:64]
    with pytest.raises(klc.LinconError, match="sample_weight"):
        vae.fit(x, x, sample_weight=np.ones(len(x)), verbose=0)
    vae.compile(optimizer="adam", loss="mse")
    with pytest.raises(klc.LinconError, match="without loss="):
        vae.fit(x, x, verbose=0)


def test_fit_distributed_runs_the_keras_train_step(digits):
    vae = make_vae(prior="mixture", prior_components=2)
    vae.compile(optimizer=keras.optimizers.Adam(3e-3))
    dataset = tf.data.Dataset.from_tensor_slices(digits.x_train).batch(128)
    history = fit_distributed(vae, dataset, epochs=3, verbose=0)
    assert {"loss", "reconstruction", "kl", "max_violation"} <= set(history)
    assert history["loss"][-1] < history["loss"][0]
    assert max(history["max_violation"]) <= TOL
    output_layer_check(vae, vae.sample(200, seed=0))


def test_saved_weights_keep_the_0_1_0_layout(tmp_path):
    """Prior parameters stay among the model's own variables, where 0.1.0 files have them."""
    vae = make_vae(prior="mixture", prior_components=3, latent_dim=2, likelihood_scale="learned")
    vae.save(tmp_path / "vae.keras")
    with zipfile.ZipFile(tmp_path / "vae.keras") as archive:
        weights = h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r")
        own = weights["vars"]
        assert [own[str(i)].shape for i in range(len(own))] == [(), (3, 2), (3, 2), (3,)]
        assert len(weights.get("latent_prior/vars", {})) == 0
    loaded = keras.saving.load_model(tmp_path / "vae.keras")
    for name in ("prior_locs", "prior_log_scales", "prior_logits"):
        np.testing.assert_array_equal(
            getattr(loaded.latent_prior, name).numpy(), getattr(vae.latent_prior, name).numpy()
        )
    bad = make_vae(prior="normal", latent_dim=2)
    with pytest.raises(ValueError, match="prior, prior_components and likelihood_scale"):
        bad.load_weights(tmp_path / "vae.keras")


@pytest.mark.parametrize("backend", ["jax", "torch", "numpy"])
def test_unsupported_backend_fails_at_construction(monkeypatch, backend):
    monkeypatch.setattr(keras.backend, "backend", lambda: backend)
    with pytest.raises(klc.LinconError, match=f"\\['tensorflow'\\].*runs on '{backend}'.*KERAS_BACKEND=tensorflow"):
        make_vae()
    with pytest.raises(klc.LinconError, match="tensorflow"):
        LatentPrior(2)


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax not installed")
def test_jax_backend_error_in_a_fresh_process():
    out = run_python(
        """
        import keras, keras_lincon as klc
        assert keras.backend.backend() == "jax"
        enc = keras.Sequential([keras.Input((8, 8)), keras.layers.Flatten(), keras.layers.Dense(8)])
        try:
            klc.ConstrainedVAE(enc, keras.layers.Dense(8), klc.checkerboard((8, 8), (2, 2)), latent_dim=2)
        except klc.LinconError as exc:
            print("refused:", exc)
    """,
        env={"KERAS_BACKEND": "jax"},
    )
    assert "refused:" in out and "KERAS_BACKEND=tensorflow" in out


@pytest.mark.parametrize("scaling", ["mix", "global"])
def test_output_layer_treatment_is_chosen_and_saved(digits, tmp_path, scaling):
    vae = make_vae(scaling=scaling)
    assert vae.output_constraint.scaling == scaling
    vae.compile(optimizer=keras.optimizers.Adam(3e-3))
    vae.fit(digits.x_train, epochs=1, batch_size=64, verbose=0)
    output_layer_check(vae, vae.sample(500, seed=2))
    vae.save(tmp_path / "vae.keras")
    loaded = keras.saving.load_model(tmp_path / "vae.keras")
    assert loaded.output_constraint.scaling == scaling
    np.testing.assert_allclose(loaded.sample(64, seed=3), vae.sample(64, seed=3), rtol=1e-5, atol=1e-5)


BUDGET_FLOOR = -30.0  # the checkerboard's blocks alternate in sign: sum(x) >= -32 in the box


def make_conditional_vae(**kwargs):
    """The checkerboard cone by generators and a per-image ink budget sum(x) <= b_s, scaled, as an input."""
    A = np.vstack([A8, np.ones((1, 64))])
    b = np.r_[np.zeros(len(A8)), BUDGET_FLOOR]
    return make_vae(A=A, b=b, scaled_rows=[len(A8)], rhs_input=True, **kwargs)


def ink_budget(x):
    """(batch, 1) budget of each image: its own ink plus a margin, at least the floor (so the image is feasible)."""
    return np.maximum(x.reshape(len(x), -1).sum(axis=1, keepdims=True) + 1.0, BUDGET_FLOOR).astype("float32")


def test_conditional_vae_outputs_satisfy_their_own_right_hand_sides(digits, tmp_path):
    vae = make_conditional_vae()
    assert vae.rhs_input and vae.rhs_dim == 1
    vae.compile(optimizer=keras.optimizers.Adam(3e-3))
    b_train, b_test = ink_budget(digits.x_train), ink_budget(digits.x_test)
    h = vae.fit(
        (digits.x_train, b_train), epochs=3, batch_size=64, verbose=0, validation_data=((digits.x_test, b_test),)
    ).history
    assert h["loss"][-1] < h["loss"][0]
    assert max(h["max_violation"] + h["val_max_violation"]) <= TOL
    check = vae.output_constraint.assert_constraints
    recon = vae.predict((digits.x_test, b_test), verbose=0)
    check(recon.reshape(128, -1), rhs=b_test)
    assert np.mean(recon.reshape(128, -1).sum(axis=1) > b_test[:, 0] - 1.0) > 0.1  # the budget binds for many
    # another budget, other outputs: each feasible for its own b_s, whether one for all or one per sample
    tight = np.full((1,), BUDGET_FLOOR, "float32")
    check(np.asarray(vae.sample(300, seed=1, rhs=tight)).reshape(300, -1), rhs=np.repeat(tight[None], 300, 0))
    check(np.asarray(vae.sample(128, seed=1, rhs=b_test)).reshape(128, -1), rhs=b_test)
    codes = vae.encode((digits.x_test, b_test))
    check(np.asarray(vae.decode(codes, rhs=b_test)).reshape(128, -1), rhs=b_test)
    # the metric measures against each sample's b_s: the same outputs under a smaller budget violate
    vae.violation_tracker.reset_state()
    vae.violation_tracker.update_state(None, recon, rhs=b_test - 5.0)
    assert float(vae.violation_tracker.result()) > TOL
    vae.save(tmp_path / "cvae.keras")
    loaded = keras.saving.load_model(tmp_path / "cvae.keras")
    assert loaded.rhs_input
    np.testing.assert_allclose(
        loaded.sample(16, seed=3, rhs=b_test[:16]), vae.sample(16, seed=3, rhs=b_test[:16]), rtol=1e-5, atol=1e-5
    )
    np.testing.assert_allclose(loaded.predict((digits.x_test, b_test), verbose=0), recon, rtol=1e-5, atol=1e-5)


def test_conditional_vae_errors(digits):
    vae = make_conditional_vae()
    with pytest.raises(klc.LinconError, match=r"pairs \(x, b_s\).*\(batch, 1\)"):
        vae(digits.x_test)
    with pytest.raises(klc.LinconError, match="needs rhs="):
        vae.sample(3)
    with pytest.raises(klc.LinconError, match=r"rhs must have shape \(batch, 1\) or \(1,\); got \(2,\)"):
        vae.sample(3, rhs=np.zeros(2))
    with pytest.raises(klc.LinconError, match="only for a ConstrainedVAE built with rhs_input"):
        make_vae().sample(3, rhs=np.zeros(1))
    with pytest.raises(klc.LinconError, match="rhs_input=True needs constraint rows"):
        make_vae(A=None, box=None, rhs_input=True)
    from keras_lincon.export.tflite import export_tflite

    with pytest.raises(klc.LinconError, match="export_for_serving"):
        export_tflite(vae, "/tmp/never.tflite")


def test_conditional_vae_trains_under_fit_distributed(digits):
    vae = make_conditional_vae()
    vae.compile(optimizer=keras.optimizers.Adam(3e-3))
    b_train = ink_budget(digits.x_train)
    dataset = tf.data.Dataset.from_tensor_slices(((digits.x_train, b_train),)).batch(128)
    history = fit_distributed(vae, dataset, epochs=2, verbose=0)
    assert history["loss"][-1] < history["loss"][0]
    assert max(history["max_violation"]) <= TOL


def test_conditional_vae_with_equality_rhs_as_input(digits, tmp_path):
    """rhs_input="d": the ink of each image's top row is its own input d, exactly, for any value (no floor,
    no box; the checkerboard's block sums alone could not move: they span the total ink)."""
    top_row = np.zeros((1, 64))
    top_row[0, :8] = 1.0
    vae = make_vae(A=A8, C=top_row, box=None, rhs_input="d")
    assert vae.rhs_dim == 1
    ink = digits.x_train.reshape(len(digits.x_train), -1)[:, :8].sum(axis=1, keepdims=True).astype("float32")
    vae.compile(optimizer=keras.optimizers.Adam(3e-3))
    h = vae.fit((digits.x_train, ink), epochs=1, batch_size=64, verbose=0).history
    assert max(h["max_violation"]) <= TOL
    target = np.array([[-50.0], [0.0], [37.5]], "float32")
    samples = np.asarray(vae.sample(3, seed=1, rhs=target)).reshape(3, -1)
    vae.output_constraint.assert_constraints(samples, rhs=target)
    np.testing.assert_allclose(samples[:, :8].sum(axis=1), target[:, 0], atol=1e-3)
    vae.save(tmp_path / "ink.keras")
    loaded = keras.saving.load_model(tmp_path / "ink.keras")
    np.testing.assert_allclose(loaded.sample(3, seed=1, rhs=target), vae.sample(3, seed=1, rhs=target), atol=1e-5)
