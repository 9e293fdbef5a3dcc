"""Deprecated location: the VAE study moved to :mod:`keras_lincon.experiments.vae_study`."""

import sys
import warnings

from keras_lincon.experiments import vae_study as _moved

warnings.warn(
    "keras_lincon.experiment moved to keras_lincon.experiments.vae_study and is removed in 0.3.0; update the import.",
    DeprecationWarning,
    stacklevel=2,
)
sys.modules[__name__] = _moved  # one module object under both names
