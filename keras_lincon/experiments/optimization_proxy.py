"""The field's optimization-proxy benchmark: DC3's simple QP learned on its objective alone.

A network maps an instance's parameters ``x`` to a solution ``y`` of::

    min_y  f(y) = 1/2 y'Qy + p'y   (nonconvex: + p' sin(y))   s.t.  A y = x,  G y <= h

and is trained on ``f`` alone, no solver in the loop. The constraints are
the layer's, stated as the user would::

    klc.LinearInequalityConstraint(G, h, C=A, rhs_input="d", scaled_rows="all")

called on ``[features, x]``: ``G y <= h`` fixed, ``A y = x`` with ``x`` the
input, so every output is feasible for its own instance. Data and reference
optima: :mod:`keras_lincon.experiments.qp_problems`.

Protocols: ``pinet`` (first; Πnet, ICLR 2026: MLP 2x200 ReLU, Adam, train
rows 0-7951, test rows 8976-9999; our batch 64 and Adam 1e-3 with a cosine
decay) and ``dc3`` (DC3, ICLR 2021: the same MLP, batch 200, constant
learning rate 1e-4, rows 0-8333 / 9167-9999). Reported: mean and
max relative suboptimality ``RS = (f(y) - f*) / |f*|`` on the test rows with
a reference, max violation on every test row (absolute and the layer's
relative measure), training time, batch-1024 and batch-1 inference time,
and OSQP's time per instance at its default accuracy. Written to the output
folder: ``results.json``, ``results.md`` and the trained model ``proxy.keras``
(not in quick mode).

Run with ``keras-lincon proxy`` (``--quick``: seconds).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from keras_lincon.experiments import qp_problems

if TYPE_CHECKING:  # Keras is imported when the experiment runs, so the CLI's --help stays instant
    import keras

PROTOCOLS = tuple(qp_problems.SPLITS)
PROBLEMS = tuple(qp_problems.PROBLEMS)
#: protocol -> (batch size, Adam learning rate, schedule) when the options leave them out. DC3's are
#: its published defaults; for Πnet's protocol ours (measured on the 100/50/50 set, BENCHMARKS.md):
#: smaller batches learn faster per epoch here, and a cosine decay to 0 settles the last epochs.
PROTOCOL_DEFAULTS = {"pinet": (64, 1e-3, "cosine"), "dc3": (200, 1e-4, "constant")}
#: Published figures on the 100/50/50 set (test rows of each paper's own split).
PUBLISHED = (
    "DC3: RS 0.106 (objective -13.46 vs -15.05), violations < 5e-3 (convex); "
    "HardNet-Aff: RS 0.013 (nonconvex, 1,344 s of training); "
    "Πnet: RS 2e-3 to 5e-3 (nonconvex), CV 1e-7, about 5 s on a GPU; Πnet large: RS 1e-2"
)


@dataclass
class ProxyConfig:
    """Options of the experiment (the CLI's flags).

    Attributes:
        problem: "convex", "nonconvex" (``p' sin y``) or "large" (1000/500/500).
        protocol: "pinet" or "dc3": the split, and the batch size and
            learning rate unless given.
        epochs, batch_size, learning_rate, hidden, seed: training (MLP of two
            ``hidden``-wide ReLU layers, Adam; the learning rate decays to 0
            on a cosine over the run with the ``pinet`` protocol).
        float64: train and evaluate with ``keras.config.set_floatx("float64")``.
        scaling: the layer's ``scaling`` (None: its default, the statement
            above as written; ``"project"``: the exact Euclidean projection
            onto each instance's own set, slower per step).
        projection_penalty: the layer's ``projection_penalty`` (with
            ``"project"``: weight of ``||y - x||^2``, the distance the
            projection moves the network's point; 0: none).
        quick: a seconds-long run (512 train rows, 64 test rows, 2 epochs)
            for tests.
        reference_rows: test rows with a reference optimum (the first ones);
            None: all for 100 variables, 256 for the large size (about a
            second per instance on 2 cores).
        out, overwrite: output folder; write into a non-empty one.
        verbose: 1 shows Keras' progress bar and the steps, 0 is silent.
    """

    problem: str = "convex"
    protocol: str = "pinet"
    epochs: int = 50
    batch_size: int | None = None
    learning_rate: float | None = None
    hidden: int = 200
    seed: int = 0
    float64: bool = False
    scaling: str | None = None
    projection_penalty: float = 0.0
    quick: bool = False
    reference_rows: int | None = None
    out: str = "runs/proxy"
    overwrite: bool = False
    verbose: int = 1
    command: str = field(default_factory=lambda: " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]))

    def resolved(self) -> ProxyConfig:
        """A copy with the protocol's defaults and quick mode's sizes filled in (checked)."""
        from keras_lincon.errors import LinconError

        if self.problem not in PROBLEMS:
            raise LinconError(f"problem must be one of {PROBLEMS}; got {self.problem!r}.")
        if self.protocol not in PROTOCOLS:
            raise LinconError(f"protocol must be one of {PROTOCOLS}; got {self.protocol!r}.")
        batch_size, learning_rate, _ = PROTOCOL_DEFAULTS[self.protocol]
        values = asdict(self)
        values["batch_size"] = self.batch_size or batch_size
        values["learning_rate"] = self.learning_rate or learning_rate
        if self.quick:
            values["epochs"] = min(self.epochs, 2)
        if self.reference_rows is None:
            values["reference_rows"] = 64 if self.quick else (256 if self.problem == "large" else 10_000)
        for name in ("epochs", "batch_size", "hidden", "reference_rows"):
            if values[name] < 1:
                raise LinconError(f"{name} must be a positive integer; got {values[name]}.")
        if not values["learning_rate"] > 0:
            raise LinconError(f"learning_rate must be positive; got {values['learning_rate']}.")
        return ProxyConfig(**values)


def objective_loss(problem: qp_problems.SimpleQP) -> Callable:
    """A Keras loss: the mean of ``f(y_pred)`` over the batch; ``y_true`` is ignored (no labels).

    Written in ``keras.ops``, so it trains on TensorFlow, JAX and torch.
    """
    from keras import ops

    q_diag, p, nonconvex = problem.q_diag, problem.p, problem.nonconvex

    def objective(y_true, y_pred):
        # constants as tensors of y's dtype: numpy array * torch tensor is a TypeError
        q, lin = ops.convert_to_tensor(q_diag, y_pred.dtype), ops.convert_to_tensor(p, y_pred.dtype)
        linear = ops.sin(y_pred) if nonconvex else y_pred
        return 0.5 * ops.sum(q * y_pred * y_pred, axis=-1) + ops.sum(lin * linear, axis=-1)

    return objective


def build_proxy(
    problem: qp_problems.SimpleQP, hidden: int = 200, scaling: str | None = None, projection_penalty: float = 0.0
) -> keras.Model:
    """The proxy ``x`` (batch, neq) -> ``y`` (batch, n): an MLP of two ReLU layers, then the constraints.

    ``G y <= h`` is fixed and ``A y = x`` takes ``x``, the model's input, as
    its right-hand side, so ``A y = x`` and ``G y <= h`` hold for every
    instance and every weight value. ``scaling``: the layer's option (None:
    its default); ``projection_penalty``: the layer's (0: none).
    """
    import keras

    import keras_lincon as klc

    x = keras.Input((problem.num_eq,), name="x")
    features = keras.layers.Dense(hidden, activation="relu", name="hidden_1")(x)
    features = keras.layers.Dense(hidden, activation="relu", name="hidden_2")(features)
    options = {} if scaling is None else {"scaling": scaling}
    if projection_penalty:
        options["projection_penalty"] = projection_penalty
    constraints = klc.LinearInequalityConstraint(
        problem.G, problem.h, C=problem.A, rhs_input="d", scaled_rows="all", name="qp_constraints", **options
    )
    return keras.Model(x, constraints([features, x]), name=f"dc3_{problem.name}_proxy")


def run(config: ProxyConfig, print_fn: Callable[..., None] = print) -> dict:
    """Runs the experiment; writes ``results.json`` and ``results.md`` to ``config.out``; returns the results.

    Raises:
        MissingDependencyError: osqp is missing (checked first).
        LinconError: unknown problem or protocol, non-positive sizes, a
            non-empty (without ``overwrite``) or unwritable output folder.
    """
    from keras_lincon.experiments._deps import require
    from keras_lincon.experiments.outputs import prepare_output_dir

    require("the optimization-proxy experiment", "osqp", "scipy")
    cfg = config.resolved()
    out = prepare_output_dir(cfg.out, cfg.overwrite)
    say = print_fn if cfg.verbose else (lambda *a, **k: None)

    import keras

    # Keras fixes its default dtype policy on first use, so set it with floatx (and restore both)
    floatx, policy = keras.config.floatx(), keras.config.dtype_policy()
    dtype = "float64" if cfg.float64 else "float32"
    keras.config.set_floatx(dtype)
    keras.config.set_dtype_policy(dtype)
    try:
        results = _run(cfg, say, out)
    finally:
        keras.config.set_floatx(floatx)
        keras.config.set_dtype_policy(policy)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "results.md").write_text(markdown_table(results) + "\n")
    say(markdown_table(results))
    say(f"wrote results.json and results.md{'' if cfg.quick else ' and proxy.keras'} to {out}")
    return results


def _run(cfg: ProxyConfig, say, out) -> dict:
    import keras

    from keras_lincon.experiments.outputs import fit_verbosity
    from keras_lincon.experiments.timing import Stopwatch, machine_description, time_side_by_side

    dtype = keras.config.floatx()
    keras.utils.set_random_seed(cfg.seed)
    problem = qp_problems.make_problem(cfg.problem)
    train_rows, valid_rows, test_rows = (problem.rows(cfg.protocol, part) for part in qp_problems.PARTS)
    if cfg.quick:
        train_rows, valid_rows, test_rows = train_rows[:512], valid_rows[:64], test_rows[:64]
    reference_rows = test_rows[: cfg.reference_rows]
    say(
        f"DC3 {cfg.problem} QP: {problem.num_var} variables, {problem.num_eq} equalities, "
        f"{problem.num_ineq} inequalities; protocol {cfg.protocol}: {len(train_rows)} train / "
        f"{len(test_rows)} test rows ({len(reference_rows)} with a reference optimum); {dtype}; "
        f"backend {keras.backend.backend()}"
    )

    say(f"reference optima of {len(reference_rows)} test rows (OSQP + exact active-set polish)")
    reference = qp_problems.solve_reference(problem, reference_rows, print_fn=say if not cfg.quick else None)
    say(
        f"  mean optimum {reference.objective.mean():.4f} in {reference.seconds:.1f} s; worst KKT residuals "
        + ", ".join(f"{k} {v:.1e}" for k, v in reference.kkt.items())
    )

    X = problem.X.astype(dtype)
    model = build_proxy(problem, cfg.hidden, cfg.scaling, cfg.projection_penalty)
    schedule = PROTOCOL_DEFAULTS[cfg.protocol][2]
    learning_rate = cfg.learning_rate
    if schedule == "cosine":
        steps = cfg.epochs * -(-len(train_rows) // cfg.batch_size)
        learning_rate = keras.optimizers.schedules.CosineDecay(cfg.learning_rate, steps)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=objective_loss(problem))
    # The loss reads only the prediction; Keras still wants a target per row.
    no_target = np.zeros((len(X), 1), dtype=dtype)
    say(
        f"training on the objective alone: {cfg.epochs} epochs, batch {cfg.batch_size}, "
        f"Adam {cfg.learning_rate:g} ({schedule})"
    )
    with Stopwatch() as training:
        history = model.fit(
            X[train_rows],
            no_target[train_rows],
            validation_data=(X[valid_rows], no_target[valid_rows]),
            epochs=cfg.epochs,
            batch_size=cfg.batch_size,
            shuffle=True,
            verbose=fit_verbosity(cfg.verbose),
        )

    if not cfg.quick:
        # keras.saving.load_model(path, compile=False) gives the trained proxy back (the loss is a closure).
        model.save(out / "proxy.keras")
    Y = np.asarray(model.predict(X[test_rows], batch_size=1024, verbose=0), dtype=np.float64)
    X_test = problem.X[test_rows]
    layer = model.get_layer("qp_constraints")
    violation = problem.violations(Y, X_test)
    relative_violation = layer.violations(Y, relative=True, rhs=X_test)
    Y_ref = Y[: len(reference_rows)]
    suboptimality = (problem.objective(Y_ref) - reference.objective) / np.abs(reference.objective)

    say("timing: batch-1024 and batch-1 inference (predict_on_batch) and OSQP (default accuracy), interleaved")
    batch_1024 = X[np.resize(test_rows, 1024)]
    batch_1 = X[test_rows[:1]]
    convex = problem if not problem.nonconvex else qp_problems.convex_twin(problem)
    osqp = qp_problems.OSQPSolver(convex)
    osqp_rows = test_rows[: 8 if cfg.quick or cfg.problem == "large" else 64]
    # Interleaved rounds: a drift of a shared machine's load hits the proxy and OSQP alike.
    timing = dict(min_seconds=0.02, rounds=2, warmup=1) if cfg.quick else dict(min_seconds=0.3, rounds=5, warmup=2)
    seconds = time_side_by_side(
        {
            "batch_1024": lambda: model.predict_on_batch(batch_1024),
            "batch_1": lambda: model.predict_on_batch(batch_1),
            "osqp": lambda: [osqp.solve(x) for x in problem.X[osqp_rows]],
        },
        **timing,
    )
    inference = {"batch_1024": seconds["batch_1024"], "batch_1": seconds["batch_1"]}
    osqp_seconds = seconds["osqp"] / len(osqp_rows)
    if problem.nonconvex:
        osqp_note = "the convex QP (OSQP cannot solve p' sin y); a lower bound on a nonconvex solver's time"
    else:
        osqp_note = "the same QP"

    return {
        "problem": cfg.problem,
        "size": [problem.num_var, problem.num_eq, problem.num_ineq],
        "protocol": cfg.protocol,
        "quick": cfg.quick,
        "backend": keras.backend.backend(),
        "floatx": dtype,
        "epochs": cfg.epochs,
        "batch_size": cfg.batch_size,
        "learning_rate": cfg.learning_rate,
        "learning_rate_schedule": schedule,
        "hidden": cfg.hidden,
        "scaling": constraints_scaling(model),
        "projection_penalty": cfg.projection_penalty,
        "seed": cfg.seed,
        "train_rows": [int(train_rows[0]), int(train_rows[-1])],
        "test_rows": [int(test_rows[0]), int(test_rows[-1])],
        "reference_rows": len(reference_rows),
        "optimum_mean": float(reference.objective.mean()),
        "proxy_objective_mean": float(problem.objective(Y_ref).mean()),
        "rs_mean": float(suboptimality.mean()),
        "rs_median": float(np.median(suboptimality)),
        "rs_max": float(suboptimality.max()),
        "cv_max": float(violation.max()),
        "cv_max_relative": float(relative_violation.max()),
        "train_seconds": training.seconds,
        "inference_1024_seconds": inference["batch_1024"],
        "inference_1_seconds": inference["batch_1"],
        "osqp_seconds_per_instance": osqp_seconds,
        "osqp_instances_timed": len(osqp_rows),
        "osqp_solves": osqp_note,
        "osqp_over_layer_per_instance": osqp_seconds / (inference["batch_1024"] / 1024),
        "reference_seconds": reference.seconds,
        "reference_kkt": reference.kkt,
        "reference_unpolished": reference.unpolished,
        "loss": [float(v) for v in history.history["loss"]],
        "val_loss": [float(v) for v in history.history.get("val_loss", [])],
        "machine": machine_description(),
        "command": cfg.command,
        "published": PUBLISHED,
    }


def constraints_scaling(model: keras.Model) -> str:
    """The constraint layer's ``scaling`` (what the default resolved to)."""
    return str(model.get_layer("qp_constraints").scaling)


def markdown_table(results: dict) -> str:
    """The results as a Markdown table (what ``keras-lincon proxy`` prints)."""
    from keras_lincon.experiments.timing import format_seconds

    n, neq, nineq = results["size"]
    rows = [
        ("optimum f* (mean over reference rows)", f"{results['optimum_mean']:.4f}"),
        ("proxy objective (mean)", f"{results['proxy_objective_mean']:.4f}"),
        ("RS mean / median / max", f"{results['rs_mean']:.2e} / {results['rs_median']:.2e} / {results['rs_max']:.2e}"),
        ("max violation (absolute / relative)", f"{results['cv_max']:.1e} / {results['cv_max_relative']:.1e}"),
        (
            "training",
            f"{results['train_seconds']:.1f} s ({results['epochs']} epochs, batch {results['batch_size']}, "
            f"Adam {results['learning_rate']:g} {results['learning_rate_schedule']})",
        ),
        ("inference, batch 1024", format_seconds(results["inference_1024_seconds"])),
        ("inference, batch 1", format_seconds(results["inference_1_seconds"])),
        ("OSQP per instance (default accuracy)", format_seconds(results["osqp_seconds_per_instance"])),
        ("OSQP / proxy per instance (batch 1024)", f"{results['osqp_over_layer_per_instance']:.0f}x"),
    ]
    title = (
        f"DC3 {results['problem']} QP ({n}/{neq}/{nineq}), protocol {results['protocol']}, "
        f"scaling {results['scaling']}"
        + (f" (projection_penalty {results['projection_penalty']:g})" if results.get("projection_penalty") else "")
        + f", {results['floatx']}, {results['backend']}; "
        f"RS on {results['reference_rows']} test rows, "
        f"violation on rows {results['test_rows'][0]}-{results['test_rows'][1]}"
    )
    lines = [title, "", "| metric | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows]
    return "\n".join(lines)
