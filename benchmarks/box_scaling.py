"""Box treatments of the scaled stage on the paper's toy experiment (issue 11).

Fashion-MNIST (or the fallback data set), 28x28 checkerboard cone + box
(-1, 1), loss ``||f(x) - x||^2``, Adam 1e-3, batch 256; two architectures:

* ``mlp``: 784 -> Dense(256, relu) -> constrained 784;
* ``skip``: the tutorial's [image, Dense(256, relu)(image)] -> constrained 784.

Variants (all exactly feasible except the Dense baseline):

* ``default``: ``LinearInequalityConstraint(A, box=(-1, 1))`` as a user writes it
  (``scaling="auto"``: since issue 20 this is ``scaled_project`` below);
* ``global``: the paper's one factor (``scaling="global"``);
* ``per_block``, ``clip_scale``, ``clip_blend``: the generator stage without
  box, then :mod:`keras_lincon.planning.scaling_plan`'s treatment written in
  ``keras.ops`` (:func:`keras_lincon.layers.scaled_kernel.scaled_stage`);
* ``mix``: per block, a learned convex combination ``x_pb + a (x_cb - x_pb)``
  of the ``per_block`` and ``clip_blend`` results, ``a = sigmoid(h W + w0)``
  from the layer's input ``h``: two feasible points, so exact too, and the
  network picks per sample and block which treatment fits;
* ``project_ift``: the layer's ``scaling="project"``: for blocks with one
  row besides the box (the checkerboard), the exact Euclidean projection
  ``clip(y - mu a)`` with ``mu >= 0`` per block by bisection (keeping the
  feasible end), its gradient by the implicit function theorem. (The
  benchmark-only variants ``project``, ``mu`` held constant, and
  ``project_ste``, straight through, were measured with commit 125602f's
  copy of this script and removed after.)
* ``scaled_project``: every checkerboard row a scaled row
  (``LinearInequalityConstraint(A, box=(-1, 1), scaled_rows=all,
  scaling="project")``): no generator rows, so the generator stage is a
  Dense, and the output is the exact projection of that Dense's output onto
  row and box, trained end to end (Dense + OSQP with the projection inside
  the training loop).
* ``dense+osqp``: unconstrained Dense, projected by OSQP at test time.
* ``<variant>+aux`` (``per_block``, ``mix``, ``project_ift``): the variant,
  trained with an auxiliary loss ``aux_weight * mse(y, image)`` on the
  generator output ``y`` (before the box), which gives clipped pixels a
  gradient; at inference only the exact output counts. As ``aux_weight``
  grows, ``y`` approaches the unconstrained Dense fit.
* ``<variant>+warm``: a curriculum: the first ``--epochs-early`` epochs
  train ``y`` alone on the images (the unconstrained fit, as Dense), the
  rest train the exact output ``x`` alone (a fresh Adam), starting from
  ``x = stage(y_Dense)``.
* ``<variant>+pull``: the same without the target: the layer adds
  ``aux_weight * mse(y, stop_gradient(x))`` itself (``add_loss``), pulling
  ``y`` back towards its exact output ``x`` where the box clipped it.

Reported: test MSE to the input over the MSE of the optimal (OSQP)
projection of the test images, after ``--epochs-early`` and ``--epochs``.
Run: ``python benchmarks/box_scaling.py [--quick] [--variants ...]``; writes
``benchmarks/results/box_scaling.txt`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import ops  # noqa: E402

import keras_lincon as klc  # noqa: E402
from keras_lincon import geometry
from keras_lincon.baselines.projection import OSQPProjector  # noqa: E402
from keras_lincon.experiments import datasets  # noqa: E402
from keras_lincon.layers.scaled_kernel import scaled_stage  # noqa: E402
from keras_lincon.planning import scaling_plan  # noqa: E402

VARIANTS = (
    "default",
    "global",
    "per_block",
    "clip_scale",
    "clip_blend",
    "mix",
    "project_ift",
    "scaled_project",
    "dense+osqp",
    "per_block+aux",
    "mix+aux",
    "project_ift+aux",
    "per_block+pull",
    "mix+pull",
    "mix+warm",
    "project_ift+warm",
)


class ScaledBoxConstraint(keras.layers.Layer):
    """Benchmark-only: the generator layer without box, then a scaled-stage treatment."""

    def __init__(self, A, mode: str, pull_weight: float = 0.0, nonneg: str = "abs", **kwargs):
        super().__init__(**kwargs)
        self.inner = klc.LinearInequalityConstraint(A, nonneg=nonneg)
        self.aux = mode.endswith(("+aux", "+warm"))  # also return y
        self.pull, self.pull_weight = mode.endswith("+pull"), pull_weight
        self.mode = mode.split("+")[0]
        self.stage = scaling_plan.plan(A, box=(-1.0, 1.0), strict_generator_rows=(mode == "clip_scale"))

    def build(self, input_shape):
        self.inner.build(input_shape)
        if self.mode == "mix":
            k = self.stage.n_blocks
            self.mix_kernel = self.add_weight(name="mix_kernel", shape=(input_shape[-1], k), initializer="zeros")
            self.mix_bias = self.add_weight(name="mix_bias", shape=(k,), initializer="zeros")

    def call(self, inputs):
        y = self.inner(inputs)
        x = self._stage(inputs, y)
        if self.pull:
            self.add_loss(self.pull_weight * ops.mean(ops.square(y - ops.stop_gradient(x))))
        return (x, y) if self.aux else x

    def _stage(self, inputs, y):
        if self.mode == "project_ift":  # the layer's scaling="project"
            return scaled_stage(y, self.stage, "project")
        if self.mode != "mix":
            return scaled_stage(y, self.stage, self.mode)
        per_block, clip_blend = scaled_stage(y, self.stage, "both")
        alpha = ops.sigmoid(ops.matmul(inputs, self.mix_kernel) + self.mix_bias)  # (B, k) in [0, 1]
        seg = np.maximum(self.stage.coord_block, 0).astype(np.int32)  # free coordinates: both equal the clip
        return per_block + ops.take(alpha, seg, axis=1) * (clip_blend - per_block)

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape[:-1]) + (self.inner.units,)
        return (shape, shape) if self.aux else shape


def build_model(arch: str, n: int, hidden: int, head: keras.layers.Layer) -> keras.Model:
    image = keras.Input((n,), name="image")
    features = keras.layers.Dense(hidden, activation="relu")(image)
    if arch == "skip":
        features = keras.layers.Concatenate()([image, features])
    return keras.Model(image, head(features))


def head_for(variant: str, A: np.ndarray, aux_weight: float = 1.0, nonneg: str = "abs") -> keras.layers.Layer:
    if variant == "default":
        return klc.LinearInequalityConstraint(A, box=(-1.0, 1.0))
    if variant == "global":
        return klc.LinearInequalityConstraint(A, box=(-1.0, 1.0), nonneg=nonneg, scaling="global")
    if variant == "dense+osqp":
        return keras.layers.Dense(A.shape[1])
    if variant == "scaled_project":
        return klc.LinearInequalityConstraint(
            A, box=(-1.0, 1.0), scaled_rows=np.arange(len(A)), scaling="project", fallback=False
        )
    return ScaledBoxConstraint(A, variant, pull_weight=aux_weight, nonneg=nonneg)


def main(argv=None) -> list:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny run (seconds)")
    parser.add_argument("--data", default="auto", choices=["auto", *datasets.NAMES])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--epochs-early", type=int, default=10)
    parser.add_argument("--train-size", type=int, default=20_000)
    parser.add_argument("--test-size", type=int, default=1_000)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--archs", nargs="+", default=["mlp", "skip"], choices=["mlp", "skip"])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument(
        "--nonneg", default="abs", choices=sorted(klc.planning.options.NONNEG_CHOICES), help="ray coefficients"
    )
    parser.add_argument("--seed", type=int, default=0, help="weights and shuffling (every model starts from it)")
    parser.add_argument("--aux-weight", type=float, default=1.0, help="weight of the +aux and +pull losses")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "box_scaling.txt"))
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.epochs_early, args.train_size, args.test_size, args.hidden = 2, 1, 512, 64, 32
    data, A, x_train, x_test = datasets.checkerboard_problem(args.data, args.train_size, args.test_size)
    n = A.shape[1]
    G, h = geometry.with_box(A, None, -1.0, 1.0)
    osqp = OSQPProjector(A, box=(-1.0, 1.0))
    optimal_mse = float(np.mean((osqp.project(x_test) - x_test) ** 2))
    header = (
        f"# box_scaling: {data.name}, {len(x_train)} train / {len(x_test)} test, hidden {args.hidden}, "
        f"batch {args.batch}, Adam 1e-3, epochs {args.epochs_early}/{args.epochs}; keras "
        f"{keras.__version__} ({keras.backend.backend()}); optimal projection test MSE {optimal_mse:.5f}; "
        f"aux weight {args.aux_weight:g}; nonneg {args.nonneg}; seed {args.seed}"
    )
    print(header, flush=True)
    lines = [header, "arch  variant          mse/opt@early  mse/opt@final  max_rel_violation  train_s"]
    results = []
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for arch in args.archs:
        for variant in args.variants:
            keras.utils.set_random_seed(args.seed)
            model = build_model(arch, n, args.hidden, head_for(variant, A, args.aux_weight, args.nonneg))
            aux = variant.endswith(("+aux", "+warm"))
            if aux:  # outputs (x, y): the loss on y is the auxiliary term; targets for both are the images
                weights = [0.0, 1.0] if variant.endswith("+warm") else [1.0, args.aux_weight]
                model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=["mse", "mse"], loss_weights=weights)
            else:
                model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
            ratios, worst, seconds = [], -np.inf, 0.0
            done = 0
            for stop in (args.epochs_early, args.epochs):
                start = time.perf_counter()
                model.fit(
                    x_train,
                    (x_train, x_train) if aux else x_train,
                    epochs=stop - done,
                    batch_size=args.batch,
                    verbose=0,
                )
                seconds += time.perf_counter() - start  # training only: not the predictions or OSQP
                done = stop
                y = model.predict(x_test, batch_size=256, verbose=0)
                y = y[0] if aux else y  # the exact output
                if variant.endswith("+warm") and stop == args.epochs_early:  # phase 2: x alone, a fresh Adam
                    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=["mse", "mse"], loss_weights=[1.0, 0.0])
                if variant == "dense+osqp":
                    y = osqp.project(y)
                worst = max(worst, geometry.max_violation(y, G, h, relative=True))
                ratios.append(float(np.mean((np.asarray(y, np.float64) - x_test) ** 2)) / optimal_mse)
            line = f"{arch:5s} {variant:16s} {ratios[0]:13.4f}  {ratios[1]:13.4f}  {worst:17.2e}  {seconds:7.0f}"
            print(line, flush=True)
            lines.append(line)
            out.write_text("\n".join(lines) + "\n")  # partial results survive an interrupted run
            results.append(
                {
                    "arch": arch,
                    "variant": variant,
                    "early": ratios[0],
                    "final": ratios[1],
                    "max_violation": worst,
                    "seconds": seconds,
                }
            )
    print(f"wrote {out}")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
