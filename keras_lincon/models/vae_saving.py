"""What a ``.keras`` file holds of a :class:`~keras_lincon.ConstrainedVAE`: its config and variable layout.

keras_lincon 0.1.0 wrote the latent prior's parameters among the model's own
variables, after ``log_likelihood_scale``; :class:`VAESaving` keeps that
layout, so 0.1.0's files load and new files load in 0.1.0.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import keras

from keras_lincon.errors import LinconError

if TYPE_CHECKING:  # a mixin of ConstrainedVAE, a keras.Model (Any to the type checker: Keras ships no types)
    from keras import Model as _ModelBase
else:
    _ModelBase = object


class VAESaving(_ModelBase):
    """Mixin of :class:`~keras_lincon.ConstrainedVAE`: ``get_config``/``from_config`` and the 0.1.0 variable layout."""

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
            **({"rhs_input": self.output_constraint.rhs_input} if self.rhs_input else {}),  # absent from older configs
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        encoder = keras.saving.deserialize_keras_object(config.pop("encoder"))
        decoder = keras.saving.deserialize_keras_object(config.pop("decoder"))
        return cls(encoder, decoder, **config)
