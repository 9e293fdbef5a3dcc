"""The Keras layer and what runs with it (``keras.ops`` only: TensorFlow, JAX and torch).

:mod:`.linear_inequality_constraint` holds the layer, :mod:`.kernels` its
arithmetic, :mod:`.constraint_checks` its checks, :mod:`.backend_ops` the ops
that keep float64, :mod:`.constraint_violation` the metric and
:mod:`.precision` the TF32 guard.
"""

from keras_lincon.layers.constraint_checks import FLOAT32_TOLERANCE, verify_generators
from keras_lincon.layers.constraint_violation import ConstraintViolation
from keras_lincon.layers.linear_inequality_constraint import (
    CALL_MODES,
    SCALINGS,
    LinearInequalityConstraint,
)

__all__ = [
    "CALL_MODES",
    "FLOAT32_TOLERANCE",
    "SCALINGS",
    "ConstraintViolation",
    "LinearInequalityConstraint",
    "verify_generators",
]


def __getattr__(name: str):
    if name == "BOX_SCALINGS":  # deprecated alias (see keras_lincon.compat)
        return SCALINGS
    if name == "ScaledRowsConstraint":
        from keras_lincon.compat.scaled_rows_constraint import ScaledRowsConstraint

        return ScaledRowsConstraint
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
