"""Constrained layer vs "train unconstrained, project at test time".

Run: python benchmarks/inference.py [--quick]   (same as `keras-lincon bench`)
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from keras_lincon.experiments.inference_bench import inference_benchmark  # noqa: E402

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--quick", action="store_true", help="8x8 digits, small batches")
    inference_benchmark(quick=parser.parse_args().quick)
