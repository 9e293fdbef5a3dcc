"""Tests of keras_lincon.layers.LinearInequalityConstraint."""

import json

import keras
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from keras.src import testing

import keras_lincon as klc
from keras_lincon import datasets
from tests.conftest import BLOCK_KERAS_LINCON, h_from_v, run_python

TOL = klc.layers.FLOAT32_TOLERANCE
SMALL_CHECKER = klc.checkerboard((8, 8), (2, 2))


# ------------------------------------------------------------ contract


class LayerContractTest(testing.TestCase):
    def test_run_layer_test_cone(self):
        self.run_layer_test(
            klc.LinearInequalityConstraint,
            init_kwargs={"A": SMALL_CHECKER.tolist()},
            input_shape=(3, 12),
            expected_output_shape=(3, 64),
            expected_num_trainable_weights=4,  # projected mode: kernel, bias, ray kernel, ray bias
            expected_num_non_trainable_weights=3,  # complement basis, ray coordinates, offset
            supports_masking=True,
        )

    def test_run_layer_test_polytope_box_equality(self):
        A = np.vstack([np.eye(4), -np.eye(4)])
        self.run_layer_test(
            klc.LinearInequalityConstraint,
            init_kwargs={
                "A": A.tolist(),
                "b": np.ones(8).tolist(),
                "C": [[1.0, 1.0, 0.0, 0.0]],
                "box": (-0.5, 0.5),
                "nonneg": "softplus",
            },
            input_shape=(2, 5, 7),
            expected_output_shape=(2, 5, 4),
            supports_masking=True,
        )


def test_config_is_small_json_and_reload_skips_double_description(monkeypatch):
    layer = klc.LinearInequalityConstraint(klc.checkerboard(), box=(-1.0, 1.0))
    layer.build((None, 32))
    config = layer.get_config()
    text = json.dumps(config)
    assert "rays" not in config and len(text) < 100_000  # A (16x784 zeros/ones), not the 784-dim generators
    called = []
    monkeypatch.setattr(klc.polyhedra, "h_to_v", lambda *a, **k: called.append(1))
    clone = klc.LinearInequalityConstraint.from_config(json.loads(text))
    clone.build((None, 32))
    clone.set_weights(layer.get_weights())
    assert not called
    x = np.random.default_rng(0).normal(size=(4, 32)).astype("float32")
    np.testing.assert_array_equal(clone(x), layer(x))


def test_clone_without_weights_raises_until_weights_are_copied():
    layer = klc.LinearInequalityConstraint(SMALL_CHECKER)
    model = keras.Sequential([keras.Input((5,)), layer])
    clone = keras.models.clone_model(model)
    with pytest.raises(klc.GeneratorMismatchError, match="clone_model"):
        clone(np.ones((1, 5), "float32"))
    clone.set_weights(model.get_weights())
    np.testing.assert_allclose(clone(np.ones((1, 5), "float32")), model(np.ones((1, 5), "float32")))


def test_representation_exposed_and_recomputed_after_config_reload():
    layer = klc.LinearInequalityConstraint(SMALL_CHECKER)
    rep = layer.representation
    assert rep.rays.shape == (4, 64)
    clone = klc.LinearInequalityConstraint.from_config(layer.get_config())
    np.testing.assert_allclose(clone.representation.rays, rep.rays)


def test_precomputed_representation_is_checked():
    rep = klc.h_to_v(SMALL_CHECKER)
    layer = klc.LinearInequalityConstraint(SMALL_CHECKER, representation=rep)
    assert layer.representation is rep
    with pytest.raises(klc.RepresentationCheckError):
        klc.LinearInequalityConstraint(-SMALL_CHECKER, representation=rep)


# ------------------------------------------------------------ invariant


def _system(kind, n, m, seed):
    rng = np.random.default_rng(seed)
    if kind == "random_cone":  # cone from random generating rays, via cdd
        A, b = h_from_v(np.zeros((1, n), int), rng.integers(-4, 5, size=(m, n)))
        return dict(A=A)
    if kind == "full_rank_cone":
        return dict(A=rng.standard_normal((min(m, n), n)))
    if kind == "polytope":
        # Random coupled polytopes have up to ~C(m, n/2) vertices: keep n small
        # so double description stays fast (high-dimensional boxes are covered
        # by the block path, test_box_costs_two_vertices_per_coordinate).
        n = min(n, 6)
        A = rng.integers(-3, 4, size=(m + n, n)).astype(float)
        return dict(A=np.vstack([A, np.eye(n), -np.eye(n)]), b=np.r_[rng.integers(0, 4, m + n), np.full(2 * n, 3.0)])
    if kind == "equality":
        return dict(A=-np.eye(n), C=rng.integers(-2, 3, size=(1, n)).astype(float), d=[1.0])
    if kind == "shifted_cone_box":
        A = rng.standard_normal((min(m, n), n))
        return dict(A=A, b=rng.uniform(0.1, 1, size=min(m, n)), box=(-2.0, 2.0))
    if kind == "coordinate_bounds":  # x_c >= or <= a bound on some coordinates: the gather path
        columns = rng.choice(n, size=min(m, n), replace=False)
        A = np.zeros((len(columns), n))
        A[np.arange(len(columns)), columns] = rng.choice([-1.0, 1.0], len(columns)) * 10.0 ** rng.uniform(
            -3, 3, len(columns)
        )
        return dict(A=A, b=rng.uniform(-1, 1, len(columns)))
    return dict(A=rng.standard_normal((min(m, n), n)), box=(rng.uniform(-3, -0.5), rng.uniform(0.5, 3)))


KINDS = ["random_cone", "full_rank_cone", "polytope", "equality", "shifted_cone_box", "cone_box", "coordinate_bounds"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(
    kind=st.sampled_from(KINDS),
    n=st.integers(1, 12),
    m=st.integers(1, 8),
    k=st.integers(1, 24),
    seed=st.integers(0, 100_000),
    log_scale=st.floats(-6, 6),
    nonneg=st.sampled_from(sorted(klc.planning.options.NONNEG_CHOICES)),
)
def test_every_output_is_feasible(kind, n, m, k, seed, log_scale, nonneg):
    """The property the package exists for: outputs satisfy the constraints."""
    spec = _system(kind, n, m, seed)
    try:
        layer = klc.LinearInequalityConstraint(**spec, nonneg=nonneg)
    except (klc.DegenerateSetError, klc.InfeasibleError, klc.TooManyGeneratorsError):
        assume(False)
    x = np.random.default_rng(seed).standard_normal((64, k)).astype("float32") * 10.0**log_scale
    y = keras.ops.convert_to_numpy(layer(x))
    assert y.shape == (64, layer.units) and np.all(np.isfinite(y))
    layer.assert_constraints(y)
    # large weights too: the guarantee does not depend on the weight values
    layer.set_weights([w * 1e3 if i < 2 else w for i, w in enumerate(layer.get_weights())])
    layer.assert_constraints(layer(x))


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(kind=st.sampled_from(KINDS), seed=st.integers(0, 10_000))
def test_outputs_stay_feasible_after_fit(kind, seed):
    spec = _system(kind, 6, 4, seed)
    try:
        layer = klc.LinearInequalityConstraint(**spec)
    except (klc.DegenerateSetError, klc.InfeasibleError):
        assume(False)
    rng = np.random.default_rng(seed)
    x, target = rng.standard_normal((128, 8)).astype("float32"), rng.standard_normal((128, 6)).astype("float32")
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="tanh"), layer])
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="mse")
    model.fit(x, 5 * target, epochs=3, batch_size=32, verbose=0)
    layer.assert_constraints(model.predict(x, verbose=0))


def test_extreme_input_scales_stay_finite_and_feasible():
    layer = klc.LinearInequalityConstraint(klc.checkerboard(), box=(-1.0, 1.0))
    unboxed = klc.LinearInequalityConstraint(klc.checkerboard())
    base = np.random.default_rng(0).standard_normal((16, 32)).astype("float32")
    for scale in (1e-6, 1e-3, 1.0, 1e3, 1e6):
        for lay in (layer, unboxed):
            y = keras.ops.convert_to_numpy(lay(base * scale))
            assert np.all(np.isfinite(y))
            lay.assert_constraints(y)


def test_mixed_precision_policy_computes_in_float32():
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        layer = klc.LinearInequalityConstraint(klc.checkerboard())
        model = keras.Sequential([keras.Input((32,)), keras.layers.Dense(64), layer])
        y = model(np.random.default_rng(0).standard_normal((256, 32)).astype("float32"))
        assert layer.compute_dtype == "float32" and keras.backend.standardize_dtype(y.dtype) == "float32"
        layer.assert_constraints(y)
        low = klc.LinearInequalityConstraint(klc.checkerboard(), force_float32=False)
        assert low.compute_dtype == "bfloat16"
    finally:
        keras.config.set_dtype_policy("float32")


# -------------------------------------------------------- real training


class FeasibilityEveryBatch(keras.callbacks.Callback):
    def __init__(self, probe, layer):
        super().__init__()
        self.probe, self.layer, self.worst = probe, layer, -np.inf

    def on_train_batch_end(self, batch, logs=None):
        self.worst = max(self.worst, self.layer.assert_constraints(self.model(self.probe, training=False)))


def test_checkerboard_sequential_fit_on_real_images():
    data = datasets.load("auto", max_train=2048, max_test=256)
    h, w = data.image_shape
    A = klc.checkerboard((h, w), datasets.checkerboard_grid((h, w)))
    x = data.x_train.reshape(len(data.x_train), -1)
    layer = klc.LinearInequalityConstraint(A, box=(-1.0, 1.0))
    model = keras.Sequential([keras.Input((h * w,)), keras.layers.Dense(64, activation="relu"), layer])
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    watch = FeasibilityEveryBatch(x[:64], layer)
    history = model.fit(x, x, epochs=3, batch_size=128, verbose=0, callbacks=[watch])
    losses = history.history["loss"]
    assert losses[-1] < 0.8 * losses[0], losses
    assert watch.worst <= TOL
    layer.assert_constraints(model.predict(data.x_test.reshape(len(data.x_test), -1), verbose=0))


def test_jit_compiled_training_and_prediction():
    layer = klc.LinearInequalityConstraint(klc.monotone_chain(32), nonneg="softplus")
    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(32, activation="relu"), layer])
    model.compile(optimizer="adam", loss="mse", jit_compile=True)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((256, 16)).astype("float32")
    y = np.sort(rng.standard_normal((256, 32)), axis=1).astype("float32")
    history = model.fit(x, y, epochs=2, batch_size=64, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    out = model.predict(x, verbose=0)
    assert np.all(np.diff(out, axis=1) >= -TOL * (1 + np.abs(out[:, 1:])))
    layer.assert_constraints(out)


# --------------------------------------------------- save, load, export


SAVE_SCRIPT = """
import numpy as np, keras, keras_lincon as klc
A = klc.checkerboard((8, 8), (2, 2))
model = keras.Sequential([
    keras.Input((10,), name="features"),
    keras.layers.Dense(16, activation="tanh"),
    klc.LinearInequalityConstraint(A, box=(-1.0, 1.0), name="constrained"),
])
model.compile(optimizer="adam", loss="mse")
rng = np.random.default_rng(0)
x = rng.standard_normal((64, 10)).astype("float32")
model.fit(x, rng.uniform(-1, 1, (64, 64)).astype("float32"), epochs=2, verbose=0)
np.save("{tmp}/x.npy", x)
np.save("{tmp}/y.npy", model.predict(x, verbose=0))
model.save("{tmp}/model.keras")
model.export("{tmp}/export", verbose=False)
"""


@pytest.fixture(scope="module")
def saved_model_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("saved")
    run_python(SAVE_SCRIPT.format(tmp=tmp))
    return tmp


def test_keras_file_reloads_in_fresh_process_with_identical_predictions(saved_model_dir):
    out = run_python(f"""
        import numpy as np, keras, keras_lincon as klc
        from unittest import mock
        with mock.patch.object(klc.polyhedra, "h_to_v", side_effect=AssertionError("reran h_to_v")):
            model = keras.saving.load_model("{saved_model_dir}/model.keras")
        y = model.predict(np.load("{saved_model_dir}/x.npy"), verbose=0)
        np.testing.assert_array_equal(y, np.load("{saved_model_dir}/y.npy"))
        model.layers[-1].assert_constraints(y)
        print("ok")
    """)
    assert "ok" in out


def test_saved_model_export_runs_without_keras_lincon(saved_model_dir):
    out = run_python(
        BLOCK_KERAS_LINCON
        + f"""
import numpy as np, tensorflow as tf
try:
    import keras_lincon
    raise SystemExit("keras_lincon should be unimportable here")
except ImportError:
    pass
loaded = tf.saved_model.load("{saved_model_dir}/export")
fn = loaded.signatures["serving_default"]
x = np.load("{saved_model_dir}/x.npy")
(y,) = fn(features=tf.constant(x)).values()
np.save("{saved_model_dir}/y_export.npy", y.numpy())
print("ok")
"""
    )
    assert "ok" in out
    y, expected = np.load(saved_model_dir / "y_export.npy"), np.load(saved_model_dir / "y.npy")
    np.testing.assert_allclose(y, expected, rtol=1e-6, atol=1e-6)
    A = klc.checkerboard((8, 8), (2, 2))
    assert (
        klc.max_violation(y, np.vstack([A, np.eye(64), -np.eye(64)]), np.r_[np.zeros(4), np.ones(128)], relative=True)
        <= TOL
    )


def test_mirrored_strategy_on_two_logical_cpus():
    out = run_python("""
        import numpy as np, tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        import keras, keras_lincon as klc
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        A = klc.monotone_chain(16)
        with strategy.scope():
            layer = klc.LinearInequalityConstraint(A)
            model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16), layer])
            model.compile(optimizer="adam", loss="mse")
        rng = np.random.default_rng(0)
        x = rng.standard_normal((256, 8)).astype("float32")
        y = np.sort(rng.standard_normal((256, 16)), axis=1).astype("float32")
        h = model.fit(x, y, epochs=2, batch_size=64, verbose=0)
        assert strategy.num_replicas_in_sync == 2
        layer.assert_constraints(model.predict(x, verbose=0))
        print("replicas", strategy.num_replicas_in_sync, "loss", h.history["loss"])
    """)
    assert "replicas 2" in out


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "kwargs, error, pattern",
    [
        (dict(A=SMALL_CHECKER, nonneg="exp"), klc.LinconError, "nonneg must be one of"),
        (dict(A=SMALL_CHECKER, box=(1.0, -1.0)), klc.ConstraintShapeError, "strictly below"),
        (dict(A=SMALL_CHECKER, box=1.0), klc.ConstraintShapeError, "pair"),
        (dict(A=[[1.0]], b=[-1.0], box=(0.0, 1.0)), klc.InfeasibleError, "box"),
        (dict(A=SMALL_CHECKER, b=np.ones(3)), klc.ConstraintShapeError, r"shape \(4,\)"),
        (dict(A=[[np.inf, 1.0]]), klc.NonFiniteError, "NaN or infinity"),
        (dict(A=[[1.0], [-1.0]]), klc.DegenerateSetError, "only"),
        (dict(A=[[1.0], [-1.0]], b=[-1.0, -1.0]), klc.InfeasibleError, "no solution"),
        (dict(A=SMALL_CHECKER, representation="rays"), klc.ConstraintShapeError, "VRepresentation"),
    ],
)
def test_construction_errors(kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        klc.LinearInequalityConstraint(**kwargs)


def test_unknown_input_dimension_is_a_clear_error():
    layer = klc.LinearInequalityConstraint(SMALL_CHECKER)
    with pytest.raises(klc.ConstraintShapeError, match="known, non-zero last input dimension"):
        layer.build((None, None))
    with pytest.raises(klc.ConstraintShapeError, match="non-zero"):
        layer.build((None, 0))


def test_assert_constraints_reports_violations():
    layer = klc.LinearInequalityConstraint(SMALL_CHECKER)
    bad = np.ones((2, 64))
    bad[:, :4] = 100.0
    with pytest.raises(klc.ConstraintViolationError, match="worst relative violation"):
        layer.assert_constraints(bad)


@pytest.mark.parametrize("mode", ["direct", "projected"])
@pytest.mark.parametrize("case", ["checkerboard_box", "chain", "polytope", "free_and_equality"])
def test_both_call_modes_are_feasible_and_trainable(mode, case):
    spec = {
        "checkerboard_box": dict(A=SMALL_CHECKER, box=(-1.0, 1.0)),
        "chain": dict(A=klc.monotone_chain(10)),
        "polytope": dict(A=np.vstack([np.eye(3), -np.eye(3), [[1.0, 1.0, 1.0]]]), b=np.r_[np.ones(6), 1.5]),
        "free_and_equality": dict(A=[[1.0, -1.0, 0.0, 0.0]], C=[[0.0, 0.0, 1.0, 1.0]], d=[2.0]),
    }[case]
    layer = klc.LinearInequalityConstraint(**spec, call_mode=mode)
    model = keras.Sequential([keras.Input((7,)), layer])
    assert layer._call_mode == mode
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 7)).astype("float32")
    target = rng.standard_normal((64, layer.units)).astype("float32")
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="mse")
    history = model.fit(x, target, epochs=5, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    layer.assert_constraints(model.predict(x * 100, verbose=0))


def test_box_center_is_used_and_validated():
    center = np.full(64, -0.5)
    center[:16] = 0.5  # block (0,0) has sign +1: its sum must be <= 0 -> make it fail first
    with pytest.raises(klc.InfeasibleError, match=r"box_center\) violates"):
        klc.LinearInequalityConstraint(SMALL_CHECKER, box=(-1.0, 1.0), box_center=-center)
    rep = klc.h_to_v(SMALL_CHECKER)
    good = 0.5 * np.clip(rep.sample(1, seed=0)[0], -1, 1)
    good = good if klc.max_violation(good[None], SMALL_CHECKER) <= 0 else np.zeros(64)
    layer = klc.LinearInequalityConstraint(SMALL_CHECKER, box=(-1.0, 1.0), box_center=good)
    x = np.random.default_rng(0).standard_normal((64, 5)).astype("float32") * 100
    layer.assert_constraints(layer(x))
    clone = klc.LinearInequalityConstraint.from_config(layer.get_config())
    np.testing.assert_allclose(clone.box_center, good)
    with pytest.raises(klc.NoStrictInteriorError, match="strictly inside"):
        klc.LinearInequalityConstraint(SMALL_CHECKER, box=(-1.0, 1.0), box_center=np.ones(64))
    with pytest.raises(klc.ConstraintShapeError, match="needs a box"):
        klc.LinearInequalityConstraint(SMALL_CHECKER, box_center=np.zeros(64))


# ------------------------------------------------------------ box scaling (issue 11)


def test_config_without_scaling_key_means_global_and_predicts_as_before():
    layer = klc.LinearInequalityConstraint(SMALL_CHECKER, box=(-1.0, 1.0), scaling="global")
    x = np.random.default_rng(0).normal(size=(16, 8)).astype("float32") * 10
    expected = keras.ops.convert_to_numpy(layer(x))
    old = layer.get_config()
    del old["scaling"]  # as written by the previous release
    clone = klc.LinearInequalityConstraint.from_config(json.loads(json.dumps(old)))
    clone.build((None, 8))
    clone.set_weights(layer.get_weights())
    assert clone.scaling == "global"
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(clone(x)), expected)
    assert klc.LinearInequalityConstraint(SMALL_CHECKER, box=(-1.0, 1.0)).scaling == "project"  # "auto" chose


def test_per_block_box_scaling_is_feasible_and_only_shrinks_the_offending_block():
    layer = klc.LinearInequalityConstraint(SMALL_CHECKER, box=(-1.0, 1.0), scaling="per_block")
    glob = klc.LinearInequalityConstraint(SMALL_CHECKER, box=(-1.0, 1.0), scaling="global")
    x = np.random.default_rng(1).normal(size=(32, 8)).astype("float32") * 2
    y_pb = keras.ops.convert_to_numpy(layer(x))
    glob.build((None, 8))
    glob.set_weights(layer.get_weights())
    y_gl = keras.ops.convert_to_numpy(glob(x))
    layer.assert_constraints(y_pb)
    glob.assert_constraints(y_gl)
    # both scale towards the apex 0; per block never shrinks more than the global factor
    assert np.all(np.abs(y_pb) >= np.abs(y_gl) - 1e-5)
    assert np.abs(y_pb).sum() > np.abs(y_gl).sum() * 1.01


def test_per_block_equals_global_on_a_single_block_and_clips_free_coordinates():
    A = klc.monotone_chain(5)  # one block
    x = np.random.default_rng(2).normal(size=(16, 4)).astype("float32") * 3
    one = klc.LinearInequalityConstraint(A, box=(-1.0, 1.0))
    glob = klc.LinearInequalityConstraint(A, box=(-1.0, 1.0), scaling="global")
    y = keras.ops.convert_to_numpy(one(x))
    glob.build((None, 4))
    glob.set_weights(one.get_weights())
    np.testing.assert_allclose(y, glob(x), rtol=1e-6, atol=1e-6)
    free = klc.LinearInequalityConstraint(None, units=6, box=(-1.0, 1.0))
    y = keras.ops.convert_to_numpy(free(x))
    raw = x @ keras.ops.convert_to_numpy(free.kernel) + keras.ops.convert_to_numpy(free.bias)
    if free.kernel.shape[-1] == 6:  # a plain affine map: the per-coordinate rescaling is clipping
        np.testing.assert_allclose(y, np.clip(raw, -1, 1), rtol=1e-5, atol=1e-6)
    assert np.all(np.abs(y) <= 1.0) and np.any(np.abs(y) == 1.0) and np.any(np.abs(y) < 1.0)
    with pytest.raises(klc.LinconError, match="scaling must be one of"):
        klc.LinearInequalityConstraint(A, box=(-1.0, 1.0), scaling="nearest")


def test_call_mode_is_a_checked_public_option_kept_in_the_config():
    layer = klc.LinearInequalityConstraint(klc.monotone_chain(6), call_mode="projected")
    layer(np.zeros((2, 40), dtype="float32"))  # "auto" would pick direct for 40 inputs
    assert layer._call_mode == "projected"
    clone = klc.LinearInequalityConstraint.from_config(layer.get_config())
    assert clone.call_mode == "projected"
    with pytest.raises(klc.LinconError, match="call_mode must be one of"):
        klc.LinearInequalityConstraint(klc.monotone_chain(6), call_mode="fast")


def test_auto_projection_of_separate_rows_is_saved_and_reloads_the_same():
    """The default on the checkerboard with a box scales its rows and projects; the config says so, and a
    layer rebuilt from it predicts the same, feasibly."""
    layer = klc.LinearInequalityConstraint(SMALL_CHECKER, box=(-1.0, 1.0))
    x = np.random.default_rng(5).normal(size=(32, 8)).astype("float32") * 3
    y = keras.ops.convert_to_numpy(layer(x))
    config = json.loads(json.dumps(layer.get_config()))
    assert config["scaling"] == "project" and config["scaled_rows"] == list(range(len(SMALL_CHECKER)))
    clone = klc.LinearInequalityConstraint.from_config(config)
    clone.build((None, 8))
    clone.set_weights(layer.get_weights())
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(clone(x)), y)
    assert layer.max_violation(y, relative=True) <= 1e-5
