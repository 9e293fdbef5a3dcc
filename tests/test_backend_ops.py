"""keras_lincon.layers.backend_ops: the same values as numpy, in the inputs' dtype (other backends: test_backends)."""

import keras
import numpy as np
import pytest

from keras_lincon.layers import backend_ops


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_values_and_dtype(dtype):
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(4, 3)), rng.normal(size=(3, 2))
    a[0, 0] = np.nan
    ta, tb = backend_ops.constant(a, dtype), backend_ops.constant(b, dtype)
    tol = 1e-6 if dtype == "float32" else 1e-15
    for got, want in (
        (backend_ops.matmul(ta, tb), a @ b),
        (backend_ops.maximum(ta, 0.5), np.maximum(a, 0.5)),
        (backend_ops.minimum(ta, 0.5), np.minimum(a, 0.5)),
    ):
        assert keras.backend.standardize_dtype(got.dtype) == dtype
        np.testing.assert_allclose(keras.ops.convert_to_numpy(got), want, rtol=tol, atol=tol)  # NaN where numpy's
