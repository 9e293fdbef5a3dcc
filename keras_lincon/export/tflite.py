"""TensorFlow Lite export that keeps the constraint layer's outputs feasible.

TensorFlow only (the converter consumes a TensorFlow graph); on another
Keras backend :func:`export_tflite` raises a :class:`~keras_lincon.LinconError`.

What stays exact (see docs/deploy.md for how each was measured):

* float32 TFLite (the default here): the layer's matrix products, softmax and
  box scaling run in float32, so outputs satisfy the layer's stated relative
  tolerance (1e-5) as they do in Keras.
* TFLite's optimizations (``tf.lite.Optimize.DEFAULT``, dynamic-range
  quantization) store every constant of at least 1024 elements as int8 —
  including the layer's fixed generator matrices. The outputs are then
  combinations of slightly wrong generators and leave the feasible set:
  measured (tests/test_tflite.py's setup: Dense(32, tanh) before the layer,
  1000 inputs) on a monotone chain of 32 outputs, 91 of 1000 outputs
  violated the constraints beyond the tolerance (worst relative violation
  1.1e-3); on the 28x28 checkerboard with box, 45 of 1000 (2.0e-3). Small
  layers (a 5-output chain, the 8x8 checkerboard) stayed feasible only
  because their generator tensors are under the 1024-element threshold. So requesting optimizations
  is refused unless ``allow_infeasible=True`` (then a warning).
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import keras
import numpy as np

from keras_lincon._backend import require_tensorflow
from keras_lincon.errors import ConstraintViolationError, LinconError
from keras_lincon.layers import FLOAT32_TOLERANCE, LinearInequalityConstraint

#: Relative difference (to the output scale) between TFLite and Keras above
#: which the float32 conversion counts as broken.
CONVERSION_TOLERANCE = 1e-4

_QUANTIZED_REFUSAL = (
    "TFLite optimizations quantize constant tensors of 1024 or more elements to int8, the "
    "constraint layer's generator matrices included, so outputs leave the feasible set "
    "(measured: monotone chain of 32 outputs, 91 of 1000 outputs infeasible, worst relative "
    "violation 1.1e-3). Export float32 (optimizations=None, the default), or pass "
    "allow_infeasible=True if downstream code tolerates or repairs violations."
)
_QUANTIZED_WARNING = (
    "export_tflite: optimizations requested with allow_infeasible=True; outputs of the "
    "constraint layer are NOT guaranteed feasible (quantized generators)."
)


def _input_spec(model: keras.Model, tf):
    """The (None, ...) float TensorSpec of the model's single input."""
    if getattr(model, "rhs_input", False):  # a ConstrainedVAE whose b_s is an input
        raise LinconError(
            "export_tflite supports models with one input; this ConstrainedVAE also takes b_s (rhs_input=True). "
            "Export it with keras_lincon.export.serving.export_for_serving, whose signatures take rhs."
        )
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        inputs = None
    if inputs:
        if len(inputs) != 1:
            raise LinconError("export_tflite supports models with one input; pass input_signature=[...].")
        return tf.TensorSpec(tuple(inputs[0].shape), inputs[0].dtype)
    shape = getattr(model, "sample_input_shape", None)  # ConstrainedVAE
    if shape is None:
        raise LinconError(
            "export_tflite needs the model's input shape: start the model with keras.Input(shape) "
            "or pass input_signature=[tf.TensorSpec((None, ...), tf.float32)]."
        )
    return tf.TensorSpec((None,) + tuple(shape), tf.float32)


def _output_constraint(model) -> LinearInequalityConstraint | None:
    """The constraint layer whose output is the model's output, if it is one."""
    layer = getattr(model, "output_constraint", None)  # ConstrainedVAE (output reshaped only)
    if isinstance(layer, LinearInequalityConstraint):
        return layer
    layers = getattr(model, "layers", None)
    if layers and isinstance(layers[-1], LinearInequalityConstraint):
        return layers[-1]
    return None


def _interpreter(blob: bytes, tf):
    try:  # the maintained runtime, if installed
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter(model_content=blob)
    except ImportError:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice
            return tf.lite.Interpreter(model_content=blob)


def run_tflite(model_content: bytes | str | os.PathLike, x: np.ndarray) -> np.ndarray:
    """Runs a single-input, single-output TFLite model on a batch.

    Args:
        model_content: the flatbuffer bytes or a path to a ``.tflite`` file.
        x: (batch, ...) inputs, converted to the model's input dtype.

    Returns:
        (batch, ...) outputs as numpy.
    """
    tf = require_tensorflow("run_tflite")
    if not isinstance(model_content, bytes):
        model_content = Path(model_content).read_bytes()
    interpreter = _interpreter(model_content, tf)
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    x = np.asarray(x, dtype=inp["dtype"])
    interpreter.resize_tensor_input(inp["index"], x.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(inp["index"], x)
    interpreter.invoke()
    return np.array(interpreter.get_tensor(out["index"]))


def _verify(model, blob: bytes, spec, tf, samples: int) -> None:
    """Compares TFLite with Keras on random inputs; checks feasibility of a constrained output."""
    if not spec.dtype.is_floating:
        return
    shape = [samples] + [1 if d is None else d for d in spec.shape.as_list()[1:]]
    x = np.random.default_rng(0).standard_normal(shape).astype(spec.dtype.as_numpy_dtype)
    expected = keras.ops.convert_to_numpy(model(x, training=False))
    actual = run_tflite(blob, x)
    scale = max(1.0, float(np.abs(expected).max()))
    diff = float(np.abs(actual.reshape(expected.shape) - expected).max())
    if not diff <= CONVERSION_TOLERANCE * scale:
        raise LinconError(
            f"the TFLite model's outputs differ from the Keras model's by {diff:.3g} (output scale "
            f"{scale:.3g}); the conversion changed the network. Please report this with the model."
        )
    layer = _output_constraint(model)
    if layer is not None:
        worst = layer.max_violation(actual.reshape(samples, -1), relative=True)
        if worst > FLOAT32_TOLERANCE:
            raise ConstraintViolationError(
                f"the TFLite model's outputs violate the constraints (worst relative violation "
                f"{worst:.3g} > {FLOAT32_TOLERANCE:g}); do not deploy it."
            )


def export_tflite(
    model: keras.Model,
    path: str | os.PathLike,
    *,
    optimizations: Iterable | None = None,
    allow_infeasible: bool = False,
    input_signature: Sequence | None = None,
    verify_samples: int = 256,
) -> Path:
    """Writes ``model`` as a TensorFlow Lite flatbuffer whose outputs stay feasible.

    Converted with TFLite's builtin ops only (no Flex delegate), with a dynamic
    batch size. The file then runs on ``verify_samples`` standard-normal inputs:
    it must match the Keras model (within 1e-4 of the output scale) and, when the
    model ends in a :class:`~keras_lincon.LinearInequalityConstraint` (or is a
    :class:`~keras_lincon.ConstrainedVAE`), satisfy the layer's tolerance.

    Args:
        model: a built model with one input, ``(batch, ...)`` floats -> ``(batch, ...)``
            (e.g. a Sequential ending in the layer; a ConstrainedVAE exports its reconstruction).
        path: output file (``*.tflite``); parent folders are created.
        optimizations: TFLite ``converter.optimizations`` (e.g. ``[tf.lite.Optimize.DEFAULT]``);
            they quantize the generator matrices and break feasibility, so they are
            refused unless ``allow_infeasible=True`` (then a warning, and no check).
        allow_infeasible: see ``optimizations``.
        input_signature: ``[tf.TensorSpec((None, ...), tf.float32)]`` for a model without ``keras.Input``.
        verify_samples: batch size of the check after conversion; 0 skips it.

    Returns:
        The written path.

    Raises:
        LinconError: another backend, an unbuilt model, several inputs, optimizations
            without ``allow_infeasible``, or a conversion that changed the outputs.
        ConstraintViolationError: the converted model's outputs are infeasible.

    Example:
        >>> import keras, numpy as np, tempfile, keras_lincon as klc
        >>> from keras_lincon.export import export_tflite, run_tflite
        >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4),
        ...                           klc.LinearInequalityConstraint(klc.monotone_chain(4))])
        >>> path = export_tflite(model, tempfile.mkdtemp() + "/chain.tflite")
        >>> y = run_tflite(path, np.ones((5, 3)))  # (5, 4), each row increasing
        >>> bool(np.all(np.diff(y, axis=1) >= -1e-5))
        True
    """
    tf = require_tensorflow("export_tflite")
    optimizations = _checked_optimizations(optimizations, allow_infeasible)
    _check_model(model, verify_samples)
    spec = _signature_spec(model, input_signature, tf)
    blob = _convert(model, spec, optimizations, tf)
    if optimizations:
        warnings.warn(_QUANTIZED_WARNING, RuntimeWarning, stacklevel=2)
    elif verify_samples:
        _verify(model, blob, spec, tf, verify_samples)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(blob)
    return path


def _checked_optimizations(optimizations, allow_infeasible: bool) -> list:
    """``optimizations`` as a list (a single ``tf.lite.Optimize`` member becomes one); refused unless allowed."""
    if optimizations is None:
        optimizations = []
    elif isinstance(optimizations, (list, tuple, set, frozenset)):
        optimizations = list(optimizations)
    else:  # a single tf.lite.Optimize member
        optimizations = [optimizations]
    if optimizations and not allow_infeasible:
        raise LinconError(_QUANTIZED_REFUSAL)
    return optimizations


def _check_model(model: keras.Model, verify_samples) -> None:
    if not model.built:
        raise LinconError("build the model (call it once or fit it) before exporting.")
    if not isinstance(verify_samples, int) or verify_samples < 0:
        raise LinconError(f"verify_samples must be a non-negative int; got {verify_samples!r}.")


def _signature_spec(model: keras.Model, input_signature: Sequence | None, tf):
    """The TensorSpec of the one input: the given one, else the model's."""
    if input_signature is None:
        return _input_spec(model, tf)
    if len(input_signature) != 1:
        raise LinconError("export_tflite supports models with one input: pass one TensorSpec.")
    return input_signature[0]


def _convert(model: keras.Model, spec, optimizations: list, tf) -> bytes:
    """The TFLite flatbuffer of ``model`` on ``spec``, builtin ops only (through a temporary SavedModel)."""
    with tempfile.TemporaryDirectory() as saved_model_dir:
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint("serve", lambda x: model(x, training=False), input_signature=[spec])
        archive.write_out(saved_model_dir, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if optimizations:
            converter.optimizations = optimizations
        try:
            return converter.convert()
        except Exception as exc:  # converter errors are long MLIR dumps
            raise LinconError(
                f"TFLite could not convert the model with builtin ops ({type(exc).__name__}: "
                f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}). Export a SavedModel "
                "(keras_lincon.export.serving.export_for_serving) or ONNX (model.export(path, format='onnx')) instead."
            ) from exc
