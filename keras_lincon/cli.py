"""The ``keras-lincon`` command.

Starting it is instant: Keras and TensorFlow are imported only by the
subcommand that needs them, after its optional dependencies are checked.
Expected failures (bad numbers, missing packages or data, a non-empty or
unwritable output folder) print one ``keras-lincon: error: ...`` line and
exit with status 2.

Subcommands:
  vae         the main job: constrained VAE vs unconstrained twin, with a report
  toy         the paper's toy experiment (learn the checkerboard projection)
  bench       constrained layer vs Dense + OSQP / batched projection, timed
  proxy       the field's optimization-proxy benchmark (DC3's QP), with a results table
  export      a saved .keras model -> SavedModel in TF Serving's layout
  generators  print the generators of the paper's checkerboard constraint
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence

from keras_lincon.errors import LinconError


def _cmd_generators(args: argparse.Namespace) -> int:
    import numpy as np

    import keras_lincon as klc

    A = klc.checkerboard((args.size, args.size), (args.grid, args.grid))
    print(f"checkerboard constraint: {A.shape[0]} rows on {A.shape[1]} outputs")
    for method in ("auto", "cdd") if args.compare else ("auto",):
        start = time.perf_counter()
        rep = klc.h_to_v(A, method=method)
        print(f"  method={method:<5} -> {rep}  ({time.perf_counter() - start:.3f} s)")
    x = rep.sample(1000, seed=0)
    print(f"  max violation of 1000 generated points: {klc.max_violation(x, A):.2e}")
    support = np.sum(np.abs(rep.rays) > 1e-9, axis=1)
    print(
        f"  each ray touches {sorted(set(support.tolist()))} pixels (one block); "
        f"A r = {np.round(A @ rep.rays[0], 4).tolist()[:4]}..."
    )
    return 0


def _cmd_vae(args: argparse.Namespace) -> int:
    from keras_lincon.experiments import vae_study
    from keras_lincon.experiments._deps import require

    # Before anything slow: the study ends with an OSQP comparison and plots.
    require("keras-lincon vae", "tensorflow", "tensorflow_probability", "osqp", "matplotlib")
    overrides = {
        k: v
        for k, v in dict(
            data=args.data,
            epochs=args.epochs,
            out=args.out,
            num_samples=args.samples,
            train_size=args.train_size,
            scaling=args.scaling,
        ).items()
        if v is not None
    }
    overrides["overwrite"] = args.overwrite
    if args.quick:
        overrides["verbose"] = 1
    cfg = vae_study.VAEConfig.quick(**overrides) if args.quick else vae_study.VAEConfig(**overrides)
    vae_study.run(cfg)
    return 0


def _cmd_toy(args: argparse.Namespace) -> int:
    from keras_lincon.experiments import checkerboard_projection

    checkerboard_projection.run(args)
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from keras_lincon.experiments._deps import require

    require("keras-lincon bench", "tensorflow", "osqp")
    from keras_lincon.experiments.inference_bench import inference_benchmark

    inference_benchmark(quick=args.quick, print_fn=lambda *a: print(*a, flush=True))
    return 0


def _cmd_proxy(args: argparse.Namespace) -> int:
    from keras_lincon.experiments._deps import require

    # Before anything slow: the references and the baseline are OSQP's.
    require("keras-lincon proxy", "osqp", "scipy")
    from keras_lincon.experiments import optimization_proxy

    config = optimization_proxy.ProxyConfig(
        problem=args.problem,
        protocol=args.protocol,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        seed=args.seed,
        float64=args.float64,
        scaling=args.scaling,
        projection_penalty=args.projection_penalty,
        quick=args.quick,
        reference_rows=args.reference_rows,
        out=args.out or ("runs/proxy-quick" if args.quick else "runs/proxy"),
        overwrite=args.overwrite,
    )
    optimization_proxy.run(config, print_fn=lambda *a: print(*a, flush=True))
    return 0


def _positive_float(text: str) -> float:
    """argparse type: a float > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _cmd_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from keras_lincon.experiments._deps import require

    require("keras-lincon export", "tensorflow")
    if not Path(args.model).is_file():
        raise LinconError(f"{args.model} is not a file; give the path of a .keras model.")
    target = Path(args.base_dir) / str(args.version)
    if target.exists() and not args.overwrite:
        raise LinconError(f"{target} exists; pass --overwrite to replace that SavedModel or choose another --version.")
    import keras

    import keras_lincon  # noqa: F401  (registers the custom classes for loading)
    from keras_lincon.export.serving import export_for_serving

    model = keras.saving.load_model(args.model)
    path = export_for_serving(model, args.base_dir, version=args.version, xla=args.xla, overwrite=args.overwrite)
    print(
        f"wrote {path}; serve with:\n  tensorflow_model_server --rest_api_port=8501 "
        f"--model_name=lincon --model_base_path={path.parent.resolve()}"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; building it imports neither Keras nor TensorFlow."""
    parser = argparse.ArgumentParser(prog="keras-lincon", description="Hard linear constraints for Keras.")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_vae(sub)
    _add_toy(sub)
    _add_bench(sub)
    _add_proxy(sub)
    _add_export(sub)
    _add_generators(sub)
    return parser


def _add_vae(sub) -> None:
    from keras_lincon.experiments.checkerboard_projection import DATA_CHOICES, SCALING_CHOICES, positive_int

    vae = sub.add_parser("vae", help="train a constrained VAE and its unconstrained twin; write a report")
    vae.add_argument("--quick", action="store_true", help="seconds-long run on digits (for tests)")
    vae.add_argument("--data", choices=DATA_CHOICES)
    vae.add_argument("--epochs", type=positive_int)
    vae.add_argument("--samples", type=positive_int, help="number of generated samples to evaluate")
    vae.add_argument("--train-size", type=positive_int, help="use only this many training images")
    vae.add_argument(
        "--scaling",
        choices=SCALING_CHOICES,
        help="box treatment of the constraint layer (default per_block; global = the paper)",
    )
    _add_output_arguments(vae, "vae")
    vae.set_defaults(func=_cmd_vae)


def _add_toy(sub) -> None:
    from keras_lincon.experiments.checkerboard_projection import add_arguments

    toy = sub.add_parser("toy", help="the paper's toy experiment: learn the checkerboard projection")
    add_arguments(toy)
    toy.set_defaults(func=_cmd_toy)


def _add_bench(sub) -> None:
    bench = sub.add_parser("bench", help="inference: layer vs Dense + OSQP / batched projection")
    bench.add_argument("--quick", action="store_true")
    bench.set_defaults(func=_cmd_bench)


def _add_proxy(sub) -> None:
    from keras_lincon.experiments.checkerboard_projection import SCALING_CHOICES, positive_int

    proxy = sub.add_parser(
        "proxy", help="optimization proxy for DC3's QP: MLP + constraint layer trained on the objective alone"
    )
    # Choices listed here (not imported from the experiment) so --help stays instant.
    proxy.add_argument(
        "--problem",
        choices=["convex", "nonconvex", "large"],
        default="convex",
        help="convex: 100/50/50; nonconvex: p' sin(y) on the same data; large: 1000/500/500",
    )
    proxy.add_argument(
        "--protocol",
        choices=["pinet", "dc3"],
        default="pinet",
        help="split and defaults: pinet (train 0-7951, test 8976-9999; batch 64, lr 1e-3, cosine decay) "
        "or dc3 (train 0-8333, test 9167-9999; batch 200, lr 1e-4 constant)",
    )
    proxy.add_argument("--epochs", type=positive_int, default=50)
    proxy.add_argument("--batch-size", type=positive_int, help="default: the protocol's")
    proxy.add_argument("--lr", type=_positive_float, help="Adam learning rate (default: the protocol's)")
    proxy.add_argument("--seed", type=int, default=0)
    proxy.add_argument("--float64", action="store_true", help="train and evaluate in float64 (keras floatx)")
    proxy.add_argument(
        "--scaling",
        choices=SCALING_CHOICES,
        help="the constraint layer's scaling (default: the layer's; project = exact projection, slower per step)",
    )
    proxy.add_argument(
        "--projection-penalty",
        type=float,
        default=0.0,
        help="with --scaling project: the layer's projection_penalty (weight of ||y - x||^2; 0.01 on DC3's QP)",
    )
    proxy.add_argument(
        "--reference-rows",
        type=positive_int,
        help="test rows with a reference optimum (default all; 256 for --problem large)",
    )
    proxy.add_argument("--quick", action="store_true", help="seconds-long run on a few rows (for tests)")
    _add_output_arguments(proxy, "proxy")
    proxy.set_defaults(func=_cmd_proxy)


def _add_output_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    """``--out`` and ``--overwrite`` of a command that writes its results to ``runs/<command>``."""
    parser.add_argument("--out", help=f"output folder (default runs/{command}, runs/{command}-quick with --quick)")
    parser.add_argument("--overwrite", action="store_true", help="write into a non-empty output folder")


def _add_export(sub) -> None:
    from keras_lincon.experiments.checkerboard_projection import positive_int

    export = sub.add_parser("export", help="export a .keras model as a SavedModel for TF Serving")
    export.add_argument("model", help="path of a .keras file")
    export.add_argument("base_dir", help="TF Serving model base path; the version folder goes inside")
    export.add_argument("--version", type=positive_int, default=1)
    export.add_argument("--xla", action="store_true", help="also add XLA-compiled endpoints")
    export.add_argument("--overwrite", action="store_true", help="replace an existing SavedModel version folder")
    export.set_defaults(func=_cmd_export)


def _add_generators(sub) -> None:
    from keras_lincon.experiments.checkerboard_projection import positive_int

    gen = sub.add_parser("generators", help="generators of the checkerboard constraint, with timings")
    gen.add_argument("--size", type=positive_int, default=28, help="image side in pixels")
    gen.add_argument("--grid", type=positive_int, default=4, help="blocks per side")
    gen.add_argument("--compare", action="store_true", help="also run exact double description")
    gen.set_defaults(func=_cmd_generators)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line ``argv``; returns the exit status (2 and one line on stderr for an expected failure)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, ImportError, OSError) as exc:  # our errors carry their own advice
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"keras-lincon: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("keras-lincon: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
