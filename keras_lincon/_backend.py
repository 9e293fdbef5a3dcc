"""One check for the TensorFlow-only features (SavedModel export, tf.distribute training)."""

from __future__ import annotations

from keras_lincon.errors import LinconError


def require_tensorflow(feature: str):
    """Returns the ``tensorflow`` module, or raises a clear :class:`LinconError`.

    ``feature`` names what needs TensorFlow (e.g. ``"export_for_serving"``).
    Raised when Keras runs on another backend (the model's variables would be
    JAX or torch arrays, which TensorFlow cannot trace) or when TensorFlow is
    not installed.
    """
    import keras

    backend = keras.backend.backend()
    if backend != "tensorflow":
        raise LinconError(
            f"{feature} needs Keras's TensorFlow backend; this process runs Keras on {backend!r}. "
            "Set KERAS_BACKEND=tensorflow before Python starts (the layer itself works on every backend; "
            "a .keras file saved here loads there)."
        )
    try:
        import tensorflow as tf
    except ImportError:
        raise LinconError(f"{feature} needs TensorFlow: pip install tensorflow-cpu (or tensorflow).") from None
    return tf
