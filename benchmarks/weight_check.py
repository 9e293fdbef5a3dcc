"""Cost of the generator guard per call, against a Dense layer at batch 256 (issue 21).

What the guard adds to a call of :class:`~keras_lincon.LinearInequalityConstraint`
(``layer._guard_generators``, first line of ``call``):

- compiled (``model.predict`` / ``fit``: ``tf.function`` with or without XLA,
  ``jax.jit``): nothing. Writes are checked where they happen, so the
  compiled program is the unguarded one; this script checks that the
  TensorFlow HLO is the same instruction for instruction and times the
  layer with and without its guard anyway;
- eager: a Python comparison of a write stamp (a counter of checked writes;
  torch adds each tensor's in-place version, JAX each stored array's
  identity), plus a host comparison only after something wrote.

The eager check is timed directly (``layer._guard_generators(x)``) and a
``Dense(k -> n)`` of the layer's shape called eagerly beside it, in
interleaved rounds in one process; each is the fastest round (the one
other jobs on a shared machine disturbed least), by CPU time. Target: the
check is <= 3% of the Dense call.

Run: KERAS_BACKEND=tensorflow|jax|torch python benchmarks/weight_check.py [--rounds 30]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_lincon as klc  # noqa: E402

BATCH = 256


def cases():
    """(name, layer kwargs, input dim): the paper's checkerboard, a chain, a larger checkerboard."""
    return [
        ("checkerboard 8x8 (2x2 tiles) + box, k=64", dict(A=klc.checkerboard((8, 8), (2, 2)), box=(-1.0, 1.0)), 64),
        ("monotone chain n=64 + box, k=64", dict(A=klc.monotone_chain(64), box=(-1.0, 1.0)), 64),
        ("checkerboard 16x16 (4x4 tiles), k=256", dict(A=klc.checkerboard((16, 16), (4, 4))), 256),
    ]


def compiled(fn, layer):
    """``fn(x)`` compiled the way the backend's ``model.predict`` compiles it (torch: eager)."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, jit_compile=True)
    if backend == "jax":
        import jax

        variables = list(layer.variables)

        @jax.jit
        def stateless(values, x):
            with keras.StatelessScope(state_mapping=list(zip(variables, values, strict=True))):
                return fn(x)

        values = [v.value for v in variables]
        return lambda x: stateless(values, x)
    return fn


def block(y):
    if keras.backend.backend() == "jax":
        y.block_until_ready()
    elif keras.backend.backend() == "tensorflow":
        y.numpy()
    return y


def per_call(fn, x, calls: int) -> float:
    """CPU seconds per call over ``calls`` back-to-back calls."""
    start = time.process_time()
    for _ in range(calls):
        y = fn(x)
    block(y)
    return (time.process_time() - start) / calls


def fastest(fns: dict, x, rounds: int, calls: int) -> dict:
    """The fastest round of each function, rounds interleaved so other jobs hit all alike."""
    for fn in fns.values():  # compile and warm up
        for _ in range(3):
            block(fn(x))
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(rounds):
        for key, fn in fns.items():
            best[key] = min(best[key], per_call(fn, x, calls))
    return best


def same_program(layer, unguarded, x) -> str:
    """Whether both layers compile to the same operations (TensorFlow: HLO; JAX: jaxpr)."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        def ops(lay):
            text = tf.function(lambda v: lay(v), jit_compile=True).experimental_get_compiler_ir(x)(stage="hlo")
            return sorted(re.findall(r"= [^ ]+ ([a-z][a-z0-9-]*)\(", text))

        kind = "HLO"
    else:
        import jax

        def ops(lay):
            variables = list(lay.variables)

            def stateless(values, v):
                with keras.StatelessScope(state_mapping=list(zip(variables, values, strict=True))):
                    return lay(v)

            jaxpr = jax.make_jaxpr(stateless)([w.value for w in variables], x)
            return sorted(str(eqn.primitive) for eqn in jaxpr.eqns)

        kind = "jaxpr"
    return f"{kind} {'the same' if ops(layer) == ops(unguarded) else 'DIFFERENT'}"


def measure(name, kwargs, k, rounds):
    x = keras.ops.convert_to_tensor(np.random.default_rng(0).standard_normal((BATCH, k)).astype("float32"))
    layer = klc.LinearInequalityConstraint(**kwargs)
    layer.build((None, k))
    unguarded = klc.LinearInequalityConstraint(**kwargs)
    unguarded.build((None, k))
    unguarded.set_weights(layer.get_weights())
    unguarded._guard_generators = lambda inputs: inputs  # the layer as it was before the guard
    dense = keras.layers.Dense(layer.units)
    dense.build((None, k))
    sizes = sum(int(np.prod(v.shape)) for v in layer._generator_variables().values())
    print(f"{name}: {len(layer._generator_variables())} generator weights, {sizes} values")

    eager = fastest({"dense": dense, "check": layer._guard_generators}, x, rounds, calls=200)
    ratio = eager["check"] / eager["dense"]
    print(
        f"  eager:    dense {eager['dense'] * 1e6:8.1f} us | check {eager['check'] * 1e6:6.2f} us | "
        f"check / dense = {ratio:.2%}"
    )
    if keras.backend.backend() != "torch":
        comp = fastest(
            {
                "dense": compiled(lambda v: dense(v), dense),
                "layer": compiled(lambda v: layer(v), layer),
                "unguarded": compiled(lambda v: unguarded(v), unguarded),
            },
            x,
            rounds,
            calls=50,
        )
        print(
            f"  compiled: dense {comp['dense'] * 1e6:8.1f} us | layer {comp['layer'] * 1e6:8.1f} us, unguarded "
            f"{comp['unguarded'] * 1e6:8.1f} us | (layer - unguarded) / dense = "
            f"{(comp['layer'] - comp['unguarded']) / comp['dense']:+.2%} ({same_program(layer, unguarded, x)}: "
            "the difference is timing noise)"
        )
    return ratio


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    print(
        f"backend {keras.backend.backend()}, Keras {keras.__version__}, batch {BATCH}, "
        f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), {args.rounds} interleaved rounds"
    )
    ratios = [measure(name, kwargs, k, args.rounds) for name, kwargs, k in cases()]
    print(f"worst eager check / Dense call: {max(ratios):.2%} (target <= 3%); compiled: no extra operation")


if __name__ == "__main__":
    main()
