"""Timing helpers shared by the benchmark scripts and ``keras-lincon bench``.

Timings are side by side: candidates are run in interleaved rounds in one
process, and each reports the median of its per-round means, so slow drifts
of the machine hit all of them alike. Nothing here asserts on time.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from typing import Callable, Dict


def machine_description() -> str:
    """One line naming CPU, cores, and library versions."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    parts = [cpu, f"{os.cpu_count()} cores", f"Python {platform.python_version()}"]
    try:
        import keras
        import tensorflow as tf

        parts += [f"TensorFlow {tf.__version__}", f"Keras {keras.__version__}"]
        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            parts.append(f"GPU: {tf.config.experimental.get_device_details(gpus[0]).get('device_name', 'yes')}")
    except ImportError:
        pass
    return ", ".join(parts)


def time_side_by_side(
    candidates: Dict[str, Callable[[], object]],
    *,
    min_seconds: float = 0.2,
    rounds: int = 5,
    warmup: int = 3,
) -> Dict[str, float]:
    """Seconds per call of each candidate, measured in interleaved rounds.

    Args:
        candidates: name -> zero-argument callable (it must block until done,
            e.g. by converting its result to numpy).
        min_seconds: each candidate runs for about this long per round.
        rounds: interleaved rounds; the median of the round means is reported.
        warmup: untimed calls first (tracing, XLA compilation).

    Returns:
        name -> seconds per call.
    """
    repeats = {}
    for name, fn in candidates.items():
        for _ in range(warmup):
            fn()
        start = time.perf_counter()
        fn()
        once = max(time.perf_counter() - start, 1e-6)
        repeats[name] = max(1, int(min_seconds / once))
    samples = {name: [] for name in candidates}
    for _ in range(rounds):
        for name, fn in candidates.items():
            start = time.perf_counter()
            for _ in range(repeats[name]):
                fn()
            samples[name].append((time.perf_counter() - start) / repeats[name])
    return {name: statistics.median(values) for name, values in samples.items()}


def format_seconds(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} us"
    if seconds < 1.0:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def inference_benchmark(quick: bool = False, batches=(1, 32, 256, 4096), feature_sizes=(None, 128),
                        print_fn=print) -> list[dict]:
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
    from keras_lincon import datasets
    from keras_lincon.projection import ADMMProjection, OSQPProjector

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
    header = (f"{'k':>4}{'batch':>6}{'dense':>11}{'layer':>11}{'layer xla':>11}{'+osqp':>11}{'+admm':>11}"
              f"{'+admm xla':>11}{'osqp/layer':>11}{'admm/layer':>11}{'layer/dense':>12}")
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
        dense_layer.set_weights([decoder.astype("float32"), (images.mean(axis=0) if k < n else np.zeros(n)).astype("float32")])
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
            candidates = {name: (lambda fn=fn: fn(x).numpy()) for name, fn in fns.items()}
            t = time_side_by_side(candidates, **timing)
            t.update(time_side_by_side(
                {"dense+osqp": lambda: osqp.project(fns["dense graph"](x).numpy())}, **slow_timing))
            best_layer = min(t["layer graph"], t["layer xla"])
            best_admm = min(t["dense+admm graph"], t["dense+admm xla"])
            row = dict(k=k, batch=batch, **t,
                       layer_violation=layer.layers[0].max_violation(layer(x), relative=True),
                       admm_violation=admm.max_violation(fns["dense+admm xla"](x)),
                       osqp_over_layer=t["dense+osqp"] / best_layer, admm_over_layer=best_admm / best_layer,
                       layer_over_dense=t["layer graph"] / t["dense graph"])
            rows.append(row)
            print_fn(f"{k:>4}{batch:>6}{format_seconds(t['dense graph']):>11}{format_seconds(t['layer graph']):>11}"
                     f"{format_seconds(t['layer xla']):>11}{format_seconds(t['dense+osqp']):>11}"
                     f"{format_seconds(t['dense+admm graph']):>11}{format_seconds(t['dense+admm xla']):>11}"
                     f"{row['osqp_over_layer']:>10.0f}x{row['admm_over_layer']:>10.1f}x"
                     f"{row['layer_over_dense']:>11.2f}x")
    print_fn("max violation: layer (relative) "
             f"{max(r['layer_violation'] for r in rows):.1e}; ADMM (absolute) "
             f"{max(r['admm_violation'] for r in rows):.1e}")
    print_fn("osqp/layer and admm/layer use the faster of graph/XLA on each side; OSQP runs per sample.")
    return rows
