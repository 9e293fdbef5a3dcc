"""Tests of keras_lincon.serving and keras_lincon.distribute."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import keras_lincon as klc
from keras_lincon import serving
from tests.conftest import BLOCK_KERAS_LINCON, run_python

A8 = klc.checkerboard((8, 8), (2, 2))


def constrained_model():
    return keras.Sequential([
        keras.Input((10,), name="features"),
        keras.layers.Dense(16, activation="tanh"),
        klc.LinearInequalityConstraint(A8, box=(-1.0, 1.0)),
    ])


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
    shown = subprocess.run([cli, "show", "--dir", str(path), "--all"], capture_output=True, text=True, check=True).stdout
    assert "signature_def['serving_default']" in shown and "signature_def['serving_default_xla']" in shown
    assert "inputs['features']" in shown and "outputs['outputs']" in shown


def test_saved_model_cli_run(exported, tmp_path):
    _, path, x, expected = exported
    np.save(tmp_path / "x.npy", x)
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    proc = subprocess.run(
        [cli, "run", "--dir", str(path), "--tag_set", "serve", "--signature_def", "serving_default",
         "--inputs", f"features={tmp_path / 'x.npy'}", "--outdir", str(tmp_path / "out")],
        capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    np.testing.assert_allclose(np.load(tmp_path / "out" / "outputs.npy"), expected, atol=1e-6)


def test_export_runs_without_keras_lincon_and_stays_feasible(exported):
    _, path, x, expected = exported
    np.save(path.parent / "x.npy", x)
    out = run_python(BLOCK_KERAS_LINCON + textwrap.dedent(f"""
        import json, numpy as np, tensorflow as tf
        loaded = tf.saved_model.load("{path}")
        x = np.load("{path.parent}/x.npy")
        default = loaded.signatures["serving_default"](features=tf.constant(x))["outputs"].numpy()
        xla = loaded.signatures["serving_default_xla"](features=tf.constant(x))["outputs"].numpy()
        np.save("{path.parent}/y.npy", default)
        print("DIFF", float(np.abs(default - xla).max()))
    """))
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
    # the README's example has the same structure
    readme = open(os.path.join(os.path.dirname(__file__), "..", "README.md")).read()
    start = readme.index("<!-- rest-example -->")
    example = json.loads(readme[start:].split("```json")[1].split("```")[0])
    import tensorflow as tf

    fn = tf.saved_model.load(str(path)).signatures[example["signature_name"]]
    (out,) = fn(**{k: tf.constant(v, tf.float32) for k, v in example["inputs"].items()}).values()
    assert out.shape == (1, 64)


def test_vae_export_has_named_signatures(tmp_path):
    from tests.test_models import make_vae

    vae = make_vae(latent_dim=3)
    x = np.random.default_rng(0).uniform(-1, 1, (4, 8, 8)).astype("float32")
    recon, samples = vae.predict(x, verbose=0), np.asarray(vae.sample(6, seed=5))
    path = serving.export_for_serving(vae, tmp_path / "vae", xla=True)
    np.save(tmp_path / "x.npy", x)
    out = run_python(BLOCK_KERAS_LINCON + textwrap.dedent(f"""
        import numpy as np, tensorflow as tf
        m = tf.saved_model.load("{path}")
        print(sorted(m.signatures))
        r = m.signatures["serving_default"](inputs=tf.constant(np.load("{tmp_path}/x.npy")))["reconstruction"]
        s = m.signatures["sample"](num_samples=tf.constant(6), seed=tf.constant(5))["samples"]
        sx = m.signatures["sample_xla"](num_samples=tf.constant(6), seed=tf.constant(5))["samples"]
        np.testing.assert_allclose(s.numpy(), sx.numpy(), atol=1e-5)
        d = m.signatures["decode"](codes=tf.zeros((2, 3)))["outputs"]
        np.save("{tmp_path}/r.npy", r.numpy()); np.save("{tmp_path}/s.npy", s.numpy()); print(d.shape)
    """))
    assert "['decode', 'decode_xla', 'sample', 'sample_xla', 'serving_default', 'serving_default_xla']" in out
    np.testing.assert_allclose(np.load(tmp_path / "r.npy"), recon, atol=1e-5)
    np.testing.assert_allclose(np.load(tmp_path / "s.npy"), samples, atol=1e-5)
    vae.output_constraint.assert_constraints(np.load(tmp_path / "s.npy").reshape(6, -1))


def test_export_errors(tmp_path):
    model = constrained_model()
    serving.export_for_serving(model, tmp_path, version=1)
    with pytest.raises(klc.LinconError, match="exists"):
        serving.export_for_serving(model, tmp_path, version=1)
    serving.export_for_serving(model, tmp_path, version=1, overwrite=True)
    with pytest.raises(klc.LinconError, match="positive integer"):
        serving.export_for_serving(model, tmp_path, version=0)


def test_export_command(tmp_path):
    from keras_lincon import cli

    model = constrained_model()
    model.save(tmp_path / "m.keras")
    assert cli.main(["export", str(tmp_path / "m.keras"), str(tmp_path / "srv"), "--version", "2"]) == 0
    assert (tmp_path / "srv" / "2" / "saved_model.pb").is_file()


# ------------------------------------------------------------- distribution

VAE_MIRRORED = """
import numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras, keras_lincon as klc
from keras_lincon import datasets
from tests.test_models import make_vae
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
data = datasets.load("digits", max_train=256, max_test=32)
with strategy.scope():
    vae = make_vae()
    vae.compile(optimizer="adam")
h = vae.fit(data.x_train, epochs=2, batch_size=64, verbose=0)
assert h.history["loss"][-1] < h.history["loss"][0]
vae.output_constraint.assert_constraints(np.asarray(vae.sample(200, seed=0)).reshape(200, -1))
vae.save("{tmp}/vae.keras")
again = keras.saving.load_model("{tmp}/vae.keras")
# the reloaded copy runs on one device, the original across two replicas: rounding differs
np.testing.assert_allclose(again.predict(data.x_test, verbose=0), vae.predict(data.x_test, verbose=0), atol=1e-5)
print("ok", strategy.num_replicas_in_sync)
"""


def test_vae_trains_under_mirrored_strategy(tmp_path):
    assert "ok 2" in run_python(VAE_MIRRORED.format(tmp=tmp_path))


WORKER = """
import json, os, sys, numpy as np, tensorflow as tf
strategy = tf.distribute.MultiWorkerMirroredStrategy()
import keras, keras_lincon as klc
from keras_lincon.distribute import fit_distributed
from tests.test_models import make_vae
from keras_lincon import datasets
index = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
keras.utils.set_random_seed(0)
A = klc.monotone_chain(12)
rng = np.random.default_rng(0)
x = rng.standard_normal((256, 6)).astype("float32")
y = np.sort(rng.standard_normal((256, 12)), axis=1).astype("float32")
with strategy.scope():
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(16, activation="relu"), klc.LinearInequalityConstraint(A)])
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    vae = make_vae()
    vae.compile(optimizer="adam")
ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(64)
hist = fit_distributed(model, ds, epochs=3, verbose=0)
images = datasets.load("digits", max_train=256).x_train
vae_hist = fit_distributed(vae, tf.data.Dataset.from_tensor_slices(images).batch(64), epochs=2, verbose=0)
model.layers[-1].assert_constraints(model.predict(x, verbose=0))
vae.output_constraint.assert_constraints(np.asarray(vae.sample(100, seed=0)).reshape(100, -1))
np.save(f"{sys.argv[1]}/w{index}.npy", np.concatenate([w.ravel() for w in model.get_weights() + vae.get_weights()]))
print("losses", hist["loss"], vae_hist["loss"])
"""


def _free_ports(k):
    socks = [socket.socket() for _ in range(k)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def test_multi_worker_training_gives_identical_weights(tmp_path):
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    for index in range(2):
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
               "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
        procs.append(subprocess.Popen([sys.executable, "-c", WORKER, str(tmp_path)], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    try:
        outputs = [p.communicate(timeout=400) for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, (_, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-3000:]
    w0, w1 = np.load(tmp_path / "w0.npy"), np.load(tmp_path / "w1.npy")
    np.testing.assert_array_equal(w0, w1)
    losses = outputs[0][0]
    assert "losses" in losses
