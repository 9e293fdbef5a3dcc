"""keras_lincon: hard linear inequality constraints on Keras activations.

Implements Frerix, Niessner & Cremers, "Homogeneous Linear Inequality
Constraints for Neural Network Activations" (CVPR-W 2020): outputs are
combinations of precomputed generators of the feasible set, so they satisfy
the constraints at every step without projection.

Importing the package is cheap: the public names below are loaded on first
use (PEP 562), so ``keras-lincon --help`` never imports Keras or TensorFlow.
Saved models still load after a plain ``import keras_lincon``: the Keras
classes are registered with Keras (``register_keras_serializable``) as soon
as Keras is imported — right away when it already is, otherwise by a
one-shot import hook that runs when Keras finishes importing.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import warnings

__version__ = "0.1.0"

from keras_lincon.errors import (  # noqa: E402  (pure Python, cheap)
    ConstraintShapeError,
    ConstraintViolationError,
    DegenerateSetError,
    InfeasibleError,
    LinconError,
    NonFiniteError,
    ProjectionError,
    RepresentationCheckError,
    TooManyGeneratorsError,
)

# public name -> the submodule that defines it (imported on first access)
_LAZY = {
    "LinearInequalityConstraint": "layers",
    "ConstrainedVAE": "models",
    "VRepresentation": "polyhedra",
    "checkerboard": "polyhedra",
    "h_to_v": "polyhedra",
    "max_violation": "polyhedra",
    "monotone_chain": "polyhedra",
}
_SUBMODULES = ("distribute", "errors", "experiments", "layers", "models", "polyhedra", "precision",
               "projection", "serving")

__all__ = [
    "ConstrainedVAE",
    "ConstraintShapeError",
    "ConstraintViolationError",
    "DegenerateSetError",
    "InfeasibleError",
    "LinconError",
    "LinearInequalityConstraint",
    "NonFiniteError",
    "ProjectionError",
    "RepresentationCheckError",
    "TooManyGeneratorsError",
    "VRepresentation",
    "checkerboard",
    "h_to_v",
    "max_violation",
    "monotone_chain",
]


def __getattr__(name: str):
    if name in _LAZY:
        try:
            module = importlib.import_module(f"{__name__}.{_LAZY[name]}")
        except ImportError as exc:
            if name == "ConstrainedVAE":  # e.g. Keras on JAX without TensorFlow
                raise ImportError(f"ConstrainedVAE needs TensorFlow and TensorFlow Probability: {exc}") from exc
            raise
        value = getattr(module, name)
        globals()[name] = value  # later lookups skip __getattr__
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__) | set(_SUBMODULES))


# ------------------------------------------------ registration with Keras

def _register_with_keras() -> None:
    """Imports the modules whose classes carry ``register_keras_serializable``.

    The VAE module needs TensorFlow; it is registered only on the TensorFlow
    backend (the only one it runs on), so a JAX or torch user does not pay
    for a TensorFlow import. Never raises: a failure here must not break the
    user's ``import keras``; it is reported as a warning instead.
    """
    try:
        importlib.import_module(f"{__name__}.layers")
        import keras

        if keras.backend.backend() == "tensorflow" and importlib.util.find_spec("tensorflow") is not None:
            importlib.import_module(f"{__name__}.models")
    except Exception as exc:  # noqa: BLE001  (see docstring)
        warnings.warn(f"keras_lincon could not register its Keras classes ({exc!r}); "
                      "import keras_lincon.layers / keras_lincon.models before loading a saved model.",
                      RuntimeWarning, stacklevel=2)


class _RegisterWhenKerasLoads:
    """A one-shot ``sys.meta_path`` finder: after the ``keras`` module executes, register our classes.

    It finds nothing itself; it asks the remaining finders for ``keras``'s
    spec and wraps that loader's ``exec_module`` (instance attribute, removed
    after the first call), so ``keras`` is loaded exactly as it would be.
    """

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "keras":
            return None
        _remove_hook()
        spec = importlib.util.find_spec(fullname)
        loader = getattr(spec, "loader", None)
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        original = loader.exec_module

        def exec_module(module):
            try:
                original(module)
            finally:
                del loader.exec_module  # back to the loader's own method
            _register_with_keras()

        loader.exec_module = exec_module
        return spec


def _remove_hook() -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if not type(f).__name__ == "_RegisterWhenKerasLoads"]


if "keras" in sys.modules:
    _register_with_keras()
elif not any(type(f).__name__ == "_RegisterWhenKerasLoads" for f in sys.meta_path):
    sys.meta_path.insert(0, _RegisterWhenKerasLoads())
