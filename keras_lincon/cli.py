"""The ``keras-lincon`` command.

Subcommands:
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="keras-lincon", description="Hard linear constraints for Keras.")
    sub = parser.add_subparsers(dest="command", required=True)
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
