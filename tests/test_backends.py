"""The layer's contract on every Keras backend, one fresh process per backend.

Keras fixes its backend at import, so each backend runs in a subprocess with
``KERAS_BACKEND`` set: build in ``Sequential``, fit 2 epochs, predict, every
output feasible, save ``.keras`` and reload within 1e-6; and a ``.keras``
file saved under TensorFlow loads under JAX and torch with the same outputs
(within 1e-6). The ``ConstraintViolation`` metric runs in ``compile`` and
agrees with the numpy reference.
A backend that is not installed is skipped, with the reason.
"""

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Why a backend may be missing, for the skip message.
INSTALL_HINT = {
    "tensorflow": 'pip install "keras-lincon[tensorflow]"',
    "jax": 'pip install "keras-lincon[jax]" (make installs it)',
    "torch": (
        "pip install torch; PyPI's Linux x86_64 build is a multi-GB CUDA wheel, so make installs "
        "torch only from a local CPU wheel (make setup TORCH_WHEEL=path)"
    ),
}
MODULE = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}

# Constraint sets with closed forms (no pycddlib needed): the paper's cone
# with a box, a shifted chain A x <= b (a vertex block plus rays), and a
# a budget row in the layer's scaled stage.
CONTRACT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import keras
    import keras_lincon as klc

    out = sys.argv[1]
    assert keras.backend.backend() == sys.argv[2], keras.backend.backend()
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 6)).astype("float32")
    cases = {
        "checker_box": dict(A=klc.checkerboard((4, 4), (2, 2)), box=(-1.0, 1.0)),
        "chain_b": dict(A=klc.monotone_chain(5), b=np.ones(4)),
        # the scaled stage: a simplex-like budget row enforced by scaling
        "scaled_rows": dict(A=np.vstack([-np.eye(4), np.ones((1, 4))]),
                            b=np.r_[np.zeros(4), 1.0], scaled_rows=[4], box=(0.0, 0.8)),
    }
    report = {}
    for name, kwargs in cases.items():
        layer = klc.LinearInequalityConstraint(**kwargs)
        model = keras.Sequential([keras.Input((6,), name="features"),
                                  keras.layers.Dense(16, activation="relu"), layer])
        n = layer.units
        y_target = rng.uniform(-2, 2, size=(64, n)).astype("float32")
        model.compile(optimizer="adam", loss="mse")
        hist = model.fit(x, y_target, epochs=2, batch_size=16, verbose=0)
        assert len(hist.history["loss"]) == 2 and np.all(np.isfinite(hist.history["loss"]))
        y = keras.ops.convert_to_numpy(model.predict(x * 100.0, verbose=0))   # large inputs too
        worst = layer.assert_constraints(y)
        y = keras.ops.convert_to_numpy(model.predict(x, verbose=0))
        layer.assert_constraints(y)
        path = f"{out}/{name}.keras"
        model.save(path)
        np.save(f"{out}/{name}_x.npy", x)
        np.save(f"{out}/{name}_y.npy", y)
        reloaded = keras.saving.load_model(path)
        diff = float(np.abs(keras.ops.convert_to_numpy(reloaded.predict(x, verbose=0)) - y).max())
        assert diff <= 1e-6, (name, diff)
        report[name] = {"worst_relative_violation": worst, "reload_diff": diff}
        if len(sys.argv) > 3:   # files saved under another backend: load them here, same outputs?
            src = sys.argv[3]
            moved = keras.saving.load_model(f"{src}/{name}.keras")
            x_src, y_src = np.load(f"{src}/{name}_x.npy"), np.load(f"{src}/{name}_y.npy")
            y_moved = keras.ops.convert_to_numpy(moved.predict(x_src, verbose=0))
            moved.layers[-1].assert_constraints(y_moved)
            report[name]["moved_diff"] = float(np.abs(y_moved - y_src).max())
    print(json.dumps(report))
    """
)


def _available(backend: str) -> bool:
    return importlib.util.find_spec(MODULE[backend]) is not None


def _run(script: str, backend: str, *args: str, env_extra: dict | None = None) -> dict:
    env = {
        **os.environ,
        **(env_extra or {}),
        "KERAS_BACKEND": backend,
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    env.pop("TF_USE_LEGACY_KERAS", None)
    proc = subprocess.run([sys.executable, "-c", script, *args], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{backend} failed:\nSTDOUT:\n{proc.stdout[-2000:]}\nSTDERR:\n{proc.stderr[-4000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _require(backend: str) -> None:
    if not _available(backend):
        pytest.skip(f"Keras backend {backend!r} not installed: {INSTALL_HINT[backend]}")


@pytest.fixture(scope="module")
def saved_under_tensorflow(tmp_path_factory):
    """The contract under TensorFlow; its .keras files, for loading under the other backends."""
    if not _available("tensorflow"):
        return None
    out = tmp_path_factory.mktemp("tf_saved")
    report = _run(CONTRACT, "tensorflow", str(out), "tensorflow")
    assert all(case["reload_diff"] <= 1e-6 for case in report.values())
    return out


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_layer_contract_on_backend(backend, tmp_path, saved_under_tensorflow):
    _require(backend)
    args = [str(tmp_path), backend] + ([str(saved_under_tensorflow)] if saved_under_tensorflow else [])
    report = _run(CONTRACT, backend, *args)
    assert set(report) == {"checker_box", "chain_b", "scaled_rows"}
    for name, case in report.items():
        assert case["reload_diff"] <= 1e-6, (name, case)
        if saved_under_tensorflow:
            # A .keras file saved under TensorFlow loads here and gives the same outputs.
            assert case["moved_diff"] <= 1e-6, f"{name}: outputs after moving TF -> {backend}: {case}"


METRIC = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import keras
    import keras_lincon as klc
    from keras_lincon.geometry import violations

    assert keras.backend.backend() == sys.argv[1], keras.backend.backend()
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    layer = klc.LinearInequalityConstraint(klc.monotone_chain(4), np.full(3, 0.5), box=(-1.0, 1.0))
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16), layer])
    model.compile(optimizer="adam", loss="mse", metrics=[klc.ConstraintViolation(layer)])
    x, y = rng.normal(size=(64, 8)).astype("float32"), rng.uniform(-2, 2, (64, 4)).astype("float32")
    history = model.fit(x, y, epochs=2, batch_size=16, verbose=0).history
    metric = klc.ConstraintViolation(layer)
    points = rng.normal(size=(32, 4)).astype("float32")
    metric.update_state(None, points)
    measured = float(metric.result())
    expected = float(violations(points, *layer.constraint_rows(), relative=True).max())
    metric.update_state(None, np.full((2, 4), np.nan, "float32"))
    print(json.dumps({"fit": max(history["max_violation"]), "measured": measured, "expected": expected,
                      "nan": float(metric.result())}))
    """
)


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_violation_metric_on_backend(backend):
    _require(backend)
    report = _run(METRIC, backend, backend)
    assert report["fit"] <= 1e-5
    assert report["expected"] > 0 and abs(report["measured"] - report["expected"]) <= 1e-6
    assert report["nan"] == float("inf")


INPUT_RHS = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import keras
    import keras_lincon as klc

    assert keras.backend.backend() == sys.argv[1], keras.backend.backend()
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    n, out, jit, report = 10, sys.argv[2], sys.argv[3] == "jit", {}
    A = np.vstack([-np.eye(n), np.ones((1, n))])
    cases = {
        # a budget row whose b is an input (floor 0.5), the learned mix of treatments
        "budget_mix": dict(A=A, b=np.r_[np.zeros(n), 0.5], box=(None, 2.0), scaled_rows=[n], rhs_input=True,
                           scaling="mix"),
        # every row's b an input: the shifted-apex form
        "apex": dict(A=rng.normal(size=(4, n)), rhs_input=True),
        # the exact projection onto the budget row, x >= 0 and the box (bisection, implicit gradient)
        "budget_project": dict(A=A, b=np.r_[np.zeros(n), 0.5], box=(None, 2.0), scaled_rows=[n], rhs_input=True,
                               scaling="project", nonneg="relu"),
    }
    for name, kwargs in cases.items():
        layer = klc.LinearInequalityConstraint(**kwargs)
        m_in = len(layer._plan.input_rows)
        features, rhs_in = keras.Input((5,)), keras.Input((m_in,))
        model = keras.Model([features, rhs_in], layer([features, rhs_in]))
        model.compile(optimizer="adam", loss="mse", jit_compile=jit)  # XLA / torch.compile
        h = rng.normal(size=(64, 5)).astype("float32") * 10
        rhs = (0.5 + rng.exponential(2.0, (64, m_in))).astype("float32")
        model.fit([h, rhs], rng.uniform(0, 1, (64, n)).astype("float32"), epochs=1, batch_size=16, verbose=0)
        y = keras.ops.convert_to_numpy(model.predict([h, rhs], verbose=0))
        worst = layer.assert_constraints(y, rhs=rhs)
        model.save(f"{out}/{name}.keras")
        again = keras.saving.load_model(f"{out}/{name}.keras")
        diff = float(np.abs(keras.ops.convert_to_numpy(again.predict([h, rhs], verbose=0)) - y).max())
        report[name] = {"worst": worst, "reload_diff": diff}
    print(json.dumps(report))
    """
)


@pytest.mark.parametrize(
    "backend, jit",
    [
        ("jax", "jit"),
        ("torch", "eager"),
        pytest.param("torch", "jit", marks=pytest.mark.slow),  # torch.compile: about 2 minutes on 2 cores
    ],
)
def test_input_rhs_on_backend(backend, jit, tmp_path):
    _require(backend)
    report = _run(INPUT_RHS, backend, backend, str(tmp_path), jit)
    assert set(report) == {"budget_mix", "apex", "budget_project"}
    for name, case in report.items():
        assert case["worst"] <= 1e-5 and case["reload_diff"] <= 1e-5, (name, case)


EXACT_RHS = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import keras
    from hypothesis import HealthCheck, given, settings, strategies as st
    import keras_lincon as klc
    from tests.test_layer_rhs_inputs import TOLERANCE, _model, floatx, random_case, random_rhs

    assert keras.backend.backend() == sys.argv[1], keras.backend.backend()
    jit, worst = sys.argv[2] == "jit", {"float32": -np.inf, "float64": -np.inf}

    # b and d as inputs (exact for every value): random systems, scales 1e-3..1e3, before and after fit
    @settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(seed=st.integers(0, 2**31), shape=st.sampled_from([(5, 2, 2), (6, 4, 1), (7, 3, 3)]),
           spec_kind=st.integers(0, 3), scaled=st.booleans(), dtype=st.sampled_from(["float32", "float64"]))
    def check(seed, shape, spec_kind, scaled, dtype):
        with floatx(dtype):  # fit and predict cast numpy inputs to floatx
            run(seed, shape, spec_kind, scaled, dtype)

    def run(seed, shape, spec_kind, scaled, dtype):
        A, b, kwargs = random_case(seed, *shape, spec_kind, scaled)
        layer = klc.LinearInequalityConstraint(A, b, dtype=dtype, **kwargs)
        model = _model(layer, 4, dtype)
        rng = np.random.default_rng(seed)
        x, rhs = rng.normal(size=(32, 4)) * 100, random_rhs(layer, rng, 100.0, 32)
        rhs_arg = rhs if len(rhs) > 1 else rhs[0]
        model.compile(optimizer="adam", loss="mse", jit_compile=jit)
        for _ in range(2):  # before and after fit
            y = keras.ops.convert_to_numpy(model.predict([x, *rhs], verbose=0))
            v = layer.max_violation(y, relative=True, rhs=rhs_arg)
            assert v <= TOLERANCE[dtype], (v, dtype, kwargs)
            worst[dtype] = max(worst[dtype], v)
            model.fit([x, *rhs], rng.normal(size=(32, shape[0])), epochs=1, batch_size=16, verbose=0)

    check()
    print(json.dumps(worst))
    """
)


@pytest.mark.parametrize("backend, jit", [("jax", "jit"), ("torch", "eager")])
def test_rhs_inputs_exact_on_backend(backend, jit):
    _require(backend)
    report = _run(EXACT_RHS, backend, backend, jit, env_extra={"JAX_ENABLE_X64": "1"})  # JAX's float64
    assert report["float32"] <= 1e-5 and report["float64"] <= 1e-10, report


PROJECT_FLOAT64 = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import keras
    import keras_lincon as klc
    from tests.test_layer_rhs_inputs import dc3_qp

    assert keras.backend.backend() == sys.argv[1], keras.backend.backend()
    A, X, G, h = dc3_qp(num=16)
    layer = klc.LinearInequalityConstraint(G, h, C=A, rhs_input="d", scaled_rows="all", scaling="project",
                                           dtype="float64")
    y = layer([np.random.default_rng(0).normal(size=(16, 5)) * 3, X])
    print(json.dumps({"dtype": keras.backend.standardize_dtype(y.dtype),
                      "worst": layer.max_violation(keras.ops.convert_to_numpy(y), relative=True, rhs=X)}))
    """
)


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_coupled_kernel_keeps_float64_on_backend(backend):
    """Keras computes ops.matmul/maximum/minimum of float64 tensors in float32 off TensorFlow (5e-8 on torch
    before keras_lincon.layers.backend_ops): the coupled projection stays at machine precision."""
    _require(backend)
    report = _run(PROJECT_FLOAT64, backend, backend, env_extra={"JAX_ENABLE_X64": "1"})
    assert report["dtype"] == "float64" and report["worst"] <= 1e-12, report


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_readme_optimization_proxy_recipe_on_backend(backend):
    """The proxy recipe of docs/guides/proxies.md as written (its loss once multiplied numpy arrays by tensors: a
    TypeError on torch)."""
    from tests.test_readme import ROOT, markdown_blocks

    _require(backend)
    blocks = markdown_blocks(ROOT / "docs" / "guides" / "proxies.md")
    recipe = [code for _, code in blocks if 'rhs_input="d"' in code and "proxy.fit(" in code]
    assert len(recipe) == 1
    script = recipe[0] + "\nimport json\nprint(json.dumps({'ok': bool(constraints.max_violation(y, relative=True, "
    script += "rhs=qp.X[-1024:]) <= 1e-5)}))\n"
    assert _run(script, backend)["ok"]
