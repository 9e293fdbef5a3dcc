"""Tests of keras_lincon.planning.weight_arrays: the layer's weights from generators, and their check on load."""

import keras
import numpy as np
import pytest

import keras_lincon as klc
from keras_lincon.layers.generator_kernel import generator_outputs
from keras_lincon.planning import layout as layout_lib
from keras_lincon.planning import weight_arrays

TOL = klc.layers.FLOAT32_TOLERANCE


def budget(n: int, free: int = 0):
    """x >= 0 by generators (unit rays; the last ``free`` coordinates unbounded: lineality)
    and sum(x) <= 1 as a scaled row (row n - free)."""
    return np.vstack([-np.eye(n)[: n - free], np.ones((1, n))]), np.r_[np.zeros(n - free), 1.0]


def test_gather_path_equals_the_product_with_the_generators():
    A, b = budget(32, free=2)  # the lineality's coordinates last: a gather, not the diagonal
    A[:30] *= np.linspace(0.5, 2.0, 30)[:, None]  # rays of different lengths
    layer = klc.LinearInequalityConstraint(A, b, scaled_rows=[30])
    x = np.random.default_rng(0).normal(size=(64, 8)).astype("float32")
    layer.assert_constraints(layer(x))
    assert layer.layout["generator_path"] == "gather" and layer._call_mode == "direct"
    assert {w.name for w in layer.weights} >= {"generator_scale", "generator_gather"}
    rep = layer._representation
    y = generator_outputs(keras.ops.convert_to_tensor(x), layer, layer._layout, "direct", "abs")
    kernel, bias = (keras.ops.convert_to_numpy(w) for w in (layer.kernel, layer.bias))
    coeffs = x @ kernel + bias  # lineality first, then rays: nonneg="abs" on those; offset 0
    expected = coeffs[:, :2] @ rep.lineality + np.abs(coeffs[:, 2:]) @ rep.rays
    np.testing.assert_allclose(keras.ops.convert_to_numpy(y), expected, rtol=1e-5, atol=1e-6)


def test_tampered_gather_weights_are_refused():
    A, b = budget(8, free=1)
    layer = klc.LinearInequalityConstraint(A, b, scaled_rows=[7])
    layer.build((None, 4))
    names = [w.name for w in layer.weights]
    good = layer.get_weights()
    scale_at, gather_at = names.index("generator_scale"), names.index("generator_gather")
    for index, change, message in [
        (scale_at, lambda w: -w, "do not generate points"),  # rays pointing out of x >= 0
        (gather_at, lambda w: np.full_like(w, 0), "uses a generator twice"),
        (gather_at, lambda w: w + 100, "out of range"),
    ]:
        weights = [w.copy() for w in good]
        weights[index] = change(weights[index])
        with pytest.raises(klc.GeneratorMismatchError, match=message):
            layer.set_weights(weights)
    for mine, its in zip(layer.get_weights(), good, strict=True):  # rolled back
        np.testing.assert_array_equal(mine, its)


def test_gather_path_saves_and_loads_and_older_layouts_stay_dense(tmp_path):
    A, b = budget(16, free=3)
    model = keras.Sequential([keras.Input((4,)), klc.LinearInequalityConstraint(A, b, scaled_rows=[13])])
    assert model.layers[-1].layout["generator_path"] == "gather"
    x = np.random.default_rng(1).normal(size=(8, 4)).astype("float32") * 1e3
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    # a layout saved before generator_path existed means the product
    config = {k: v for k, v in model.layers[-1].layout.items() if k != "generator_path"}
    assert layout_lib.GeneratorLayout.from_config(config).generator_path == "dense"
    with pytest.raises(klc.GeneratorMismatchError, match="generator_path 'sparse'"):
        layout_lib.GeneratorLayout.from_config({**config, "generator_path": "sparse"})


def test_diagonal_path_equals_the_product_saves_and_refuses_tampering(tmp_path):
    A, b = budget(16)
    A[:16] *= np.linspace(0.5, 2.0, 16)[:, None]
    layer = klc.LinearInequalityConstraint(A, b, scaled_rows=[16], nonneg="softplus")
    model = keras.Sequential([keras.Input((8,)), layer])
    assert layer.layout["generator_path"] == "diagonal" and layer._call_mode == "direct"
    assert "generator_gather" not in {w.name for w in layer.weights}
    x = np.random.default_rng(0).normal(size=(64, 8)).astype("float32")
    y = generator_outputs(keras.ops.convert_to_tensor(x), layer, layer._layout, "direct", "softplus")
    kernel, bias = (keras.ops.convert_to_numpy(w) for w in (layer.kernel, layer.bias))
    # coefficient j drives coordinate j: the representation's rays in coordinate order
    rays = layer._representation.rays
    in_order = rays[np.argsort(np.argmax(np.abs(rays), axis=1))]
    expected = np.logaddexp(0.0, x @ kernel + bias) @ in_order
    np.testing.assert_allclose(keras.ops.convert_to_numpy(y), expected, rtol=1e-5, atol=1e-6)
    layer.assert_constraints(model.predict(x * 1e4, verbose=0))
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    weights = layer.get_weights()
    at = [w.name for w in layer.weights].index("generator_scale")
    weights[at] = -weights[at]  # rays leaving x >= 0
    with pytest.raises(klc.GeneratorMismatchError, match="do not generate points"):
        layer.set_weights(weights)


def test_weight_specs_follow_the_path():
    layout = layout_lib.GeneratorLayout(n_rays=5, n_lineality=1, n_basis=5, generator_path="gather")
    names = [name for name, _, _ in weight_arrays.weight_specs(layout, "direct", 6, 3, box=False)]
    assert names == ["kernel", "bias", "generator_scale", "generator_gather", "offset"]
    names = [name for name, _, _ in weight_arrays.weight_specs(layout, "projected", 6, 3, box=False)]
    assert "generator_gather" not in names and "complement_basis" in names
    layout = layout_lib.GeneratorLayout(n_rays=5, n_lineality=1, n_basis=5, generator_path="diagonal")
    names = [name for name, _, _ in weight_arrays.weight_specs(layout, "direct", 6, 3, box=False)]
    assert names == ["kernel", "bias", "generator_scale", "offset"]
