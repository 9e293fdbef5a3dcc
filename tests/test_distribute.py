"""Tests of keras_lincon.models.distribute: MirroredStrategy, MultiWorkerMirroredStrategy, checkpoint/resume."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_lincon as klc
from keras_lincon.models.distribute import fit_distributed
from tests.conftest import run_python

VAE_MIRRORED = """
import numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras, keras_lincon as klc
from keras_lincon.experiments import datasets
from tests.test_constrained_vae import make_vae
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
from keras_lincon.models.distribute import fit_distributed
from tests.test_constrained_vae import make_vae
from keras_lincon.experiments import datasets
index = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
keras.utils.set_random_seed(0)
A = klc.monotone_chain(12)
rng = np.random.default_rng(0)
x = rng.standard_normal((256, 6)).astype("float32")
y = np.sort(rng.standard_normal((256, 12)), axis=1).astype("float32")
with strategy.scope():
    model = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(16, activation="relu"), klc.LinearInequalityConstraint(A)]
    )
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
    procs = _start_workers(WORKER, str(tmp_path))
    try:
        outputs = [p.communicate(timeout=400) for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, (_, err) in zip(procs, outputs, strict=False):
        assert p.returncode == 0, err[-3000:]
    w0, w1 = np.load(tmp_path / "w0.npy"), np.load(tmp_path / "w1.npy")
    np.testing.assert_array_equal(w0, w1)
    losses = outputs[0][0]
    assert "losses" in losses


# ------------------------------------------------------ checkpoint / resume

RESUME_SETUP = """
import numpy as np, tensorflow as tf, keras, keras_lincon as klc
from keras_lincon.models.distribute import fit_distributed
rng = np.random.default_rng(0)
x = rng.standard_normal((64, 4)).astype("float32")
y = np.sort(rng.standard_normal((64, 6)), axis=1).astype("float32")
dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)  # 4 steps per epoch, fixed order

def make_model(seed):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"),
                              klc.LinearInequalityConstraint(klc.monotone_chain(6))])
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    return model
"""


def test_checkpoint_resume_in_a_new_process_continues_the_run(tmp_path):
    ckpt = tmp_path / "ckpt"
    run_python(
        RESUME_SETUP
        + f"""
first = make_model(0)
history = fit_distributed(first, dataset, epochs=2, checkpoint_dir="{ckpt}", verbose=0)
assert len(history["loss"]) == 2
np.save("{tmp_path}/w2.npy", np.concatenate([w.ravel() for w in first.get_weights()]))
"""
    )
    scope = {}
    exec(RESUME_SETUP, scope)
    dataset, make_model = scope["dataset"], scope["make_model"]
    resumed = make_model(1)  # other initial weights: the checkpoint must replace them
    assert fit_distributed(resumed, dataset, epochs=2, checkpoint_dir=ckpt, verbose=0) == {}  # nothing left
    np.testing.assert_array_equal(
        np.concatenate([w.ravel() for w in resumed.get_weights()]), np.load(tmp_path / "w2.npy")
    )
    assert int(resumed.optimizer.iterations) == 8  # Adam's state came back too
    history = fit_distributed(resumed, dataset, epochs=4, checkpoint_dir=ckpt, verbose=0)
    assert len(history["loss"]) == 2  # only epochs 3 and 4 ran
    straight = make_model(0)
    uninterrupted = fit_distributed(straight, dataset, epochs=4, verbose=0)
    np.testing.assert_allclose(history["loss"], uninterrupted["loss"][2:], rtol=1e-6)
    for a, b in zip(resumed.get_weights(), straight.get_weights(), strict=False):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert tf.train.latest_checkpoint(str(ckpt)).endswith("ckpt-4")


def test_checkpoint_of_another_architecture_is_refused(tmp_path):
    scope = {}
    exec(RESUME_SETUP, scope)
    fit_distributed(scope["make_model"](0), scope["dataset"], epochs=1, checkpoint_dir=tmp_path, verbose=0)
    other = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(8),
            keras.layers.Dense(8),
            klc.LinearInequalityConstraint(klc.monotone_chain(6)),
        ]
    )
    other.compile(optimizer="adam", loss="mse")
    with pytest.raises(klc.LinconError, match="does not match this model"):
        fit_distributed(other, scope["dataset"], epochs=2, checkpoint_dir=tmp_path, verbose=0)


@pytest.mark.parametrize("epochs", [-1, 1.5, True])
def test_bad_epochs(epochs):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    with pytest.raises(klc.LinconError, match="epochs"):
        fit_distributed(
            model, tf.data.Dataset.from_tensor_slices((np.ones((4, 2)), np.ones((4, 1)))).batch(2), epochs=epochs
        )


def test_other_backend_is_a_clear_error():
    out = run_python(
        """
        import keras, keras_lincon as klc
        from keras_lincon.models.distribute import fit_distributed
        from keras_lincon.export.serving import export_for_serving
        model = keras.Sequential([keras.Input((3,)), klc.LinearInequalityConstraint(klc.monotone_chain(4))])
        model.compile(optimizer="adam", loss="mse")
        for call in (lambda: fit_distributed(model, None), lambda: export_for_serving(model, "/nonexistent")):
            try:
                call()
            except klc.LinconError as exc:
                print("ERR", exc)
    """,
        env={"KERAS_BACKEND": "jax"},
    )
    lines = [line for line in out.splitlines() if line.startswith("ERR")]
    assert len(lines) == 2
    for line in lines:
        assert "'jax'" in line and "KERAS_BACKEND=tensorflow" in line


# Slow: two real workers; one is killed with SIGKILL mid-run, both restart and resume.
KILL_WORKER = """
import json, os, sys, numpy as np, tensorflow as tf
strategy = tf.distribute.MultiWorkerMirroredStrategy()
import keras, keras_lincon as klc
from keras_lincon.models.distribute import fit_distributed
index = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
keras.utils.set_random_seed(0)
rng = np.random.default_rng(0)
x = rng.standard_normal((8192, 6)).astype("float32")
y = np.sort(rng.standard_normal((8192, 12)), axis=1).astype("float32")
with strategy.scope():
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(64, activation="relu"),
                              klc.LinearInequalityConstraint(klc.monotone_chain(12))])
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)
hist = fit_distributed(model, ds, epochs=int(sys.argv[2]), checkpoint_dir=sys.argv[1] + "/ckpt", verbose=1)
np.save(f"{sys.argv[1]}/w{index}.npy", np.concatenate([w.ravel() for w in model.get_weights()]))
print("EPOCHS_RUN", len(hist.get("loss", [])))
"""


def _start_workers(script: str, *args: str) -> list:
    """Two workers of one MultiWorkerMirroredStrategy cluster on free local ports, running ``script``."""
    cluster = {"worker": [f"127.0.0.1:{p}" for p in _free_ports(2)]}
    procs = []
    for index in range(2):
        env = {
            **os.environ,
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
        }
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", script, *args],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    return procs


@pytest.mark.slow
def test_worker_killed_mid_run_resumes_from_the_last_epoch(tmp_path):
    epochs = 6
    procs = _start_workers(KILL_WORKER, str(tmp_path), str(epochs))
    try:
        deadline = time.time() + 400
        while tf.train.latest_checkpoint(str(tmp_path / "ckpt")) is None:
            assert time.time() < deadline and all(p.poll() is None for p in procs), "no checkpoint written"
            time.sleep(0.2)
        procs[1].send_signal(signal.SIGKILL)  # a worker dies mid-run ...
        procs[1].wait()
        procs[0].kill()  # ... and the job is restarted as a whole, as a cluster manager does
        procs[0].wait()
    finally:
        for p in procs:
            p.kill()
    saved = int(tf.train.latest_checkpoint(str(tmp_path / "ckpt")).rsplit("-", 1)[1])
    assert 1 <= saved < epochs
    procs = _start_workers(KILL_WORKER, str(tmp_path), str(epochs))
    try:
        outputs = [p.communicate(timeout=600) for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, (_, err) in zip(procs, outputs, strict=False):
        assert p.returncode == 0, err[-3000:]
    resumed_after = int(outputs[0][1].split("after epoch ")[1].split()[0])
    assert resumed_after >= saved
    assert f"EPOCHS_RUN {epochs - resumed_after}" in outputs[0][0]
    np.testing.assert_array_equal(np.load(tmp_path / "w0.npy"), np.load(tmp_path / "w1.npy"))
    assert tf.train.latest_checkpoint(str(tmp_path / "ckpt")).endswith(f"ckpt-{epochs}")
    assert not any(name.startswith(".scratch") for name in os.listdir(tmp_path / "ckpt"))
