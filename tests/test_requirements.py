"""Tests of the package's requirement checks: the one TensorFlow check (keras_lincon._backend) and the one
MissingDependencyError (keras_lincon.errors), also raised by the experiments' checks (experiments._deps)."""

import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_lincon as klc
from keras_lincon._backend import require_tensorflow
from keras_lincon.experiments import _deps


def test_tensorflow_backend_gets_the_module():
    assert require_tensorflow("anything") is tf


def small_model():
    return keras.Sequential([keras.Input((3,)), klc.LinearInequalityConstraint(klc.monotone_chain(3))])


TF_ONLY = {
    "ConstrainedVAE": lambda: klc.ConstrainedVAE(keras.layers.Dense(4), keras.layers.Dense(4), latent_dim=2),
    "TFP prior": lambda: klc.LatentPrior(2),
    "fit_distributed": lambda: klc.fit_distributed(small_model(), None),
    "export_for_serving": lambda: klc.export_for_serving(small_model(), "/nonexistent"),
    "export_tflite": lambda: klc.export_tflite(small_model(), "/nonexistent.tflite"),
    "run_tflite": lambda: klc.export.tflite.run_tflite(b"", np.zeros((1, 3))),
}


@pytest.mark.parametrize("feature", sorted(TF_ONLY))
def test_every_tensorflow_feature_fails_the_same_way_elsewhere(feature, monkeypatch):
    call = TF_ONLY[feature]
    monkeypatch.setattr(keras.backend, "backend", lambda: "torch")
    with pytest.raises(klc.LinconError) as info:
        call()
    message = str(info.value)
    assert feature in message
    assert "needs Keras's TensorFlow backend (supported: ['tensorflow'])" in message
    assert "Keras runs on 'torch'" in message and "KERAS_BACKEND=tensorflow" in message


def test_missing_tensorflow_is_a_missing_dependency(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # `import tensorflow` now fails
    with pytest.raises(klc.MissingDependencyError, match="export_for_serving needs TensorFlow: pip install"):
        require_tensorflow("export_for_serving")


def test_missing_tfp_is_a_missing_dependency(monkeypatch):
    from keras_lincon.models.latent_prior import tfp_distributions

    monkeypatch.setitem(sys.modules, "tensorflow_probability", None)
    with pytest.raises(klc.MissingDependencyError, match="pip install 'keras-lincon\\[probability\\]'"):
        tfp_distributions()


def test_experiments_missing_dependency_is_the_package_error():
    assert _deps.MissingDependencyError is klc.MissingDependencyError
    try:
        _deps.require("the study", "json", "no_such_module_lincon")
    except klc.MissingDependencyError as exc:  # what a user of the package catches
        assert "the study needs no_such_module_lincon: pip install no_such_module_lincon" in str(exc)
        assert isinstance(exc, ImportError) and isinstance(exc, klc.LinconError)
    else:
        pytest.fail("require did not raise")


def test_experiments_name_the_pip_package(monkeypatch):
    real = _deps.importlib.util.find_spec
    monkeypatch.setattr(_deps.importlib.util, "find_spec", lambda name, *a: None if name == "sklearn" else real(name))
    with pytest.raises(klc.MissingDependencyError, match="needs sklearn: pip install scikit-learn$"):
        _deps.require("plots", "sklearn")
