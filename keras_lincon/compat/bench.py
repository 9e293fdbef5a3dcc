"""The former ``keras_lincon.bench``: names from :mod:`keras_lincon.experiments.timing` and
:mod:`keras_lincon.experiments.inference_bench` (the finder in :mod:`keras_lincon.compat` warns)."""

from keras_lincon.experiments.inference_bench import inference_benchmark  # noqa: F401
from keras_lincon.experiments.timing import (  # noqa: F401
    Stopwatch,
    format_seconds,
    machine_description,
    time_side_by_side,
)
