"""Projection baselines the layer is compared with: OSQP per sample and a batched ADMM layer."""

from keras_lincon.baselines.projection import ADMMProjection, OSQPProjector, projection_error

__all__ = ["ADMMProjection", "OSQPProjector", "projection_error"]
