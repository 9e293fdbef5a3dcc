"""Scaled rows and input right-hand sides: the layer vs Dense, and vs per-sample OSQP (issue 11).

Everything below is measured in one run, side by side
(:func:`keras_lincon.experiments.timing.time_side_by_side`: the candidates
run in interleaved rounds, each reports the median of its 5 round means).

1. Inference, ``Input(k) -> Dense(hidden, relu) -> LinearInequalityConstraint``
   against ``Input(k) -> Dense(hidden, relu) -> Dense(n)``, time per batch of
   ``model(x, training=False)`` inside ``tf.function`` ("graph") and
   ``tf.function(jit_compile=True)`` ("xla"), float32. Cases:

   * ``budget``: the input-dependent problem of ``tutorials/budget_allocation.py``
     (there 8 groups of 32 with priority rows) as issue 11 states it:
     n = 256 items in 16 groups of 16, box [0, 1], ``x >= 0``
     as generator rows (256 rays), the 16 group budgets as scaled rows with
     ``rhs_input=True`` (floor 0.5; ``b_s = 0.5 + U(0, 8)``), k = n input
     features (the demand), for ``scaling="per_block"`` and ``"mix"``. The
     layer model takes ``[demand, b_s]``; the Dense twin takes the demand
     only (16 more input columns would not change its cost measurably).
   * ``budget/box``: the same feasible set with ``x >= 0`` left to the box
     (the box's lower bound already says it): no generator rows, so the
     generator stage is one Dense and only the scaled stage is added; also
     with ``scaling="project"`` (the exact projection per group).
   * ``polytope``: n = 64, 200 rows, ``A ~ N(0, 1)``, ``b ~ U(0.5, 1.5)``,
     box (-2, 2), k = n. Its double description would be refused
     (McMullen's bound), so the fallback moves every row to the scaled stage
     (the ScaledRowsWarning is expected and silenced here).
   * ``checkerboard``: the paper's 28 x 28 checkerboard cone with the box
     (-1, 1), ``scaling="per_block"``, k = n = 784; for reference; and
     ``scaling="project"`` with ``nonneg="relu"``.

   ``--cases`` keeps only the named cases.

   Every layer output timed is checked:
   ``layer.max_violation(y, rhs=b_s, relative=True) <= 1e-5`` (column
   "violation"; the last line says whether all passed).

2. Input-dependent problem, the layer vs per-sample OSQP at batch 256: the
   ``budget`` and ``budget/box`` models above (XLA; the Dense twin's time is
   printed too), timed in the same interleaved rounds as 256 OSQP
   projections of the demands with each sample's budgets, by the tutorial's
   solver (``BudgetProjector``, imported: one OSQP object, warm-started,
   ``q`` and the budget rows' upper bounds updated per sample, tolerance
   1e-6, polishing on; OSQP runs once per round). The Dense forward pass that would produce
   the point to project is not added to OSQP's time (it would only widen the
   ratio).

   Quality is the tutorial's, not re-derived: ``tutorials/budget_allocation.py``
   trains its own model ``[demand, B] -> x`` (8 groups of 32, a skip
   connection, hidden 128, loss ``||x - demand||^2``) and reports the test
   MSE against the exact projection's and the mean relative distance
   ``||x - proj(demand)|| / ||proj(demand)||`` to the exact (OSQP)
   projection. We call its ``main`` (its default schedule, 20 epochs on
   20,000 samples, for ``per_block`` and ``mix``; ``--tutorial-epochs`` /
   ``--tutorial-train-size`` shorten it) and print those numbers; its own
   timing (a plain loop, not side by side) is ignored.

On Keras's JAX backend (``KERAS_BACKEND=jax``, e.g. on a GPU) part 1 runs
under ``jax.jit`` only (mode "xla"); ``--inference-only`` skips parts 2 and
2b (OSQP, the TensorFlow tutorial).

Run: ``python benchmarks/scaled_rows.py [--quick] [--inference-only]``; writes
``benchmarks/results/scaled_rows_cpu.txt`` (or ``--out``), recording the
machine (CPU model, cores, numpy/TensorFlow/Keras/OSQP versions) and the load
average before and after. Nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_lincon as klc  # noqa: E402
from keras_lincon.experiments.timing import format_seconds, machine_description, time_side_by_side  # noqa: E402

TUTORIALS = Path(__file__).resolve().parent.parent / "tutorials"
TOLERANCE = 1e-5
FLOOR = 0.5


def budget_problem(n: int, groups: int, nonneg_rows: bool = True):
    """(A, b, budget_rows): ``-x <= 0`` (generator rows; left to the box [0, 1] if not
    ``nonneg_rows``), then one budget row per group (the scaled rows)."""
    per_group = n // groups
    budget = np.zeros((groups, n))
    for g in range(groups):
        budget[g, g * per_group : (g + 1) * per_group] = 1.0
    nonneg = -np.eye(n) if nonneg_rows else np.zeros((0, n))
    A = np.vstack([nonneg, budget])
    b = np.concatenate([np.zeros(len(nonneg)), np.full(groups, FLOOR)])
    return A, b, np.arange(len(nonneg), len(nonneg) + groups)


def budget_inputs(rng, batch: int, n: int, groups: int):
    """Demands in [0, 1.2] and budgets ``floor + U(0, items per group / 2)``, as in the tutorial."""
    demand = rng.uniform(0.0, 1.2, (batch, n)).astype(np.float32)
    budgets = (FLOOR + rng.uniform(0.0, n / groups / 2, (batch, groups))).astype(np.float32)
    return demand, budgets


def random_polytope(rng, n: int, m: int):
    return rng.standard_normal((m, n)), rng.uniform(0.5, 1.5, m)


def model_pair(k: int, hidden: int, layer: klc.LinearInequalityConstraint, n_rhs: int):
    """(dense twin, layer model): Input(k) -> Dense(hidden, relu) -> Dense(n) / the layer."""
    keras.utils.set_random_seed(0)
    x = keras.Input((k,))
    h = keras.layers.Dense(hidden, activation="relu")(x)
    dense = keras.Model(x, keras.layers.Dense(layer.units)(h))
    keras.utils.set_random_seed(0)
    x = keras.Input((k,))
    h = keras.layers.Dense(hidden, activation="relu")(x)
    if n_rhs:
        rhs = keras.Input((n_rhs,))
        return dense, keras.Model([x, rhs], layer([h, rhs]))
    return dense, keras.Model(x, layer(h))


def forward(model, inputs, jit: bool):
    """Zero-argument callable: one blocking forward pass of ``model`` on ``inputs``
    (``tf.function`` on TensorFlow, ``jax.jit`` on JAX, where ``jit`` must be True)."""

    def call(*xs):
        return model(list(xs) if len(xs) > 1 else xs[0], training=False)

    if keras.backend.backend() == "jax":
        import jax

        assert jit, "on JAX every mode is jit-compiled"
        fn, arrays = jax.jit(call), [jax.device_put(v) for v in inputs]
        return lambda: fn(*arrays).block_until_ready()  # stays on the device, as TF's XLA output does not
    import tensorflow as tf

    fn, tensors = tf.function(call, jit_compile=jit), [tf.constant(v) for v in inputs]
    return lambda: fn(*tensors).numpy()


def _against_osqp(args, part2: dict, rng, budget_n: int, groups: int, timing_kw: dict, emit, speedups: dict) -> float:
    """Part 2: the budget models against per-sample OSQP with each sample's budgets; the worst violation."""
    sys.path.insert(0, str(TUTORIALS))
    import budget_allocation  # noqa: E402  (tutorials/ is not a package)

    projector = budget_allocation.BudgetProjector(*budget_problem(budget_n, groups))
    batch = args.osqp_batch
    demand, budgets = budget_inputs(rng, batch, budget_n, groups)
    emit(f"\n## 2. budget problem, batch {batch}: layer (xla) vs per-sample OSQP with that sample's budgets")
    osqp_name = f"OSQP x {batch}"
    header = f"{'case':<13}{'scaling':<10}{'dense':>11}{'layer':>11}{osqp_name:>14}{'OSQP/layer':>12}{'violation':>11}"
    emit(header)
    emit("-" * len(header))
    worst_all = -np.inf
    for (case, scaling), (dense, model, layer) in part2.items():
        fns = {
            "dense": forward(dense, [demand], True),
            "layer": forward(model, [demand, budgets], True),
            "osqp": lambda: projector.project(demand, budgets),
        }
        worst = layer.max_violation(fns["layer"](), rhs=budgets, relative=True)
        worst_all = max(worst_all, worst)
        t = time_side_by_side(fns, **timing_kw)  # OSQP runs once per round
        speedups[f"{case} {scaling}"] = t["osqp"] / t["layer"]
        emit(
            f"{case:<13}{scaling:<10}{format_seconds(t['dense']):>11}{format_seconds(t['layer']):>11}"
            f"{format_seconds(t['osqp']):>14}{speedups[f'{case} {scaling}']:>11.0f}x{worst:>11.1e}"
        )
    osqp_worst = layer.max_violation(projector.project(demand, budgets), rhs=budgets)
    emit(f"OSQP's own worst absolute violation on that batch: {osqp_worst:.1e} (tolerance 1e-6)")
    return worst_all


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (about 30 s), for the test suite")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--batches", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--osqp-batch", type=int, default=256)
    parser.add_argument("--tutorial-epochs", type=int, default=None, help="default: the tutorial's (20)")
    parser.add_argument("--tutorial-train-size", type=int, default=None, help="default: the tutorial's (20,000)")
    parser.add_argument("--cases", nargs="+", help="only these cases of part 1 (e.g. checkerboard budget/box)")
    parser.add_argument("--inference-only", action="store_true", help="part 1 only (no OSQP, no tutorial)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "scaled_rows_cpu.txt"))
    args = parser.parse_args(argv)
    on_jax = keras.backend.backend() == "jax"
    if not args.inference_only:
        import osqp  # the comparison needs it (pip install 'keras-lincon[projection]')

    load_before = os.getloadavg()
    rng = np.random.default_rng(0)
    if args.quick:
        args.hidden, args.batches, args.osqp_batch = 16, [32], 32
        budget_n, groups, poly_n, poly_m, board = 32, 4, 16, 40, klc.checkerboard((8, 8), (2, 2))
        timing_kw, modes = dict(min_seconds=0.01, rounds=2, warmup=1), (("xla", True),)
        tutorial_argv, tutorial_scalings = ["--quick"], ("mix",)
    else:
        budget_n, groups, poly_n, poly_m, board = 256, 16, 64, 200, klc.checkerboard()
        timing_kw, modes = {}, (("xla", True),) if on_jax else (("graph", False), ("xla", True))
        tutorial_scalings = ("per_block", "mix")
        tutorial_argv = []
        if args.tutorial_epochs is not None:
            tutorial_argv += ["--epochs", str(args.tutorial_epochs)]
        if args.tutorial_train_size is not None:
            tutorial_argv += ["--train-size", str(args.tutorial_train_size)]

    A_poly, b_poly = random_polytope(rng, poly_n, poly_m)

    def budget_layer(scaling: str, nonneg_rows: bool):
        A, b, rows = budget_problem(budget_n, groups, nonneg_rows)
        return klc.LinearInequalityConstraint(A, b, box=(0.0, 1.0), scaled_rows=rows, rhs_input=True, scaling=scaling)

    with warnings.catch_warnings():  # the polytope's fallback warns by design
        warnings.simplefilter("ignore", klc.ScaledRowsWarning)
        cases = [  # (case, scaling, n = k, number of input right-hand sides, layer factory)
            ("budget", "per_block", budget_n, groups, lambda: budget_layer("per_block", True)),
            ("budget", "mix", budget_n, groups, lambda: budget_layer("mix", True)),
            ("budget/box", "per_block", budget_n, groups, lambda: budget_layer("per_block", False)),
            ("budget/box", "mix", budget_n, groups, lambda: budget_layer("mix", False)),
            ("budget/box", "project", budget_n, groups, lambda: budget_layer("project", False)),
            ("polytope", "per_block", poly_n, 0, lambda: klc.LinearInequalityConstraint(
                A_poly, b_poly, box=(-2.0, 2.0), scaling="per_block")),
            ("checkerboard", "per_block", board.shape[1], 0, lambda: klc.LinearInequalityConstraint(
                board, box=(-1.0, 1.0), scaling="per_block")),
            ("checkerboard", "project", board.shape[1], 0, lambda: klc.LinearInequalityConstraint(
                board, box=(-1.0, 1.0), scaling="project", nonneg="relu")),
        ]  # fmt: skip
        if args.cases:
            cases = [c for c in cases if c[0] in args.cases]

        machine = f"{machine_description()}, numpy {np.__version__}"
        if on_jax:
            import jax

            precision = jax.config.jax_default_matmul_precision or "default"
            machine += f", Keras {keras.__version__}, JAX {jax.__version__} on {jax.devices()[0].device_kind}"
            machine += f", float32 matmul precision {precision}"
        if not args.inference_only:
            machine += f", OSQP {osqp.__version__}"
        lines = [
            f"# scaled_rows: {machine}",
            f"# load average before (1, 5, 15 min): {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}",
            f"# hidden {args.hidden}; time per batch, median of interleaved rounds; relative violation <= "
            f"{TOLERANCE:g} is feasible",
        ]

        def emit(line: str = "") -> None:
            print(line, flush=True)
            lines.append(line)

        for line in lines:
            print(line, flush=True)
        header = (
            f"{'case':<13}{'scaling':<10}{'n = k':>6}{'rows':>6}{'batch':>7}  {'mode':<6}"
            f"{'dense':>11}{'layer':>11}{'ratio':>8}{'violation':>11}"
        )
        emit("\n## 1. inference: layer vs Dense of the same shape")
        emit(header)
        emit("-" * len(header))
        worst_all, rows, part2 = -np.inf, [], {}
        for case, scaling, n, n_rhs, make in cases:
            layer = make()
            dense, model = model_pair(n, args.hidden, layer, n_rhs)
            m_rows = layer.system.A.shape[0]
            for batch in args.batches:
                if n_rhs:
                    feats, rhs = budget_inputs(rng, batch, n, groups)
                    assert layer.below_floor(rhs).size == 0
                    inputs = [feats, rhs]
                else:
                    feats, rhs = rng.standard_normal((batch, n)).astype(np.float32), None
                    inputs = [feats]
                for mode, jit in modes:
                    fns = {"dense": forward(dense, [feats], jit), "layer": forward(model, inputs, jit)}
                    y = fns["layer"]()
                    worst = layer.max_violation(y, rhs=rhs, relative=True)
                    worst_all = max(worst_all, worst)
                    t = time_side_by_side(fns, **timing_kw)
                    emit(
                        f"{case:<13}{scaling:<10}{n:>6}{m_rows:>6}{batch:>7}  {mode:<6}"
                        f"{format_seconds(t['dense']):>11}{format_seconds(t['layer']):>11}"
                        f"{t['layer'] / t['dense']:>7.2f}x{worst:>11.1e}"
                    )
                    rows.append(dict(case=case, scaling=scaling, batch=batch, mode=mode, violation=worst, **t))
                    if n_rhs and jit and batch == args.batches[0]:
                        part2[(case, scaling)] = (dense, model, layer)

        speedups, quality = {}, {}
        if not args.inference_only:
            worst_all = max(worst_all, _against_osqp(args, part2, rng, budget_n, groups, timing_kw, emit, speedups))
            emit(f"\n## 2b. quality: tutorials/budget_allocation.py main({' '.join(tutorial_argv)}) (8 groups of 32)")
            import budget_allocation  # noqa: E402  (tutorials/ is not a package; on sys.path since part 2)

            for scaling in tutorial_scalings:
                with tempfile.TemporaryDirectory() as tmp:
                    r = budget_allocation.main([*tutorial_argv, "--scaling", scaling, "--out", tmp])
                quality[scaling] = r
                worst_all = max(worst_all, r["layer_worst_relative_violation"])
                emit(
                    f"{scaling:<10} test MSE / exact projection's {r['layer_mse_over_optimal']:.3f}, mean relative "
                    f"distance to the exact projection {r['relative_distance_to_projection']:.3f}, worst relative "
                    f"violation {r['layer_worst_relative_violation']:.1e} ({r['epochs']} epochs, "
                    f"{r['train_size']} train / {r['test_size']} test samples)"
                )

        feasible = bool(worst_all <= TOLERANCE)
        emit(f"\nevery layer output checked feasible (relative violation <= {TOLERANCE:g}): {feasible}")
        load_after = os.getloadavg()
        emit(f"# load average after (1, 5, 15 min): {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")
    return {"rows": rows, "speedups": speedups, "quality": quality, "feasible": feasible, "worst": worst_all}


if __name__ == "__main__":
    main(sys.argv[1:])
