"""Float32 matmul precision on GPUs, which the tolerance guarantee needs.

On GPUs with TF32 tensor cores (NVIDIA A100, H100, ...), TensorFlow and JAX
by default round the inputs of float32 matrix products to a 10-bit mantissa.
That error is as large as bfloat16's for this purpose: measured on an H100
with Keras on JAX, the checkerboard layer's worst relative violation was
6.9e-5 with the default precision and 1.8e-8 with ``highest`` (see
BENCHMARKS.md). :func:`use_exact_float32_matmuls` switches true float32 on
for the active backend; the layer warns once when it is off on a GPU.
"""

from __future__ import annotations

import warnings

import keras

_warned = False


def reduced_precision_reason() -> str | None:
    """Why float32 matmuls may run in TF32 here, with the fix; None if they don't."""
    backend = keras.config.backend()
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            if tf.config.list_physical_devices("GPU") and tf.config.experimental.tensor_float_32_execution_enabled():
                return (
                    "TensorFlow runs float32 matmuls on this GPU in TF32; call "
                    "keras_lincon.layers.precision.use_exact_float32_matmuls() or "
                    "tf.config.experimental.enable_tensor_float_32_execution(False)"
                )
        elif backend == "jax":
            import jax

            if jax.default_backend() == "gpu" and getattr(jax.config, "jax_default_matmul_precision", None) not in (
                "highest",
                "float32",
            ):
                return (
                    "JAX runs float32 matmuls on this GPU in TF32 by default; call "
                    "keras_lincon.layers.precision.use_exact_float32_matmuls() or "
                    "jax.config.update('jax_default_matmul_precision', 'highest')"
                )
        elif backend == "torch":
            import torch

            if torch.cuda.is_available() and torch.backends.cuda.matmul.allow_tf32:
                return (
                    "PyTorch allows TF32 matmuls; call keras_lincon.layers.precision.use_exact_float32_matmuls() "
                    "or set torch.backends.cuda.matmul.allow_tf32 = False"
                )
    except ImportError:
        return None
    return None


def use_exact_float32_matmuls() -> None:
    """Makes float32 matrix products run in true float32 on the active backend."""
    backend = keras.config.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_tensor_float_32_execution(False)
    elif backend == "jax":
        import jax

        jax.config.update("jax_default_matmul_precision", "highest")
    elif backend == "torch":
        import torch

        torch.backends.cuda.matmul.allow_tf32 = False


def warn_if_reduced_precision() -> None:
    """Warns once per process when float32 matmuls would run in TF32."""
    global _warned
    if _warned:
        return
    reason = reduced_precision_reason()
    if reason:
        _warned = True
        warnings.warn(
            f"LinearInequalityConstraint: {reason}. TF32 rounding can violate the constraints "
            "by about 1e-4 (relative); the stated 1e-5 tolerance assumes float32.",
            RuntimeWarning,
            stacklevel=3,
        )
