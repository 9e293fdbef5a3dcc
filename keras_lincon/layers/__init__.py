"""The Keras layer and what runs with it (``keras.ops`` only: TensorFlow, JAX and torch).

:mod:`.linear_inequality_constraint` holds the layer's Keras life cycle; it
reads a :class:`~keras_lincon.planning.layer_plan.LayerPlan` and runs, in
``call``, the kernels in data-flow order: :mod:`.generator_kernel` (features
to a point of the generator rows' set), :mod:`.output_stages` (to the
output: :mod:`.scaled_kernel`, :mod:`.coupled_kernel` with
:mod:`.coupled_solver`, :mod:`.segments`). :mod:`.layer_weights` creates the
weights, :mod:`.generator_guard` (with :mod:`.fingerprints`) checks every
write of them, :mod:`.constraint_checks` checks outputs,
:mod:`.constraint_violation` is the metric, :mod:`.backend_ops` keeps float64
off TensorFlow and :mod:`.precision` guards against TF32.
"""

from keras_lincon.layers.constraint_checks import FLOAT32_TOLERANCE
from keras_lincon.layers.constraint_violation import ConstraintViolation
from keras_lincon.layers.generator_guard import verify_generators
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
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
