"""Deprecated module: scaled rows are part of :class:`~keras_lincon.LinearInequalityConstraint`.

``ScaledRowsConstraint(A, b, scaled_rows=..., center=c, ...)`` is now
``LinearInequalityConstraint(A, b, scaled_rows=..., box_center=c, ...)``;
the keras.ops arithmetic is in :mod:`keras_lincon.layers.kernels`.
"""

from __future__ import annotations

import warnings

import keras

from keras_lincon.errors import ScaledRowsWarning  # noqa: F401  (former home)
from keras_lincon.layers import SCALINGS, LinearInequalityConstraint  # noqa: F401
from keras_lincon.layers.scaled_kernel import scaled_stage  # noqa: F401  (former home)


@keras.saving.register_keras_serializable(package="keras_lincon")
class ScaledRowsConstraint(LinearInequalityConstraint):
    """Deprecated alias: use ``LinearInequalityConstraint(..., scaled_rows=...)``.

    ``center=`` is passed on as ``box_center=``.
    """

    def __init__(self, A=None, b=None, *, center=None, **kwargs):
        if "_saved" not in kwargs:  # not when Keras rebuilds it from a config
            warnings.warn(
                "ScaledRowsConstraint is deprecated and is removed in 0.3.0: LinearInequalityConstraint takes "
                "scaled_rows=, rhs_input=, fallback= and every scaling itself (center= is its box_center=).",
                DeprecationWarning,
                stacklevel=2,
            )
        super().__init__(A, b, box_center=kwargs.pop("box_center", center), **kwargs)
