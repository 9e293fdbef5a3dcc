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

__version__ = "0.2.0rc1"

from keras_lincon import compat  # noqa: E402  (pure Python, cheap)
from keras_lincon.errors import (  # noqa: E402  (pure Python, cheap)
    ConstraintShapeError,
    ConstraintViolationError,
    ConstructionTimeoutError,
    DegenerateSetError,
    GeneratorExplosionError,
    GeneratorMismatchError,
    InfeasibleError,
    LinconError,
    MissingDependencyError,
    NonFiniteError,
    NoStrictInteriorError,
    ProjectionError,
    RepresentationCheckError,
    ScaledRowsWarning,
    TooManyGeneratorsError,
)

# public name -> the module that defines it (imported on first access)
_LAZY = {
    "LinearInequalityConstraint": "layers",
    "ScaledRowsConstraint": "compat.scaled_rows_constraint",
    "verify_generators": "layers",
    "ConstraintViolation": "layers",
    "ConstrainedVAE": "models.constrained_vae",
    "LatentPrior": "models.latent_prior",
    "fit_distributed": "models.distribute",
    "export_for_serving": "export.serving",
    "export_tflite": "export.tflite",
    "VRepresentation": "geometry",
    "checkerboard": "geometry",
    "h_to_v": "geometry",
    "max_violation": "geometry",
    "monotone_chain": "geometry",
}
# the subpackages, in the order data flows through them
_SUBPACKAGES = ("geometry", "planning", "layers", "models", "export", "baselines", "experiments", "compat")

__all__ = [
    "ConstrainedVAE",
    "ConstraintShapeError",
    "ConstraintViolation",
    "ConstraintViolationError",
    "ConstructionTimeoutError",
    "DegenerateSetError",
    "GeneratorExplosionError",
    "GeneratorMismatchError",
    "InfeasibleError",
    "LatentPrior",
    "LinconError",
    "LinearInequalityConstraint",
    "MissingDependencyError",
    "NoStrictInteriorError",
    "NonFiniteError",
    "ProjectionError",
    "RepresentationCheckError",
    "ScaledRowsConstraint",
    "ScaledRowsWarning",
    "TooManyGeneratorsError",
    "VRepresentation",
    "checkerboard",
    "export_for_serving",
    "export_tflite",
    "fit_distributed",
    "h_to_v",
    "max_violation",
    "monotone_chain",
    "verify_generators",
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
    if name in _SUBPACKAGES or name in ("errors", "cli") or name in compat.MOVED_MODULES:
        return importlib.import_module(f"{__name__}.{name}")  # a moved module warns (keras_lincon.compat)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__) | set(_SUBPACKAGES))


# ------------------------------------------------ registration with Keras
#
# Keras finds a saved custom class only through its registry (it imports
# modules by name only for keras/keras_hub/...), so the modules whose classes
# carry ``register_keras_serializable`` must run before any load. They need
# Keras, so they run right after Keras is imported: a one-shot finder wraps
# the loaders of ``keras`` and of ``keras_lincon.layers``. The layers module
# itself may be what imports Keras first; then the VAE module (which imports
# from it) waits until the layers module has finished executing.

_LAYERS = f"{__name__}.layers"


def _warn_registration(exc: BaseException) -> None:
    warnings.warn(
        f"keras_lincon could not register its Keras classes ({exc!r}); "
        "import keras_lincon.layers and keras_lincon.models before loading a saved model.",
        RuntimeWarning,
        stacklevel=3,
    )


def _initializing(name: str) -> bool:
    spec = getattr(sys.modules.get(name), "__spec__", None)
    return bool(getattr(spec, "_initializing", False))


def _register_models() -> None:
    """Imports the modules that build on the layers module: the deprecated scaled-rows alias, the metric,
    and the VAE module only on the TensorFlow backend (the only one it runs on)."""
    try:
        import keras

        importlib.import_module(f"{__name__}.scaled_layer")
        importlib.import_module(f"{__name__}.metrics")
        if keras.backend.backend() == "tensorflow" and importlib.util.find_spec("tensorflow") is not None:
            importlib.import_module(f"{__name__}.models")
    except Exception as exc:  # noqa: BLE001  (must not break the user's import)
        _warn_registration(exc)


def _register_with_keras() -> None:
    """Runs once Keras is importable: imports the layers module (and through it the VAE module)."""
    if _initializing(_LAYERS):
        return  # the layers module is importing Keras; its own loader hook registers the rest
    try:
        importlib.import_module(_LAYERS)
    except Exception as exc:  # noqa: BLE001  (must not break the user's import)
        _warn_registration(exc)
        return
    _register_models()  # a no-op when the layers hook already did it
    if _FINDER.pending.pop(_LAYERS, None) is not None and not _FINDER.pending:
        _remove_hook()


class _RegisterOnImport:
    """A ``sys.meta_path`` finder that finds nothing itself: it asks the other finders for the
    spec of ``keras`` / ``keras_lincon.layers`` and wraps that loader's ``exec_module``
    (instance attribute, removed after the call) to register our classes once the module
    has executed. A spec that is only looked up (TensorFlow calls ``find_spec("keras")``
    to locate files) and never executed consumes nothing."""

    def __init__(self):
        self.pending = {"keras": _register_with_keras, _LAYERS: _register_models}
        self._finding = set()

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in self.pending or fullname in self._finding:
            return None
        self._finding.add(fullname)
        try:
            spec = importlib.util.find_spec(fullname)  # the other finders (this one returns None)
        finally:
            self._finding.discard(fullname)
        loader = getattr(spec, "loader", None)
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        original = loader.exec_module

        def exec_module(module):
            try:
                original(module)
            finally:
                del loader.exec_module  # back to the loader's own method
            after = self.pending.pop(fullname, None)
            if not self.pending:
                _remove_hook()
            if after is not None:
                after()

        loader.exec_module = exec_module
        return spec


def _remove_hook() -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if type(f).__name__ != "_RegisterOnImport"]


compat.install()
_remove_hook()  # a re-import (importlib.reload) replaces an older finder
_FINDER = _RegisterOnImport()
if _LAYERS in sys.modules:
    _FINDER.pending.pop(_LAYERS)
if "keras" in sys.modules:
    _FINDER.pending.pop("keras")
    _register_with_keras()
if _FINDER.pending:
    sys.meta_path.insert(0, _FINDER)
