"""Timing helpers shared by the experiments, the benchmark scripts and ``keras-lincon bench``.

Timings are side by side: candidates are run in interleaved rounds in one
process, and each reports the median of its per-round means, so slow drifts
of the machine hit all of them alike. Nothing here asserts on time.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable


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
    candidates: dict[str, Callable[[], object]],
    *,
    min_seconds: float = 0.2,
    rounds: int = 5,
    warmup: int = 3,
) -> dict[str, float]:
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


class Stopwatch:
    """Wall-clock seconds of a ``with`` block: ``with Stopwatch() as sw: ...; sw.seconds``."""

    def __enter__(self) -> Stopwatch:
        self.seconds = 0.0
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self._start


def format_seconds(seconds: float) -> str:
    """``1.5e-5`` -> ``"15.0 us"``; ms below a second, s above."""
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} us"
    if seconds < 1.0:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"
