"""SavedModel export in TF Serving's layout, with stable named signatures.

``export_for_serving(model, "serving/lincon")`` writes
``serving/lincon/<version>/saved_model.pb`` and ``variables/``, which the
stock ``tensorflow_model_server`` loads with
``--model_base_path=$PWD/serving/lincon``. The graph holds only standard
TensorFlow ops (the constraint layer is matrix products, softmax and
elementwise maps), so neither keras_lincon nor Keras is needed to serve it.

Signatures:

* any Keras model: ``serving_default``: ``{<input name>: (batch, ...)}`` ->
  ``{"outputs": (batch, ...)}``; the input names are the ``keras.Input``
  names (a model with several inputs, e.g. features and the ``b_s`` of a
  layer with ``rhs_input``, gets one signature input per ``keras.Input``).
* :class:`~keras_lincon.ConstrainedVAE`: ``serving_default`` (``inputs`` ->
  ``reconstruction``), ``decode`` (``codes`` -> ``outputs``) and ``sample``
  (``num_samples``, ``seed`` int32 scalars -> ``samples``). ``sample``
  refuses ``num_samples`` outside ``[1, max_samples]`` with an
  ``InvalidArgument`` error, so one request cannot exhaust the server's memory.
  A VAE with ``rhs_input`` takes ``rhs`` in each: (batch, m_in) beside
  ``inputs`` and ``codes``, and (m_in,), shared by all samples, in ``sample``.
* with ``xla=True``, each endpoint also as ``<name>_xla``, its network
  compiled with XLA (``jit_compile=True``); the default endpoints stay
  portable. The VAE's random codes are drawn outside XLA, so ``sample`` and
  ``sample_xla`` agree for a seed.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import keras

from keras_lincon._backend import require_tensorflow
from keras_lincon.errors import LinconError
from keras_lincon.layers import verify_generators

#: Default bound on ``num_samples`` of an exported VAE's ``sample`` signature.
DEFAULT_MAX_SAMPLES = 1024

_NAME = re.compile(r"[^A-Za-z0-9_]")


def _input_name(name: str) -> str:
    clean = _NAME.sub("_", name.split(":")[0]) or "inputs"
    return clean if clean[0].isalpha() else f"x_{clean}"


def _endpoints(model: keras.Model, xla: bool, max_samples: int):
    """name -> (tf.function, input signature); with ``xla`` the compute-heavy part is compiled."""
    import tensorflow as tf

    from keras_lincon.models import ConstrainedVAE

    suffix = "_xla" if xla else ""
    if isinstance(model, ConstrainedVAE):
        x_spec = tf.TensorSpec((None,) + model.sample_input_shape, tf.float32, name="inputs")
        z_spec = tf.TensorSpec((None, model.code_dim), tf.float32, name="codes")
        n_spec = tf.TensorSpec((), tf.int32, name="num_samples")
        s_spec = tf.TensorSpec((), tf.int32, name="seed")
        # Random codes are drawn outside XLA, so "sample" and "sample_xla"
        # give the same samples for a seed (XLA's RNG differs from TF's).
        decode = tf.function(model.decode, jit_compile=True) if xla else model.decode
        reconstruct = tf.function(lambda x: model(x, training=False), jit_compile=xla)
        if model.rhs_input:  # each signature also takes the right-hand sides b_s
            return _endpoints_with_rhs(model, xla, max_samples, (x_spec, z_spec, n_spec, s_spec), decode, reconstruct)

        def sample(num_samples, seed):
            u = model.prior_sample(_checked_count(num_samples, max_samples), tf.stack([seed, tf.constant(0, tf.int32)]))
            return {"samples": decode(model.code(u))}

        return {
            f"serving_default{suffix}": (tf.function(lambda inputs: {"reconstruction": reconstruct(inputs)}), [x_spec]),
            f"decode{suffix}": (tf.function(lambda codes: {"outputs": decode(codes)}), [z_spec]),
            f"sample{suffix}": (tf.function(sample), [n_spec, s_spec]),
        }
    try:
        inputs = list(model.inputs)
    except (AttributeError, ValueError):
        inputs = []
    if not inputs:
        raise LinconError(
            "export_for_serving needs a model with a known input (start it with "
            "keras.Input(shape, name=...)); this model has none."
        )
    specs = [tf.TensorSpec(tuple(x.shape), x.dtype, name=_input_name(x.name)) for x in inputs]
    if len({spec.name for spec in specs}) != len(specs):
        raise LinconError(
            f"the model's inputs need distinct names to become signature inputs; they are {[s.name for s in specs]}. "
            "Name them: keras.Input(shape, name=...)."
        )
    # several inputs (e.g. features and b_s of a layer with rhs_input) are passed as a list, as Keras takes them
    fn = tf.function(lambda *x: {"outputs": model(list(x) if len(x) > 1 else x[0], training=False)}, jit_compile=xla)
    return {f"serving_default{suffix}": (fn, specs)}


def _checked_count(num_samples, max_samples: int):
    """``num_samples``, after checks that run before any sampling: a request above the
    bound fails with InvalidArgument instead of allocating its batch."""
    import tensorflow as tf

    checks = [
        tf.debugging.assert_positive(num_samples, message="num_samples must be at least 1"),
        tf.debugging.assert_less_equal(
            num_samples,
            tf.constant(max_samples, tf.int32),
            message=f"num_samples is above this model's bound max_samples={max_samples} "
            "(set at export; split the request)",
        ),
    ]
    with tf.control_dependencies(checks):
        return tf.identity(num_samples)


def _endpoints_with_rhs(model, xla: bool, max_samples: int, specs, decode, reconstruct):
    """A conditional ConstrainedVAE's signatures: each takes ``rhs``, (batch, m_in) or, for ``sample``, (m_in,)."""
    import tensorflow as tf

    x_spec, z_spec, n_spec, s_spec = specs
    m = model.rhs_dim
    rhs_spec, one_rhs = tf.TensorSpec((None, m), tf.float32, name="rhs"), tf.TensorSpec((m,), tf.float32, name="rhs")
    suffix = "_xla" if xla else ""

    def sample(num_samples, seed, rhs):
        num_samples = _checked_count(num_samples, max_samples)
        u = model.prior_sample(num_samples, tf.stack([seed, tf.constant(0, tf.int32)]))
        return {"samples": decode(model.code(u), rhs=tf.broadcast_to(rhs[None], tf.stack([num_samples, m])))}

    return {
        f"serving_default{suffix}": (
            tf.function(lambda inputs, rhs: {"reconstruction": reconstruct((inputs, rhs))}),
            [x_spec, rhs_spec],
        ),
        f"decode{suffix}": (tf.function(lambda codes, rhs: {"outputs": decode(codes, rhs=rhs)}), [z_spec, rhs_spec]),
        f"sample{suffix}": (tf.function(sample), [n_spec, s_spec, one_rhs]),
    }


def export_for_serving(
    model: keras.Model,
    base_dir: str | os.PathLike,
    version: int = 1,
    *,
    xla: bool = False,
    overwrite: bool = False,
    max_samples: int = DEFAULT_MAX_SAMPLES,
) -> Path:
    """Writes ``model`` as a SavedModel at ``<base_dir>/<version>/`` for TF Serving.

    Args:
        model: a built Keras model (e.g. a Sequential ending in the layer) or
            a :class:`~keras_lincon.ConstrainedVAE`.
        base_dir: TF Serving's model base path.
        version: positive integer version (TF Serving serves the largest).
        xla: also add ``<endpoint>_xla`` endpoints compiled with XLA.
        overwrite: replace an existing version folder; only a SavedModel
            (a folder holding ``saved_model.pb``) is ever removed.
        max_samples: for a ConstrainedVAE, the largest ``num_samples`` its
            ``sample`` signature accepts (larger requests fail with
            ``InvalidArgument``); a sample costs about 4 bytes per output value.

    Returns:
        The version folder; its signatures, with their input names and shapes,
        are listed in this module's docstring.

    Raises:
        GeneratorMismatchError: a constraint layer's generator weights do
            not match its constraints (see :func:`keras_lincon.verify_generators`).
        LinconError: Keras is not on the TensorFlow backend, bad version or
            ``max_samples``, an existing folder (without ``overwrite``, or one
            that is not a SavedModel), or a model without input.

    Example:
        >>> import keras, tempfile, tensorflow as tf, keras_lincon as klc
        >>> model = keras.Sequential([keras.Input((3,), name="features"), keras.layers.Dense(4),
        ...                           klc.LinearInequalityConstraint(klc.monotone_chain(4))])
        >>> path = klc.export_for_serving(model, tempfile.mkdtemp())
        >>> path.name, list(tf.saved_model.load(str(path)).signatures)
        ('1', ['serving_default'])
    """
    require_tensorflow("export_for_serving")
    _check_counts(version, max_samples)
    target = _cleared_version_folder(Path(base_dir) / str(version), overwrite)
    if not model.built:
        raise LinconError("build the model (call it once or fit it) before exporting.")
    # A server must never get generators that do not match the constraints.
    verify_generators(model)
    archive = keras.export.ExportArchive()
    archive.track(model)
    for with_xla in (False, True) if xla else (False,):
        for name, (fn, signature) in _endpoints(model, with_xla, max_samples).items():
            archive.add_endpoint(name=name, fn=fn, input_signature=signature)
    target.parent.mkdir(parents=True, exist_ok=True)
    archive.write_out(str(target), verbose=False)
    return target


def _check_counts(version: int, max_samples: int) -> None:
    """Both positive ints; ``max_samples`` also fits the signature's int32 ``num_samples``."""
    for name, value in (("version", version), ("max_samples", max_samples)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise LinconError(f"{name} must be a positive integer; got {value!r}.")
    if max_samples > 2**31 - 1:
        raise LinconError(f"max_samples must fit in int32 (num_samples is an int32 input); got {max_samples}.")


def _cleared_version_folder(target: Path, overwrite: bool) -> Path:
    """``target``, free to write: an existing SavedModel there is removed with ``overwrite``, anything else refused."""
    if not (target.exists() or target.is_symlink()):
        return target
    if not overwrite:
        raise LinconError(f"{target} exists; pass overwrite=True or choose another version.")
    if (
        target.is_symlink()
        or not target.is_dir()
        or not ((target / "saved_model.pb").is_file() or (target / "saved_model.pbtxt").is_file())
    ):
        raise LinconError(
            f"{target} exists and is not a SavedModel folder (no saved_model.pb); "
            "overwrite=True only replaces SavedModels: move it away or choose another version."
        )
    shutil.rmtree(target)
    return target


def rest_predict_example(export_dir: str | os.PathLike, signature: str = "serving_default", batch: int = 1) -> dict:
    """A TF Serving REST ``:predict`` request body (columnar ``inputs``) for a signature.

    Zeros of the right shape under the signature's input names; for scalar
    inputs (``num_samples``, ``seed``) small integers.
    """
    tf = require_tensorflow("rest_predict_example")
    loaded = tf.saved_model.load(str(export_dir))
    _, specs = loaded.signatures[signature].structured_input_signature
    body = {}
    for name, spec in specs.items():
        if spec.shape.rank == 0:
            body[name] = 4 if name == "num_samples" else 0
        else:
            shape = [batch if d is None else d for d in spec.shape.as_list()]
            body[name] = tf.zeros(shape, spec.dtype).numpy().tolist()
    return {"signature_name": signature, "inputs": body}
