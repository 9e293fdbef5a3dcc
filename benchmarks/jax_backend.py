"""Layer vs Dense vs batched ADMM projection on Keras's JAX backend (e.g. a GPU).

The layer and ADMMProjection use keras.ops only, so they run on any Keras
backend. This script times them with jax.jit on whatever device JAX uses
(GPU if present), side by side in one run. It needs keras, jax, numpy and
scipy; TensorFlow is not needed.

On GPUs with TF32 tensor cores (A100, H100), JAX's default float32 matmul
precision rounds inputs to a 10-bit mantissa; ``--precision highest`` runs
every matmul in true float32 (``jax_default_matmul_precision``). The last
column is the layer's worst relative constraint violation in that setting.

Run: KERAS_BACKEND=jax python benchmarks/jax_backend.py [--precision highest]
"""

import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import argparse  # noqa: E402

import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_lincon.baselines.projection import ADMMProjection  # noqa: E402
from keras_lincon.experiments.timing import format_seconds, time_side_by_side  # noqa: E402
from keras_lincon.geometry import checkerboard, monotone_chain  # noqa: E402
from keras_lincon.layers import LinearInequalityConstraint  # noqa: E402


def jitted(model):
    fn = jax.jit(lambda x: model(x))
    return lambda x: fn(x).block_until_ready()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--precision", choices=["default", "highest"], default="default")
    parser.add_argument("--batches", default="1,256,4096,65536")
    args = parser.parse_args()
    if args.precision == "highest":
        jax.config.update("jax_default_matmul_precision", "highest")
    device = jax.devices()[0]
    print(
        f"device: {device.device_kind} ({device.platform}); jax {jax.__version__}; keras {keras.__version__}; "
        f"matmul precision: {args.precision}"
    )
    print(
        f"{'case':<18}{'k':>5}{'batch':>7}{'dense':>11}{'layer':>11}{'+admm':>11}"
        f"{'layer/dense':>12}{'admm/layer':>11}{'violation':>11}"
    )
    rng = np.random.default_rng(0)
    cases = {"checkerboard 784": (checkerboard(), (-1.0, 1.0)), "chain 512": (monotone_chain(512), None)}
    for case, (A, box) in cases.items():
        n = A.shape[1]
        for k in (128, n):
            dense_layer = keras.layers.Dense(n)
            dense = keras.Sequential([keras.Input((k,)), dense_layer])
            layer = keras.Sequential([keras.Input((k,)), LinearInequalityConstraint(A, box=box)])
            admm = keras.Sequential(
                [keras.Input((k,)), dense_layer, ADMMProjection(A, box=box, tolerance=1e-4, iterations=500)]
            )
            fns = {"dense": jitted(dense), "layer": jitted(layer), "admm": jitted(admm)}
            for batch in (int(b) for b in args.batches.split(",")):
                x = jax.device_put(rng.standard_normal((batch, k)).astype("float32"))
                t = time_side_by_side(
                    {name: (lambda f=f, x=x: f(x)) for name, f in fns.items()}, min_seconds=0.2, rounds=5
                )
                worst = layer.layers[0].max_violation(np.asarray(fns["layer"](x)), relative=True)
                print(
                    f"{case:<18}{k:>5}{batch:>7}{format_seconds(t['dense']):>11}{format_seconds(t['layer']):>11}"
                    f"{format_seconds(t['admm']):>11}{t['layer'] / t['dense']:>11.2f}x"
                    f"{t['admm'] / t['layer']:>10.1f}x{worst:>11.1e}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
