"""From the generator stage's point to the layer's output, in ``keras.ops``.

The generator stage gives ``y`` in the generator rows' set. Then, as planned
(:class:`keras_lincon.planning.layer_plan.LayerPlan`):

* the shifted-apex form adds the sample's apex ``P b_s + q``;
* otherwise the scaled stage (box and scaled rows; ray scaling, the learned
  mix, or the exact projections) gives a point of the stored set, and
  right-hand sides that move the set add ``beta T^T + q``;
* except where ``scaling="project"`` projects every output at once and the
  right-hand sides move the set: then ``y`` is projected onto the sample's
  own set (:mod:`keras_lincon.layers.moved_projection`).
"""

from __future__ import annotations

from keras import ops

from keras_lincon.layers import moved_projection
from keras_lincon.layers.backend_ops import constant, matmul
from keras_lincon.layers.coupled_kernel import coupled_stage
from keras_lincon.layers.scaled_kernel import full_rhs, mixed_stage, scaled_stage


def stored_to_output(plan, weights, x, y, parts: list, penalize=None):
    """The layer's output from ``y`` (..., n), the features ``x`` (..., k) and the right-hand-side inputs.

    Args:
        plan: the layer's ``LayerPlan``; weights: the layer (its box and mixing weights).
        parts: the right-hand-side inputs in call order (empty without them).
        penalize: ``penalize(before, after)`` is called with the points before and after the
            scaled stage (``projection_penalty``); None: nothing.
    """
    stages = plan.stages
    penalize = penalize or (lambda before, after: None)
    if stages.apex is not None:  # apex P b + q of this sample's set, plus a point of the cone
        P, q = (constant(a, y.dtype) for a in stages.apex)
        return y + matmul(ops.cast(parts[0], y.dtype), ops.transpose(P)) + q
    if moved_projection.applies(plan):  # right-hand sides that move the set, one projection: onto the sample's set
        batch_shape, flat = ops.shape(y), ops.reshape(y, (-1, plan.system.dim))
        flat_parts = [ops.reshape(part, (-1, ops.shape(part)[-1])) for part in parts]
        out = moved_projection.project_moved(flat, plan, flat_parts, _translation(stages.shift, flat_parts, y.dtype))
        penalize(flat, out)
        return ops.reshape(out, batch_shape)
    if stages.shift is not None:  # right-hand sides that move the set: the stored set's point, moved
        stored = _stored_set_point(plan, weights, x, y)
        penalize(y, stored)
        return stored + _translation(stages.shift, parts, y.dtype)
    out = _stored_set_point(plan, weights, x, y, parts[0] if plan.rhs.floor else None)
    penalize(y, out)
    return out


def _translation(shift: tuple, parts: list, dtype):
    """``beta T^T + q`` for ``beta`` the right-hand-side inputs side by side."""
    T, q = shift
    beta = ops.concatenate([ops.cast(part, dtype) for part in parts], axis=-1)
    return matmul(beta, constant(T.T, dtype)) + constant(q, dtype)


def _stored_set_point(plan, weights, x, y, rhs=None):
    """The scaled stage on the generator stage's ``y`` (``rhs``: ``b_s`` above a floor, or None)."""
    stage, coupled = plan.stage, plan.stages.coupled
    if stage is None:
        return y
    n = plan.system.dim
    batch_shape, y = ops.shape(y), ops.reshape(y, (-1, n))  # the stage works on (B, n)
    if rhs is not None:
        columns = plan.floor_columns()
        rhs = full_rhs(ops.reshape(ops.cast(rhs, y.dtype), (-1, columns.size)), stage, columns)
    if plan.mixing:
        x = ops.reshape(x, (-1, ops.shape(x)[-1]))
        out = mixed_stage(y, x, stage, weights.mix_kernel, weights.mix_bias, rhs)
    elif coupled is not None and coupled.columns.size == n:  # one projection does it all
        out = coupled_stage(y, coupled)
    else:
        box_weights = None
        if plan.stages.center_is_weight:
            box_weights = (weights.box_center_weight, weights.box_inv_upper, weights.box_inv_lower)
        mode = "per_block" if plan.output_map.scaling == "mix" else plan.output_map.scaling
        out = scaled_stage(y, stage, mode, rhs, box_weights)
        if coupled is not None:
            out = coupled_stage(y, coupled, out)
    return ops.reshape(out, batch_shape)
