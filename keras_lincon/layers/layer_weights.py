"""Creates the layer's weights in ``build``: trainable maps, and the fixed generator weights.

Names, shapes and order come from :func:`keras_lincon.planning.weight_arrays.weight_specs`,
values from :func:`~keras_lincon.planning.weight_arrays.generator_arrays`.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from keras_lincon.errors import ConstraintShapeError
from keras_lincon.planning import weight_arrays

# weight name -> layer attribute, where they differ (``box_center`` is the centre as a numpy property)
_ATTRIBUTES = {"box_center": "box_center_weight", "ray_vertex_kernel": "small_kernel", "ray_vertex_bias": "small_bias"}


class _Fixed(keras.initializers.Initializer):
    """Initializer returning a fixed numpy array (generator weights)."""

    def __init__(self, value: np.ndarray):
        self.value = np.asarray(value)

    def __call__(self, shape, dtype=None):
        if tuple(shape) != self.value.shape:
            raise ConstraintShapeError(f"internal: weight shape {shape} != {self.value.shape}")
        return ops.convert_to_tensor(self.value, dtype=dtype)


def create_weights(layer, plan, representation, mode: str, input_dim: int) -> None:
    """Adds every weight of ``layer`` (a ``LinearInequalityConstraint`` being built) as an attribute.

    Args:
        plan: its ``LayerPlan``; representation: the generators, or None when
            loading (the generator weights are then NaN until the saved ones are loaded and checked).
        mode: ``"direct"`` or ``"projected"``; input_dim: the features' size ``k``.
    """
    center_is_weight = plan.stages.center_is_weight
    arrays = None
    if representation is not None:
        arrays = weight_arrays.generator_arrays(representation, plan.layout, mode)
        if center_is_weight:
            arrays.update(weight_arrays.box_arrays(plan.stage.center, *plan.box))
    mix_blocks = plan.stage.n_blocks if plan.mixing else 0
    specs = weight_arrays.weight_specs(
        plan.layout, mode, plan.system.dim, input_dim, box=center_is_weight, mix_blocks=mix_blocks
    )
    for name, shape, kind in specs:
        if kind in ("kernel", "bias"):  # the mix starts at zero: half way between per_block and clip_blend
            mixing = name.startswith("mix_")
            init = "zeros" if mixing else getattr(layer, f"{kind}_initializer")
            regularizer = layer.kernel_regularizer if kind == "kernel" and not mixing else None
            weight = layer.add_weight(name=name, shape=shape, initializer=init, regularizer=regularizer)
        else:
            if arrays is not None:
                init = _Fixed(np.asarray(arrays[name]).reshape(shape))
            else:  # from a config: the saved weights fill these (and are checked); NaN until then
                init = "zeros" if kind == "index" else keras.initializers.Constant(float("nan"))
            dtype = "int32" if kind == "index" else layer.variable_dtype
            weight = layer.add_weight(
                name=name, shape=shape, initializer=init, trainable=False, dtype=dtype, autocast=False
            )
        setattr(layer, _ATTRIBUTES.get(name, name), weight)
