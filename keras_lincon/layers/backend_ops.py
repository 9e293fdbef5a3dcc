"""``keras.ops`` that keep float64 on every backend.

Keras's type promotion turns float64 into float32 on every backend but
TensorFlow (it follows JAX without x64), so ``ops.matmul``, ``ops.maximum``
and ``ops.minimum`` of two float64 tensors compute and return float32 on
torch (measured on Keras 3.15). The layer's kernels
(the kernels of :mod:`keras_lincon.layers`) call
these instead, so a float64 layer stays exact there too; other ops
(``einsum``, ``where``, ``clip``, ``solve``, reductions) keep the dtype.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops


def _float64_off_tensorflow(a) -> bool:
    return keras.backend.backend() != "tensorflow" and keras.backend.standardize_dtype(a.dtype) == "float64"


def matmul(a, b):
    """``a @ b`` over the last axis of ``a`` ((..., i) times (i, j)), in the inputs' dtype."""
    if _float64_off_tensorflow(a):
        return ops.einsum("...i,ij->...j", a, b)
    return ops.matmul(a, b)


def maximum(a, b):
    """``ops.maximum(a, b)`` in ``a``'s dtype (``a`` a tensor; NaN in ``a`` propagates)."""
    if _float64_off_tensorflow(a):
        return ops.where(ops.logical_or(a >= b, ops.isnan(a)), a, ops.cast(b, a.dtype) + ops.zeros_like(a))
    return ops.maximum(a, b)


def minimum(a, b):
    """``ops.minimum(a, b)`` in ``a``'s dtype (``a`` a tensor; NaN in ``a`` propagates)."""
    if _float64_off_tensorflow(a):
        return ops.where(ops.logical_or(a <= b, ops.isnan(a)), a, ops.cast(b, a.dtype) + ops.zeros_like(a))
    return ops.minimum(a, b)


def constant(a, dtype):
    """A numpy constant as a tensor of ``dtype``, rounded once from float64 (so float64 layers
    keep every digit of their planned constants; float32 ones round them as before)."""
    return ops.convert_to_tensor(np.asarray(a, dtype=keras.backend.standardize_dtype(dtype)), dtype=dtype)
