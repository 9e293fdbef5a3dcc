"""Files written by release 0.1.0 keep loading and predicting the same.

The fixtures in ``tests/fixtures/release_0_1_0/`` were written by
``tests/fixtures/make_release_fixtures.py`` with the 0.1.0 code; they pin the
saved config keys (``layout`` included), the weight names and the registered
class names. Each ``.keras`` file must load with the current code, in this
process and in a fresh one (where only ``import keras_lincon`` registers the
classes), and predict what 0.1.0 predicted (rtol 1e-6) and stay feasible
against the constraints recorded next to it (not the ones the loaded layer
reports). The SavedModel must serve without keras_lincon importable.
"""

import json
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest

import keras_lincon as klc
from keras_lincon import compat
from tests.conftest import BLOCK_KERAS_LINCON, run_python

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "release_0_1_0"
LAYER_CASES = ["checkerboard_box", "monotone_chain", "polytope_blocks", "equalities", "mode_projected", "mode_direct"]
TOL = 1e-5  # the layer's stated relative float32 tolerance (public contract, not read from the code under test)
RTOL = 1e-6


@pytest.fixture(scope="module")
def recorded():
    with np.load(FIXTURES / "cases.npz") as data:
        return {key: data[key] for key in data.files}


def constraints(recorded, name):
    return {
        key: recorded[f"{name}/{key}"] for key in ("A", "b", "C", "d", "lower", "upper") if f"{name}/{key}" in recorded
    }


def relative_violation(y, c):
    """Worst relative violation of the recorded constraints (box rows included)."""
    n = c["A"].shape[1]
    y = np.asarray(y, dtype=np.float64).reshape(-1, n)
    G, h = [c["A"]], [c.get("b", np.zeros(len(c["A"])))]
    if "lower" in c:
        G += [np.eye(n), -np.eye(n)]
        h += [c["upper"], -c["lower"]]
    return klc.max_violation(y, np.vstack(G), np.concatenate(h), c.get("C"), c.get("d"), relative=True)


def assert_same_and_feasible(actual, expected, c):
    actual = np.asarray(actual)
    assert actual.shape == expected.shape
    # rtol as pinned; an absolute floor at the same relative level for entries near 0
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=RTOL * float(np.abs(expected).max()))
    assert relative_violation(actual, c) <= TOL


def test_fixtures_are_present_and_small():
    manifest = json.loads((FIXTURES / "manifest.json").read_text())
    assert manifest["keras_lincon"] == "0.1.0"
    assert manifest["call_modes"]["mode_direct"] == "direct"
    assert manifest["call_modes"]["mode_projected"] == "projected"
    for name in LAYER_CASES + ["vae"]:
        assert (FIXTURES / f"{name}.keras").is_file()
    total = sum(p.stat().st_size for p in FIXTURES.rglob("*") if p.is_file())
    assert total < 1_000_000


@pytest.mark.parametrize("name", LAYER_CASES)
def test_layer_model_loads_and_predicts_as_released(name, recorded):
    model = keras.saving.load_model(FIXTURES / f"{name}.keras")
    y = model.predict(recorded[f"{name}/x"], verbose=0)
    assert_same_and_feasible(y, recorded[f"{name}/y"], constraints(recorded, name))


def test_vae_loads_and_predicts_as_released(recorded):
    vae = keras.saving.load_model(FIXTURES / "vae.keras")
    c = constraints(recorded, "vae")
    assert_same_and_feasible(vae.predict(recorded["vae/x"], verbose=0), recorded["vae/y"], c)
    assert_same_and_feasible(keras.ops.convert_to_numpy(vae.decode(recorded["vae/codes"])), recorded["vae/decoded"], c)
    assert_same_and_feasible(keras.ops.convert_to_numpy(vae.sample(16, seed=3)), recorded["vae/samples"], c)


def test_fresh_process_loads_every_file_as_released(recorded, tmp_path):
    # Only `import keras_lincon` registers the classes here: no layer was
    # constructed in this process before loading.
    out = tmp_path / "fresh.npz"
    run_python(
        textwrap.dedent(f"""
        import keras, numpy as np
        import keras_lincon
        fixtures = "{FIXTURES}"
        data = np.load(fixtures + "/cases.npz")
        result = {{}}
        for name in {LAYER_CASES!r}:
            model = keras.saving.load_model(f"{{fixtures}}/{{name}}.keras")
            result[name] = model.predict(data[name + "/x"], verbose=0)
        vae = keras.saving.load_model(fixtures + "/vae.keras")
        result["vae"] = vae.predict(data["vae/x"], verbose=0)
        result["vae_samples"] = keras.ops.convert_to_numpy(vae.sample(16, seed=3))
        np.savez("{out}", **result)
    """)
    )
    with np.load(out) as fresh:
        for name in LAYER_CASES + ["vae"]:
            assert_same_and_feasible(fresh[name], recorded[f"{name}/y"], constraints(recorded, name))
        assert_same_and_feasible(fresh["vae_samples"], recorded["vae/samples"], constraints(recorded, "vae"))


def test_saved_model_serves_without_keras_lincon(recorded, tmp_path):
    path = FIXTURES / "saved_model" / "lincon" / "1"
    np.save(tmp_path / "x.npy", recorded["checkerboard_box/x"])
    run_python(
        BLOCK_KERAS_LINCON
        + textwrap.dedent(f"""
        import numpy as np, tensorflow as tf
        loaded = tf.saved_model.load("{path}")
        x = tf.constant(np.load("{tmp_path / "x.npy"}"))
        y = loaded.signatures["serving_default"](features=x)["outputs"].numpy()
        np.save("{tmp_path / "y.npy"}", y)
    """)
    )
    assert_same_and_feasible(
        np.load(tmp_path / "y.npy"), recorded["checkerboard_box/y"], constraints(recorded, "checkerboard_box")
    )


@pytest.mark.parametrize("old", sorted(compat.MOVED_MODULES))
def test_moved_module_is_the_new_module_and_warns(old):
    """Every moved module loads as its new home, under both names, and its warning names the removal release."""
    import importlib
    import sys
    import warnings

    new, removal = compat.MOVED_MODULES[old]
    sys.modules.pop(f"keras_lincon.{old}", None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = importlib.import_module(f"keras_lincon.{old}")
    assert module is importlib.import_module(new)
    messages = [str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)]
    assert any(new in m and f"removed in {removal}" in m for m in messages), messages


def test_attribute_access_reaches_moved_modules_and_subpackages():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        assert klc.polyhedra.h_to_v is klc.h_to_v
    assert klc.geometry.h_to_v is klc.h_to_v and klc.layers.LinearInequalityConstraint is klc.LinearInequalityConstraint
    with pytest.raises(AttributeError):
        klc.no_such_module  # noqa: B018
    assert klc.layers.BOX_SCALINGS == klc.layers.SCALINGS  # deprecated alias, listed in compat
    assert "keras_lincon.layers.BOX_SCALINGS" in compat.DEPRECATED_NAMES
    with pytest.raises(AttributeError):
        klc.layers.NO_SUCH_NAME  # noqa: B018
