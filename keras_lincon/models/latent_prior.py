"""The latent prior ``p(u)`` of :class:`~keras_lincon.ConstrainedVAE`, on TensorFlow Probability.

TensorFlow backend only: :func:`keras_lincon._backend.require_tensorflow`
fails early, with the fix, on the others. :class:`LatentPrior` holds the prior's parameters,
draws samples outside XLA and computes the KL term.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import tensorflow as tf
from keras import ops

from keras_lincon._backend import SUPPORTED_BACKENDS, require_tensorflow
from keras_lincon.errors import LinconError, MissingDependencyError

__all__ = ["SUPPORTED_BACKENDS", "LatentPrior", "require_tensorflow_backend", "tfp_distributions"]


#: The name this module exported before the one check moved to keras_lincon._backend.
require_tensorflow_backend = require_tensorflow


def tfp_distributions():
    """``tensorflow_probability.distributions``; raises :class:`~keras_lincon.MissingDependencyError` without TFP."""
    try:
        import tensorflow_probability as tfp
    except ImportError as exc:  # pragma: no cover - install problem
        raise MissingDependencyError(
            "ConstrainedVAE needs TensorFlow Probability with tf-keras: "
            "pip install 'keras-lincon[probability]' (tensorflow-probability, tf-keras)."
        ) from exc
    return tfp.distributions


@keras.saving.register_keras_serializable(package="keras_lincon")
class LatentPrior(keras.layers.Layer):
    """The latent prior ``p(u)`` of a :class:`ConstrainedVAE`: parameters, samples, KL term.

    Called on the posterior parameters it draws ``u = mean + exp(logvar / 2)
    * eps`` and returns it with the per-example ``KL(q(u|x) || p(u))``:
    analytic where TFP has it, else ``log q(u|x) - log p(u)`` (one sample);
    it tracks the ``kl`` metric. The mixture's variables are written to
    ``.keras`` files by the owning VAE, among its own variables, where
    keras_lincon 0.1.0 kept them.

    Args:
        latent_dim: size D of ``u``.
        prior: None or ``"normal"`` (standard normal), ``"mixture"`` (learned
            mixture of ``components`` diagonal Gaussians), a
            ``tfd.Distribution`` with event shape ``[D]``, or a callable
            returning one.
        components: number of mixture components.

    Call:
        ``u, kl = prior_layer(mean, logvar)``: ``mean, logvar`` (batch, D) ->
        ``u`` (batch, D), ``kl`` (batch,).

    Raises:
        LinconError: Keras does not run on TensorFlow, or ``prior`` is an
            unknown string (at construction); a distribution whose event
            shape is not ``[D]`` (when first used); :meth:`get_config` of a
            custom TFP prior (it has no Keras config).
        MissingDependencyError: TensorFlow Probability is not installed.

    Example:
        >>> import numpy as np
        >>> from keras_lincon import LatentPrior
        >>> prior = LatentPrior(2)  # standard normal p(u)
        >>> mean = np.array([[0.0, 0.0], [1.0, -1.0]], "float32")
        >>> u, kl = prior(mean, np.zeros((2, 2), "float32"))  # q(u|x) = N(mean, I)
        >>> tuple(u.shape), np.round(np.asarray(kl), 6).tolist()  # KL = |mean|^2 / 2
        ((2, 2), [0.0, 1.0])
    """

    def __init__(self, latent_dim: int, prior: None | str | Callable | object = None, components: int = 10, **kwargs):
        super().__init__(**kwargs)
        require_tensorflow("ConstrainedVAE's TFP prior")
        if isinstance(prior, str) and prior not in ("normal", "mixture"):
            raise LinconError(f"prior must be 'normal', 'mixture', a tfd.Distribution or a callable; got {prior!r}.")
        self.latent_dim, self.spec, self.components = int(latent_dim), prior, int(components)
        if prior == "mixture":
            K, D = self.components, self.latent_dim
            self.prior_locs = self.add_weight(
                name="prior_locs", shape=(K, D), initializer=keras.initializers.RandomNormal(stddev=1.0, seed=0)
            )
            self.prior_log_scales = self.add_weight(name="prior_log_scales", shape=(K, D), initializer="zeros")
            self.prior_logits = self.add_weight(name="prior_logits", shape=(K,), initializer="zeros")
        self.seed_generator = keras.random.SeedGenerator(0)
        self.kl_tracker = keras.metrics.Mean(name="kl")
        self.built = True

    @property
    def parameters(self) -> list:
        """The prior's variables (the mixture's locs, log scales, logits; none for the others)."""
        return [self.prior_locs, self.prior_log_scales, self.prior_logits] if self.spec == "mixture" else []

    def distribution(self):
        """``p(u)`` as a TFP distribution with event shape ``[latent_dim]``."""
        tfd = tfp_distributions()
        spec, D = self.spec, self.latent_dim
        if spec in (None, "normal"):
            return tfd.MultivariateNormalDiag(loc=tf.zeros(D), scale_diag=tf.ones(D))
        if spec == "mixture":
            return tfd.MixtureSameFamily(
                mixture_distribution=tfd.Categorical(logits=tf.convert_to_tensor(self.prior_logits)),
                components_distribution=tfd.MultivariateNormalDiag(
                    loc=tf.convert_to_tensor(self.prior_locs),
                    scale_diag=tf.exp(tf.convert_to_tensor(self.prior_log_scales)),
                ),
            )
        dist = spec() if callable(spec) and not isinstance(spec, tfd.Distribution) else spec
        if not isinstance(dist, tfd.Distribution) or list(dist.event_shape) != [D]:
            raise LinconError(
                f"prior must be a tfd.Distribution with event shape [{D}] (or a callable returning one); got {dist!r}."
            )
        return dist

    def sample(self, num, seed_pair):
        """``num`` draws of ``u ~ p(u)``, (num, latent_dim), from an int32 seed pair.

        Run it outside XLA: XLA's stateless random numbers differ from
        TensorFlow's for the same seed. The built-in priors use TF's
        stateless Philox generator directly; a custom TFP prior samples
        through TFP.
        """
        D = self.latent_dim
        if self.spec in (None, "normal"):
            return tf.random.stateless_normal(tf.stack([num, D]), seed_pair, alg="philox")
        if self.spec == "mixture":
            seeds = tf.random.experimental.stateless_split(seed_pair, 2)
            uniform = tf.random.stateless_uniform(
                tf.stack([num, self.components]), seeds[0], minval=1e-12, maxval=1.0, alg="philox"
            )
            # Gumbel-max picks component k with probability softmax(logits)_k.
            component = tf.argmax(tf.convert_to_tensor(self.prior_logits) - tf.math.log(-tf.math.log(uniform)), axis=-1)
            eps = tf.random.stateless_normal(tf.stack([num, D]), seeds[1], alg="philox")
            loc = tf.gather(tf.convert_to_tensor(self.prior_locs), component)
            scale = tf.exp(tf.gather(tf.convert_to_tensor(self.prior_log_scales), component))
            return loc + scale * eps
        return self.distribution().sample(num, seed=seed_pair)

    def kl(self, mean, logvar, u):
        """Per-example ``KL(N(mean, exp(logvar)) || p)``, (batch,); Monte Carlo at ``u`` if not analytic."""
        tfd = tfp_distributions()
        posterior = tfd.MultivariateNormalDiag(loc=mean, scale_diag=tf.exp(0.5 * logvar))
        prior = self.distribution()
        try:
            return tfd.kl_divergence(posterior, prior)
        except NotImplementedError:
            return posterior.log_prob(u) - prior.log_prob(u)

    def call(self, mean, logvar):
        eps = keras.random.normal(ops.shape(mean), seed=self.seed_generator)
        u = mean + ops.exp(0.5 * logvar) * eps
        kl = self.kl(mean, logvar, u)
        self.kl_tracker.update_state(kl)
        return u, kl

    # The owning ConstrainedVAE saves and loads the parameters (0.1.0 file layout).
    def save_own_variables(self, store):
        pass

    def load_own_variables(self, store):
        pass

    def get_config(self):
        if self.spec not in (None, "normal", "mixture"):  # a TFP object has no Keras config
            raise LinconError(
                "a ConstrainedVAE with a custom prior distribution cannot be saved to a "
                ".keras file (TFP distributions have no Keras config). Use prior='normal' "
                "or 'mixture', or save the weights with save_weights()."
            )
        return {
            **super().get_config(),
            "latent_dim": self.latent_dim,
            "prior": self.spec,
            "components": self.components,
        }
