"""Tests of keras_lincon.layers.precision (the TF32 guard)."""

import warnings

import pytest
import tensorflow as tf

import keras_lincon as klc
from keras_lincon.layers import precision


def test_no_warning_on_cpu():
    assert precision.reduced_precision_reason() is None  # CI has no GPU
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        klc.LinearInequalityConstraint([[1.0, -1.0]]).build((None, 3))


def test_warns_once_when_tf32_would_be_used(monkeypatch):
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: ["GPU:0"] if kind == "GPU" else [])
    monkeypatch.setattr(precision, "_warned", False)
    reason = precision.reduced_precision_reason()
    assert reason and "enable_tensor_float_32_execution(False)" in reason
    with pytest.warns(RuntimeWarning, match="TF32"):
        klc.LinearInequalityConstraint([[1.0, -1.0]]).build((None, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # only once per process
        klc.LinearInequalityConstraint([[1.0, -1.0]]).build((None, 3))
    precision.use_exact_float32_matmuls()
    try:
        assert precision.reduced_precision_reason() is None
    finally:
        tf.config.experimental.enable_tensor_float_32_execution(True)
