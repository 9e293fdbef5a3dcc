"""Tutorial: an optimization proxy, feasible for every instance — DC3's QP.

The field's benchmark for hard-constraint layers (DC3, ICLR 2021; HardNet;
Πnet, ICLR 2026): learn the map from ``x`` to the solution of::

    min_y  1/2 y'Qy + p'y   s.t.   A y = x,   G y <= h

(100 variables, 50 equalities, 50 inequalities; 10,000 instances ``x``).
The network is trained on the objective alone — no solver, no labels — and
its output layer states the constraints as written above: ``G y <= h`` with
``h`` fixed, and ``A y = x`` whose right-hand side ``d = x`` is a second
input of the layer (``rhs_input="d"``). Every output satisfies both, for
every ``x`` and every weight value.

At the end we compare with the optimum (computed by OSQP and an exact
active-set polish): relative suboptimality ``RS = (f(y) - f*) / |f*|`` and
the worst constraint violation on held-out instances.

Run: ``python tutorials/optimization_proxy.py [--quick] [--epochs N]``. The
full benchmark, with timings against OSQP and a results file, is
``keras-lincon proxy``.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import ops  # noqa: E402

import keras_lincon as klc  # noqa: E402
from keras_lincon.experiments import qp_problems  # noqa: E402


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few seconds of training on 512 instances")
    parser.add_argument("--epochs", type=int, default=50)
    args = parser.parse_args(argv)
    keras.utils.set_random_seed(0)

    # DC3's data, regenerated from its published recipe (seed 17): Q = diag(q), p, A, G, h and X.
    qp = qp_problems.make_problem("convex")
    train, test = qp.rows("pinet", "train"), qp.rows("pinet", "test")  # Πnet's split
    if args.quick:
        train, test, args.epochs = train[:512], test[:64], 2
    X = qp.X.astype("float32")

    # The proxy: x -> MLP -> constraint layer. The layer gets the features and x, its equalities' right-hand side.
    x = keras.Input((qp.num_eq,), name="x")
    features = keras.layers.Dense(200, activation="relu")(x)
    features = keras.layers.Dense(200, activation="relu")(features)
    constraints = klc.LinearInequalityConstraint(qp.G, qp.h, C=qp.A, rhs_input="d", scaled_rows="all")
    proxy = keras.Model(x, constraints([features, x]))

    # The loss is the objective itself (y_true is unused: there are no labels).
    q_diag, p = ops.convert_to_tensor(qp.q_diag, "float32"), ops.convert_to_tensor(qp.p, "float32")

    def objective(y_true, y):
        return 0.5 * ops.sum(q_diag * y * y, axis=-1) + ops.sum(p * y, axis=-1)

    # Small batches and a cosine decay of the learning rate (what keras-lincon proxy uses; BENCHMARKS.md).
    batch = 64
    schedule = keras.optimizers.schedules.CosineDecay(1e-3, args.epochs * -(-len(train) // batch))
    proxy.compile(optimizer=keras.optimizers.Adam(schedule), loss=objective)
    proxy.fit(X[train], np.zeros((len(train), 1)), epochs=args.epochs, batch_size=batch, verbose=2)

    # Held-out instances: feasibility, and the gap to the true optimum.
    y = np.asarray(proxy.predict(X[test], verbose=0), dtype=np.float64)
    reference = qp_problems.solve_reference(qp, test)
    rs = (qp.objective(y) - reference.objective) / np.abs(reference.objective)
    worst = constraints.max_violation(y, relative=True, rhs=qp.X[test])
    print(f"optimum f* (mean):      {reference.objective.mean():.4f}")
    print(f"proxy objective (mean): {qp.objective(y).mean():.4f}")
    print(f"RS mean / max:          {rs.mean():.2e} / {rs.max():.2e}")
    print(f"max |A y - x|:          {np.abs(y @ qp.A.T - qp.X[test]).max():.1e}")
    print(f"max (G y - h):          {(y @ qp.G.T - qp.h).max():.2e} (negative: strictly inside)")
    print(f"worst relative violation {worst:.1e} <= {klc.layers.FLOAT32_TOLERANCE:g}: {worst <= 1e-5}")
    return {"rs_mean": float(rs.mean()), "rs_max": float(rs.max()), "max_relative_violation": float(worst)}


if __name__ == "__main__":
    main()
