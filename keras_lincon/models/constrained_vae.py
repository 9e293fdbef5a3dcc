"""ConstrainedVAE: a variational autoencoder whose outputs satisfy ``A x <= b``.

TensorFlow backend only (TFP distributions, ``tf.function`` sampling); the
constraint is the backend-neutral :class:`~keras_lincon.LinearInequalityConstraint`.
:class:`~keras_lincon.models.latent_prior.LatentPrior` holds everything about
``p(u)``; :class:`ConstrainedVAE` trains with Keras's own train/test steps
through its ``compute_loss``. Two mixins hold the rest:
:class:`~keras_lincon.models.vae_conditioning.RhsConditioning` (the output
layer and per-example right-hand sides) and
:class:`~keras_lincon.models.vae_saving.VAESaving` (config and file layout).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from keras_lincon._backend import SUPPORTED_BACKENDS, require_tensorflow
from keras_lincon.errors import ConstraintShapeError, LinconError

# the module, not the class: the package's registration hook may import this module while
# keras_lincon.layers.constraint_violation, importing Keras, is still initializing
from keras_lincon.layers import LinearInequalityConstraint, constraint_violation
from keras_lincon.models.latent_prior import LatentPrior, tfp_distributions
from keras_lincon.models.vae_conditioning import RhsConditioning
from keras_lincon.models.vae_saving import VAESaving

__all__ = ["SUPPORTED_BACKENDS", "ConstrainedVAE", "LatentPrior"]  # LatentPrior: its 0.1.0 home

_LOGVAR_RANGE = (-12.0, 8.0)  # keeps exp(logvar) finite in float32


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


def _latent_layer(config: dict | None, latent_A, latent_b) -> keras.layers.Layer | None:
    if config is not None:
        return keras.saving.deserialize_keras_object(config)
    if latent_A is not None:
        return LinearInequalityConstraint(latent_A, latent_b, name="latent_constraint")
    return None


def _check_arguments(latent_dim, likelihood_scale) -> None:
    if not isinstance(latent_dim, (int, np.integer)) or latent_dim < 1:
        raise LinconError(f"latent_dim must be a positive int; got {latent_dim!r}.")
    if not (likelihood_scale == "learned" or (isinstance(likelihood_scale, (int, float)) and likelihood_scale > 0)):
        raise LinconError(f"likelihood_scale must be a positive float or 'learned'; got {likelihood_scale!r}.")


def _violation_metric(output_layer: keras.layers.Layer):
    """``max_violation``: of the constraint layer's rows; ``-inf`` for the twin's Dense output."""
    if isinstance(output_layer, LinearInequalityConstraint):
        return constraint_violation.ConstraintViolation(output_layer)
    return constraint_violation.ConstraintViolation(units=output_layer.units)


@keras.saving.register_keras_serializable(package="keras_lincon")
class ConstrainedVAE(RhsConditioning, VAESaving, keras.Model):
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
    :func:`keras_lincon.models.distribute.fit_distributed`) call
    :meth:`compute_loss`. The KL needs the forward pass's posterior sample,
    so ``call(x, training=True)`` decodes a sample ``u`` (not the mean) and
    adds ``kl_weight * mean(KL)`` with ``add_loss``; :meth:`compute_loss`
    adds the reconstruction term (and regularizers). Evaluation runs one
    extra sampled pass, so ``val_loss`` is the same ELBO. ``fit`` reports
    ``loss``, ``reconstruction``, ``kl``, ``max_violation`` (worst relative
    violation, a :class:`~keras_lincon.ConstraintViolation`; ``-inf`` for the
    twin, which has no constraints). No ``sample_weight``.

    **Right-hand sides per example** (a conditional VAE): with ``rhs_input``
    (any value the layer takes: ``"b"``, ``"d"``, ``("b", "d")``, a dict, or
    ``True``, see :class:`~keras_lincon.LinearInequalityConstraint`) the
    output layer takes its right-hand sides as an input. The model is then
    called and fitted on pairs ``(x, b_s)``, ``b_s`` of shape (batch, m_in):
    the layer's inputs side by side (``[b, d]`` for both); the posterior head sees ``[encoder(x), b_s]`` and the
    decoder ``[z, b_s]``, so ``q(u | x, b)`` and ``p(x | z, b)``. Every
    reconstruction and sample is feasible for its own ``b_s`` (above the
    floor); ``max_violation`` measures each output against it.
    ``sample(num, rhs=b_s)`` and ``decode(z, rhs=b_s)`` take it too.

    TensorFlow backend only (checked at construction): TFP 0.25's JAX
    substrate fails to import with current JAX (0.10), and sampling and
    export use TensorFlow. ``A=None`` gives the unconstrained twin (a Dense
    output layer of the same size), for comparisons.

    Args:
        encoder: layer/model, inputs -> features.
        decoder: layer/model, codes (latent_dim, or latent_A's columns) -> features.
        A, b, C, d, box, nonneg, scaling, scaled_rows, rhs_input: the output
            constraints and their treatment (as in
            :class:`~keras_lincon.LinearInequalityConstraint`; see above for
            ``rhs_input``).
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

    Call:
        ``vae(x)``: inputs (batch, *input_shape), or the pair ``(x, b_s)``
        with ``rhs_input`` -> reconstructions (batch, *output_shape).

    Raises:
        LinconError: Keras is not on the TensorFlow backend; a bad
            ``latent_dim``, ``likelihood_scale`` or ``prior``; no input shape;
            ``rhs_input`` without ``A``; at use, inputs or ``rhs=`` that do not
            match ``rhs_input``; ``sample_weight`` or a compiled ``loss``.
        ConstraintShapeError: ``A``'s columns are not the number of output
            values, or the decoder does not give flat (batch, k) features.

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
        rhs_input=False,
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
        require_tensorflow("ConstrainedVAE")
        super().__init__(**kwargs)
        _check_arguments(latent_dim, likelihood_scale)
        self.latent_dim = int(latent_dim)
        # Tracked first, so the optimizer sees the variables in 0.1.0's order.
        self.latent_prior = LatentPrior(self.latent_dim, prior, prior_components, name="latent_prior")
        self.encoder, self.decoder = encoder, decoder
        self.sample_input_shape = _one_input_shape(encoder, input_shape)
        self.sample_output_shape = tuple(int(s) for s in (output_shape or self.sample_input_shape))
        self.kl_weight = float(kl_weight)
        self.likelihood_scale = likelihood_scale
        self.posterior_head = keras.layers.Dense(2 * self.latent_dim, name="posterior")
        rows = dict(b=b, C=C, d=d, box=box, nonneg=nonneg, scaling=scaling, scaled_rows=scaled_rows)
        self._add_output_constraint(output_layer, A, rows, rhs_input)  # also sets rhs_input, rhs_dim
        self.latent_constraint = _latent_layer(latent_layer, latent_A, latent_b)
        self.code_dim = self.latent_constraint.units if self.latent_constraint is not None else self.latent_dim
        self.reconstruction_tracker = keras.metrics.Mean(name="reconstruction")
        self.violation_tracker = _violation_metric(self.output_constraint)
        self._compiled_sampler: Any = None  # a tf.function, built on first use
        # Built now: a model whose forward pass fit never traces symbolically
        # would otherwise be saved without its weights.
        x_shape = (None,) + self.sample_input_shape
        self.build([x_shape, (None, self.rhs_dim)] if self.rhs_input else x_shape)

    def build(self, input_shape):
        if self.likelihood_scale == "learned" and not hasattr(self, "log_likelihood_scale"):
            self.log_likelihood_scale = self.add_weight(
                name="log_likelihood_scale", shape=(), initializer=keras.initializers.Constant(np.log(0.1))
            )
        # One symbolic forward pass builds every sublayer. Symbolic, not on a
        # zero batch: constraint layers rebuilt from a config refuse to run on
        # data before their saved generators are loaded and checked.
        x_shape = input_shape[0] if self.rhs_input else input_shape
        x = keras.KerasTensor((1,) + tuple(x_shape[1:]))
        rhs = keras.KerasTensor((1, self.rhs_dim)) if self.rhs_input else None
        mean, _ = self._posterior_params(x, rhs)
        features = self.decoder(self._with_rhs(self.code(mean), rhs))
        if len(features.shape) != 2:
            raise ConstraintShapeError(
                f"the decoder must map codes to flat features (batch, k); it gives shape {tuple(features.shape)}."
            )
        self._constrain(features, rhs)
        self.built = True

    # ------------------------------------------------------------- the maps

    def prior(self):
        """The latent prior ``p(u)`` as a TFP distribution (event shape [latent_dim])."""
        return self.latent_prior.distribution()

    def prior_sample(self, num, seed_pair):
        """``num`` draws of ``u ~ p(u)``, (num, latent_dim); see :meth:`LatentPrior.sample`."""
        return self.latent_prior.sample(num, seed_pair)

    def _posterior_params(self, x, rhs=None, training=False):
        features = self.encoder(x, training=training)
        features = ops.reshape(features, (ops.shape(features)[0], -1))
        params = self.posterior_head(self._with_rhs(features, rhs))
        mean, logvar = params[:, : self.latent_dim], params[:, self.latent_dim :]
        return mean, ops.clip(logvar, *_LOGVAR_RANGE)

    def code(self, u):
        """``z = g(u)``: latent codes satisfying the latent constraints (if any)."""
        return u if self.latent_constraint is None else self.latent_constraint(u)

    def decode(self, z, training=False, rhs=None):
        """Codes (batch, code_dim) -> outputs (batch, *output_shape), feasible.

        ``rhs``: with ``rhs_input``, the (batch, m_in) or (m_in,) ``b_s`` the
        outputs must satisfy; else None.
        """
        rhs = self._rhs(rhs, ops.shape(z)[0])
        features = self.decoder(self._with_rhs(z, rhs), training=training)
        flat = self._constrain(features, rhs)
        return ops.reshape(flat, (-1,) + self.sample_output_shape)

    def encode(self, inputs, training=False):
        """Inputs (or ``(x, b_s)`` pairs) -> posterior-mean codes ``z = g(mu)`` (batch, code_dim)."""
        x, rhs = self._split(inputs)
        mean, _ = self._posterior_params(x, rhs, training=training)
        return self.code(mean)

    def call(self, inputs, training=False, sample_posterior=None):
        """Reconstructions (batch, *output_shape) of inputs (batch, *input_shape).

        ``inputs`` is ``x``, or the pair ``(x, b_s)`` with ``rhs_input``.
        With ``sample_posterior`` (default: ``training``) the code is a
        posterior sample and ``kl_weight * mean(KL)`` is added with
        ``add_loss``; otherwise it is the posterior mean (deterministic).
        """
        x, rhs = self._split(inputs)
        mean, logvar = self._posterior_params(x, rhs, training=training)
        if not (training if sample_posterior is None else sample_posterior):
            return self.decode(self.code(mean), training=training, rhs=rhs)
        u, kl = self.latent_prior(mean, logvar)
        self.add_loss(self.kl_weight * ops.mean(kl))
        return self.decode(self.code(u), training=training, rhs=rhs)

    def sample(self, num: int, seed: int | None = None, rhs=None):
        """``num`` generated outputs, (num, *output_shape); the decoder runs under XLA.

        The same ``seed`` gives the same samples, also after save and load and
        from the exported ``sample`` signature (codes are drawn outside XLA).
        With ``rhs_input``, ``rhs`` is the ``b_s`` every sample satisfies:
        (m_in,) for all of them or (num, m_in), one per sample.
        """
        rhs = self._rhs(rhs, int(num))
        if self._compiled_sampler is None:
            self._compiled_sampler = tf.function(
                lambda u, b: self.decode(self.code(u), rhs=b), jit_compile=True, reduce_retracing=True
            )
        if seed is None:
            seed = int(np.random.default_rng().integers(2**31 - 1))
        u = self.prior_sample(int(num), tf.constant([int(seed), 0], dtype=tf.int32))
        return self._compiled_sampler(u, rhs)

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
        target = ops.reshape(ops.cast(self._split(x)[0], y_pred.dtype), ops.shape(y_pred))
        log_lik = tfp_distributions().Normal(loc=y_pred, scale=self._scale()).log_prob(target)
        reconstruction = -ops.sum(ops.reshape(log_lik, (ops.shape(log_lik)[0], -1)), axis=-1)
        self.reconstruction_tracker.update_state(reconstruction)
        loss = ops.mean(reconstruction)
        for extra in self.losses:  # the KL term (see call), regularizers
            loss = loss + ops.sum(ops.cast(extra, loss.dtype))
        # Under tf.distribute the optimizer sums the replicas' gradients, so
        # each replica's loss is divided by their number (as Keras's losses do).
        return loss / tf.cast(tf.distribute.get_strategy().num_replicas_in_sync, loss.dtype)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        self.violation_tracker.update_state(None, y_pred, rhs=self._split(x)[1])
        return super().compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    def _scale(self):
        if self.likelihood_scale == "learned":
            return tf.exp(tf.convert_to_tensor(self.log_likelihood_scale))
        return tf.constant(float(self.likelihood_scale))
