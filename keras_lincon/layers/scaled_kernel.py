"""The scaled stage in ``keras.ops``: ``y`` -> ``x`` that also satisfies the box and the scaled rows.

Ray scaling towards a centre (one factor per block, or the paper's global
one), the clipped variants, the learned mix, and the exact projection onto
blocks of one row plus bounds (bisection on one multiplier per block). The
plan (blocks, centres) comes from :mod:`keras_lincon.planning.scaling_plan`.
"""

from __future__ import annotations

import weakref

import numpy as np
from keras import ops

from keras_lincon import geometry
from keras_lincon.layers.backend_ops import constant, matmul, maximum
from keras_lincon.layers.generator_kernel import affine
from keras_lincon.layers.segments import free_slot, segment_broadcast, segment_max, segment_plan, segment_table
from keras_lincon.planning import scaling_plan

_FAR = 1e30  # "no limit" for a row the clipped point does not push against


_MIN_SLACK = 1e-30  # keeps 1 / slack finite when a right-hand side is below its floor


#: Bisection steps of the ``"project"`` treatment's multiplier (float32 resolution after about 24).
PROJECT_BISECTIONS = 32


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
    if mode == "project":
        eligible, *rows = _planned(stage, "single_row_blocks", lambda: scaling_plan.single_row_blocks(stage))
        on = ~free & np.append(eligible, False)[seg]
        if not on.any():
            return per_block
        return ops.where(on, _project_single_rows(y, stage, rows, eligible, rhs, const), per_block)
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


def _block_table(stage: scaling_plan.ScaledStage, rows: tuple, eligible: np.ndarray) -> tuple:
    """The (blocks, widest block) layout of the eligible blocks: ``(blocks, table, padded, pick, a, lower,
    upper)``, the last three (kb, w) with padding slots ``a = 0`` and no bounds (they add nothing to ``a.x``)."""
    a, _, lower, upper = rows  # the box tightened by bound rows
    blocks = np.flatnonzero(eligible)
    slot = np.full(stage.n_blocks + 1, len(blocks))  # eligible block -> its row of the table; others: dropped
    slot[blocks] = np.arange(len(blocks))
    table = segment_table(slot[stage.coord_block], len(blocks) + 1)[:-1]  # (kb, w), padded with n
    padded = table == stage.dim
    pick = np.where(padded, 0, table)
    a_b = np.where(padded, 0.0, a[pick])
    lo_b, hi_b = np.where(padded, -np.inf, lower[pick]), np.where(padded, np.inf, upper[pick])
    return blocks, table, padded, pick, a_b, lo_b, hi_b


def _project_single_rows(y, stage: scaling_plan.ScaledStage, rows: tuple, eligible: np.ndarray, rhs, const):
    """``clip(y - mu a, lower, upper)`` per block with one row ``a.x <= b`` (see ``scaling_plan``):
    the smallest feasible ``mu >= 0`` by bisection (the feasible end is kept, so the output
    is feasible whatever the step count), its gradient by the implicit function theorem.

    Works in a (B, blocks, widest block) layout: one gather in, one out, and only
    reshapes and reductions inside the bisection loop (gathers there are slow under XLA).
    Returns (B, n); coordinates outside the eligible blocks hold 0.
    """
    row_of_block, n = rows[1], stage.dim
    blocks, table, padded, pick, a_b, lo_b, hi_b = _planned(
        stage, "single_row_table", lambda: _block_table(stage, rows, eligible)
    )
    bound = np.where(a_b > 0, lo_b, hi_b)  # where a coordinate sits once mu clips it
    a_t, lo, hi = const(a_b), const(lo_b), const(hi_b)
    all_b = np.concatenate([stage.gen_rhs, stage.rhs])
    if rhs is None:
        block_b = const(all_b[row_of_block[blocks]])
    else:  # (B, kb): stored b of generator rows, the input for scaled rows
        block_b = ops.take(
            ops.concatenate([ops.zeros_like(rhs[:, :1]) + const(stage.gen_rhs), rhs], axis=1),
            row_of_block[blocks],
            axis=1,
        )

    def to_blocks(v):  # (B, n) -> (B, kb, w)
        return ops.reshape(ops.take(v, pick.reshape(-1), axis=1), (ops.shape(v)[0], *table.shape))

    y_b = to_blocks(y)
    y_fixed = ops.stop_gradient(y_b)

    def excess(mu):  # (B, kb): a.clip(y - mu a) - b per block
        return ops.sum(ops.clip(y_fixed - mu[..., None] * a_t, lo, hi) * a_t, axis=-1) - block_b

    clipping = ops.where(
        a_b != 0, (y_fixed - const(np.where(a_b != 0, bound, 0.0))) / const(np.where(a_b != 0, a_b, 1.0)), 0.0
    )
    mu_hi = ops.max(clipping, axis=-1, initial=0.0)  # every coordinate at its bound: feasible

    def bisect(_, bracket):
        lower_mu, upper_mu = bracket
        mid = 0.5 * (lower_mu + upper_mu)
        ok = excess(mid) <= 0
        return ops.where(ok, lower_mu, mid), ops.where(ok, mid, upper_mu)

    # a loop, not unrolled: XLA's compile time grew steeply with unrolled steps (over 40 s for 32)
    _, mu_hi = ops.fori_loop(0, PROJECT_BISECTIONS, bisect, (ops.zeros_like(mu_hi), mu_hi))
    mu = ops.stop_gradient(ops.where(excess(ops.zeros_like(mu_hi)) <= 0, 0.0, mu_hi))
    # d mu / d y = (D a) / (a^T D a), D the unclipped coordinates; y - y_fixed is 0, so the value stays
    shifted = y_fixed - mu[..., None] * a_t
    inside = ops.stop_gradient(ops.cast(ops.logical_and(shifted > lo, shifted < hi), y.dtype))
    slope = ops.sum(inside * a_t * (y_b - y_fixed), axis=-1) / maximum(ops.sum(inside * a_t * a_t, axis=-1), 1e-30)
    mu = mu + ops.cast(mu > 0, y.dtype) * slope
    x_b = ops.reshape(ops.clip(y_b - mu[..., None] * a_t, lo, hi), (ops.shape(y)[0], table.size))
    position = np.full(n, table.size)  # back to (B, n): a zero slot for coordinates of other blocks
    position[table[~padded]] = np.flatnonzero(~padded.reshape(-1))
    return ops.take(ops.concatenate([x_b, ops.zeros_like(x_b[:, :1])], axis=1), position, axis=1)


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
