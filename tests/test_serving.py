"""Tests of keras_lincon.export.serving (fresh processes load what was exported)."""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import keras_lincon as klc
from keras_lincon.export import serving
from tests.conftest import BLOCK_KERAS_LINCON, run_python

A8 = klc.checkerboard((8, 8), (2, 2))


def constrained_model():
    return keras.Sequential(
        [
            keras.Input((10,), name="features"),
            keras.layers.Dense(16, activation="tanh"),
            klc.LinearInequalityConstraint(A8, box=(-1.0, 1.0)),
        ]
    )


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serving")
    model = constrained_model()
    x = np.random.default_rng(0).standard_normal((5, 10)).astype("float32")
    expected = model.predict(x, verbose=0)
    path = serving.export_for_serving(model, tmp / "lincon", version=3, xla=True)
    return tmp, path, x, expected


def test_layout_and_signatures(exported):
    tmp, path, _, _ = exported
    assert path == tmp / "lincon" / "3"
    assert (path / "saved_model.pb").is_file() and (path / "variables").is_dir()
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    shown = subprocess.run(
        [cli, "show", "--dir", str(path), "--all"], capture_output=True, text=True, check=True
    ).stdout
    assert "signature_def['serving_default']" in shown and "signature_def['serving_default_xla']" in shown
    assert "inputs['features']" in shown and "outputs['outputs']" in shown


def test_saved_model_cli_run(exported, tmp_path):
    _, path, x, expected = exported
    np.save(tmp_path / "x.npy", x)
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    proc = subprocess.run(
        [
            cli,
            "run",
            "--dir",
            str(path),
            "--tag_set",
            "serve",
            "--signature_def",
            "serving_default",
            "--inputs",
            f"features={tmp_path / 'x.npy'}",
            "--outdir",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    np.testing.assert_allclose(np.load(tmp_path / "out" / "outputs.npy"), expected, atol=1e-6)


def test_export_runs_without_keras_lincon_and_stays_feasible(exported):
    _, path, x, expected = exported
    np.save(path.parent / "x.npy", x)
    out = run_python(
        BLOCK_KERAS_LINCON
        + textwrap.dedent(f"""
        import json, numpy as np, tensorflow as tf
        loaded = tf.saved_model.load("{path}")
        x = np.load("{path.parent}/x.npy")
        default = loaded.signatures["serving_default"](features=tf.constant(x))["outputs"].numpy()
        xla = loaded.signatures["serving_default_xla"](features=tf.constant(x))["outputs"].numpy()
        np.save("{path.parent}/y.npy", default)
        print("DIFF", float(np.abs(default - xla).max()))
    """)
    )
    y = np.load(path.parent / "y.npy")
    np.testing.assert_allclose(y, expected, atol=1e-6)
    assert float(out.split("DIFF")[-1]) < 1e-5
    G = np.vstack([A8, np.eye(64), -np.eye(64)])
    assert klc.max_violation(y, G, np.r_[np.zeros(4), np.ones(128)], relative=True) <= 1e-5


def test_rest_example_parses_against_signature(exported):
    _, path, _, _ = exported
    body = serving.rest_predict_example(path, batch=2)
    assert body["signature_name"] == "serving_default"
    assert np.asarray(body["inputs"]["features"]).shape == (2, 10)
    # the deploy guide's example has the same structure
    guide = open(os.path.join(os.path.dirname(__file__), "..", "docs", "deploy.md")).read()
    start = guide.index("<!-- rest-example -->")
    example = json.loads(guide[start:].split("```json")[1].split("```")[0])
    import tensorflow as tf

    fn = tf.saved_model.load(str(path)).signatures[example["signature_name"]]
    (out,) = fn(**{k: tf.constant(v, tf.float32) for k, v in example["inputs"].items()}).values()
    assert out.shape == (1, 64)


def test_vae_export_has_named_signatures(tmp_path):
    from tests.test_constrained_vae import make_vae

    vae = make_vae(latent_dim=3)
    x = np.random.default_rng(0).uniform(-1, 1, (4, 8, 8)).astype("float32")
    recon, samples = vae.predict(x, verbose=0), np.asarray(vae.sample(6, seed=5))
    path = serving.export_for_serving(vae, tmp_path / "vae", xla=True)
    np.save(tmp_path / "x.npy", x)
    out = run_python(
        BLOCK_KERAS_LINCON
        + textwrap.dedent(f"""
        import numpy as np, tensorflow as tf
        m = tf.saved_model.load("{path}")
        print(sorted(m.signatures))
        r = m.signatures["serving_default"](inputs=tf.constant(np.load("{tmp_path}/x.npy")))["reconstruction"]
        s = m.signatures["sample"](num_samples=tf.constant(6), seed=tf.constant(5))["samples"]
        sx = m.signatures["sample_xla"](num_samples=tf.constant(6), seed=tf.constant(5))["samples"]
        np.testing.assert_allclose(s.numpy(), sx.numpy(), atol=1e-5)
        d = m.signatures["decode"](codes=tf.zeros((2, 3)))["outputs"]
        np.save("{tmp_path}/r.npy", r.numpy()); np.save("{tmp_path}/s.npy", s.numpy()); print(d.shape)
    """)
    )
    assert "['decode', 'decode_xla', 'sample', 'sample_xla', 'serving_default', 'serving_default_xla']" in out
    np.testing.assert_allclose(np.load(tmp_path / "r.npy"), recon, atol=1e-5)
    np.testing.assert_allclose(np.load(tmp_path / "s.npy"), samples, atol=1e-5)
    vae.output_constraint.assert_constraints(np.load(tmp_path / "s.npy").reshape(6, -1))


def test_conditional_vae_signatures_take_rhs(tmp_path):
    from tests.test_constrained_vae import make_conditional_vae

    vae = make_conditional_vae(latent_dim=3)
    x = np.random.default_rng(0).uniform(-1, 1, (4, 8, 8)).astype("float32")
    rhs = np.array([[-30.0], [-10.0], [0.0], [20.0]], "float32")
    recon, samples = vae.predict((x, rhs), verbose=0), np.asarray(vae.sample(6, seed=5, rhs=rhs[1]))
    path = serving.export_for_serving(vae, tmp_path / "cvae", xla=True)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "rhs.npy", rhs)
    run_python(
        BLOCK_KERAS_LINCON
        + textwrap.dedent(f"""
        import numpy as np, tensorflow as tf
        m = tf.saved_model.load("{path}")
        x, rhs = (tf.constant(np.load(f"{tmp_path}/{{n}}.npy")) for n in ("x", "rhs"))
        r = m.signatures["serving_default"](inputs=x, rhs=rhs)["reconstruction"]
        rx = m.signatures["serving_default_xla"](inputs=x, rhs=rhs)["reconstruction"]
        np.testing.assert_allclose(r.numpy(), rx.numpy(), atol=1e-5)
        s = m.signatures["sample"](num_samples=tf.constant(6), seed=tf.constant(5), rhs=rhs[1])["samples"]
        d = m.signatures["decode"](codes=tf.zeros((4, 3)), rhs=rhs)["outputs"]
        for name, value in (("r", r), ("s", s), ("d", d)):
            np.save(f"{tmp_path}/{{name}}.npy", value.numpy())
    """)
    )
    np.testing.assert_allclose(np.load(tmp_path / "r.npy"), recon, atol=1e-5)
    np.testing.assert_allclose(np.load(tmp_path / "s.npy"), samples, atol=1e-5)
    check = vae.output_constraint.assert_constraints
    check(np.load(tmp_path / "s.npy").reshape(6, -1), rhs=np.repeat(rhs[1:2], 6, 0))
    check(np.load(tmp_path / "d.npy").reshape(4, -1), rhs=rhs)


def test_model_with_rhs_input_exports_one_signature_input_per_keras_input(tmp_path):
    n = 5
    A = np.vstack([-np.eye(n), np.ones((1, n))])  # x >= 0, and sum x <= budget per sample
    features, budget = keras.Input((3,), name="features"), keras.Input((1,), name="budget")
    layer = klc.LinearInequalityConstraint(A, np.r_[np.zeros(n), 0.1], scaled_rows=[n], rhs_input=True)
    model = keras.Model([features, budget], layer([keras.layers.Dense(8)(features), budget]))
    rng = np.random.default_rng(0)
    x, b = rng.normal(size=(6, 3)).astype("float32"), rng.uniform(0.1, 5, (6, 1)).astype("float32")
    expected = model.predict([x, b], verbose=0)
    path = serving.export_for_serving(model, tmp_path / "budget")
    import tensorflow as tf

    fn = tf.saved_model.load(str(path)).signatures["serving_default"]
    assert sorted(fn.structured_input_signature[1]) == ["budget", "features"]
    y = fn(features=tf.constant(x), budget=tf.constant(b))["outputs"].numpy()
    np.testing.assert_allclose(y, expected, atol=1e-6)
    layer.assert_constraints(y, rhs=b)
    twins = [keras.Input((3,), name="in-1"), keras.Input((3,), name="in_1")]  # one signature name, in_1
    with pytest.raises(klc.LinconError, match="distinct names"):
        serving.export_for_serving(keras.Model(twins, keras.layers.Add()(twins)), tmp_path / "twins")


def test_export_errors(tmp_path):
    model = constrained_model()
    serving.export_for_serving(model, tmp_path, version=1)
    with pytest.raises(klc.LinconError, match="exists"):
        serving.export_for_serving(model, tmp_path, version=1)
    serving.export_for_serving(model, tmp_path, version=1, overwrite=True)
    with pytest.raises(klc.LinconError, match="positive integer"):
        serving.export_for_serving(model, tmp_path, version=0)
    with pytest.raises(klc.LinconError, match="max_samples must be a positive integer"):
        serving.export_for_serving(model, tmp_path, version=2, max_samples=0)


def test_overwrite_only_replaces_a_saved_model(tmp_path):
    model = constrained_model()
    (tmp_path / "2").mkdir()
    (tmp_path / "2" / "notes.txt").write_text("precious")
    (tmp_path / "3").write_text("a file")
    for version in (2, 3):
        with pytest.raises(klc.LinconError, match="not a SavedModel"):
            serving.export_for_serving(model, tmp_path, version=version, overwrite=True)
    assert (tmp_path / "2" / "notes.txt").read_text() == "precious" and (tmp_path / "3").is_file()


def test_vae_sample_signature_is_bounded(tmp_path):
    from tests.test_constrained_vae import make_vae

    vae = make_vae(latent_dim=3)
    vae.predict(np.zeros((1, 8, 8), "float32"), verbose=0)
    path = serving.export_for_serving(vae, tmp_path / "vae", max_samples=16)
    out = run_python(
        BLOCK_KERAS_LINCON
        + textwrap.dedent(f"""
        import tensorflow as tf
        sample = tf.saved_model.load("{path}").signatures["sample"]
        print("OK", sample(num_samples=tf.constant(16), seed=tf.constant(1))["samples"].shape)
        for n in (17, 10**9, 0, -3):
            try:
                sample(num_samples=tf.constant(n), seed=tf.constant(1))
                print("ACCEPTED", n)
            except tf.errors.InvalidArgumentError as exc:
                print("REFUSED", n, "max_samples=16" in exc.message or "at least 1" in exc.message)
    """)
    )
    assert "OK (16, 8, 8)" in out
    for n in (17, 10**9, 0, -3):
        assert f"REFUSED {n} True" in out
    assert "ACCEPTED" not in out


def test_export_command(tmp_path):
    from keras_lincon import cli

    model = constrained_model()
    model.save(tmp_path / "m.keras")
    assert cli.main(["export", str(tmp_path / "m.keras"), str(tmp_path / "srv"), "--version", "2"]) == 0
    assert (tmp_path / "srv" / "2" / "saved_model.pb").is_file()


def test_export_refuses_tampered_generators(tmp_path):
    model = keras.Sequential(  # per_block: the box's generators are weights (the default projects, and has none)
        [
            keras.Input((10,)),
            keras.layers.Dense(16),
            klc.LinearInequalityConstraint(A8, box=(-1.0, 1.0), scaling="per_block"),
        ]
    )
    layer = model.layers[-1]
    variable = next(v for v in layer.non_trainable_weights if "offset" in v.name or "ray" in v.name)
    variable.value.assign(variable.numpy() + 5.0)  # the backend variable: past Keras's checked assign
    with pytest.raises(klc.GeneratorMismatchError):
        serving.export_for_serving(model, tmp_path / "tampered")
    assert not (tmp_path / "tampered").exists()


def test_optimization_proxy_with_equality_rhs_serves_without_keras_lincon(tmp_path):
    """DC3's QP as the user states it (A y = x, G y <= h, x the input): the SavedModel's signature takes x,
    and a fresh process without keras_lincon gets outputs feasible for each x."""
    from tests.test_layer_rhs_inputs import dc3_qp

    A, X, G, h = dc3_qp(num=16)
    x_in = keras.Input((A.shape[0],), name="x")
    layer = klc.LinearInequalityConstraint(G, h, C=A, rhs_input="d", scaled_rows="all")
    model = keras.Model(x_in, layer([keras.layers.Dense(16, activation="relu")(x_in), x_in]))
    expected = model.predict(X, verbose=0)
    path = serving.export_for_serving(model, tmp_path / "proxy")
    np.save(tmp_path / "x.npy", (X * 100).astype("float32"))
    run_python(
        BLOCK_KERAS_LINCON
        + textwrap.dedent(f"""
        import numpy as np, tensorflow as tf
        fn = tf.saved_model.load("{path}").signatures["serving_default"]
        assert list(fn.structured_input_signature[1]) == ["x"], fn.structured_input_signature
        x = np.load("{tmp_path}/x.npy")
        np.save("{tmp_path}/y.npy", fn(x=tf.constant(x / 100))["outputs"].numpy())
        np.save("{tmp_path}/y100.npy", fn(x=tf.constant(x))["outputs"].numpy())
    """)
    )
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), expected, atol=1e-5)
    x100 = np.load(tmp_path / "x.npy").astype(np.float64)
    layer.assert_constraints(np.load(tmp_path / "y100.npy"), rhs=x100)
