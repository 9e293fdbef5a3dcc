"""The scaled stage in ``keras.ops``: ``y`` -> ``x`` that also satisfies the box and the scaled rows.

Ray scaling towards a centre (one factor per block, or the paper's global
one), the clipped variants, the learned mix, and the exact projection onto
blocks of one row plus bounds (:mod:`keras_lincon.layers.single_row_projection`). The
plan (blocks, centres) comes from :mod:`keras_lincon.planning.scaling_plan`.
"""

from __future__ import annotations

import weakref

import numpy as np
from keras import ops

from keras_lincon import geometry
from keras_lincon.layers.backend_ops import constant, matmul, maximum
from keras_lincon.layers.generator_kernel import affine
from keras_lincon.layers.segments import free_slot, segment_broadcast, segment_max, segment_plan
from keras_lincon.layers.single_row_projection import plan_single_rows, project_single_rows
from keras_lincon.planning import scaling_plan

_FAR = 1e30  # "no limit" for a row the clipped point does not push against


_MIN_SLACK = 1e-30  # keeps 1 / slack finite when a right-hand side is below its floor


_STAGE_PLANS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _planned(stage: scaling_plan.ScaledStage, key: str, make):
    """``make()``, computed once per stage: numpy planning stays off the per-call path
    (eager calls and retracing run it again otherwise)."""
    plans = _STAGE_PLANS.setdefault(stage, {})
    if key not in plans:
        plans[key] = make()
    return plans[key]


def scaled_stage(y, stage: scaling_plan.ScaledStage, mode: str, rhs=None, box_weights=None):
    """The scaled stage in ``keras.ops`` (its numpy reference is ``scale_map`` in ``tests/scaling_reference.py``).

    Args:
        y: (B, n) generator-stage outputs (points of ``P_gen``).
        stage: the planned stage (numpy constants, embedded in the graph).
        mode: ``"global"``, ``"per_block"``, ``"clip_scale"``, ``"clip_blend"``,
            ``"project"``, or ``"both"`` (returns the ``per_block`` and
            ``clip_blend`` results).
        rhs: (B, m) per-sample right-hand side of the scaled rows, or None
            for the stored one. Exact where ``rhs >= floor``.
        box_weights: optional ``(center, inv_upper, inv_lower)`` tensors used
            instead of the stage's (a layer whose box centre is a weight).

    Returns:
        (B, n) outputs in ``P_gen``, the box and the scaled rows.
    """
    dtype = y.dtype

    def const(a):
        return constant(a, dtype)

    if mode == "project":
        return _project(y, stage, rhs, box_weights)

    if box_weights is None:
        c, inv_upper, inv_lower = const(stage.center), const(stage.inv_upper), const(stage.inv_lower)
    else:
        c, inv_upper, inv_lower = (ops.cast(v, dtype) for v in box_weights)
    centered = y - c
    ratio = maximum(centered * inv_upper, centered * inv_lower)
    m, k = stage.rows.shape[0], stage.n_blocks
    if m:
        inv_slack = const(stage.inv_slack) if rhs is None else 1.0 / maximum(rhs - const(stage.row_center), _MIN_SLACK)
        row_ratio = matmul(centered, const(stage.rows.T)) * inv_slack
    if mode == "global":
        worst = ops.max(ratio, axis=-1, keepdims=True, initial=1.0)  # initial: empty batches
        if m:
            worst = maximum(worst, ops.max(row_ratio, axis=-1, keepdims=True))
        return c + centered / worst
    seg = free_slot(stage.coord_block, k)
    block_ratio = segment_max(ratio, seg, k + 1)
    if m:
        row_seg = free_slot(stage.row_block, k)
        block_ratio = maximum(block_ratio, segment_max(row_ratio, row_seg, k + 1))
    scale = segment_broadcast(maximum(block_ratio, 1.0), seg, k + 1)
    free = np.asarray(stage.coord_block < 0)
    if mode == "per_block" and not free.any():  # no coordinate is clipped alone
        return c + centered / scale
    clipped = ops.clip(y, const(stage.lower), const(stage.upper))
    per_block = ops.where(free, clipped, c + centered / scale)
    if mode == "per_block":
        return per_block
    out = _clip_and_blend(y, clipped, per_block, c, stage, mode, rhs, const)
    return (per_block, out) if mode == "both" else out


def _clip_and_blend(y, clipped, per_block, c, stage: scaling_plan.ScaledStage, mode: str, rhs, const):
    """``clip_scale`` / ``clip_blend``: from an anchor (the centre, or the per-block result) towards the
    clipped point, per block only as far as the block's rows allow."""
    k = stage.n_blocks
    seg, free = free_slot(stage.coord_block, k), np.asarray(stage.coord_block < 0)
    anchor = c + ops.zeros_like(y) if mode == "clip_scale" else per_block
    # the block's inequality rows: generator rows (fixed rhs; reordered, see _times_rows), scaled rows
    order, gen_rows = _planned(stage, "coordinate_rows", lambda: _coordinate_rows_first(stage.gen_rows))
    step = _times_rows(clipped - anchor, gen_rows, const)
    room = const(stage.gen_rhs[order]) - _times_rows(anchor, gen_rows, const)
    if stage.rows.shape[0]:
        s_rhs = const(stage.rhs) if rhs is None else rhs
        step = ops.concatenate([step, matmul(clipped - anchor, const(stage.rows.T))], axis=-1)
        room = ops.concatenate([room, s_rhs - matmul(anchor, const(stage.rows.T))], axis=-1)
    row_seg = free_slot(np.concatenate([stage.gen_block[order], stage.row_block]), k)
    positive = step > 0
    limit = ops.where(positive, ops.relu(room) / ops.where(positive, step, 1.0), _FAR)
    lam = ops.clip(-segment_max(-limit, row_seg, k + 1), 0.0, 1.0)
    keep = np.append(~stage.block_has_equality, False)  # clipping breaks equalities: lam = 0
    lam = segment_broadcast(lam * const(keep), seg, k + 1)
    blended = anchor + lam * (clipped - anchor)
    if mode == "clip_scale" and stage.block_has_equality.any():
        blended = ops.where(np.append(stage.block_has_equality, False)[seg], per_block, blended)
    return ops.where(free, clipped, blended)


def _coordinate_rows_first(rows: np.ndarray):
    """``(order, (columns, scales, dense))``: rows of one nonzero (bounds such as ``x >= 0``) first,
    as ``scale * e_column``; ``dense`` the others, in ``order``."""
    one = geometry.single_variable_rows(rows)
    coordinate, dense = np.flatnonzero(one), np.flatnonzero(~one)
    columns = np.argmax(rows[coordinate] != 0, axis=1) if coordinate.size else np.zeros(0, int)
    return np.concatenate([coordinate, dense]), (columns, rows[coordinate, columns], rows[dense])


def _times_rows(v, split, const):
    """``v @ rows.T`` (B, r) in the order of :func:`_coordinate_rows_first`: a gather for the
    coordinate rows, a product for the others (a bound costs O(1), not O(n))."""
    columns, scales, dense = split
    parts = [ops.take(v, columns, axis=1) * const(scales)] if columns.size else []
    if dense.shape[0] or not parts:
        parts.append(matmul(v, const(dense.T)))
    return parts[0] if len(parts) == 1 else ops.concatenate(parts, axis=-1)


def _project(y, stage: scaling_plan.ScaledStage, rhs, box_weights):
    """``"project"``: the exact projection on blocks of one row plus bounds, the clip on coordinates of no
    block, ``per_block`` on the others (the coupled projection, when planned, replaces those)."""
    plan = _planned(stage, "single_row_layout", lambda: plan_single_rows(stage))
    free = np.asarray(stage.coord_block < 0)
    rest = ~(plan.covered | free)
    if not plan.covered.any():
        return scaled_stage(y, stage, "per_block", rhs, box_weights)
    out = project_single_rows(y, stage, plan, rhs)
    if free.any():
        out = ops.where(free, ops.clip(y, constant(stage.lower, y.dtype), constant(stage.upper, y.dtype)), out)
    if rest.any():
        out = ops.where(rest, scaled_stage(y, stage, "per_block", rhs, box_weights), out)
    return out


def full_rhs(rhs, stage: scaling_plan.ScaledStage, columns: np.ndarray):
    """(B, m_in) input right-hand sides -> (B, m) for every scaled row of ``stage``.

    ``columns`` (m_in,) are the positions of the input rows among the scaled
    rows; the others (rows the fallback moved) keep their stored ``b``.
    """
    if np.array_equal(columns, np.arange(stage.rhs.size)):  # every scaled row is an input
        return rhs
    select = np.zeros((columns.size, stage.rhs.size))
    select[np.arange(columns.size), columns] = 1.0
    base = stage.rhs
    return constant(base, rhs.dtype) + matmul(rhs - constant(base[columns], rhs.dtype), constant(select, rhs.dtype))


def mixed_stage(y, features, stage: scaling_plan.ScaledStage, mix_kernel, mix_bias, rhs=None):
    """``x_pb + a (x_cb - x_pb)`` per block, ``a = sigmoid(h W + w0)`` of the features.

    Both ``x_pb`` (per block) and ``x_cb`` (clip then blend) are feasible, so
    their convex combination is too.
    """
    per_block, clip_blend = scaled_stage(y, stage, "both", rhs)
    alpha = ops.sigmoid(affine(ops.cast(features, y.dtype), mix_kernel, mix_bias))
    # Free coordinates get 0: both candidates are the clip there.
    k = stage.n_blocks
    seg = free_slot(stage.coord_block, k)
    if segment_plan(seg, k + 1).kind in ("one", "grid"):  # a slice or reshapes
        weight = segment_broadcast(ops.pad(alpha, [[0, 0], [0, 1]]), seg, k + 1)
    else:  # (k, n) block membership; a product, not a gather (torch.compile's CPU codegen fails on one here)
        member = (stage.coord_block[None, :] == np.arange(k)[:, None]).astype(np.float64)
        weight = matmul(alpha, constant(member, y.dtype))
    return per_block + weight * (clip_blend - per_block)
