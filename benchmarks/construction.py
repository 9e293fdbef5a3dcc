"""Construction cost: this checkout vs a baseline checkout, side by side in one run.

Times, in fresh processes (best of N), ``h_to_v`` of the paper's checkerboard,
building the checkerboard layer (construction + build, as ``keras.Sequential``
does) with a box and with every row scaled (``scaling="project"``), calling
both (``tf.function`` inference and a training step at batch 256), and
building box-only layers of growing width. The baseline is another
checkout of keras_lincon (e.g. ``git worktree add /tmp/base <commit>``).

Run: python benchmarks/construction.py --baseline /tmp/base
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import textwrap

CODE = textwrap.dedent(
    """
    import json, sys, time, tracemalloc
    import numpy as np, keras, keras_lincon as klc

    repeats, box_sizes = int(sys.argv[1]), json.loads(sys.argv[2])
    A = klc.checkerboard()

    def best(fn):
        times = []
        for _ in range(repeats):
            start = time.perf_counter(); fn(); times.append(time.perf_counter() - start)
        return min(times)

    def build(layer, k=256):
        layer.build((None, k))
        return layer

    out = {
        "h_to_v checkerboard": best(lambda: klc.h_to_v(A)),
        "layer checkerboard + box": best(lambda: build(klc.LinearInequalityConstraint(A, box=(-1.0, 1.0)))),
        "layer scaled rows (project)": best(
            lambda: build(klc.LinearInequalityConstraint(A, box=(-1.0, 1.0), scaled_rows="all", scaling="project"))),
    }
    # calls: graph-compiled inference at batch 256 and one training step (as model.fit runs them)
    import tensorflow as tf
    x = tf.constant(np.random.default_rng(0).standard_normal((256, 256)).astype("float32"))
    for name, kwargs in (("box", {}), ("scaled rows (project)", dict(scaled_rows="all", scaling="project"))):
        layer = build(klc.LinearInequalityConstraint(A, box=(-1.0, 1.0), **kwargs))
        infer = tf.function(lambda x, layer=layer: layer(x))
        opt = keras.optimizers.Adam(1e-3)
        opt.build(layer.trainable_variables)

        @tf.function
        def step(x, layer=layer, opt=opt):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(tf.square(layer(x)))
            opt.apply(tape.gradient(loss, layer.trainable_variables), layer.trainable_variables)
            return loss

        infer(x); step(x)  # trace once
        out[f"call {name}, batch 256"] = best(lambda: [infer(x).numpy() for _ in range(10)]) / 10
        out[f"train step {name}, batch 256"] = best(lambda: [step(x).numpy() for _ in range(10)]) / 10
    for n in box_sizes:
        tracemalloc.start()
        out[f"box-only layer n={n}"] = best(
            lambda: build(klc.LinearInequalityConstraint(np.zeros((0, n)), box=(-1.0, 1.0)), k=8))
        out[f"box-only layer n={n} peak MB"] = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    print("RESULT" + json.dumps(out))
    """
)


def measure(path, repeats, box_sizes):
    env = {**os.environ, "PYTHONPATH": path, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(
        [sys.executable, "-c", CODE, str(repeats), json.dumps(box_sizes)],
        capture_output=True,
        text=True,
        env=env,
        cwd=path,
        timeout=3600,
    )
    if proc.returncode:
        raise SystemExit(proc.stderr[-3000:])
    return json.loads(proc.stdout.split("RESULT")[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True, help="path of the baseline checkout")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--box-sizes", default="1000,4000", help="box-only widths run on both")
    parser.add_argument("--new-only-sizes", default="20000", help="widths run on this checkout only")
    args = parser.parse_args(argv)
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    both = [int(v) for v in args.box_sizes.split(",") if v]
    base = measure(os.path.abspath(args.baseline), args.repeats, both)
    new = measure(here, args.repeats, both + [int(v) for v in args.new_only_sizes.split(",") if v])
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; best of {args.repeats}")
    print(f"{'':<40}{'baseline':>12}{'this':>12}{'speed-up':>9}")
    for key, value in new.items():
        old = base.get(key)
        unit = "" if key.endswith("MB") else " s"
        ratio = f"{old / value:8.2f}x" if old and value else "       -"
        old_text = f"{old:10.3f}{unit}" if old is not None else f"{'-':>12}"
        print(f"{key:<40}{old_text:>12}{value:10.4f}{unit}{ratio}")


if __name__ == "__main__":
    main()
