"""Checks for the experiments' optional dependencies, before any training starts."""

from __future__ import annotations

import importlib.util

# the package's one class, so ``except keras_lincon.MissingDependencyError`` catches these too
from keras_lincon.errors import MissingDependencyError

__all__ = ["PIP_NAMES", "MissingDependencyError", "require"]

#: import name -> what to pip install for it
PIP_NAMES = {
    "osqp": "osqp",
    "matplotlib": "matplotlib",
    "sklearn": "scikit-learn",
    "tensorflow": "tensorflow-cpu",
    "tensorflow_probability": "tensorflow-probability tf-keras",
}


def require(what: str, *modules: str) -> None:
    """Raises :class:`~keras_lincon.MissingDependencyError` naming the pip packages when a module is missing.

    Finds modules without importing them (``importlib.util.find_spec``), so
    the check is instant even for TensorFlow.
    """
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        packages = " ".join(PIP_NAMES.get(m, m) for m in missing)
        raise MissingDependencyError(f"{what} needs {', '.join(missing)}: pip install {packages}")
