"""LinearInequalityConstraint vs a plain Dense of the same shape.

Inference per batch (graph tf.function and XLA) for batch sizes 1, 256, 4096
on the paper's checkerboard (n = 784) and a monotone chain
x_1 <= ... <= x_n (n = 512), and one training step at batch 256, timed side
by side in one run. ``--box``: the checkerboard with the box [-1, 1] instead,
the default layer (``scaling="auto"``, which projects there) and
``scaling="per_block"`` each against Dense, at batch 256.
Run: python benchmarks/layer.py [--quick] [--box]
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_lincon as klc  # noqa: E402
from keras_lincon.experiments.timing import format_seconds, machine_description, time_side_by_side  # noqa: E402


def models(A, k):
    layer = keras.Sequential([keras.Input((k,)), klc.LinearInequalityConstraint(A)])
    dense = keras.Sequential([keras.Input((k,)), keras.layers.Dense(A.shape[1])])
    return {"dense": dense, "layer": layer}


def boxed(k_sizes, batch, kw):
    """The checkerboard with the box: the default layer and ``per_block`` against Dense, side by side."""
    A, rng = klc.checkerboard(), np.random.default_rng(0)
    header = f"{'layer':<28}{'k':>5}{'batch':>7}  {'mode':<12}{'dense':>11}{'layer':>11}{'ratio':>8}"
    print("\n" + header + "\n" + "-" * len(header))
    for k in k_sizes:
        pair = models(A, k)
        pair["layer"] = keras.Sequential([keras.Input((k,)), klc.LinearInequalityConstraint(A, box=(-1.0, 1.0))])
        pair["per_block"] = keras.Sequential(
            [keras.Input((k,)), klc.LinearInequalityConstraint(A, box=(-1.0, 1.0), scaling="per_block")]
        )
        x = tf.constant(rng.standard_normal((batch, k)).astype("float32"))
        y = tf.constant(rng.standard_normal((batch, A.shape[1])).astype("float32"))
        names = {"layer": f"default ({pair['layer'].layers[-1].scaling})", "per_block": "per_block"}
        for mode, jit in (("graph", False), ("xla", True), ("train graph", False), ("train xla", True)):
            fns = train_fns(pair, x, y, jit) if mode.startswith("train") else inference_fns(pair, x, jit)
            t = time_side_by_side(fns, **kw)
            for name, label in names.items():
                print(
                    f"{label:<28}{k:>5}{batch:>7}  {mode:<12}{format_seconds(t['dense']):>11}"
                    f"{format_seconds(t[name]):>11}{t[name] / t['dense']:>7.2f}x",
                    flush=True,
                )


def inference_fns(model_dict, x, jit):
    fns = {}
    for name, model in model_dict.items():
        fn = tf.function(lambda x, m=model: m(x, training=False), jit_compile=jit)
        fns[name] = lambda fn=fn: fn(x).numpy()
    return fns


def train_fns(model_dict, x, y, jit):
    fns = {}
    for name, model in model_dict.items():
        opt = keras.optimizers.Adam(1e-3)
        opt.build(model.trainable_variables)

        @tf.function(jit_compile=jit)
        def step(x, y, model=model, opt=opt):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(tf.square(model(x, training=True) - y))
            grads = tape.gradient(loss, model.trainable_variables)
            opt.apply(grads, model.trainable_variables)
            return loss

        fns[name] = lambda step=step: step(x, y).numpy()
    return fns


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for the test suite")
    parser.add_argument("--box", action="store_true", help="the checkerboard with the box (default layer, per_block)")
    args = parser.parse_args(argv)
    print(f"machine: {machine_description()}")
    if args.box:
        kw = dict(min_seconds=0.01, rounds=2, warmup=1) if args.quick else {}
        return boxed((16,) if args.quick else (784, 256, 128), 32 if args.quick else 256, kw)
    if args.quick:
        cases = {"checkerboard 8x8": klc.checkerboard((8, 8), (2, 2)), "chain 16": klc.monotone_chain(16)}
        batches, feature_sizes, kw = (1, 32), (16,), dict(min_seconds=0.01, rounds=2, warmup=1)
    else:
        cases = {"checkerboard 784": klc.checkerboard(), "chain 512": klc.monotone_chain(512)}
        batches, feature_sizes, kw = (1, 256, 4096), (128, None), {}
    rng = np.random.default_rng(0)
    header = f"{'case':<18}{'k':>5}{'batch':>7}  {'mode':<12}{'dense':>11}{'layer':>11}{'ratio':>8}"
    print("\n" + header + "\n" + "-" * len(header))
    for case, A in cases.items():
        n = A.shape[1]
        for k in feature_sizes:
            k = k or n
            pair = models(A, k)
            for batch in batches:
                x = tf.constant(rng.standard_normal((batch, k)).astype("float32"))
                for mode, jit in (("graph", False), ("xla", True)):
                    t = time_side_by_side(inference_fns(pair, x, jit), **kw)
                    print(
                        f"{case:<18}{k:>5}{batch:>7}  {mode:<12}{format_seconds(t['dense']):>11}"
                        f"{format_seconds(t['layer']):>11}{t['layer'] / t['dense']:>7.2f}x",
                        flush=True,
                    )
            batch = 256 if not args.quick else 32
            x = tf.constant(rng.standard_normal((batch, k)).astype("float32"))
            y = tf.constant(rng.standard_normal((batch, n)).astype("float32"))
            for mode, jit in (("train graph", False), ("train xla", True)):
                t = time_side_by_side(train_fns(pair, x, y, jit), **kw)
                print(
                    f"{case:<18}{k:>5}{batch:>7}  {mode:<12}{format_seconds(t['dense']):>11}"
                    f"{format_seconds(t['layer']):>11}{t['layer'] / t['dense']:>7.2f}x",
                    flush=True,
                )


if __name__ == "__main__":
    main()
