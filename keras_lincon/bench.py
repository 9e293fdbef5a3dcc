"""Deprecated location: see :mod:`keras_lincon.experiments.timing` and
:mod:`keras_lincon.experiments.inference_bench`."""

import warnings

from keras_lincon.experiments.inference_bench import inference_benchmark  # noqa: F401
from keras_lincon.experiments.timing import (  # noqa: F401
    Stopwatch,
    format_seconds,
    machine_description,
    time_side_by_side,
)

warnings.warn(
    "keras_lincon.bench moved to keras_lincon.experiments.timing / .inference_bench and is removed in 0.3.0; "
    "update the import.",
    DeprecationWarning,
    stacklevel=2,
)
