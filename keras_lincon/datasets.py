"""Deprecated location: the data sets moved to :mod:`keras_lincon.experiments.datasets`."""

import sys
import warnings

from keras_lincon.experiments import datasets as _moved

warnings.warn(
    "keras_lincon.datasets moved to keras_lincon.experiments.datasets and is removed in 0.3.0; update the import.",
    DeprecationWarning,
    stacklevel=2,
)
# The same module object under both names, so monkeypatching either one works.
sys.modules[__name__] = _moved
