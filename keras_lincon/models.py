"""ConstrainedVAE: a variational autoencoder whose outputs satisfy ``A x <= b``.

TensorFlow backend only (TFP distributions, ``tf.function`` sampling); the
constraint is the backend-neutral :class:`~keras_lincon.LinearInequalityConstraint`.
:class:`LatentPrior` holds everything about ``p(u)``; :class:`ConstrainedVAE`
trains with Keras's own train/test steps through its ``compute_loss``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf
from keras import ops

# the module, not the class: the package's registration hook may import this module while
# keras_lincon.metrics, importing Keras, is still initializing
from keras_lincon import metrics
from keras_lincon.errors import ConstraintShapeError, LinconError
from keras_lincon.layers import LinearInequalityConstraint

_LOGVAR_RANGE = (-12.0, 8.0)  # keeps exp(logvar) finite in float32
#: Keras backends on which ConstrainedVAE runs (TFP's JAX substrate was tried, see the class docstring).
SUPPORTED_BACKENDS = ("tensorflow",)


def _require_tensorflow_backend(what: str) -> None:
    """Fails early, with the fix, instead of deep inside TFP or a train step."""
    backend = keras.backend.backend()
    if backend not in SUPPORTED_BACKENDS:
        raise LinconError(
            f"{what} works only on the Keras backends {list(SUPPORTED_BACKENDS)}; this Keras runs on "
            f"{backend!r}. Set KERAS_BACKEND=tensorflow before importing keras (the "
            "LinearInequalityConstraint layer itself also works on JAX and PyTorch)."
        )


def _tfd():
    try:
        import tensorflow_probability as tfp
    except ImportError as exc:  # pragma: no cover - install problem
        raise ImportError(
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
    """

    def __init__(self, latent_dim: int, prior: None | str | Callable | object = None, components: int = 10, **kwargs):
        super().__init__(**kwargs)
        _require_tensorflow_backend("ConstrainedVAE's TFP prior")
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
        tfd = _tfd()
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
        tfd = _tfd()
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


def _one_input_shape(encoder, input_shape) -> tuple:
    if input_shape is None:
        try:
            input_shape = tuple(encoder.input_shape[1:])
        except (AttributeError, ValueError):
            raise LinconError(
                "ConstrainedVAE needs the shape of one input: pass input_shape=... "
                "or give an encoder that starts with keras.Input."
            ) from None
    return tuple(int(s) for s in input_shape)


def _output_layer(config: dict | None, A, output_shape: tuple, **constraint_kwargs) -> keras.layers.Layer:
    """The VAE's output layer: from a saved config (no double description), Dense for ``A=None``."""
    n_out = int(np.prod(output_shape))
    if config is not None:
        layer = keras.saving.deserialize_keras_object(config)
    elif A is None:
        layer = keras.layers.Dense(n_out, name="unconstrained_output")
    else:
        layer = LinearInequalityConstraint(A, name="constrained_output", **constraint_kwargs)
    if getattr(layer, "units", n_out) != n_out:
        raise ConstraintShapeError(
            f"A has {layer.units} columns but output_shape {output_shape} has {n_out} values; they must match."
        )
    return layer


def _latent_layer(config: dict | None, latent_A, latent_b) -> keras.layers.Layer | None:
    if config is not None:
        return keras.saving.deserialize_keras_object(config)
    if latent_A is not None:
        return LinearInequalityConstraint(latent_A, latent_b, name="latent_constraint")
    return None


@keras.saving.register_keras_serializable(package="keras_lincon")
class ConstrainedVAE(keras.Model):
    """Variational autoencoder whose reconstructions and samples satisfy ``A x <= b``.

    ``encoder`` maps inputs to features and ``decoder`` maps latent codes to
    features (any Keras layers or models). The model adds a Gaussian
    posterior head ``q(u | x) = N(mu(x), diag sigma^2(x))`` and, as output
    layer, a :class:`~keras_lincon.LinearInequalityConstraint` built from the
    generators of ``{A x <= b, C x = d} ∩ box``: every reconstruction and
    every generated sample is feasible, at the cost of a matrix product.

    Generative model: ``u ~ p(u)`` (a :class:`LatentPrior`), ``z = g(u)``,
    ``x ~ N(f(z), s^2 I)`` with ``f`` = decoder + constraint layer. ``g`` is
    the identity, or with ``latent_A z <= latent_b`` a learned constraint
    layer, so every code satisfies them exactly; **the KL term is taken over
    the unconstrained code u**. Loss: ``-E_q[log p(x|z)] + kl_weight *
    KL(q(u|x) || p(u))``, averaged over the batch.

    Training is plain ``compile(optimizer=...)``; ``fit(x)``: Keras's own
    train/test steps (also under ``tf.distribute``, XLA and
    :func:`keras_lincon.distribute.fit_distributed`) call
    :meth:`compute_loss`. The KL needs the forward pass's posterior sample,
    so ``call(x, training=True)`` decodes a sample ``u`` (not the mean) and
    adds ``kl_weight * mean(KL)`` with ``add_loss``; :meth:`compute_loss`
    adds the reconstruction term (and regularizers). Evaluation runs one
    extra sampled pass, so ``val_loss`` is the same ELBO. ``fit`` reports
    ``loss``, ``reconstruction``, ``kl``, ``max_violation`` (worst relative
    violation, a :class:`~keras_lincon.ConstraintViolation`; ``-inf`` for the
    twin, which has no constraints). No ``sample_weight``.

    TensorFlow backend only (checked at construction): TFP 0.25's JAX
    substrate fails to import with current JAX (0.10), and sampling and
    export use TensorFlow. ``A=None`` gives the unconstrained twin (a Dense
    output layer of the same size), for comparisons.

    Args:
        encoder: layer/model, inputs -> features.
        decoder: layer/model, codes (latent_dim, or latent_A's columns) -> features.
        A, b, C, d, box, nonneg, scaling, scaled_rows: the output constraints
            and their treatment (as in :class:`~keras_lincon.LinearInequalityConstraint`).
        latent_dim: size of u.
        prior: None or ``"normal"``, ``"mixture"`` (learned mixture of
            ``prior_components`` diagonal Gaussians), a ``tfd.Distribution``
            with event shape ``[latent_dim]``, or a callable returning one
            (see :class:`LatentPrior`).
        output_shape: shape of one output (e.g. ``(28, 28)``); the flat
            constrained output is reshaped to it. Default: the input shape.
        latent_A, latent_b: optional latent constraints ``latent_A z <= latent_b``.
        likelihood_scale: Gaussian likelihood scale ``s``, or ``"learned"``.
        kl_weight: weight of the KL term (1.0 = ELBO).
        input_shape: shape of one input; default: ``encoder.input_shape``.

    Example:
        >>> import keras, numpy as np, keras_lincon as klc
        >>> images = np.random.default_rng(0).uniform(-1, 1, (64, 8, 8)).astype("float32")
        >>> enc = keras.Sequential([keras.layers.Flatten(), keras.layers.Dense(16, activation="relu")])
        >>> dec = keras.Sequential([keras.layers.Dense(16, activation="relu")])
        >>> vae = klc.ConstrainedVAE(enc, dec, klc.checkerboard((8, 8), (2, 2)), latent_dim=2,
        ...                          box=(-1.0, 1.0), input_shape=(8, 8))
        >>> vae.compile(optimizer="adam")
        >>> sorted(vae.fit(images, epochs=2, verbose=0).history)
        ['kl', 'loss', 'max_violation', 'reconstruction']
        >>> samples = np.asarray(vae.sample(100, seed=0)).reshape(100, -1)
        >>> bool(vae.output_constraint.max_violation(samples, relative=True) <= 1e-5)
        True
    """

    def __init__(
        self,
        encoder: keras.layers.Layer,
        decoder: keras.layers.Layer,
        A=None,
        b=None,
        *,
        latent_dim: int,
        C=None,
        d=None,
        box=None,
        nonneg: str = "abs",
        scaling: str | None = None,
        scaled_rows=None,
        prior: None | str | Callable | object = None,
        prior_components: int = 10,
        output_shape: Sequence[int] | None = None,
        latent_A=None,
        latent_b=None,
        likelihood_scale: float | str = 0.1,
        kl_weight: float = 1.0,
        input_shape: Sequence[int] | None = None,
        output_layer: dict | None = None,
        latent_layer: dict | None = None,  # from a saved config
        **kwargs,
    ):
        _require_tensorflow_backend("ConstrainedVAE")
        super().__init__(**kwargs)
        if not isinstance(latent_dim, (int, np.integer)) or latent_dim < 1:
            raise LinconError(f"latent_dim must be a positive int; got {latent_dim!r}.")
        input_shape = _one_input_shape(encoder, input_shape)
        if not (likelihood_scale == "learned" or (isinstance(likelihood_scale, (int, float)) and likelihood_scale > 0)):
            raise LinconError(f"likelihood_scale must be a positive float or 'learned'; got {likelihood_scale!r}.")
        self.latent_dim = int(latent_dim)
        # Tracked first, so the optimizer sees the variables in 0.1.0's order.
        self.latent_prior = LatentPrior(self.latent_dim, prior, prior_components, name="latent_prior")
        self.encoder, self.decoder = encoder, decoder
        self.sample_input_shape = input_shape
        self.sample_output_shape = tuple(int(s) for s in (output_shape or self.sample_input_shape))
        self.kl_weight = float(kl_weight)
        self.likelihood_scale = likelihood_scale
        self.posterior_head = keras.layers.Dense(2 * self.latent_dim, name="posterior")
        rows = dict(b=b, C=C, d=d, box=box, nonneg=nonneg, scaling=scaling, scaled_rows=scaled_rows)
        self.output_constraint = _output_layer(output_layer, A, self.sample_output_shape, **rows)
        self.latent_constraint = _latent_layer(latent_layer, latent_A, latent_b)
        self.code_dim = self.latent_constraint.units if self.latent_constraint is not None else self.latent_dim
        self.reconstruction_tracker = keras.metrics.Mean(name="reconstruction")
        self.violation_tracker = (
            metrics.ConstraintViolation(self.output_constraint)
            if isinstance(self.output_constraint, LinearInequalityConstraint)
            else metrics.ConstraintViolation(units=self.output_constraint.units)  # no rows: -inf
        )
        self._compiled_sampler = None
        # Built now: a model whose forward pass fit never traces symbolically
        # would otherwise be saved without its weights.
        self.build((None,) + self.sample_input_shape)

    def build(self, input_shape):
        if self.likelihood_scale == "learned" and not hasattr(self, "log_likelihood_scale"):
            self.log_likelihood_scale = self.add_weight(
                name="log_likelihood_scale", shape=(), initializer=keras.initializers.Constant(np.log(0.1))
            )
        # One symbolic forward pass builds every sublayer. Symbolic, not on a
        # zero batch: constraint layers rebuilt from a config refuse to run on
        # data before their saved generators are loaded and checked.
        mean, _ = self._posterior_params(keras.KerasTensor((1,) + tuple(input_shape[1:])))
        features = self.decoder(self.code(mean))
        if len(features.shape) != 2:
            raise ConstraintShapeError(
                f"the decoder must map codes to flat features (batch, k); it gives shape {tuple(features.shape)}."
            )
        self.output_constraint(features)
        self.built = True

    # ------------------------------------------------------------- the maps

    def prior(self):
        """The latent prior ``p(u)`` as a TFP distribution (event shape [latent_dim])."""
        return self.latent_prior.distribution()

    def prior_sample(self, num, seed_pair):
        """``num`` draws of ``u ~ p(u)``, (num, latent_dim); see :meth:`LatentPrior.sample`."""
        return self.latent_prior.sample(num, seed_pair)

    def _posterior_params(self, x, training=False):
        features = self.encoder(x, training=training)
        params = self.posterior_head(ops.reshape(features, (ops.shape(features)[0], -1)))
        mean, logvar = params[:, : self.latent_dim], params[:, self.latent_dim :]
        return mean, ops.clip(logvar, *_LOGVAR_RANGE)

    def code(self, u):
        """``z = g(u)``: latent codes satisfying the latent constraints (if any)."""
        return u if self.latent_constraint is None else self.latent_constraint(u)

    def decode(self, z, training=False):
        """Codes (batch, code_dim) -> outputs (batch, *output_shape), feasible."""
        flat = self.output_constraint(self.decoder(z, training=training))
        return ops.reshape(flat, (-1,) + self.sample_output_shape)

    def encode(self, x, training=False):
        """Inputs -> posterior-mean codes ``z = g(mu(x))`` (batch, code_dim)."""
        mean, _ = self._posterior_params(x, training=training)
        return self.code(mean)

    def call(self, x, training=False, sample_posterior=None):
        """Reconstructions (batch, *output_shape) of inputs (batch, *input_shape).

        With ``sample_posterior`` (default: ``training``) the code is a
        posterior sample and ``kl_weight * mean(KL)`` is added with
        ``add_loss``; otherwise it is the posterior mean (deterministic).
        """
        mean, logvar = self._posterior_params(x, training=training)
        if not (training if sample_posterior is None else sample_posterior):
            return self.decode(self.code(mean), training=training)
        u, kl = self.latent_prior(mean, logvar)
        self.add_loss(self.kl_weight * ops.mean(kl))
        return self.decode(self.code(u), training=training)

    def sample(self, num: int, seed: int | None = None):
        """``num`` generated outputs, (num, *output_shape); the decoder runs under XLA.

        The same ``seed`` gives the same samples, also after save and load and
        from the exported ``sample`` signature (codes are drawn outside XLA).
        """
        if self._compiled_sampler is None:
            self._compiled_sampler = tf.function(
                lambda u: self.decode(self.code(u)), jit_compile=True, reduce_retracing=True
            )
        if seed is None:
            seed = int(np.random.default_rng().integers(2**31 - 1))
        u = self.prior_sample(int(num), tf.constant([int(seed), 0], dtype=tf.int32))
        return self._compiled_sampler(u)

    # ------------------------------------------------------------- training

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """Negative ELBO averaged over the batch (scalar); Keras's train/test steps call it.

        In training ``y_pred`` is ``self(x, training=True)`` (a sampled
        reconstruction; ``self.losses`` holds the KL). ``y`` is ignored.
        """
        if sample_weight is not None:
            raise LinconError("ConstrainedVAE does not support sample_weight; call fit(x) without it.")
        if self.loss is not None:  # it would be ignored: the loss is the negative ELBO
            raise LinconError("ConstrainedVAE defines its own loss; compile it without loss=...")
        if not training:  # y_pred is the posterior-mean reconstruction; the ELBO needs a sample
            y_pred = self(x, training=False, sample_posterior=True)
        target = ops.reshape(ops.cast(x, y_pred.dtype), ops.shape(y_pred))
        log_lik = _tfd().Normal(loc=y_pred, scale=self._scale()).log_prob(target)
        reconstruction = -ops.sum(ops.reshape(log_lik, (ops.shape(log_lik)[0], -1)), axis=-1)
        self.reconstruction_tracker.update_state(reconstruction)
        loss = ops.mean(reconstruction)
        for extra in self.losses:  # the KL term (see call), regularizers
            loss = loss + ops.sum(ops.cast(extra, loss.dtype))
        # Under tf.distribute the optimizer sums the replicas' gradients, so
        # each replica's loss is divided by their number (as Keras's losses do).
        return loss / tf.cast(tf.distribute.get_strategy().num_replicas_in_sync, loss.dtype)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        self.violation_tracker.update_state(None, y_pred)
        return super().compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    def _scale(self):
        if self.likelihood_scale == "learned":
            return tf.exp(tf.convert_to_tensor(self.log_likelihood_scale))
        return tf.constant(float(self.likelihood_scale))

    # ---------------------------------------------------------- serialization

    def _stored_variables(self) -> list:
        # 0.1.0 files hold the prior's parameters among the model's own
        # variables, after log_likelihood_scale; new files keep that layout.
        return self._trainable_variables + self._non_trainable_variables + self.latent_prior.parameters

    def save_own_variables(self, store):
        for i, variable in enumerate(self._stored_variables()):
            store[f"{i}"] = variable

    def load_own_variables(self, store):
        variables = self._stored_variables()
        if len(store.keys()) != len(variables):
            raise LinconError(
                f"the file holds {len(store.keys())} variables of the ConstrainedVAE itself, this model "
                f"has {len(variables)} ({[v.name for v in variables]}); build it with the file's "
                "prior, prior_components and likelihood_scale."
            )
        for i, variable in enumerate(variables):
            variable.assign(store[f"{i}"])

    def get_config(self):
        prior = self.latent_prior.get_config()  # raises for a custom TFP prior
        ser = keras.saving.serialize_keras_object
        return {
            **super().get_config(),
            "encoder": ser(self.encoder),
            "decoder": ser(self.decoder),
            "latent_dim": self.latent_dim,
            "prior": prior["prior"],
            "prior_components": prior["components"],
            "output_shape": list(self.sample_output_shape),
            "input_shape": list(self.sample_input_shape),
            "likelihood_scale": self.likelihood_scale,
            "kl_weight": self.kl_weight,
            "output_layer": ser(self.output_constraint),
            "latent_layer": ser(self.latent_constraint) if self.latent_constraint is not None else None,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        encoder = keras.saving.deserialize_keras_object(config.pop("encoder"))
        decoder = keras.saving.deserialize_keras_object(config.pop("decoder"))
        return cls(encoder, decoder, **config)
