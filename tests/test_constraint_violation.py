"""Tests of keras_lincon.layers.constraint_violation.ConstraintViolation."""

import keras
import numpy as np
import pytest

import keras_lincon as klc
from keras_lincon.geometry import violations, with_box
from tests.conftest import run_python

TOL = klc.layers.FLOAT32_TOLERANCE
CHAIN = klc.monotone_chain(4)  # x_1 <= ... <= x_4, closed form (no cddlib)
CHAIN_B = np.full(3, 0.5)


def arrays(seed: int) -> dict:
    """A random system: 6 inequalities, one equality, a box (no generators needed)."""
    rng = np.random.default_rng(seed)
    return dict(A=rng.normal(size=(6, 4)), b=rng.uniform(-1, 1, 6), C=rng.normal(size=(1, 4)), d=[0.3], box=(-2, 3))


def reference(points, A, b, C, d, box) -> float:
    G, h = with_box(A, b, *box)
    return float(violations(points, G, h, C, d, relative=True).max())


def measured(metric, points, **kwargs) -> float:
    metric.reset_state()
    metric.update_state(None, points, **kwargs)
    return float(metric.result())


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e3, 1e25])
def test_matches_the_numpy_reference_on_infeasible_points(seed, scale):
    system = arrays(seed)
    points = (np.random.default_rng(seed + 10).normal(size=(50, 4)) * scale).astype("float32")
    metric = klc.ConstraintViolation(**system)
    expected = reference(points, **system)
    assert expected > 0  # random points: infeasible
    np.testing.assert_allclose(measured(metric, points), expected, rtol=1e-5, atol=1e-6)
    for point in points[:5]:  # and point by point
        np.testing.assert_allclose(measured(metric, point[None]), reference(point[None], **system), atol=2e-6)


def test_matches_the_numpy_reference_on_feasible_layer_outputs():
    layer = klc.LinearInequalityConstraint(CHAIN, CHAIN_B, box=(-1.0, 1.0))
    y = keras.ops.convert_to_numpy(layer(np.random.default_rng(0).normal(size=(64, 5)).astype("float32") * 10))
    metric = klc.ConstraintViolation(layer)
    value = measured(metric, y)
    assert value <= TOL
    np.testing.assert_allclose(value, layer.max_violation(y, relative=True), atol=1e-6)
    # the layer's rows, box included, are the metric's
    for mine, its in zip(metric.rows, layer.constraint_rows(), strict=True):
        np.testing.assert_array_equal(mine, its)


def test_nan_or_inf_output_reports_inf_and_reset_forgets():
    metric = klc.ConstraintViolation(A=CHAIN, b=CHAIN_B, box=(-1, 1))
    assert float(metric.result()) == -np.inf  # nothing seen yet
    feasible = np.array([[-0.5, 0.0, 0.1, 0.2]], "float32")
    assert measured(metric, feasible) < 0
    for bad in (np.nan, np.inf, -np.inf):
        y = np.vstack([feasible, [[0.0, bad, 0.0, 0.0]]]).astype("float32")
        assert measured(metric, y) == np.inf
        metric.update_state(None, feasible)  # the worst stays
        assert float(metric.result()) == np.inf
    metric.reset_state()
    assert float(metric.result()) == -np.inf
    metric.update_state(None, feasible)
    assert float(metric.result()) < 0
    # no rows at all: -inf for finite outputs, +inf for NaN
    free = klc.ConstraintViolation(units=3)
    assert measured(free, np.ones((2, 3))) == -np.inf
    assert measured(free, np.array([[0.0, np.nan, 0.0]])) == np.inf


def test_zero_weight_samples_are_left_out():
    metric = klc.ConstraintViolation(A=CHAIN, b=CHAIN_B)
    y = np.array([[0.0, 0.1, 0.2, 0.3], [np.nan] * 4, [5.0, 0.0, 0.0, 0.0]], "float32")
    worst_feasible = measured(metric, y[:1])
    assert measured(metric, y, sample_weight=np.array([2.0, 0.0, 0.0])) == worst_feasible
    assert measured(metric, y, sample_weight=np.array([[1.0], [0.0], [1.0]])) == pytest.approx(
        measured(metric, y[[0, 2]])
    )
    assert measured(metric, y, sample_weight=np.array([1.0, 1.0, 0.0])) == np.inf
    # several vectors per sample, weighted one by one (Keras's masks for sequences)
    seq = np.stack([y, y[::-1]])  # (2 samples, 3 steps, 4)
    assert measured(metric, seq, sample_weight=np.array([[1, 0, 0], [0, 0, 1]])) == worst_feasible
    # a (batch, 8) output of n = 4 values: two vectors per sample
    assert measured(metric, seq[:, :2].reshape(2, 8)) == np.inf


def test_arguments_are_checked():
    layer = klc.LinearInequalityConstraint(CHAIN, box=(-1.0, 1.0))
    with pytest.raises(klc.LinconError, match="not both"):
        klc.ConstraintViolation(layer, A=CHAIN)
    with pytest.raises(klc.LinconError, match="needs a LinearInequalityConstraint"):
        klc.ConstraintViolation(keras.layers.Dense(4))
    with pytest.raises(klc.ConstraintShapeError, match="needs a layer, A, or units"):
        klc.ConstraintViolation()
    with pytest.raises(klc.ConstraintShapeError, match="units=5"):
        klc.ConstraintViolation(A=CHAIN, units=5)
    with pytest.raises(klc.ConstraintShapeError, match="vectors of 4"):
        klc.ConstraintViolation(layer).update_state(None, np.zeros((2, 6)))


def test_per_sample_rhs_matches_the_layer_and_is_required():
    """A layer with rhs_input: each sample is measured against its own b_s (and the box), as the layer does."""
    n = 4
    A = np.vstack([-np.eye(n), np.ones((1, n))])  # x >= 0 (generators), sum x <= b_s (scaled, per sample)
    layer = klc.LinearInequalityConstraint(A, np.r_[np.zeros(n), 0.5], box=(None, 2.0), scaled_rows=[n], rhs_input=True)
    rng = np.random.default_rng(0)
    features, rhs = rng.normal(size=(32, 6)).astype("float32"), rng.uniform(0.5, 3.0, (32, 1)).astype("float32")
    y = keras.ops.convert_to_numpy(layer([features, rhs]))
    metric = klc.ConstraintViolation(layer)
    assert metric.rhs_rows == [n]
    value = measured(metric, y, rhs=rhs)
    np.testing.assert_allclose(value, layer.max_violation(y, relative=True, rhs=rhs), atol=1e-6)
    assert value <= TOL
    # the same outputs against a smaller b_s violate, as the numpy reference says
    tighter = rhs * 0.5
    np.testing.assert_allclose(
        measured(metric, y, rhs=tighter), layer.max_violation(y, relative=True, rhs=tighter), rtol=1e-5, atol=1e-6
    )
    assert measured(metric, y, rhs=tighter) > 0
    with pytest.raises(klc.LinconError, match=r"rhs_input=True.*rhs=b_s"):
        metric.update_state(None, y)
    with pytest.raises(klc.LinconError, match="only for a metric of a layer with rhs_input"):
        klc.ConstraintViolation(A=CHAIN, b=CHAIN_B).update_state(None, y, rhs=rhs)
    with pytest.raises(klc.ConstraintShapeError, match="rhs_rows must be distinct indices"):
        klc.ConstraintViolation(A=CHAIN, b=CHAIN_B, rhs_rows=[3])
    clone = klc.ConstraintViolation.from_config(metric.get_config())
    assert clone.rhs_rows == [n] and measured(clone, y, rhs=rhs) == pytest.approx(value)


def test_config_round_trip():
    metric = klc.ConstraintViolation(A=CHAIN, b=CHAIN_B, C=[[1.0, 1.0, 1.0, 1.0]], d=[1.0], box=(-1, 1), name="v")
    clone = klc.ConstraintViolation.from_config(metric.get_config())
    assert clone.name == "v" and clone.units == 4
    for mine, its in zip(clone.rows, metric.rows, strict=True):
        np.testing.assert_array_equal(mine, its)
    free = klc.ConstraintViolation.from_config(klc.ConstraintViolation(units=3).get_config())
    assert free.units == 3 and free.rows[0].shape == (0, 3)


@pytest.fixture(scope="module")
def compiled_model():
    keras.utils.set_random_seed(0)
    layer = klc.LinearInequalityConstraint(CHAIN, CHAIN_B, box=(-1, 1))
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16), layer])
    model.compile(optimizer="adam", loss="mse", metrics=[klc.ConstraintViolation(layer)])
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(128, 8)).astype("float32"), rng.uniform(-2, 2, (128, 4)).astype("float32")
    history = model.fit(x, y, epochs=2, batch_size=32, verbose=0, validation_data=(x, y))
    return model, x, y, history.history


def test_compile_fit_evaluate_report_the_worst_violation(compiled_model):
    model, x, y, history = compiled_model
    assert len(history["max_violation"]) == 2
    assert max(history["max_violation"] + history["val_max_violation"]) <= TOL
    logs = model.evaluate(x, y, batch_size=32, verbose=0, return_dict=True)
    worst = model.layers[-1].max_violation(model.predict(x, verbose=0), relative=True)
    np.testing.assert_allclose(logs["max_violation"], worst, atol=1e-6)  # max over all batches


def test_compiled_model_saves_and_reloads_with_the_metric(compiled_model, tmp_path):
    model, x, y, _ = compiled_model
    path = tmp_path / "model.keras"
    model.save(path)
    expected = model.evaluate(x, y, verbose=0, return_dict=True)["max_violation"]
    reloaded = keras.saving.load_model(path)
    assert reloaded.evaluate(x, y, verbose=0, return_dict=True)["max_violation"] == pytest.approx(expected, abs=1e-6)
    # in a fresh process after a plain `import keras_lincon` (the metric is registered on Keras import)
    out = run_python(f"""
        import numpy as np, keras_lincon, keras
        m = keras.saving.load_model({str(path)!r})
        x = np.random.default_rng(0).normal(size=(128, 8)).astype("float32")
        logs = m.evaluate(x, np.zeros((128, 4)), verbose=0, return_dict=True)
        print("VIOLATION", logs["max_violation"] <= {TOL})
    """)
    assert "VIOLATION True" in out
