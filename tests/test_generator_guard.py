"""Issue 21: no public API path to a silently infeasible layer.

Every way of writing the generator weights is covered, eagerly and inside
``model.predict``/``model.fit``: ``model.set_weights``, ``load_weights``
(``.weights.h5``, ``.keras``, legacy ``.h5``), ``variable.assign``, an
optimizer given the non-trainable weights, and writes the hooks cannot see
(traced functions, in-place tensor writes), which the call's fingerprint
check catches. The JAX and torch backends run in fresh processes.
"""

import importlib.util
import os
import re
import subprocess
import sys
import textwrap
import warnings

import keras
import numpy as np
import pytest

import keras_lincon as klc

A = klc.checkerboard((4, 4), (2, 2))
TOL = 1e-5
X = np.random.default_rng(0).standard_normal((64, 8)).astype("float32") * 3
BAD_OFFSET = (5.0 * A[0]).astype("float32")  # violates the first row of A by 5 ||a_0||^2


def make(lower=-0.1, upper=0.1, **kwargs):
    kwargs.setdefault("scaling", "per_block")  # the box lives in weights (its centre and widths)
    return keras.Sequential(
        [keras.Input((8,)), keras.layers.Dense(8), klc.LinearInequalityConstraint(A, box=(lower, upper), **kwargs)]
    )


def worst(model, y):
    return model.layers[-1].max_violation(y, relative=True)


def generator_values(layer):
    return {name: np.array(keras.ops.convert_to_numpy(v)) for name, v in layer._generator_variables().items()}


def assert_unchanged(layer, before):
    for name, value in generator_values(layer).items():
        np.testing.assert_array_equal(value, before[name])


# ------------------------------------------------------------ model.set_weights


def test_issue_reproduction_model_set_weights_is_refused():
    wide, narrow = make(-1.0, 1.0), make(-0.1, 0.1)
    before = generator_values(narrow.layers[-1])
    with pytest.raises(klc.GeneratorMismatchError, match="refused and undone.*box weights do not match"):
        narrow.set_weights(wide.get_weights())
    assert_unchanged(narrow.layers[-1], before)
    y = narrow.predict(X, verbose=0)
    assert worst(narrow, y) <= TOL
    assert np.abs(y).max() <= 0.1 * (1 + 1e-6)
    y = keras.ops.convert_to_numpy(narrow(X))  # eager
    assert worst(narrow, y) <= TOL


def test_model_set_weights_after_predict_is_refused():
    wide, narrow = make(-1.0, 1.0), make(-0.1, 0.1)
    narrow.predict(X, verbose=0)  # compiled predict function traced before the write
    with pytest.raises(klc.GeneratorMismatchError):
        narrow.set_weights(wide.get_weights())
    assert worst(narrow, narrow.predict(X, verbose=0)) <= TOL


def test_matching_model_set_weights_still_works():
    source, target = make(), make()
    source.layers[0].kernel.assign(np.random.default_rng(3).standard_normal((8, 8)).astype("float32"))
    target.predict(X, verbose=0)
    target.set_weights(source.get_weights())
    np.testing.assert_allclose(target.predict(X, verbose=0), source.predict(X, verbose=0), rtol=1e-6)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(target(X)), source.predict(X, verbose=0), rtol=1e-5)


def test_layer_set_weights_of_another_box_is_refused_and_rolled_back():
    wide, narrow = make(-1.0, 1.0), make(-0.1, 0.1)
    before = generator_values(narrow.layers[-1])
    with pytest.raises(klc.GeneratorMismatchError):
        narrow.layers[-1].set_weights(wide.layers[-1].get_weights())
    assert_unchanged(narrow.layers[-1], before)


# ------------------------------------------------------------------ load_weights


@pytest.mark.parametrize("suffix", [".weights.h5", ".keras"])
def test_load_weights_of_another_box_is_refused(tmp_path, suffix):
    wide, narrow = make(-1.0, 1.0), make(-0.1, 0.1)
    path = tmp_path / f"wide{suffix}"
    wide.save(path) if suffix == ".keras" else wide.save_weights(path)
    before = generator_values(narrow.layers[-1])
    with pytest.raises(ValueError, match="box weights do not match"):
        narrow.load_weights(path)
    assert_unchanged(narrow.layers[-1], before)
    # skip_mismatch turns the layer's error into a warning: the layer keeps its checked weights
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        narrow.load_weights(path, skip_mismatch=True)
    assert_unchanged(narrow.layers[-1], before)
    assert worst(narrow, narrow.predict(X, verbose=0)) <= TOL


def test_legacy_h5_load_weights_is_refused(tmp_path):
    wide, narrow = make(-1.0, 1.0), make(-0.1, 0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy format's deprecation warning
        wide.save(tmp_path / "wide.h5")
    with pytest.raises(klc.GeneratorMismatchError):
        narrow.load_weights(tmp_path / "wide.h5")  # legacy path: variable.assign, no layer hook
    assert worst(narrow, narrow.predict(X, verbose=0)) <= TOL


@pytest.mark.parametrize("suffix", [".weights.h5", ".keras"])
def test_load_weights_of_a_matching_model_still_works(tmp_path, suffix):
    source, target = make(), make()
    source.layers[0].kernel.assign(np.random.default_rng(4).standard_normal((8, 8)).astype("float32"))
    path = tmp_path / f"m{suffix}"
    source.save(path) if suffix == ".keras" else source.save_weights(path)
    target.load_weights(path)
    np.testing.assert_allclose(target.predict(X, verbose=0), source.predict(X, verbose=0), rtol=1e-6)


# ---------------------------------------------------------------- variable.assign


@pytest.mark.parametrize("method", ["assign", "assign_add", "assign_sub"])
def test_variable_assign_on_a_generator_weight_is_refused(method):
    model = make()
    layer = model.layers[-1]
    model.predict(X, verbose=0)
    before = generator_values(layer)
    with pytest.raises(klc.GeneratorMismatchError, match="'offset'.*refused and undone"):
        getattr(layer.offset, method)(-BAD_OFFSET if method == "assign_sub" else BAD_OFFSET)
    assert_unchanged(layer, before)
    assert worst(model, model.predict(X, verbose=0)) <= TOL
    assert worst(model, keras.ops.convert_to_numpy(model(X))) <= TOL


def test_assigning_the_same_value_is_accepted():
    model = make()
    layer = model.layers[-1]
    layer.offset.assign(layer.offset.numpy())
    assert worst(model, model.predict(X, verbose=0)) <= TOL


# ---------------------------------------------------------------------- optimizers


def test_optimizer_given_the_generator_weights_is_undone_eagerly():
    import tensorflow as tf

    model = make()
    layer = model.layers[-1]
    before = generator_values(layer)
    optimizer = keras.optimizers.SGD(1.0)
    variables = [v for v in layer.non_trainable_weights if "float" in v.dtype]
    with tf.GradientTape() as tape:
        tape.watch([v.value for v in variables])
        loss = tf.reduce_sum(model(X) ** 2)
    pairs = [(g, v) for g, v in zip(tape.gradient(loss, variables), variables, strict=True) if g is not None]
    assert pairs
    with pytest.warns(UserWarning, match="update is undone"):
        optimizer.apply(*zip(*pairs, strict=True))
    assert_unchanged(layer, before)
    assert worst(model, keras.ops.convert_to_numpy(model(X))) <= TOL


@pytest.mark.parametrize("jit_compile", [True, False])
def test_fit_with_trainable_generator_weights_stays_feasible(jit_compile):
    model = make()
    layer = model.layers[-1]
    for v in layer.non_trainable_weights:
        v.trainable = True  # the user hands the generators to the optimizer
    before = generator_values(layer)
    model.compile(keras.optimizers.Adam(0.1), "mse", jit_compile=jit_compile)
    target = np.full((64, 16), 5.0, "float32")  # far outside the box: pulls every generator out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        history = model.fit(X, target, epochs=3, batch_size=16, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert_unchanged(layer, before)
    assert worst(model, model.predict(X, verbose=0)) <= TOL


# ------------------------------------------------------- writes in compiled code


def traced_write(layer, jit_compile):
    import tensorflow as tf

    tf.function(lambda: layer.offset.assign(tf.constant(BAD_OFFSET)), jit_compile=jit_compile)()


def test_traced_write_raises_in_a_plain_tf_function():
    import tensorflow as tf

    model = make()
    before = generator_values(model.layers[-1])
    with pytest.raises(tf.errors.InvalidArgumentError, match="GeneratorMismatchError.*offset.*was refused"):
        traced_write(model.layers[-1], jit_compile=False)
    assert_unchanged(model.layers[-1], before)
    assert worst(model, model.predict(X, verbose=0)) <= TOL
    assert worst(model, keras.ops.convert_to_numpy(model(X))) <= TOL


def test_traced_write_under_xla_is_not_written():
    model = make()
    before = generator_values(model.layers[-1])
    model.predict(X, verbose=0)
    traced_write(model.layers[-1], jit_compile=True)  # XLA cannot raise: the write keeps the old value
    assert_unchanged(model.layers[-1], before)
    assert worst(model, model.predict(X, verbose=0)) <= TOL
    assert worst(model, keras.ops.convert_to_numpy(model(X))) <= TOL


def test_traced_matching_write_is_written():
    import tensorflow as tf

    model = make()
    layer = model.layers[-1]
    same = layer.offset.numpy()
    tf.function(lambda: layer.offset.assign(tf.constant(same)))()
    np.testing.assert_array_equal(layer.offset.numpy(), same)
    assert worst(model, keras.ops.convert_to_numpy(model(X))) <= TOL


def test_write_past_keras_is_caught_by_verify_generators():
    # The TensorFlow variable itself, past every Keras path: the one write left to verify_generators
    model = make()
    model.layers[-1].offset.value.assign(BAD_OFFSET)
    with pytest.raises(klc.GeneratorMismatchError):
        klc.verify_generators(model)


def test_compiled_calls_carry_no_extra_operation():
    import tensorflow as tf

    def hlo(guarded):
        layer = klc.LinearInequalityConstraint(A, box=(-1.0, 1.0))
        layer.build((None, 8))
        if not guarded:
            layer._guard_generators = lambda inputs: inputs
        f = tf.function(lambda x: layer(x), jit_compile=True)
        text = f.experimental_get_compiler_ir(tf.constant(X))(stage="hlo")
        return sorted(re.findall(r"= [^ ]+ ([a-z][a-z0-9-]*)\(", text))  # every instruction's opcode

    guarded = hlo(True)
    assert len(guarded) > 20 and guarded == hlo(False)


# ---------------------------------------------------------------- release fixtures


def test_release_fixture_loads_predicts_and_accepts_its_own_weights():
    from tests.test_compat import FIXTURES, assert_same_and_feasible, constraints

    with np.load(FIXTURES / "cases.npz") as data:
        recorded = {key: data[key] for key in data.files}
    model = keras.saving.load_model(FIXTURES / "checkerboard_box.keras")
    x, y = recorded["checkerboard_box/x"], recorded["checkerboard_box/y"]
    assert_same_and_feasible(model.predict(x, verbose=0), y, constraints(recorded, "checkerboard_box"))
    model.set_weights(model.get_weights())
    assert_same_and_feasible(model.predict(x, verbose=0), y, constraints(recorded, "checkerboard_box"))
    layer = [layer for layer in model.layers if isinstance(layer, klc.LinearInequalityConstraint)][0]
    with pytest.raises(klc.GeneratorMismatchError):
        layer.offset.assign(layer.offset.numpy() + 5.0 * recorded["checkerboard_box/A"][0].astype("float32"))
    assert_same_and_feasible(model.predict(x, verbose=0), y, constraints(recorded, "checkerboard_box"))


# ------------------------------------------------------------ JAX and torch backends

OTHER_BACKEND = r"""
import sys, warnings
import keras, numpy as np
import keras_lincon as klc
backend = keras.backend.backend()
assert backend == sys.argv[1], backend
A = klc.checkerboard((4, 4), (2, 2))
X = np.random.default_rng(0).standard_normal((64, 8)).astype("float32") * 3
BAD_OFFSET = (5.0 * A[0]).astype("float32")  # violates the first row of A by 5 ||a_0||^2

def make(lower=-0.1, upper=0.1):
    layer = klc.LinearInequalityConstraint(A, box=(lower, upper), scaling="per_block")
    return keras.Sequential([keras.Input((8,)), keras.layers.Dense(8), layer])

def worst(model, y):
    return model.layers[-1].max_violation(keras.ops.convert_to_numpy(y), relative=True)

# the in-graph fingerprint is the host one on this backend, eager and compiled
from keras_lincon.layers.fingerprints import graph_fingerprint, host_fingerprint
for dtype in ("float32", "int32"):
    v = (np.random.default_rng(1).standard_normal((70, 130)) * 1e3).astype(dtype)
    assert int(keras.ops.convert_to_numpy(graph_fingerprint(keras.ops.convert_to_tensor(v)))) == host_fingerprint(v)
    if backend == "jax":
        import jax
        assert int(jax.jit(graph_fingerprint)(v)) == host_fingerprint(v)

def refused(fn, *match):
    try:
        fn()
    except Exception as exc:
        text = f"{type(exc).__name__}: {exc}"
        assert all(m in text for m in match), text[-2000:]
        return
    raise AssertionError("not refused")

# the issue's reproduction, after a compiled predict
wide, narrow = make(-1.0, 1.0), make()
narrow.predict(X, verbose=0)
refused(lambda: narrow.set_weights(wide.get_weights()), "GeneratorMismatchError", "box weights")
assert worst(narrow, narrow.predict(X, verbose=0)) <= 1e-5
assert worst(narrow, narrow(X)) <= 1e-5

# matching weights still load
source, target = make(), make()
target.set_weights(source.get_weights())
np.testing.assert_allclose(target.predict(X, verbose=0), source.predict(X, verbose=0), rtol=1e-6)

# variable.assign
layer = narrow.layers[-1]
refused(lambda: layer.offset.assign((5.0 * A[0]).astype("float32")), "GeneratorMismatchError", "'offset'")
assert worst(narrow, narrow.predict(X, verbose=0)) <= 1e-5

# fit with the generators handed to the optimizer: undone after every step
model = make()
for v in model.layers[-1].non_trainable_weights:
    v.trainable = True
model.compile(keras.optimizers.Adam(0.1), "mse")
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    model.fit(X, np.full((64, 16), 5.0, "float32"), epochs=2, batch_size=16, verbose=0)
assert worst(model, model.predict(X, verbose=0)) <= 1e-5

# a write past Keras's assign (stands for any path the hooks cannot see)
model = make()
model.predict(X, verbose=0)
offset = model.layers[-1].offset
if backend == "jax":
    import jax.numpy as jnp
    offset._value = jnp.asarray(offset._value + 5.0 * A[0], jnp.float32)  # past Keras's assign
    refused(lambda: model(X), "GeneratorMismatchError")
else:
    import torch
    with torch.no_grad():
        offset.value.add_(torch.as_tensor(5.0 * A[0], dtype=torch.float32))  # in place, like torch optimizers
    refused(lambda: model.predict(X, verbose=0), "GeneratorMismatchError")
    refused(lambda: model(X), "GeneratorMismatchError")
print("OK")
"""


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_other_backends(backend):
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"Keras backend {backend!r} not installed")
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(OTHER_BACKEND), backend],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert proc.returncode == 0 and "OK" in proc.stdout, proc.stderr[-4000:]
