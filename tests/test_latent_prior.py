"""Tests of keras_lincon.models.latent_prior: the ConstrainedVAE's prior p(u), its samples and KL term."""

import doctest

import keras
import numpy as np
import pytest
import tensorflow_probability as tfp

import keras_lincon as klc
from keras_lincon.models import latent_prior
from keras_lincon.models.latent_prior import LatentPrior

tfd = tfp.distributions


def posterior(batch=5, dim=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(batch, dim)).astype("float32"), rng.uniform(-2, 1, (batch, dim)).astype("float32")


def gaussian_kl(mean, logvar, loc, scale):
    """KL(N(mean, exp(logvar)) || N(loc, scale^2)), summed over dimensions, in closed form."""
    var = np.exp(logvar)
    return np.sum(np.log(scale) - 0.5 * logvar + (var + (mean - loc) ** 2) / (2 * scale**2) - 0.5, axis=-1)


def test_standard_normal_kl_is_the_closed_form():
    mean, logvar = posterior()
    u, kl = LatentPrior(3)(mean, logvar)
    assert u.shape == (5, 3) and kl.shape == (5,)
    np.testing.assert_allclose(kl, 0.5 * np.sum(np.exp(logvar) + mean**2 - 1.0 - logvar, axis=-1), rtol=1e-5)


def test_custom_gaussian_prior_kl_is_the_closed_form():
    loc, scale = np.array([0.5, -1.0, 2.0], "float32"), np.array([0.5, 2.0, 1.5], "float32")
    prior = LatentPrior(3, tfd.MultivariateNormalDiag(loc=loc, scale_diag=scale))
    mean, logvar = posterior(seed=1)
    np.testing.assert_allclose(
        prior.kl(mean, logvar, mean), gaussian_kl(mean, logvar, loc, scale), rtol=1e-5, atol=1e-6
    )
    # a callable returning the distribution is the same prior
    same = LatentPrior(3, lambda: tfd.MultivariateNormalDiag(loc=loc, scale_diag=scale))
    np.testing.assert_allclose(same.kl(mean, logvar, mean), prior.kl(mean, logvar, mean), rtol=1e-6)


def test_mixture_kl_is_one_sample_monte_carlo():
    prior = LatentPrior(2, "mixture", components=4)
    mean, logvar = posterior(dim=2, seed=2)
    u = mean + 0.3
    q = tfd.MultivariateNormalDiag(loc=mean, scale_diag=np.exp(0.5 * logvar))
    expected = q.log_prob(u) - prior.distribution().log_prob(u)  # no analytic KL for a mixture
    np.testing.assert_allclose(prior.kl(mean, logvar, u), expected, rtol=1e-5)


def test_call_draws_the_reparameterised_sample_and_tracks_kl():
    prior = LatentPrior(3)
    mean, _ = posterior()
    u, kl = prior(mean, np.full_like(mean, -40.0))  # sigma = exp(-20): u is the mean
    np.testing.assert_allclose(u, mean, atol=1e-6)
    np.testing.assert_allclose(float(prior.kl_tracker.result()), float(np.mean(kl)), rtol=1e-6)
    u1, _ = prior(mean, np.zeros_like(mean))
    assert np.std(np.asarray(u1) - mean) > 0.3  # sigma = 1: a real draw


@pytest.mark.parametrize("spec", ["normal", "mixture"])
def test_seeded_samples(spec):
    prior = LatentPrior(2, spec, components=3)
    seed = np.array([7, 0], "int32")
    a, b = prior.sample(500, seed), prior.sample(500, seed)
    assert a.shape == (500, 2)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, prior.sample(500, np.array([8, 0], "int32")))


def test_mixture_samples_come_from_the_heaviest_component():
    prior = LatentPrior(2, "mixture", components=3)
    prior.prior_logits.assign([0.0, 30.0, 0.0])  # component 1 has all the weight
    prior.prior_log_scales.assign(np.full((3, 2), np.log(1e-3), "float32"))
    samples = np.asarray(prior.sample(200, np.array([1, 0], "int32")))
    np.testing.assert_allclose(samples, np.broadcast_to(prior.prior_locs.numpy()[1], (200, 2)), atol=1e-2)


@pytest.mark.parametrize("spec, variables", [(None, 0), ("normal", 0), ("mixture", 3)])
def test_config_round_trip(spec, variables):
    prior = LatentPrior(4, spec, components=5, name="latent_prior")
    config = prior.get_config()
    assert (config["latent_dim"], config["prior"], config["components"]) == (4, spec, 5)
    again = LatentPrior.from_config(config)
    assert (again.latent_dim, again.spec, again.components, again.name) == (4, spec, 5, "latent_prior")
    assert len(again.parameters) == variables
    if spec == "mixture":
        assert [tuple(v.shape) for v in again.parameters] == [(5, 4), (5, 4), (5,)]


def test_errors():
    with pytest.raises(klc.LinconError, match="prior must be 'normal', 'mixture'"):
        LatentPrior(2, "laplace")
    with pytest.raises(klc.LinconError, match=r"event shape \[2\]"):
        LatentPrior(2, tfd.MultivariateNormalDiag(loc=np.zeros(3, "float32"))).distribution()
    with pytest.raises(klc.LinconError, match="cannot be saved"):
        LatentPrior(2, tfd.MultivariateNormalDiag(loc=np.zeros(2, "float32"))).get_config()


def test_another_backend_is_refused_with_the_fix(monkeypatch):
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    with pytest.raises(klc.LinconError, match=r"TFP prior.*\['tensorflow'\].*Keras runs on 'jax'.*KERAS_BACKEND"):
        LatentPrior(2)
    # the module's old name for the check is the package's one check
    assert latent_prior.require_tensorflow_backend is klc._backend.require_tensorflow


def test_docstring_example():
    result = doctest.testmod(latent_prior, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted and not result.failed
