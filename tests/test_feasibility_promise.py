"""Regression tests for issue 9: every output is feasible, or a clear error."""

import keras
import numpy as np
import pytest

import keras_lincon as klc

UNEQUAL_BLOCKS = dict(A=[[1, 0, 0], [-1, 0, 0], [0, -1, 0], [0, 0, -1], [0, 1, 1]], b=[2, -1, -1, -1, 3])


def _model(layer, k=4):
    return keras.Sequential([keras.Input((k,)), layer])


def test_padding_vertices_are_real_vertices_at_huge_input_scale():
    layer = klc.LinearInequalityConstraint(**UNEQUAL_BLOCKS)
    model = _model(layer)
    x = np.random.default_rng(0).standard_normal((256, 4)).astype("float32") * 1e9
    y = model.predict(x, verbose=0)
    assert layer.max_violation(y, relative=True) <= 1e-5


def test_set_weights_from_another_constraint_is_refused_and_rolled_back():
    a = klc.LinearInequalityConstraint(klc.monotone_chain(4))
    b = klc.LinearInequalityConstraint(-klc.monotone_chain(4))
    model_a, model_b = _model(a), _model(b)
    before = [w.copy() for w in a.get_weights()]
    with pytest.raises(klc.GeneratorMismatchError, match="another constraint set"):
        a.set_weights(b.get_weights())
    for old, now in zip(before, a.get_weights(), strict=False):
        np.testing.assert_array_equal(old, now)
    with pytest.raises(klc.GeneratorMismatchError):  # each generator write is checked, and undone
        model_a.set_weights(model_b.get_weights())
    assert klc.verify_generators(model_a) == 1  # the kernels may have changed; the generators did not


def test_load_weights_from_another_box_is_refused(tmp_path):
    A = klc.checkerboard((4, 4), (2, 2))
    source = _model(klc.LinearInequalityConstraint(A, box=(-2.0, 0.5), box_center=np.full(16, 0.0) + 0.0))
    target = _model(klc.LinearInequalityConstraint(A, box=(-1.0, 1.0), scaling="per_block"))
    source.save_weights(tmp_path / "w.weights.h5")
    with pytest.raises(ValueError, match="box weights do not match"):
        target.load_weights(tmp_path / "w.weights.h5")


def test_edited_constraints_in_a_keras_file_are_refused(tmp_path):
    import json
    import zipfile

    model = _model(klc.LinearInequalityConstraint(klc.monotone_chain(4)))
    model.save(tmp_path / "m.keras")
    with zipfile.ZipFile(tmp_path / "m.keras") as zin:
        files = {name: zin.read(name) for name in zin.namelist()}
    config = json.loads(files["config.json"])
    layer_config = config["config"]["layers"][-1]["config"]
    layer_config["A"] = (-np.asarray(layer_config["A"])).tolist()
    files["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(tmp_path / "edited.keras", "w") as zout:
        for name, data in files.items():
            zout.writestr(name, data)
    # Keras reports a failed load_own_variables as a ValueError with our message.
    with pytest.raises(ValueError, match="do not generate points of its constraints"):
        keras.saving.load_model(tmp_path / "edited.keras")


def test_narrow_box_without_rows_is_enforced():
    layer = klc.LinearInequalityConstraint(np.zeros((0, 3)), box=(1e-12, 1e-9))
    y = keras.ops.convert_to_numpy(layer(np.random.default_rng(0).standard_normal((64, 5)).astype("float32") * 10))
    assert layer.max_violation(y, relative=True) <= 1e-5  # was: values near -3.7
    assert np.all(y > 0) and np.all(y <= 1e-9 * (1 + 1e-6))


def test_narrow_box_with_rows_uses_a_checked_centre():
    layer = klc.LinearInequalityConstraint([[1.0, -1.0]], box=(1e-12, 1e-9))
    y = keras.ops.convert_to_numpy(layer(np.random.default_rng(1).standard_normal((64, 5)).astype("float32")))
    assert layer.max_violation(y, relative=True) <= 1e-5


def test_box_only_layer_with_units():
    layer = klc.LinearInequalityConstraint(None, box=(0.0, 1.0), units=10)
    y = keras.ops.convert_to_numpy(layer(np.ones((3, 4), "float32") * 50))
    assert y.shape == (3, 10) and np.all((y >= 0) & (y <= 1))
    clone = klc.LinearInequalityConstraint.from_config(layer.get_config())
    assert clone.units == 10 and clone.system.A.shape == (0, 10)
    with pytest.raises(klc.ConstraintShapeError, match="units="):
        klc.LinearInequalityConstraint(None, box=(0.0, 1.0))


def test_nan_outputs_count_as_violations():
    layer = klc.LinearInequalityConstraint(klc.monotone_chain(3))
    y = np.array([[np.nan, 0.0, 1.0], [2.0, 1.0, 0.0]])
    assert layer.max_violation(y) == np.inf
    with pytest.raises(klc.ConstraintViolationError):
        layer.assert_constraints(y)
    assert klc.max_violation(np.array([[np.inf, 1.0, 2.0]]), klc.monotone_chain(3)) == np.inf


@pytest.mark.parametrize("scaling", klc.layers.SCALINGS)
def test_empty_batch_with_box(scaling):
    layer = klc.LinearInequalityConstraint(klc.monotone_chain(3), box=(-1, 1), scaling=scaling)
    assert tuple(layer(np.zeros((0, 4), "float32")).shape) == (0, 3)
    board = klc.LinearInequalityConstraint(klc.checkerboard((4, 4), (2, 2)), box=(-1.0, 1.0), scaling=scaling)
    assert tuple(board(np.zeros((0, 5), "float32")).shape) == (0, 16)


def test_wrong_length_box_is_a_clear_error():
    with pytest.raises(klc.ConstraintShapeError, match="length 3"):
        klc.LinearInequalityConstraint(klc.monotone_chain(3), box=([0.0, 0.0], 1.0))


def test_rows_of_very_different_scale_are_accepted():
    A = np.array([[1.0, 0.0], [0.0, 1e-12]])
    layer = klc.LinearInequalityConstraint(A, [1.0, 1.0])
    y = keras.ops.convert_to_numpy(layer(np.random.default_rng(2).standard_normal((32, 3)).astype("float32")))
    assert layer.max_violation(y, relative=True) <= 1e-5


def test_wrong_input_width_after_build_names_the_axis():
    layer = klc.LinearInequalityConstraint(klc.monotone_chain(3))
    layer(np.zeros((1, 4), "float32"))
    with pytest.raises(ValueError, match="axis -1"):
        layer(np.zeros((1, 5), "float32"))


def test_mask_is_passed_through():
    inputs = keras.Input((6, 2))
    masked = keras.layers.Masking(0.0)(inputs)
    out = klc.LinearInequalityConstraint(klc.monotone_chain(3))(masked)
    assert out._keras_mask is not None


def test_large_box_layer_builds_without_n_by_n_work():
    n = 20_000
    layer = klc.LinearInequalityConstraint(np.zeros((0, n)), box=(-1.0, 1.0))
    assert layer.representation.row_space.shape == (0, n)
    y = keras.ops.convert_to_numpy(layer(np.random.default_rng(3).standard_normal((4, 8)).astype("float32") * 10))
    assert y.shape == (4, n) and np.all(np.abs(y) <= 1.0)
    assert layer.representation._lineality is None  # the n x n lineality basis was never formed
