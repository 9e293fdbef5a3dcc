"""The coupled-block projection (issue 20): solver choice, cost against Dense, a training demo.

Three parts, chosen with ``--parts`` (default: all):

1. ``accuracy``: how many steps reach 1e-6 relative (``max|x - x_osqp| /
   (1 + max|x_osqp|)`` per sample; OSQP with eps 1e-11 and polish is the
   reference), float64, for ADMM alone, active-set steps alone, and ADMM
   followed by active-set steps, on DC3's block (100 variables, ``A y = x``
   with ``x`` per sample, 50 rows ``G y <= h``; points ``pinv(A) x + N(0, s^2)``
   for s = 1 and 3) and on random blocks (10 to 100 rows scaled by 1e-3..1e3,
   5 to 60 variables, up to n/3 equalities, half with a box).
2. ``timing``: forward and forward + backward per step at batch 256 and 1024
   on DC3's block, TensorFlow, ``tf.function(jit_compile=True)`` on the CPU,
   float32, side by side with a Dense layer of the same shape (100 -> 100).
3. ``training``: Pi-net's protocol on DC3's convex QP: MLP 2x200 ReLU ->
   Dense(100) -> this projection (``d = x``), Adam, trained on the objective
   alone (train rows 0-7951), RS = (f - f*)/|f*| on the test rows
   8976-9999 with f* from OSQP, every few epochs until ``--seconds``.

Run: ``python benchmarks/coupled_projection.py [--parts accuracy,timing,training]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from keras_lincon.layers import coupled_kernel as cp  # noqa: E402
from keras_lincon.planning.coupled_plan import plan_projection  # noqa: E402


def dc3_data(n: int = 100, m: int = 50, p: int = 50, count: int = 10_000):
    """DC3's published recipe (``../shared/DESIGN.md``): Q, p, A, X, G, h."""
    np.random.seed(17)
    Q = np.diag(np.random.random(n))
    pv = np.random.random(n)
    A = np.random.normal(0, 1, size=(p, n))
    X = np.random.uniform(-1, 1, size=(count, p))
    G = np.random.normal(0, 1, size=(m, n))
    h = np.sum(np.abs(G @ np.linalg.pinv(A)), axis=1)
    return Q, pv, A, X, G, h


def osqp_projection(y, A, b, C, d, box):
    """Row-wise projection by OSQP (eps 1e-11, polish); ``d`` may be per sample."""
    import osqp
    import scipy.sparse as sp

    B, n = y.shape
    C = np.zeros((0, n)) if C is None else C
    d = np.broadcast_to(np.zeros(0) if d is None else d, (B, C.shape[0]))
    lo, hi = (np.full(n, -np.inf), np.full(n, np.inf)) if box is None else box
    solver = osqp.OSQP()
    bounds = lambda i: (np.r_[np.full(A.shape[0], -np.inf), d[i], lo], np.r_[b, d[i], hi])  # noqa: E731
    solver.setup(
        sp.eye(n, format="csc"),
        -y[0],
        sp.csc_matrix(np.vstack([A, C, np.eye(n)])),
        *bounds(0),
        eps_abs=1e-11,
        eps_rel=1e-11,
        max_iter=400_000,
        polishing=True,
        verbose=False,
    )
    out = np.empty_like(y)
    for i in range(B):
        lo_i, hi_i = bounds(i)
        solver.update(q=-y[i], l=lo_i, u=hi_i)
        out[i] = solver.solve(raise_error=False).x
    return out


def random_block(rng):
    n, m = int(rng.integers(5, 61)), int(rng.integers(10, 101))
    p = int(rng.integers(0, n // 3 + 1))
    A = rng.normal(size=(m, n)) * 10.0 ** rng.uniform(-3, 3, size=(m, 1))
    C = rng.normal(size=(p, n)) * 10.0 ** rng.uniform(-3, 3, size=(p, 1))
    x0 = rng.normal(size=n)
    b = A @ x0 + rng.uniform(0.05, 1.0, m) * np.linalg.norm(A, axis=1)
    box = (x0 - rng.uniform(0.2, 2, n), x0 + rng.uniform(0.2, 2, n)) if rng.random() < 0.5 else None
    return A, b, (C if p else None), (C @ x0 if p else None), box, x0


CONFIGS = (
    [("ADMM", k, 0) for k in (25, 50, 100, 200, 400, 800)]
    + [("active set", 0, k) for k in (2, 4, 6, 8, 12)]
    + [("ADMM + active set", k, 8) for k in (10, 25, 50, 100, 200)]
)


def accuracy(batch: int = 64, blocks: int = 12):
    """Prints, per solver setting, the share of samples within 1e-6 of OSQP and the worst error."""
    cases = []
    Q, pv, A, X, G, h = dc3_data()
    rng = np.random.default_rng(0)
    centre = X[:batch] @ np.linalg.pinv(A).T
    plan = plan_projection(G, h, C=A)
    for spread in (1.0, 3.0):
        y = centre + rng.normal(0, spread, centre.shape)
        cases.append((f"DC3 s={spread:g}", plan, y, X[:batch], osqp_projection(y, G, h, A, X[:batch], None)))
    for i in range(blocks):
        A_r, b_r, C_r, d_r, box, x0 = random_block(rng)
        y = x0 + rng.normal(0, 1.0, (batch, x0.size))
        cases.append((f"random {i}", plan_projection(A_r, b_r, C_r, d_r, box), y, None, None))
        cases[-1] = (*cases[-1][:4], osqp_projection(y, A_r, b_r, C_r, d_r, box))
    print("\n## Steps to 1e-6 (float64; share of samples within 1e-6 relative of OSQP, worst error)\n")
    print("| solver | ADMM steps | active-set steps | DC3 s=1 | DC3 s=3 | random blocks (all samples) |")
    print("|---|---|---|---|---|---|")
    for name, iterations, polish in CONFIGS:
        cells, pooled = [], []
        for label, plan_i, y, d, ref in cases:
            x = np.asarray(cp.project(y, plan_i, d=d, iterations=iterations, polish=polish))
            err = np.abs(x - ref).max(axis=1) / (1.0 + np.abs(ref).max(axis=1))
            if label.startswith("DC3"):
                cells.append(f"{np.mean(err <= 1e-6):.2f} ({err.max():.0e})")
            else:
                pooled.append(err)
        pooled = np.concatenate(pooled)
        cells.append(f"{np.mean(pooled <= 1e-6):.3f} ({pooled.max():.0e})")
        print(f"| {name} | {iterations} | {polish} | " + " | ".join(cells) + " |", flush=True)


#: (ADMM steps, active-set steps, gradient ADMM steps or None for the solve, compile with XLA)
SETTINGS = ((50, 0, 20, True), (100, 0, 30, True), (0, 6, None, True), (0, 6, None, False))


def timing(settings=SETTINGS):
    """Forward and forward+backward per step on the CPU, float32, beside Dense(100), one interleaved run.

    TensorFlow: ``tf.function(jit_compile=True)`` (and without XLA where the
    last field says so); JAX (``KERAS_BACKEND=jax``): ``jax.jit`` throughout.
    """
    import keras

    Q, pv, A, X, G, h = dc3_data()
    plan = plan_projection(G, h, C=A)
    backend = keras.backend.backend()
    print(f"\n## Cost on DC3's block ({backend}, CPU, float32; per step, one interleaved run)\n")
    print(f"{os.cpu_count()} CPUs visible; Keras {keras.__version__}, backend {backend}\n")
    print("| batch | map | forward | x Dense | forward + backward | x Dense |")
    print("|---|---|---|---|---|---|")
    for batch in (256, 1024):
        _time_batch(batch, plan, X, A, G, h, settings, backend)


def _time_batch(batch, plan, X, A, G, h, settings, backend):
    from keras_lincon.experiments.timing import time_side_by_side

    rng = np.random.default_rng(batch)
    x_np = X[:batch].astype(np.float32)
    y_np = (X[:batch] @ np.linalg.pinv(A).T + rng.normal(0, 1, (batch, 100))).astype(np.float32)
    kernel = (rng.normal(size=(100, 100)) / 10).astype(np.float32)
    compile_fn = _compilers(backend)
    fns = {"Dense(100) (XLA)": compile_fn(lambda y, W: y @ W, _squared_sum, x_np, kernel, True)}
    for iterations, polish, gradient_iterations, xla in settings:
        if (polish and xla and batch > 256 and backend == "tensorflow") or (backend == "jax" and not xla):
            continue  # TF's XLA lowers batched solves to slow loops: seconds per step at batch 1024
        label = f"{iterations} ADMM + {polish} active-set" + (
            f", gradient by {gradient_iterations} ADMM" if gradient_iterations else ", gradient by a solve"
        )
        label += " (XLA)" if xla else " (graph, no XLA)"

        def fwd(y, d, _unused, iterations=iterations, polish=polish, gradient_iterations=gradient_iterations):
            return cp.project(
                y, plan, d=d, iterations=iterations, polish=polish, gradient_iterations=gradient_iterations
            )

        fns[label] = compile_fn(fwd, _squared_sum, x_np, kernel, xla)

    def value_only(y, d, _unused):  # inference: no tangent loop, no solve
        return cp.project(y, plan, d=d, iterations=50, polish=0, differentiable=False)

    fns["50 ADMM, value only (XLA)"] = compile_fn(value_only, _squared_sum, x_np, kernel, True)
    viols = []
    for name, (forward_fn, _) in fns.items():
        if not name.startswith("Dense"):
            out = np.asarray(forward_fn(y_np)).astype(np.float64)
            size = np.linalg.norm(out, axis=1)[:, None]
            viols.append(np.max((out @ G.T - h) / (np.abs(h) + np.linalg.norm(G, axis=1) * size)))
    forward = time_side_by_side({k: (lambda f=f: f[0](y_np)) for k, f in fns.items()})
    backward = time_side_by_side({k: (lambda f=f: f[1](y_np)) for k, f in fns.items() if "value only" not in k})
    base = "Dense(100) (XLA)"
    for k in fns:
        both = f"{backward[k] * 1e3:.2f} ms | {backward[k] / backward[base]:.1f}x" if k in backward else "— | —"
        print(f"| {batch} | {k} | {forward[k] * 1e3:.2f} ms | {forward[k] / forward[base]:.1f}x | {both} |", flush=True)
    print(f"\n(batch {batch}: worst relative violation of the timed outputs {max(viols):.1e})\n")


def _squared_sum(out):
    from keras import ops

    return ops.sum(out * out)


def _compilers(backend: str):
    """``compile_fn(f(y, d, W), loss, d, W, xla) -> (forward(y), forward_backward(y))``, both blocking."""
    if backend == "jax":
        import jax

        def compile_fn(f, loss, d, W, xla):
            def two(y, W):
                return f(y, W) if f.__code__.co_argcount == 2 else f(y, d, W)

            forward = jax.jit(two)
            grad = jax.jit(jax.grad(lambda y, W: loss(two(y, W)), argnums=(0, 1)))
            return (lambda y: np.asarray(forward(y, W)), lambda y: [np.asarray(g) for g in grad(y, W)])

        return compile_fn
    import tensorflow as tf

    def compile_fn(f, loss, d, W, xla):
        W = tf.Variable(W)
        d = tf.constant(d)

        def two(y):
            return f(y, W) if f.__code__.co_argcount == 2 else f(y, d, W)

        def grad(y):
            with tf.GradientTape() as tape:
                tape.watch(y)
                value = loss(two(y))
            return tape.gradient(value, [y, W], unconnected_gradients="zero")

        forward = tf.function(two, jit_compile=xla)
        backward = tf.function(grad, jit_compile=xla)
        return (lambda y: forward(tf.constant(y)).numpy(), lambda y: [g.numpy() for g in backward(tf.constant(y))])

    return compile_fn


def training(
    seconds: float = 60.0,
    iterations: int = 50,
    polish: int = 0,
    gradient_iterations: int | None = 20,
    batch: int = 256,
    lr: float = 1e-3,
    size: int = 100,
    test_rows: int = 1024,
):
    """Pi-net's protocol on DC3's convex QP with the projection as the output map."""
    import keras
    import tensorflow as tf

    Q, pv, A, X, G, h = dc3_data(size, size // 2, size // 2)
    train, test = X[:7952], X[8976:][:test_rows]
    half = size // 2
    # reference optimum on the test rows
    import osqp
    import scipy.sparse as sp

    solver = osqp.OSQP()
    M = sp.csc_matrix(np.vstack([A, G]))
    solver.setup(
        sp.csc_matrix(Q),
        pv,
        M,
        np.r_[test[0], np.full(half, -np.inf)],
        np.r_[test[0], h],
        eps_abs=1e-10,
        eps_rel=1e-10,
        polishing=True,
        verbose=False,
        max_iter=100_000,
    )
    f_star = []
    for x in test:
        solver.update(l=np.r_[x, np.full(half, -np.inf)], u=np.r_[x, h])
        y = solver.solve(raise_error=False).x
        f_star.append(0.5 * y @ Q @ y + pv @ y)
    f_star = np.array(f_star)
    print(f"\n## Training on DC3's objective (mean f* on the test rows {f_star.mean():.4f})\n")
    plan = plan_projection(G, h, C=A, iterations=iterations, polish=polish, gradient_iterations=gradient_iterations)
    print(
        f"projection: {iterations} ADMM + {polish} active-set steps, gradient_iterations={gradient_iterations}; "
        f"batch {batch}, Adam lr {lr}\n"
    )
    keras.utils.set_random_seed(0)
    net = keras.Sequential(
        [
            keras.Input((half,)),
            keras.layers.Dense(200, "relu"),
            keras.layers.Dense(200, "relu"),
            keras.layers.Dense(size),
        ]
    )
    opt = keras.optimizers.Adam(lr)
    q_diag, p_vec = tf.constant(np.diag(Q), tf.float32), tf.constant(pv, tf.float32)

    def objective(y):
        return 0.5 * tf.reduce_sum(q_diag * y * y, axis=1) + tf.reduce_sum(p_vec * y, axis=1)

    @tf.function(jit_compile=True)
    def step(x):
        with tf.GradientTape() as tape:
            y = cp.project(net(x), plan, d=x)
            loss = tf.reduce_mean(objective(y))
        grads = tape.gradient(loss, net.trainable_variables)
        opt.apply_gradients(zip(grads, net.trainable_variables, strict=True))
        return loss

    @tf.function(jit_compile=True)
    def predict(x):
        return cp.project(net(x), plan, d=x)

    train_t, test_t = tf.constant(train, tf.float32), tf.constant(test, tf.float32)
    rng = np.random.default_rng(0)
    print("| epoch | training seconds (incl. compile) | mean RS | max RS | worst violation (abs) | (relative) |")
    print("|---|---|---|---|---|---|")
    spent, epoch = 0.0, 0
    while spent < seconds:
        order = rng.permutation(len(train))
        start = time.perf_counter()
        for i in range(0, len(order), batch):
            step(tf.gather(train_t, order[i : i + batch])).numpy()
        spent += time.perf_counter() - start
        epoch += 1
        if epoch & (epoch - 1) == 0 or epoch == 50 or spent >= seconds:  # powers of two, Pi-net's 50, the end
            y = predict(test_t).numpy().astype(np.float64)
            f = 0.5 * np.sum(np.diag(Q) * y * y, axis=1) + y @ pv
            rs = (f - f_star) / np.abs(f_star)
            size = np.linalg.norm(y, axis=1, keepdims=True)
            eq, ineq = np.abs(y @ A.T - test), y @ G.T - h
            viol = max(eq.max(), np.maximum(ineq, 0).max())
            rel = max(
                (eq / (np.abs(test) + np.linalg.norm(A, axis=1) * size)).max(),
                (ineq / (np.abs(h) + np.linalg.norm(G, axis=1) * size)).max(),
            )
            print(f"| {epoch} | {spent:.1f} | {rs.mean():.2e} | {rs.max():.2e} | {viol:.1e} | {rel:.1e} |", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="accuracy,timing,training")
    parser.add_argument("--seconds", type=float, default=60.0, help="training time budget")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--polish", type=int, default=0)
    parser.add_argument("--iterations", type=int, default=50)
    parser.add_argument("--gradient-iterations", type=int, default=20, help="0: exact solve")
    parser.add_argument("--size", type=int, default=100, help="variables (rows: half each); 1000 for the large set")
    parser.add_argument("--test-rows", type=int, default=1024, help="first test rows evaluated")
    args = parser.parse_args(argv)
    parts = args.parts.split(",")
    if "accuracy" in parts:
        accuracy()
    if "timing" in parts:
        timing()
    if "training" in parts:
        gradient_iterations = args.gradient_iterations or None
        training(
            args.seconds,
            args.iterations,
            args.polish,
            gradient_iterations,
            args.batch,
            args.lr,
            args.size,
            args.test_rows,
        )


if __name__ == "__main__":
    main()
