"""The one check for the TensorFlow-only features (ConstrainedVAE, SavedModel/TFLite export, tf.distribute).

Every feature that needs Keras's TensorFlow backend calls :func:`require_tensorflow`
first, so they all fail the same way, early and with the fix. Importing this
module is cheap (Keras is imported only when the check runs).
"""

from __future__ import annotations

from keras_lincon.errors import LinconError, MissingDependencyError

#: Keras backends on which the TensorFlow-only features run.
SUPPORTED_BACKENDS = ("tensorflow",)


def require_tensorflow(feature: str):
    """Returns the ``tensorflow`` module, or raises a clear error naming ``feature`` and the fix.

    Args:
        feature: what needs TensorFlow, e.g. ``"export_for_serving"``.

    Returns:
        The imported ``tensorflow`` module.

    Raises:
        LinconError: Keras runs on another backend (the model's variables
            would be JAX or torch arrays, which TensorFlow cannot trace).
        MissingDependencyError: TensorFlow is not installed (also an ``ImportError``).

    Example:
        >>> from keras_lincon._backend import require_tensorflow
        >>> require_tensorflow("export_for_serving").__name__  # on the TensorFlow backend
        'tensorflow'
    """
    import keras

    backend = keras.backend.backend()
    if backend not in SUPPORTED_BACKENDS:
        raise LinconError(
            f"{feature} needs Keras's TensorFlow backend (supported: {list(SUPPORTED_BACKENDS)}); this Keras "
            f"runs on {backend!r}. Set KERAS_BACKEND=tensorflow before Python starts (the "
            "LinearInequalityConstraint layer itself works on every backend; a .keras file saved here loads there)."
        )
    try:
        import tensorflow as tf
    except ImportError:
        raise MissingDependencyError(
            f"{feature} needs TensorFlow: pip install tensorflow-cpu (or tensorflow)."
        ) from None
    return tf
