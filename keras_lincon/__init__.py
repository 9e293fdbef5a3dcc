"""keras_lincon: hard linear inequality constraints on Keras activations.

Implements Frerix, Niessner & Cremers, "Homogeneous Linear Inequality
Constraints for Neural Network Activations" (CVPR-W 2020): outputs are
combinations of precomputed generators of the feasible set, so they satisfy
the constraints at every step without projection.
"""

__version__ = "0.1.0"

from keras_lincon.errors import (
    ConstraintShapeError,
    ConstructionTimeoutError,
    ConstraintViolationError,
    DegenerateSetError,
    GeneratorExplosionError,
    GeneratorMismatchError,
    InfeasibleError,
    LinconError,
    MissingDependencyError,
    NoStrictInteriorError,
    NonFiniteError,
    ProjectionError,
    RepresentationCheckError,
    TooManyGeneratorsError,
)
from keras_lincon.layers import LinearInequalityConstraint, verify_generators
from keras_lincon.scaled_layer import ScaledRowsConstraint, ScaledRowsWarning  # registers it for load_model
from keras_lincon.polyhedra import (
    VRepresentation,
    checkerboard,
    h_to_v,
    max_violation,
    monotone_chain,
)

try:  # ConstrainedVAE needs TensorFlow; the core and the layer do not.
    from keras_lincon.models import ConstrainedVAE
except ImportError as _exc:  # e.g. Keras on JAX without TensorFlow
    _models_import_error = _exc

    def __getattr__(name):
        if name == "ConstrainedVAE":
            raise ImportError(
                f"ConstrainedVAE needs TensorFlow and TensorFlow Probability: {_models_import_error}"
            )
        raise AttributeError(f"module 'keras_lincon' has no attribute {name!r}")
