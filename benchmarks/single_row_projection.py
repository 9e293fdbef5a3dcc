"""The projection onto blocks of one row plus bounds: this checkout vs a baseline, side by side in one run.

Times ``scaled_stage(y, stage, "project")`` (the layer's ``scaling="project"``
on the paper's checkerboard rows with the box [-1, 1], every row scaled) at
batch 256, forward and forward + backward, as a TensorFlow graph and under
XLA, next to a Dense 784 -> 784 of the same batch. The baseline's
``keras_lincon/layers/scaled_kernel.py`` is loaded from its file into this
process (it imports the current package for everything else), so both are
timed in interleaved rounds of one run. Points: Fashion-MNIST test images
plus noise (``near``, like a trained network's outputs) and N(0, 2^2)
(``far``). Also checks the two agree.

Run: python benchmarks/single_row_projection.py --baseline /tmp/base
(``git worktree add /tmp/base d34c448`` gives the bisection of 0.2.0rc1).
"""

import argparse
import importlib.util
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_lincon as klc  # noqa: E402
from keras_lincon.experiments import datasets  # noqa: E402
from keras_lincon.experiments.timing import machine_description, time_side_by_side  # noqa: E402
from keras_lincon.layers import scaled_kernel  # noqa: E402
from keras_lincon.planning import scaling_plan  # noqa: E402


def load_baseline(checkout: str):
    path = Path(checkout) / "keras_lincon" / "layers" / "scaled_kernel.py"
    spec = importlib.util.spec_from_file_location("baseline_scaled_kernel", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def candidates(kernels: dict, stage, y, jit: bool) -> dict:
    """name -> zero-argument callable, for the forward and the forward + backward of each kernel."""
    W = tf.constant(np.random.default_rng(1).normal(size=(y.shape[1], y.shape[1])).astype("float32") / 28)
    w = tf.constant(np.random.default_rng(2).normal(size=y.shape).astype("float32"))
    fns = {}
    dense = tf.function(lambda v: tf.matmul(v, W), jit_compile=jit)
    fns["Dense 784->784 (forward)"] = lambda: dense(y).numpy()
    for name, module in kernels.items():
        forward = tf.function(lambda v, m=module: m.scaled_stage(v, stage, "project"), jit_compile=jit)

        @tf.function(jit_compile=jit)
        def both(v, m=module):
            with tf.GradientTape() as tape:
                tape.watch(v)
                loss = tf.reduce_sum(m.scaled_stage(v, stage, "project") * w)
            return tape.gradient(loss, v)

        fns[f"{name} forward"] = lambda f=forward: f(y).numpy()
        fns[f"{name} forward+backward"] = lambda f=both: f(y).numpy()
    return fns


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", help="path of a baseline checkout (omit: this checkout only)")
    parser.add_argument("--batch", type=int, default=256)
    args = parser.parse_args(argv)
    print(f"machine: {machine_description()}; keras {keras.__version__}, tensorflow {tf.__version__}")
    A = klc.checkerboard()
    stage = scaling_plan.plan(np.zeros((0, A.shape[1])), scaled_rows=A, scaled_rhs=np.zeros(len(A)), box=(-1.0, 1.0))
    kernels = {"this": scaled_kernel}
    if args.baseline:
        kernels = {"baseline": load_baseline(args.baseline), "this": scaled_kernel}
    _, _, _, x_test = datasets.checkerboard_problem("auto", 16, args.batch)
    rng = np.random.default_rng(0)
    points = {
        "near": x_test[: args.batch] + 0.2 * rng.standard_normal((args.batch, A.shape[1])),
        "far": 2.0 * rng.standard_normal((args.batch, A.shape[1])),
    }
    for label, y in points.items():
        y = tf.constant(y.astype("float32"))
        outputs = {name: m.scaled_stage(y, stage, "project").numpy() for name, m in kernels.items()}
        gap = max(float(np.abs(v - outputs["this"]).max()) for v in outputs.values())
        print(f"\npoints: {label}; largest difference between the kernels: {gap:.1e}")
        for jit in (False, True):
            times = time_side_by_side(candidates(kernels, stage, y, jit))
            dense = times["Dense 784->784 (forward)"]
            mode = "XLA" if jit else "graph"
            for name, seconds in times.items():
                print(f"  {mode:5s} {name:<28s} {seconds * 1e3:8.3f} ms  {seconds / dense:6.2f}x Dense")


if __name__ == "__main__":
    main()
