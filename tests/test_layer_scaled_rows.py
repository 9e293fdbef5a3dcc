"""Tests of the layer's scaled stage: scaled rows, the fallback, right-hand sides as an input (issue 11)."""

import time
import warnings

import keras
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import keras_lincon as klc
from keras_lincon import geometry
from keras_lincon.errors import ConstraintShapeError, ConstraintViolationError, LinconError, ScaledRowsWarning
from keras_lincon.layers import SCALINGS, LinearInequalityConstraint

TOL = klc.layers.FLOAT32_TOLERANCE
CHECKER = klc.checkerboard((8, 8), (2, 2))


def coupled_system(rng, n, m):
    A = rng.standard_normal((m, n))
    x0 = rng.uniform(-0.3, 0.3, n)
    return A, A @ x0 + rng.uniform(0.5, 1.5, m)


def budget_layer(rng, n=10, groups=3, scaling="per_block"):
    """x >= 0 (generators), x <= 2 (box), per-sample budgets on groups (scaled, input)."""
    G = (rng.integers(0, groups, n)[None, :] == np.arange(groups)[:, None]).astype(float)
    G[:, 0] = 1.0  # couple the groups through item 0
    A = np.vstack([-np.eye(n), G])
    b = np.concatenate([np.zeros(n), np.full(groups, 0.5)])  # budget floor 0.5
    layer = LinearInequalityConstraint(
        A, b, box=(None, 2.0), scaled_rows=np.arange(n, n + groups), rhs_input=True, scaling=scaling
    )
    return layer, groups


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(15, 40), m=st.integers(50, 300), scaling=st.sampled_from(SCALINGS))
def test_exploding_sets_build_fast_by_fallback_and_stay_feasible(seed, n, m, scaling):
    rng = np.random.default_rng(seed)
    A, b = coupled_system(rng, n, m)
    start = time.perf_counter()
    with pytest.warns(ScaledRowsWarning, match="enforced by scaling"):
        layer = LinearInequalityConstraint(A, b, box=(-2.0, 2.0), scaling=scaling)
    assert time.perf_counter() - start < 10.0
    model = keras.Sequential([keras.Input((6,)), layer])
    x = rng.standard_normal((32, 6)).astype("float32")
    for scale in (1e-6, 1.0, 1e6):
        assert layer.max_violation(model(x * scale), relative=True) <= TOL
    model.compile("adam", "mse")
    model.fit(x, rng.standard_normal((32, n)).astype("float32") * 3, epochs=2, verbose=0)
    for scale in (1e-6, 1.0, 1e6):
        assert layer.max_violation(model(x * scale), relative=True) <= TOL


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), scaling=st.sampled_from(SCALINGS))
def test_per_sample_rhs_above_floor_is_feasible(seed, scaling):
    rng = np.random.default_rng(seed)
    layer, groups = budget_layer(rng, scaling=scaling)
    features = keras.Input((5,))
    budget = keras.Input((groups,))
    model = keras.Model([features, budget], layer([features, budget]))
    h = (rng.standard_normal((64, 5)) * 10.0 ** rng.integers(-6, 7, (64, 1))).astype("float32")
    rhs = (0.5 + rng.exponential(2.0, (64, groups))).astype("float32")
    y = model([h, rhs])
    assert layer.below_floor(rhs).size == 0
    assert layer.assert_constraints(y, rhs=rhs) <= TOL


def test_below_floor_is_reported():
    layer, groups = budget_layer(np.random.default_rng(0))
    rhs = np.full((4, groups), 1.0, dtype="float32")
    rhs[2] = -0.1  # below the floor 0.5 (and below a.c = 0: nothing can hold)
    y = layer([np.full((4, 5), 50.0, dtype="float32"), rhs])
    assert layer.below_floor(rhs).tolist() == [2]
    with pytest.raises(ConstraintViolationError, match=r"samples \[2\] violate.*below the declared floor"):
        layer.assert_constraints(y, rhs=rhs)


def test_per_block_equals_global_on_one_block():
    rng = np.random.default_rng(2)
    A, b = coupled_system(rng, 6, 10)
    kw = dict(box=(-1.0, 1.0), scaled_rows=[0, 1, 2], kernel_initializer="ones")
    h = rng.standard_normal((16, 4)).astype("float32") * 5
    pb = LinearInequalityConstraint(A, b, scaling="per_block", **kw)
    gl = LinearInequalityConstraint(A, b, scaling="global", **kw)
    assert pb._plan.stage.n_blocks == 1
    np.testing.assert_allclose(pb(h), gl(h), rtol=1e-6, atol=1e-6)


def test_checkerboard_blocks_and_free_coordinates():
    A = np.zeros((1, 5))
    A[0, :2] = [1.0, -1.0]
    layer = LinearInequalityConstraint(A, [0.5], box=(-1.0, 1.0), kernel_initializer="ones")
    assert layer._plan.stage.coord_block.tolist() == [0, 0, -1, -1, -1]
    y = keras.ops.convert_to_numpy(layer(np.full((2, 3), 4.0, dtype="float32")))
    np.testing.assert_allclose(y[:, 2:], 1.0)  # free coordinates are clipped
    assert layer.max_violation(y, relative=True) <= TOL


@pytest.mark.parametrize("scaling", ["per_block", "mix"])
def test_save_load_predicts_the_same_without_double_description(tmp_path, monkeypatch, scaling):
    rng = np.random.default_rng(4)
    layer, groups = budget_layer(rng, scaling=scaling)
    features, budget = keras.Input((5,)), keras.Input((groups,))
    model = keras.Model([features, budget], layer([features, budget]))
    h = rng.standard_normal((8, 5)).astype("float32")
    rhs = (1.0 + rng.random((8, groups))).astype("float32")
    expected = keras.ops.convert_to_numpy(model([h, rhs]))
    path = tmp_path / "m.keras"
    model.save(path)

    def refuse(*args, **kwargs):
        raise AssertionError("loading ran double description")

    monkeypatch.setattr(geometry, "h_to_v", refuse)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded([h, rhs])), expected, rtol=1e-6, atol=1e-6)


def test_explicit_scaled_rows_mask_and_indices_agree():
    rng = np.random.default_rng(5)
    A, b = coupled_system(rng, 5, 8)
    mask = np.zeros(8, dtype=bool)
    mask[[1, 4]] = True
    a = LinearInequalityConstraint(A, b, scaled_rows=mask, box=(-3.0, 3.0))
    c = LinearInequalityConstraint(A, b, scaled_rows=[4, 1], box=(-3.0, 3.0))
    assert a._plan.stages.split.scaled == c._plan.stages.split.scaled == (1, 4)
    np.testing.assert_allclose(a._plan.stage.center, c._plan.stage.center)


def test_all_rows_scaled_with_project_is_the_exact_projection_of_an_affine_map(tmp_path):
    """scaled_rows="all", scaling="project": Dense, then the Euclidean projection onto rows and box."""
    pytest.importorskip("osqp")
    from keras_lincon.baselines.projection import OSQPProjector

    A = klc.checkerboard((8, 8), (2, 2))
    layer = LinearInequalityConstraint(A, box=(-1.0, 1.0), scaled_rows="all", scaling="project")
    assert layer.scaled_rows == (0, 1, 2, 3) and layer._plan.stages.split.moved == ()
    model = keras.Sequential([keras.Input((5,)), layer])
    h = np.random.default_rng(2).normal(size=(32, 5)).astype("float32")
    x = model.predict(h, verbose=0)
    kernel, bias = (keras.ops.convert_to_numpy(w) for w in (layer.kernel, layer.bias))
    affine = h.astype(np.float64) @ kernel + bias  # no generator rows: the generator stage is this map
    np.testing.assert_allclose(x, OSQPProjector(A, box=(-1.0, 1.0)).project(affine), atol=1e-4)
    layer.assert_constraints(x)
    model.save(tmp_path / "m.keras")
    np.testing.assert_array_equal(keras.saving.load_model(tmp_path / "m.keras").predict(h, verbose=0), x)
    with pytest.raises(ConstraintShapeError, match="or 'all'; got 'every'"):
        LinearInequalityConstraint(A, box=(-1.0, 1.0), scaled_rows="every")


def test_no_warning_when_nothing_explodes():
    with warnings.catch_warnings():
        warnings.simplefilter("error", ScaledRowsWarning)
        layer = LinearInequalityConstraint(CHECKER, box=(-1.0, 1.0))
    assert layer._plan.stages.split.moved == ()  # "auto" scales the rows it projects onto; none moved


def test_errors():
    A, b = np.vstack([-np.eye(3), np.ones((1, 3))]), np.array([0.0, 0.0, 0.0, 1.0])
    with pytest.raises(LinconError, match="scaling must be one of"):
        LinearInequalityConstraint(A, b, scaling="nearest")
    with pytest.raises(ConstraintShapeError, match="rhs_input=True without scaled_rows.*linearly independent"):
        LinearInequalityConstraint(A, b, rhs_input=True)
    with pytest.raises(ConstraintShapeError, match="boolean scaled_rows mask"):
        LinearInequalityConstraint(A, b, scaled_rows=np.array([True, False]))
    with pytest.raises(ConstraintShapeError, match="indices of rows of A"):
        LinearInequalityConstraint(A, b, scaled_rows=[7])
    layer = LinearInequalityConstraint(A, b, scaled_rows=[3], rhs_input=True)
    with pytest.raises(ConstraintShapeError, match=r"b_s must have shape \(batch, 1\)"):
        layer([np.zeros((2, 4), "float32"), np.ones((2, 2), "float32")])
    with pytest.raises(ConstraintShapeError, match=r"\[features, b_s\]"):
        LinearInequalityConstraint(A, b, scaled_rows=[3], rhs_input=True)(np.zeros((2, 4), "float32"))


def test_budget_allocation_tutorial_quick(tmp_path):
    from tests.conftest import run_python

    out = run_python(f"""
        import sys; sys.path.insert(0, "tutorials")
        import budget_allocation as t
        r = t.main(["--quick", "--out", "{tmp_path}"])
        print("RESULT", r["layer_worst_relative_violation"], r["samples_below_floor"])
    """)
    worst, below = out.split("RESULT")[-1].split()
    assert float(worst) <= TOL and int(below) == 0
    assert (tmp_path / "metrics.json").is_file()


def test_fallback_rows_keep_fixed_rhs_while_input_rows_take_b_s():
    rng = np.random.default_rng(7)
    A, b = coupled_system(rng, 20, 80)  # explodes: moved to the scaled stage
    A = np.vstack([A, np.ones((1, 20))])
    b = np.append(b, 1.0)  # budget row, floor 1.0, right-hand side from the input
    with pytest.warns(ScaledRowsWarning):
        layer = LinearInequalityConstraint(A, b, box=(-2.0, 2.0), scaled_rows=[80], rhs_input=True)
    assert layer.scaled_rows == (80,) and len(layer._plan.stages.split.moved) == 80
    h = rng.standard_normal((32, 6)).astype("float32") * 100
    rhs = (1.0 + rng.exponential(2.0, (32, 1))).astype("float32")
    y = layer([h, rhs])
    assert layer.assert_constraints(y, rhs=rhs) <= TOL
    clone = LinearInequalityConstraint.from_config(layer.get_config())
    assert (
        clone._plan.stages.split.scaled == layer._plan.stages.split.scaled
        and clone._plan.stages.split.moved == layer._plan.stages.split.moved
    )


def test_jit_compiled_fit_and_mixed_precision_stay_feasible():
    rng = np.random.default_rng(8)
    layer, groups = budget_layer(rng, scaling="mix")
    features, budget = keras.Input((5,)), keras.Input((groups,))
    model = keras.Model([features, budget], layer([features, budget]))
    model.compile("adam", "mse", jit_compile=True)
    h = rng.standard_normal((64, 5)).astype("float32")
    rhs = (0.5 + rng.exponential(2.0, (64, groups))).astype("float32")
    model.fit([h, rhs], rng.random((64, 10)).astype("float32") * 3, epochs=1, batch_size=32, verbose=0)
    assert layer.assert_constraints(model.predict([h, rhs], verbose=0), rhs=rhs) <= TOL
    keras.config.set_dtype_policy("mixed_float16")
    try:
        mixed = LinearInequalityConstraint(CHECKER, box=(-1.0, 1.0), scaling="clip_blend")
        y = mixed(h * 100)
    finally:
        keras.config.set_dtype_policy("float32")
    assert mixed.compute_dtype == "float32" and keras.backend.standardize_dtype(y.dtype) == "float32"
    mixed.assert_constraints(y)


def test_export_with_input_rhs_runs_without_keras_lincon(tmp_path):
    from tests.conftest import BLOCK_KERAS_LINCON, run_python

    rng = np.random.default_rng(9)
    layer, groups = budget_layer(rng, scaling="mix")
    features, budget = keras.Input((5,), name="features"), keras.Input((groups,), name="budget")
    model = keras.Model([features, budget], layer([features, budget]))
    h = rng.standard_normal((16, 5)).astype("float32") * 10
    rhs = (0.5 + rng.exponential(2.0, (16, groups))).astype("float32")
    expected = keras.ops.convert_to_numpy(model([h, rhs]))
    model.export(str(tmp_path / "export"), verbose=False)
    np.save(tmp_path / "h.npy", h)
    np.save(tmp_path / "rhs.npy", rhs)
    run_python(
        BLOCK_KERAS_LINCON
        + f"""
import numpy as np, tensorflow as tf
loaded = tf.saved_model.load("{tmp_path}/export")
y = loaded.serve([tf.constant(np.load("{tmp_path}/h.npy")), tf.constant(np.load("{tmp_path}/rhs.npy"))])
np.save("{tmp_path}/y.npy", y.numpy())
"""
    )
    y = np.load(tmp_path / "y.npy")
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
    assert layer.assert_constraints(y, rhs=rhs) <= TOL


def test_load_model_needs_only_import_keras_lincon(tmp_path):
    from tests.conftest import run_python

    layer = LinearInequalityConstraint(CHECKER, box=(-1.0, 1.0), scaling="mix")
    model = keras.Sequential([keras.Input((4,)), layer])
    model.save(tmp_path / "m.keras")
    out = run_python(f"""
        import keras, keras_lincon
        model = keras.saving.load_model("{tmp_path}/m.keras")
        print(type(model.layers[-1]).__name__, keras_lincon.LinearInequalityConstraint is type(model.layers[-1]))
    """)
    assert "LinearInequalityConstraint True" in out


def test_scaled_rows_constraint_is_a_deprecated_alias(tmp_path):
    from keras_lincon.compat.scaled_rows_constraint import ScaledRowsConstraint

    A, b = np.vstack([-np.eye(3), np.ones((1, 3))]), np.array([0.0, 0.0, 0.0, 1.0])
    with pytest.warns(DeprecationWarning, match="scaled_rows="):
        old = ScaledRowsConstraint(A, b, scaled_rows=[3], center=[0.2, 0.2, 0.2], kernel_initializer="ones")
    new = LinearInequalityConstraint(A, b, scaled_rows=[3], box_center=[0.2, 0.2, 0.2], kernel_initializer="ones")
    h = np.random.default_rng(0).standard_normal((4, 3)).astype("float32")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(old(h)), keras.ops.convert_to_numpy(new(h)))
    model = keras.Sequential([keras.Input((3,)), old])
    model.save(tmp_path / "m.keras")
    assert type(keras.saving.load_model(tmp_path / "m.keras").layers[-1]) is ScaledRowsConstraint


# ------------------------------------------------ the shifted-apex form (every b an input)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(2, 24), data=st.data())
def test_shifted_apex_is_feasible_for_every_rhs(seed, n, data):
    rng = np.random.default_rng(seed)
    m = data.draw(st.integers(1, n))
    p = data.draw(st.integers(0, n - m))
    A = rng.standard_normal((m, n)) * 10.0 ** rng.uniform(-3, 3, (m, 1))
    C, d = (rng.standard_normal((p, n)), rng.standard_normal(p)) if p else (None, None)
    layer = LinearInequalityConstraint(A, C=C, d=d, rhs_input=True)
    features, rhs_in = keras.Input((5,)), keras.Input((m,))
    model = keras.Model([features, rhs_in], layer([features, rhs_in]))
    h = (rng.standard_normal((64, 5)) * 10.0 ** rng.integers(-6, 7, (64, 1))).astype("float32")
    rhs = (rng.standard_normal((64, m)) * 10.0 ** rng.integers(-3, 4, (64, 1))).astype("float32")  # any sign
    assert layer.below_floor(rhs).size == 0
    assert layer.assert_constraints(model([h, rhs]), rhs=rhs) <= TOL
    model.compile("adam", "mse")
    model.fit([h, rhs], rng.standard_normal((64, n)).astype("float32"), epochs=1, verbose=0)
    assert layer.assert_constraints(model([h, rhs]), rhs=rhs) <= TOL


def test_shifted_apex_refuses_what_it_cannot_do_exactly(tmp_path):
    A = np.vstack([np.eye(3), np.ones((1, 3))])  # 4 rows in 3 dimensions: not of full row rank
    with pytest.raises(ConstraintShapeError, match="linearly independent"):
        LinearInequalityConstraint(A, rhs_input=True)
    with pytest.raises(ConstraintShapeError, match="no box"):
        LinearInequalityConstraint(np.eye(3), rhs_input=True, box=(-1.0, 1.0))
    layer = LinearInequalityConstraint(np.eye(3), rhs_input=True)
    with pytest.raises(ConstraintShapeError, match=r"b_s must have shape \(batch, 3\)"):
        layer([np.zeros((2, 4), "float32"), np.ones((2, 2), "float32")])
    features, rhs_in = keras.Input((4,)), keras.Input((3,))
    model = keras.Model([features, rhs_in], layer([features, rhs_in]))
    model.save(tmp_path / "m.keras")
    h, rhs = np.ones((2, 4), "float32"), -np.ones((2, 3), "float32")
    reloaded = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(reloaded([h, rhs])), keras.ops.convert_to_numpy(model([h, rhs]))
    )
    assert reloaded.layers[-1].assert_constraints(reloaded([h, rhs]), rhs=rhs) <= TOL


MIRRORED = """
import numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras, keras_lincon as klc
from tests.test_layer_scaled_rows import budget_layer
rng = np.random.default_rng(0)
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
    layer, groups = budget_layer(rng, scaling="mix")
    features, budget = keras.Input((5,)), keras.Input((groups,))
    model = keras.Model([features, budget], layer([features, budget]))
    model.compile("adam", "mse")
h = rng.standard_normal((128, 5)).astype("float32")
rhs = (0.5 + rng.exponential(2.0, (128, groups))).astype("float32")
model.fit([h, rhs], rng.random((128, 10)).astype("float32") * 3, epochs=2, batch_size=32, verbose=0)
y = model.predict([h, rhs], verbose=0)
layer.assert_constraints(y, rhs=rhs)
model.save("{tmp}/m.keras")
again = keras.saving.load_model("{tmp}/m.keras")
np.testing.assert_allclose(again.predict([h, rhs], verbose=0), y, atol=1e-5)
print("ok", strategy.num_replicas_in_sync)
"""


def test_mirrored_strategy_fit_with_input_rhs_and_mix(tmp_path):
    from tests.conftest import run_python

    assert "ok 2" in run_python(MIRRORED.format(tmp=tmp_path))


def test_project_scaling_trains_saves_and_stays_feasible_at_any_scale(tmp_path):
    layer = LinearInequalityConstraint(CHECKER, box=(-1.0, 1.0), scaling="project", nonneg="relu")
    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(32, activation="relu"), layer])
    rng = np.random.default_rng(11)
    x, target = rng.standard_normal((256, 16)).astype("float32"), rng.uniform(-1.2, 1.2, (256, 64)).astype("float32")
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    history = model.fit(x, target, epochs=4, batch_size=64, verbose=0).history
    assert history["loss"][-1] < history["loss"][0]
    for scale in (1e-6, 1.0, 1e6):
        layer.assert_constraints(model.predict(x * scale, verbose=0))
    model.save(tmp_path / "project.keras")
    loaded = keras.saving.load_model(tmp_path / "project.keras")
    assert loaded.layers[-1].scaling == "project"
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
