"""The ``keras-lincon`` command.

Subcommands:
  vae         the main job: constrained VAE vs unconstrained twin, with a report
  toy         the paper's toy experiment (learn the checkerboard projection)
  bench       constrained layer vs Dense + OSQP / batched projection, timed
  export      a saved .keras model -> SavedModel in TF Serving's layout
  generators  print the generators of the paper's checkerboard constraint
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Optional, Sequence


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
    print(f"  each ray touches {sorted(set(support.tolist()))} pixels (one block); "
          f"A r = {np.round(A @ rep.rays[0], 4).tolist()[:4]}...")
    return 0


def _cmd_vae(args: argparse.Namespace) -> int:
    from keras_lincon import experiment

    overrides = {k: v for k, v in dict(data=args.data, epochs=args.epochs, out=args.out,
                                       num_samples=args.samples, train_size=args.train_size).items()
                 if v is not None}
    cfg = experiment.VAEConfig.quick(**overrides) if args.quick else experiment.VAEConfig(**overrides)
    if args.quick:
        cfg.verbose = 1
    experiment.run(cfg)
    return 0


def _cmd_toy(args: argparse.Namespace) -> int:
    import runpy
    from pathlib import Path

    script = Path(__file__).resolve().parent.parent / "tutorials" / "checkerboard_projection.py"
    if not script.is_file():
        print("keras-lincon toy runs tutorials/checkerboard_projection.py from a source checkout.",
              file=sys.stderr)
        return 2
    sys.argv = [str(script)] + (["--quick"] if args.quick else []) + ["--out", args.out]
    runpy.run_path(str(script), run_name="__main__")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from keras_lincon.bench import inference_benchmark

    inference_benchmark(quick=args.quick)
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    import keras

    import keras_lincon  # noqa: F401  (registers the custom classes for loading)
    from keras_lincon.serving import export_for_serving

    model = keras.saving.load_model(args.model)
    path = export_for_serving(model, args.base_dir, version=args.version, xla=args.xla, overwrite=args.overwrite)
    print(f"wrote {path}; serve with:\n  tensorflow_model_server --rest_api_port=8501 "
          f"--model_name=lincon --model_base_path={path.parent.resolve()}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="keras-lincon", description="Hard linear constraints for Keras.")
    sub = parser.add_subparsers(dest="command", required=True)
    vae = sub.add_parser("vae", help="train a constrained VAE and its unconstrained twin; write a report")
    vae.add_argument("--quick", action="store_true", help="seconds-long run on digits (for tests)")
    vae.add_argument("--data", choices=["auto", "fashion_mnist", "mnist", "digits"])
    vae.add_argument("--epochs", type=int)
    vae.add_argument("--samples", type=int, help="number of generated samples to evaluate")
    vae.add_argument("--train-size", type=int, help="use only this many training images")
    vae.add_argument("--out", help="output folder (default runs/vae)")
    vae.set_defaults(func=_cmd_vae)
    toy = sub.add_parser("toy", help="the paper's toy experiment: learn the checkerboard projection")
    toy.add_argument("--quick", action="store_true")
    toy.add_argument("--out", default="runs/checkerboard")
    toy.set_defaults(func=_cmd_toy)
    bench = sub.add_parser("bench", help="inference: layer vs Dense + OSQP / batched projection")
    bench.add_argument("--quick", action="store_true")
    bench.set_defaults(func=_cmd_bench)
    export = sub.add_parser("export", help="export a .keras model as a SavedModel for TF Serving")
    export.add_argument("model", help="path of a .keras file")
    export.add_argument("base_dir", help="TF Serving model base path; the version folder goes inside")
    export.add_argument("--version", type=int, default=1)
    export.add_argument("--xla", action="store_true", help="also add XLA-compiled endpoints")
    export.add_argument("--overwrite", action="store_true")
    export.set_defaults(func=_cmd_export)
    gen = sub.add_parser("generators", help="generators of the checkerboard constraint, with timings")
    gen.add_argument("--size", type=int, default=28, help="image side in pixels")
    gen.add_argument("--grid", type=int, default=4, help="blocks per side")
    gen.add_argument("--compare", action="store_true", help="also run exact double description")
    gen.set_defaults(func=_cmd_generators)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ValueError as exc:  # our errors carry their own advice
        print(f"keras-lincon: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
