"""Generator computation: chosen method vs plain exact double description.

Prints, side by side in one run, the time to compute the generators of the
paper's checkerboard constraint (28x28, 16 blocks of 7x7) with method="auto"
(blocks + closed form) and with one exact double description (cdd.gmp), then
the scaling of the closed form with n and m. Run: python benchmarks/generators.py
"""

import argparse
import platform
import time

import numpy as np

import keras_lincon as klc


def best_of(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, no exact 784-dim run")
    args = parser.parse_args(argv)
    print(f"machine: {platform.processor() or platform.machine()}, {platform.python_version()}")

    shape = (8, 8) if args.quick else (28, 28)
    grid = (2, 2) if args.quick else (4, 4)
    A = klc.checkerboard(shape, grid)
    t_auto, rep_auto = best_of(lambda: klc.h_to_v(A), 5)
    t_cdd, rep_cdd = best_of(lambda: klc.h_to_v(A, method="cdd"), 1)
    same = np.allclose(rep_auto.rays, rep_cdd.rays, atol=1e-10) and np.allclose(
        rep_auto.lineality.T @ rep_auto.lineality, rep_cdd.lineality.T @ rep_cdd.lineality, atol=1e-10
    )
    print(f"\ncheckerboard {shape[0]}x{shape[1]}, {A.shape[0]} constraints")
    print(f"{'method':<24}{'seconds':>10}{'rays':>7}{'lineality':>11}")
    print(f"{rep_auto.method:<24}{t_auto:>10.4f}{rep_auto.rays.shape[0]:>7}{rep_auto.lineality.shape[0]:>11}")
    print(f"{'cdd (exact, gmp)':<24}{t_cdd:>10.4f}{rep_cdd.rays.shape[0]:>7}{rep_cdd.lineality.shape[0]:>11}")
    print(f"speed-up auto vs exact double description: {t_cdd / t_auto:.0f}x; same set: {same}")

    print("\nclosed form scaling (random full-row-rank cone A x <= 0)")
    print(f"{'n':>6}{'m':>6}{'seconds':>10}")
    rng = np.random.default_rng(0)
    sizes = [(64, 8), (256, 32)] if args.quick else [(256, 32), (1024, 128), (2048, 256), (4096, 128), (4096, 512)]
    for n, m in sizes:
        A = rng.standard_normal((m, n))
        t, _ = best_of(lambda A=A: klc.h_to_v(A, method="closed_form"), 2)
        print(f"{n:>6}{m:>6}{t:>10.3f}")


if __name__ == "__main__":
    main()
