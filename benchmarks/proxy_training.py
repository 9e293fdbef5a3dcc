"""The DC3 proxy with ``scaling="project"`` (issue 20, part 2): RS against training time, and step cost.

Two parts, chosen with ``--parts`` (default: both):

1. ``curve``: ``keras-lincon proxy``'s model and metric (MLP 2x200 ReLU,
   ``LinearInequalityConstraint(G, h, C=A, rhs_input="d",
   scaled_rows="all", scaling=...)``, Adam with a cosine decay over
   ``--epochs``, Πnet's split, RS = (f - f*)/|f*| on the 1,024 test rows),
   trained one epoch per ``fit`` call; after epochs 1, 2, 4, 8, ... and every
   ``--eval-every`` epochs it prints the training seconds so far (``fit``'s
   wall time, tracing included), mean / median / max RS, the worst absolute
   and relative violation, the load average, and ``||y - x||`` (the distance
   the projection moves the generator point). Stops after ``--seconds``.
2. ``step``: seconds per training step (forward, backward, Adam) of the
   whole proxy with the layer against the same MLP with a ``Dense(100)``
   head, by ``train_on_batch`` (interleaved rounds) and inside ``fit``
   (median of three epochs), at batch 64 and 256.

Run: ``python benchmarks/proxy_training.py --parts curve --lr 5e-3 --projection-penalty 0.01``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import numpy as np  # noqa: E402


def _load() -> str:
    return f"{os.getloadavg()[0]:.1f}"


def curve(args):
    import keras

    from keras_lincon.experiments import optimization_proxy as op
    from keras_lincon.experiments import qp_problems
    from keras_lincon.layers.generator_kernel import generator_outputs

    keras.utils.set_random_seed(args.seed)
    problem = qp_problems.make_problem(args.problem)
    train, _, test = (problem.rows("pinet", part) for part in qp_problems.PARTS)
    reference = qp_problems.solve_reference(problem, test[: args.reference_rows])
    X = problem.X.astype("float32")
    scaling = None if args.scaling == "default" else args.scaling
    model = op.build_proxy(problem, 200, scaling, args.projection_penalty)
    steps = args.epochs * -(-len(train) // args.batch)
    model.compile(
        optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(args.lr, steps)),
        loss=op.objective_loss(problem),
    )
    layer = model.get_layer("qp_constraints")
    features = keras.Model(model.inputs, model.get_layer("hidden_2").output)
    print(
        f"\n## {args.problem}: scaling {layer.scaling}, projection_penalty {args.projection_penalty:g}, "
        f"batch {args.batch}, Adam {args.lr:g} cosine over {args.epochs} epochs, seed {args.seed}\n"
    )
    print("| epoch | training seconds | mean RS | median RS | max RS | violation abs / rel | ||y - x|| | load |")
    print("|---|---|---|---|---|---|---|---|")
    spent, no_target = 0.0, np.zeros((len(X), 1), "float32")
    for epoch in range(1, args.epochs + 1):
        start = time.perf_counter()
        model.fit(X[train], no_target[train], epochs=epoch, initial_epoch=epoch - 1, batch_size=args.batch, verbose=0)
        spent += time.perf_counter() - start
        due = (epoch & (epoch - 1)) == 0 or (args.eval_every and epoch % args.eval_every == 0)
        if not (due or epoch == args.epochs or spent >= args.seconds):
            continue
        Y = np.asarray(model.predict(X[test], batch_size=1024, verbose=0), np.float64)
        rs = (problem.objective(Y[: len(reference.objective)]) - reference.objective) / np.abs(reference.objective)
        absolute = problem.violations(Y, problem.X[test]).max()
        relative = layer.violations(Y, relative=True, rhs=problem.X[test]).max()
        h = keras.ops.convert_to_tensor(features.predict(X[test], batch_size=1024, verbose=0))
        y = keras.ops.convert_to_numpy(generator_outputs(h, layer, layer._layout, layer._call_mode, "abs"))
        gap = np.linalg.norm(np.asarray(y, np.float64) - Y, axis=1).mean()
        print(
            f"| {epoch} | {spent:.1f} | {rs.mean():.2e} | {np.median(rs):.2e} | {rs.max():.2e} | "
            f"{absolute:.1e} / {relative:.1e} | {gap:.2f} | {_load()} |",
            flush=True,
        )
        if spent >= args.seconds:
            break


def step_cost(args):
    import keras

    from keras_lincon.experiments import optimization_proxy as op
    from keras_lincon.experiments import qp_problems
    from keras_lincon.experiments.timing import time_side_by_side

    problem = qp_problems.make_problem("convex")
    X = problem.X.astype("float32")[:7952]
    no_target = np.zeros((len(X), 1), "float32")

    def dense_proxy():
        x = keras.Input((problem.num_eq,))
        h = keras.layers.Dense(200, activation="relu")(keras.layers.Dense(200, activation="relu")(x))
        return keras.Model(x, keras.layers.Dense(problem.num_var)(h))

    print(f"\n## Training step cost ({keras.backend.backend()}, CPU, float32; load {_load()})\n")
    print("| batch | head | train_on_batch | x Dense | in fit, per step | x Dense |")
    print("|---|---|---|---|---|---|")
    for batch in (64, 256):
        models = {
            "Dense(100)": dense_proxy(),
            f"layer, project, penalty {args.projection_penalty:g}": op.build_proxy(
                problem, 200, "project", args.projection_penalty
            ),
            "layer, default (per_block)": op.build_proxy(problem, 200, None),
        }
        for model in models.values():
            model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=op.objective_loss(problem))
            model.fit(X, no_target, batch_size=batch, epochs=1, verbose=0)  # tracing, XLA
        on_batch = time_side_by_side(
            {k: (lambda m=m, x=X[:batch], t=no_target[:batch]: m.train_on_batch(x, t)) for k, m in models.items()},
            min_seconds=0.5,
        )
        in_fit = {k: [] for k in models}
        for _ in range(3):
            for k, model in models.items():
                start = time.perf_counter()
                model.fit(X, no_target, batch_size=batch, epochs=1, verbose=0)
                in_fit[k].append((time.perf_counter() - start) / -(-len(X) // batch))
        fit_step = {k: float(np.median(v)) for k, v in in_fit.items()}
        for k in models:
            print(
                f"| {batch} | {k} | {on_batch[k] * 1e3:.2f} ms | {on_batch[k] / on_batch['Dense(100)']:.2f}x | "
                f"{fit_step[k] * 1e3:.2f} ms | {fit_step[k] / fit_step['Dense(100)']:.2f}x |",
                flush=True,
            )
    print(f"\n(load average at the end: {_load()})")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="curve,step")
    parser.add_argument("--problem", default="convex", choices=("convex", "nonconvex", "large"))
    parser.add_argument("--scaling", default="project", help="the layer's scaling; 'default' for its default")
    parser.add_argument("--projection-penalty", type=float, default=0.01)
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=20, help="length of the cosine decay")
    parser.add_argument("--seconds", type=float, default=60.0, help="stop once training time passes this")
    parser.add_argument("--eval-every", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reference-rows", type=int, default=1024)
    args = parser.parse_args(argv)
    parts = args.parts.split(",")
    if "curve" in parts:
        curve(args)
    if "step" in parts:
        step_cost(args)


if __name__ == "__main__":
    main()
