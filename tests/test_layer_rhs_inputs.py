"""The layer with right-hand sides as inputs (``rhs_input="b"``, ``"d"``, both, chosen rows).

The invariant that matters: every output is feasible for its own ``b`` and
``d``, for random systems with row scales 1e-3..1e3, random right-hand sides
and input scales, before and after ``fit``, in float32 (1e-5 relative) and
float64 (1e-10 relative; 1e-12 on DC3's QP). Other backends: ``tests/test_backends.py``.
"""

import contextlib
from pathlib import Path

import keras
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import keras_lincon as klc
from tests.conftest import run_python

ROOT = Path(__file__).resolve().parents[1]

# float64: the layer's stated 1e-10 (outputs built from generators whose apex lies far from them lose
# digits to cancellation: up to 8e-12 seen on random systems; DC3's QP stays at about 1e-15, tested below)
TOLERANCE = {"float32": 1e-5, "float64": 1e-10}


@contextlib.contextmanager
def floatx(dtype: str):
    """``keras.config.set_floatx(dtype)`` for a block: ``fit``/``predict`` cast numpy inputs to floatx, so
    float64 right-hand sides reach a float64 layer unrounded only under floatx float64."""
    previous = keras.config.floatx()
    keras.config.set_floatx(dtype)
    try:
        yield
    finally:
        keras.config.set_floatx(previous)


def random_case(seed: int, n: int, m: int, p: int, spec_kind: int, scaled: bool):
    """A random system ``A x <= b, C x = d`` (row scales 1e-3..1e3) with a feasible point, and an ``rhs_input``."""
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(m, n)) * 10.0 ** rng.uniform(-3, 3, (m, 1))
    C = rng.normal(size=(p, n)) * 10.0 ** rng.uniform(-3, 3, (p, 1))
    x0 = rng.normal(size=n)
    b, d = A @ x0 + np.abs(A).sum(axis=1) * rng.uniform(0.1, 1.0, m), C @ x0
    specs = ["b", {"b": sorted(rng.choice(m, size=max(1, m // 2), replace=False).tolist())}]
    if p:
        specs += ["d", ("b", "d")]
    kwargs = dict(C=C if p else None, d=d if p else None, rhs_input=specs[spec_kind % len(specs)])
    if scaled:
        kwargs["scaled_rows"] = "all"
    return A, b, kwargs


def random_rhs(layer, rng, scale: float, batch: int):
    """Per-sample right-hand sides for each input of ``layer`` (any values: the layer is exact for all)."""
    return [rng.normal(size=(batch, size)) * scale for size in layer._plan.rhs_sizes]


def _model(layer, k: int, dtype: str):
    features = keras.Input((k,), name="features", dtype=dtype)
    parts = [keras.Input((size,), name=f"rhs{i}", dtype=dtype) for i, size in enumerate(layer._plan.rhs_sizes)]
    hidden = keras.layers.Dense(8, activation="tanh", dtype=dtype)(features)
    return keras.Model([features, *parts], layer([hidden, *parts]))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**31),
    shape=st.sampled_from([(3, 1, 1), (5, 2, 2), (6, 4, 1), (4, 3, 0), (7, 3, 3)]),
    spec_kind=st.integers(0, 3),
    scaled=st.booleans(),
    dtype=st.sampled_from(["float32", "float64"]),
    scale=st.sampled_from([1e-3, 1.0, 1e3]),
)
def test_every_output_is_feasible_for_its_own_rhs_before_and_after_fit(seed, shape, spec_kind, scaled, dtype, scale):
    with floatx(dtype):
        _check_feasible_before_and_after_fit(seed, shape, spec_kind, scaled, dtype, scale)


def _check_feasible_before_and_after_fit(seed, shape, spec_kind, scaled, dtype, scale):
    n, m, p = shape
    A, b, kwargs = random_case(seed, n, m, p, spec_kind, scaled)
    assert_feasible_before_and_after_fit(
        klc.LinearInequalityConstraint(A, b, dtype=dtype, **kwargs), seed, dtype, scale
    )


def assert_feasible_before_and_after_fit(layer, seed: int, dtype: str, scale: float) -> None:
    """Every output of ``layer`` (behind a 4-feature input) is feasible for its own random right-hand sides
    at ``scale``, before and after two epochs of ``fit`` with a large learning rate."""
    n = layer.units
    model = _model(layer, 4, dtype)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(64, 4)) * scale
    rhs = random_rhs(layer, rng, scale, 64)
    rhs_arg = rhs if len(rhs) > 1 else rhs[0]
    y = model.predict([x, *rhs], verbose=0)
    assert y.dtype == np.dtype(dtype)
    assert layer.max_violation(y, relative=True, rhs=rhs_arg) <= TOLERANCE[dtype]
    model.compile(optimizer=keras.optimizers.Adam(0.1), loss="mse")
    model.fit([x, *rhs], rng.normal(size=(64, n)) * scale, epochs=2, batch_size=16, verbose=0)
    y = model.predict([x, *rhs], verbose=0)
    assert layer.max_violation(y, relative=True, rhs=rhs_arg) <= TOLERANCE[dtype]


def dc3_qp(n=40, neq=10, nineq=10, num=256, seed=17):
    """DC3's "simple" QP data recipe at a small size: ``A y = x``, ``G y <= h`` (``x`` varies)."""
    state = np.random.RandomState(seed)
    state.random(n), state.random(n)  # Q's diagonal and p come first in the recipe
    A = state.normal(0, 1, (neq, n))
    X = state.uniform(-1, 1, (num, neq))
    G = state.normal(0, 1, (nineq, n))
    h = np.sum(np.abs(G @ np.linalg.pinv(A)), axis=1)
    return A, X, G, h


def test_dc3_qp_as_the_user_states_it_float64_to_machine_precision():
    A, X, G, h = dc3_qp()
    layer = klc.LinearInequalityConstraint(G, h, C=A, rhs_input="d", scaled_rows="all", dtype="float64")
    x_in = keras.Input((A.shape[0],), name="x", dtype="float64")
    hidden = keras.layers.Dense(32, activation="relu", dtype="float64")(x_in)
    model = keras.Model(x_in, layer([hidden, x_in]))
    for scale in (1.0, 1e4):
        y = keras.ops.convert_to_numpy(model(X * scale))  # a direct call: predict would cast X to floatx
        assert layer.max_violation(y, relative=True, rhs=X * scale) <= 1e-12
        assert np.abs(y @ A.T - X * scale).max() <= 1e-12 * max(1.0, np.abs(y).max() * np.abs(A).sum(axis=1).max())


def test_floatx_float64_computes_every_stage_in_float64():
    # a fresh process, as a user sets floatx first: Keras fixes its default dtype policy on first use
    out = run_python(
        """
        import keras
        keras.config.set_floatx("float64")
        import numpy as np
        import keras_lincon as klc
        from tests.test_layer_rhs_inputs import dc3_qp

        A, X, G, h = dc3_qp()
        x_in = keras.Input((A.shape[0],), name="x")
        layer = klc.LinearInequalityConstraint(G, h, C=A, rhs_input="d", scaled_rows="all", box=None)
        model = keras.Model(x_in, layer([keras.layers.Dense(16, activation="relu")(x_in), x_in]))
        model.compile(optimizer="adam", loss="mse")
        model.fit(X, np.zeros((len(X), 40)), epochs=1, verbose=0)
        y = model.predict(X * 1e3, verbose=0)
        print(y.dtype, layer.max_violation(y, relative=True, rhs=X * 1e3))
        """,
        env={"PYTHONPATH": str(ROOT)},
    )
    dtype, worst = out.split()[-2:]
    assert dtype == "float64" and float(worst) <= 1e-12, out


def test_save_and_load_keep_the_rhs_inputs(tmp_path):
    A, X, G, h = dc3_qp()
    layer = klc.LinearInequalityConstraint(G, h, C=A, rhs_input="d", scaled_rows="all")
    x_in = keras.Input((A.shape[0],), name="x")
    model = keras.Model(x_in, layer([keras.layers.Dense(16, activation="relu")(x_in), x_in]))
    y = model.predict(X, verbose=0)
    model.save(tmp_path / "proxy.keras")
    loaded = keras.saving.load_model(tmp_path / "proxy.keras")
    np.testing.assert_allclose(loaded.predict(X, verbose=0), y, atol=1e-6)
    assert loaded.layers[-1].rhs_input == {"b": None, "d": True}


def test_wrong_inputs_are_clear_errors():
    A, X, G, h = dc3_qp()
    layer = klc.LinearInequalityConstraint(G, h, C=A, rhs_input="d", scaled_rows="all")
    with pytest.raises(klc.ConstraintShapeError, match=r"call the layer on \[features, d\]"):
        layer(np.ones((3, 5)))
    with pytest.raises(klc.ConstraintShapeError, match=r"d must have shape \(batch, 10\) \(one per row of C\)"):
        layer([np.ones((3, 5)), np.ones((3, 7))])
    layer([np.ones((3, 5)), np.ones((3, 10))])
    with pytest.raises(ValueError, match="expected axis -1 of input shape to have value 10"):
        layer([np.ones((3, 5)), np.ones((3, 7))])  # after build, Keras's input spec
    with pytest.raises(klc.ConstraintShapeError, match=r"rhs= d must have shape \(batch, 10\)"):
        layer.max_violation(np.zeros((3, 40)), rhs=np.ones((3, 7)))
    both = klc.LinearInequalityConstraint(G, h, C=A, rhs_input=("b", "d"), scaled_rows="all")
    with pytest.raises(klc.ConstraintShapeError, match=r"call the layer on \[features, b, d\]"):
        both([np.ones((3, 5)), np.ones((3, 10))])


def test_metric_measures_per_sample_b_and_d():
    A, X, G, h = dc3_qp()
    layer = klc.LinearInequalityConstraint(G, h, C=A, rhs_input=("b", "d"), scaled_rows="all")
    rng = np.random.default_rng(0)
    b = np.abs(rng.normal(size=(len(X), 10)))
    y = keras.ops.convert_to_numpy(layer([rng.normal(size=(len(X), 5)), b, X]))
    metric = klc.ConstraintViolation(layer)
    metric.update_state(None, y, rhs=(b, X))
    assert float(metric.result()) == pytest.approx(layer.max_violation(y, relative=True, rhs=(b, X)), abs=1e-7)
    metric.reset_state()
    metric.update_state(None, y + 1.0, rhs=(b, X))  # moved off the equalities: the metric sees it
    assert float(metric.result()) > 1e-3


def test_project_on_a_coupled_block_is_the_projection_onto_the_moved_set():
    """scaling="project" on DC3's block (50 coupled rows): the output is the Euclidean projection of the
    generator stage's point onto the sample's own set {A y = x, G y <= h} (OSQP as the reference; the
    correction form of issue 20, not the stored set's projection moved by T x)."""
    from tests.test_coupled_kernel import osqp_projection

    A, X, G, h = dc3_qp(num=8)
    layer = klc.LinearInequalityConstraint(
        G, h, C=A, rhs_input="d", scaled_rows="all", scaling="project", dtype="float64"
    )
    features = np.random.default_rng(0).normal(size=(8, 5)) * 3
    out = keras.ops.convert_to_numpy(layer([features, X]))
    assert layer.max_violation(out, relative=True, rhs=X) <= 1e-12
    from keras_lincon.layers.generator_kernel import generator_outputs

    y = keras.ops.convert_to_numpy(
        generator_outputs(
            keras.ops.convert_to_tensor(features, "float64"), layer, layer._layout, layer._call_mode, "abs"
        )
    )
    expected = osqp_projection(y, G, h, A, X, None)
    np.testing.assert_allclose(out, expected, atol=1e-6 * (1 + np.abs(expected).max()))
