"""The paper's inference comparison: constrained layer vs project-at-test-time (``keras-lincon bench``)."""

from __future__ import annotations

from keras_lincon.experiments.timing import format_seconds, machine_description, time_side_by_side


def inference_benchmark(
    quick: bool = False, batches=(1, 32, 256, 4096), feature_sizes=(None, 128), print_fn=print
) -> list[dict]:
    """The paper's comparison: constrained layer vs project-at-test-time.

    Checkerboard cone with the [-1, 1] box on 784 outputs (8x8 digits in
    quick mode). Candidates per batch size: a plain Dense (no constraint),
    the constrained layer (graph and XLA), and Dense followed by OSQP per
    sample or by batched ADMM (graph and XLA; tolerance 1e-4 within 500
    iterations, since float32 ADMM stalls near 1e-5). The Dense stands for a
    trained unconstrained network: with ``k = n`` inputs it is the identity
    on test images, with ``k < n`` it decodes the images' top-``k`` PCA
    coefficients, so the projections see realistic outputs. Returns one dict
    per row; prints a table.
    """
    import keras
    import numpy as np
    import tensorflow as tf

    import keras_lincon as klc
    from keras_lincon.baselines.projection import ADMMProjection, OSQPProjector
    from keras_lincon.experiments import datasets

    data = datasets.load("digits" if quick else "auto", max_train=1, max_test=4096)
    h, w = data.image_shape
    A = klc.checkerboard((h, w), datasets.checkerboard_grid((h, w)))
    n = A.shape[1]
    box = (-1.0, 1.0)
    images = data.x_test.reshape(len(data.x_test), -1).astype(np.float64)
    if quick:
        batches, feature_sizes = tuple(b for b in batches if b <= 32), (None, 16)
    timing = dict(min_seconds=0.02, rounds=2, warmup=1) if quick else dict(min_seconds=0.3, rounds=5)
    slow_timing = dict(min_seconds=0.0, rounds=2 if quick else 3, warmup=1)
    admm = ADMMProjection(A, box=box, tolerance=1e-4, iterations=500)
    osqp = OSQPProjector(A, box=box)
    print_fn(f"machine: {machine_description()}")
    print_fn(f"constraint: checkerboard {h}x{w} with box [-1, 1]; time per batch")
    header = (
        f"{'k':>4}{'batch':>6}{'dense':>11}{'layer':>11}{'layer xla':>11}{'+osqp':>11}{'+admm':>11}"
        f"{'+admm xla':>11}{'osqp/layer':>11}{'admm/layer':>11}{'layer/dense':>12}"
    )
    print_fn(header)
    print_fn("-" * len(header))
    rows = []
    for k in feature_sizes:
        k = k or n
        if k == n:
            features, decoder = images, np.eye(n)
        else:  # top-k PCA coefficients and the map back to pixels
            mean = images.mean(axis=0)
            _, _, vt = np.linalg.svd(images - mean, full_matrices=False)
            features, decoder = (images - mean) @ vt[:k].T, vt[:k]
        dense_layer = keras.layers.Dense(n)
        dense = keras.Sequential([keras.Input((k,)), dense_layer])
        bias = images.mean(axis=0) if k < n else np.zeros(n)
        dense_layer.set_weights([decoder.astype("float32"), bias.astype("float32")])
        layer = keras.Sequential([keras.Input((k,)), klc.LinearInequalityConstraint(A, box=box)])
        dense_then_admm = keras.Sequential([keras.Input((k,)), dense_layer, admm])
        fns = {
            "dense graph": tf.function(lambda x, m=dense: m(x)),
            "layer graph": tf.function(lambda x, m=layer: m(x)),
            "layer xla": tf.function(lambda x, m=layer: m(x), jit_compile=True),
            "dense+admm graph": tf.function(lambda x, m=dense_then_admm: m(x)),
            "dense+admm xla": tf.function(lambda x, m=dense_then_admm: m(x), jit_compile=True),
        }
        for batch in batches:
            x = tf.constant(np.resize(features, (batch, k)).astype("float32"))
            candidates = {name: (lambda fn=fn, x=x: fn(x).numpy()) for name, fn in fns.items()}
            t = time_side_by_side(candidates, **timing)
            t.update(
                time_side_by_side(
                    {"dense+osqp": lambda fns=fns, x=x: osqp.project(fns["dense graph"](x).numpy())}, **slow_timing
                )
            )
            best_layer = min(t["layer graph"], t["layer xla"])
            best_admm = min(t["dense+admm graph"], t["dense+admm xla"])
            row = dict(
                k=k,
                batch=batch,
                **t,
                layer_violation=layer.layers[0].max_violation(layer(x), relative=True),
                admm_violation=admm.max_violation(fns["dense+admm xla"](x)),
                osqp_over_layer=t["dense+osqp"] / best_layer,
                admm_over_layer=best_admm / best_layer,
                layer_over_dense=t["layer graph"] / t["dense graph"],
            )
            rows.append(row)
            print_fn(
                f"{k:>4}{batch:>6}{format_seconds(t['dense graph']):>11}{format_seconds(t['layer graph']):>11}"
                f"{format_seconds(t['layer xla']):>11}{format_seconds(t['dense+osqp']):>11}"
                f"{format_seconds(t['dense+admm graph']):>11}{format_seconds(t['dense+admm xla']):>11}"
                f"{row['osqp_over_layer']:>10.0f}x{row['admm_over_layer']:>10.1f}x"
                f"{row['layer_over_dense']:>11.2f}x"
            )
    print_fn(
        "max violation: layer (relative) "
        f"{max(r['layer_violation'] for r in rows):.1e}; ADMM (absolute) "
        f"{max(r['admm_violation'] for r in rows):.1e}"
    )
    print_fn("osqp/layer and admm/layer use the faster of graph/XLA on each side; OSQP runs per sample.")
    return rows
