"""Right-hand sides per example for :class:`~keras_lincon.ConstrainedVAE` (a conditional VAE).

With ``rhs_input`` the VAE's output layer takes the right-hand sides of its
constraints as an input: one array ``b_s`` of shape (batch, rhs_dim), the
layer's inputs side by side (``[b, d]`` when both are inputs: ``b`` first).
:class:`RhsConditioning` builds that output layer and carries ``b_s`` along
the data path: the posterior head and the decoder see ``[features, b_s]``
and ``[z, b_s]``, the output layer gets ``b_s`` split into its inputs.
Without ``rhs_input`` every method here is the identity on ``b_s = None``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import keras
import numpy as np
from keras import ops

from keras_lincon.errors import ConstraintShapeError, LinconError
from keras_lincon.layers import LinearInequalityConstraint


def output_layer(config: dict | None, A, output_shape: tuple, **constraint_kwargs) -> keras.layers.Layer:
    """The VAE's output layer: from a saved config (no double description), Dense for ``A=None``.

    Raises:
        ConstraintShapeError: the layer's size is not the number of values of ``output_shape``.
    """
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


if TYPE_CHECKING:  # a mixin of ConstrainedVAE, a keras.Model (Any to the type checker: Keras ships no types)
    from keras import Model as _ModelBase
else:
    _ModelBase = object


class RhsConditioning(_ModelBase):
    """Mixin of :class:`~keras_lincon.ConstrainedVAE`: its output layer and the right-hand sides ``b_s``.

    Sets ``output_constraint``, ``rhs_input`` (bool) and ``rhs_dim`` (the
    width of ``b_s``, 0 without ``rhs_input``); needs ``sample_output_shape``.
    """

    def _add_output_constraint(self, config: dict | None, A, rows: dict, rhs_input) -> None:
        """The output layer, from ``config`` when loading; ``rhs_input`` as the layer takes it.

        Raises:
            LinconError: ``rhs_input`` without constraint rows ``A``.
        """
        if rhs_input:
            if A is None and config is None:
                raise LinconError("rhs_input=True needs constraint rows A whose b_s is the input; A is None.")
            rows = {**rows, "rhs_input": rhs_input}
        self.output_constraint = output_layer(config, A, self.sample_output_shape, **rows)
        self.rhs_input = bool(getattr(self.output_constraint, "rhs_input", False))
        self.rhs_dim = sum(self.output_constraint._plan.rhs_sizes) if self.rhs_input else 0

    def _split(self, inputs):
        """``inputs`` -> ``(x, b_s)``; ``b_s`` is None unless ``rhs_input``."""
        if not self.rhs_input:
            return inputs, None
        if not (isinstance(inputs, (list, tuple)) and len(inputs) == 2):
            raise LinconError(
                "this ConstrainedVAE takes its constraints' right-hand sides as an input (rhs_input=True): "
                "call and fit it on pairs (x, b_s), e.g. vae.fit((images, b_s)), with b_s of shape "
                f"(batch, {self.rhs_dim})."
            )
        return inputs[0], ops.cast(inputs[1], "float32")

    def _rhs(self, rhs, num=None):
        """Checks ``rhs`` against ``rhs_input``; (m_in,) is repeated to ``num`` rows."""
        if not self.rhs_input:
            if rhs is not None:
                raise LinconError("rhs= is only for a ConstrainedVAE built with rhs_input=True.")
            return None
        if rhs is None:
            raise LinconError(
                f"this ConstrainedVAE needs rhs= (b_s of shape (batch, {self.rhs_dim}) or ({self.rhs_dim},))."
            )
        rhs = ops.cast(rhs, "float32")
        if len(rhs.shape) not in (1, 2) or rhs.shape[-1] not in (None, self.rhs_dim):
            raise LinconError(
                f"rhs must have shape (batch, {self.rhs_dim}) or ({self.rhs_dim},); got {tuple(rhs.shape)}."
            )
        if len(rhs.shape) == 1 and num is not None:
            rhs = ops.broadcast_to(rhs[None], (num, self.rhs_dim))
        return rhs

    def _constrain(self, features, rhs):
        """The output layer on ``features``; ``rhs`` (batch, rhs_dim) is split into the layer's inputs
        (``[b, d]`` when both are inputs: ``b`` first)."""
        if not self.rhs_input:
            return self.output_constraint(features)
        sizes = self.output_constraint._plan.rhs_sizes
        parts = [rhs] if len(sizes) == 1 else [rhs[:, : sizes[0]], rhs[:, sizes[0] :]]
        return self.output_constraint([features, *parts])

    def _with_rhs(self, z, rhs):
        """``[z, b_s]`` along the last axis (the conditioning of the posterior head and the decoder)."""
        return z if rhs is None else ops.concatenate([z, ops.cast(rhs, z.dtype)], axis=-1)
