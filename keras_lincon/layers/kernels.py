"""The layer's arithmetic in ``keras.ops`` (any Keras backend), apart from its Keras glue.

Two stages, as in :class:`keras_lincon.LinearInequalityConstraint`:

* :func:`generator_outputs`: features -> ``y`` in ``P_gen`` (generators);
* :func:`scaled_stage`: ``y`` -> ``x`` that also satisfies the box and the
  scaled rows (ray scaling towards a centre; numpy reference and planning in
  :mod:`keras_lincon.planning.scaling_plan`).

Every function takes its constants (numpy, embedded in the graph) or weights
(passed in) explicitly; none creates variables.
"""

from __future__ import annotations

import dataclasses
import functools
import weakref

import numpy as np
from keras import ops

from keras_lincon.layers.backend_ops import constant, matmul, maximum
from keras_lincon.planning import scaling_plan
from keras_lincon.planning.stage_plan import GeneratorLayout

#: Non-negative maps for ray coefficients (the paper uses ``abs``).
NONNEG_FUNCTIONS = {
    "abs": ops.abs,
    "softplus": ops.softplus,
    "relu": ops.relu,
    "square": ops.square,
}
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


def _segment_table(ids: np.ndarray, num_segments: int) -> np.ndarray:
    """(k, widest) column indices of each segment, padded with ``ids.size``."""
    counts = np.bincount(ids, minlength=num_segments)
    table = np.full((num_segments, max(int(counts.max(initial=0)), 1)), ids.size)
    order = np.argsort(ids, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    table[ids[order], np.arange(ids.size) - starts[ids[order]]] = order
    return table


@dataclasses.dataclass(frozen=True)
class _Segments:
    """How columns with segment ids are reduced per segment and broadcast back (numpy, planned once).

    ``kind``: ``"one"`` (every column in segment ``first``); ``"grid"`` (the
    columns are a row-major (rows * h, cols * w) array cut into h x w tiles,
    tile (i, j) being segment ``i * cols + j``, segments ``rows * cols`` and up
    empty: budget groups in order (``rows = h = 1``), the checkerboard's
    blocks; reshapes only); ``"table"`` (a gather into ``table``, (k,
    widest)); ``"scatter"`` (very uneven segments).
    """

    kind: str
    ids: np.ndarray
    num_segments: int
    first: int = 0
    tiles: tuple = ()  # (rows, h, cols, w) of a grid
    table: np.ndarray | None = None


def _grid_tiles(ids: np.ndarray) -> tuple:
    """``(rows, h, cols, w)`` when ``ids`` is a tiling (see :class:`_Segments`), else ``()``."""
    n = ids.size
    w = int(np.argmax(ids != ids[0])) or n  # the first tile's width
    # The array's width: where the ids first drop (back to tile row 0 on the next pixel row), or
    # the whole (one pixel row per tile row is the same as one long row). Two checks, O(n) each.
    drops = np.flatnonzero(np.diff(ids) < 0)
    for width in ([int(drops[0]) + 1] if drops.size else []) + [n]:
        if n % width or width % w:
            continue
        grid = ids.reshape(n // width, width)
        h = int(np.argmax(grid[:, 0] != grid[0, 0])) or grid.shape[0]
        if grid.shape[0] % h:
            continue
        rows, cols = grid.shape[0] // h, width // w
        tile_of = (np.arange(grid.shape[0])[:, None] // h) * cols + np.arange(width)[None, :] // w
        if np.array_equal(grid, tile_of):
            return rows, h, cols, w
    return ()


@functools.lru_cache(maxsize=256)
def _plan_segments(ids_bytes: bytes, size: int, num_segments: int) -> _Segments:
    ids = np.frombuffer(ids_bytes, dtype=np.int64, count=size)
    if size and np.all(ids == ids[0]):
        return _Segments("one", ids, num_segments, first=int(ids[0]))
    tiles = _grid_tiles(ids) if size else ()
    if tiles and tiles[0] * tiles[2] <= num_segments:
        return _Segments("grid", ids, num_segments, tiles=tiles)
    table = _segment_table(ids, num_segments)
    if table.size > 2 * max(size, num_segments):
        return _Segments("scatter", ids, num_segments)
    return _Segments("table", ids, num_segments, table=table)


def _segments(segment_ids: np.ndarray, num_segments: int) -> _Segments:
    ids = np.ascontiguousarray(segment_ids, dtype=np.int64)
    return _plan_segments(ids.tobytes(), ids.size, int(num_segments))


def segment_max(values, segment_ids: np.ndarray, num_segments: int):
    """(B, k) max of the columns of ``values`` (B, c) that share a segment id (``-inf``-like if none).

    The planning is numpy and cached. One segment is a max; tiles of a
    row-major grid (budget groups in order, an image's blocks) reshapes and a
    max; other segments of similar sizes a gather into a (k, widest) table
    and a max, which XLA runs far faster than the scatter of
    ``ops.segment_max``; very uneven segments (the table would be over twice
    the size of ``values``) use the scatter.
    """
    plan = _segments(segment_ids, num_segments)
    lowest = np.finfo(np.float32).min  # what ops.segment_max gives an empty segment
    batch = ops.shape(values)[0]  # not -1, and max with `initial`: an empty batch has no size to infer
    if plan.kind == "scatter":
        return ops.transpose(ops.segment_max(ops.transpose(values), plan.ids, num_segments=num_segments))
    if plan.kind == "one":
        top = ops.max(values, axis=-1, keepdims=True, initial=lowest)
        return top if num_segments == 1 else ops.where(np.arange(num_segments) == plan.first, top, lowest)
    if plan.kind == "grid":
        rows, h, cols, w = plan.tiles
        top = ops.max(ops.reshape(values, (batch, rows, h, cols, w)), axis=(2, 4), initial=lowest)
        top = ops.reshape(top, (batch, rows * cols))
        if rows * cols == num_segments:
            return top
        return ops.pad(top, [[0, 0], [0, num_segments - rows * cols]], constant_values=lowest)
    padded = ops.concatenate([values, ops.full_like(values[:, :1], lowest)], axis=1)
    gathered = ops.reshape(ops.take(padded, plan.table.reshape(-1), axis=1), (batch, *plan.table.shape))
    return ops.max(gathered, axis=-1, initial=lowest)


def segment_broadcast(values, segment_ids: np.ndarray, num_segments: int):
    """``values[:, segment_ids]``: (B, k) per-segment values -> (B, c), or (B, 1) when one segment
    holds every column (it broadcasts the same)."""
    plan = _segments(segment_ids, num_segments)
    if plan.kind == "one":
        return values[:, plan.first : plan.first + 1]
    if plan.kind == "grid":
        rows, h, cols, w = plan.tiles
        tiles = ops.reshape(values[:, : rows * cols], (ops.shape(values)[0], rows, 1, cols, 1))
        spread = ops.repeat(ops.repeat(tiles, h, axis=2), w, axis=4)  # no-ops where h or w is 1
        return ops.reshape(spread, (ops.shape(values)[0], rows * h * cols * w))
    return ops.take(values, plan.ids, axis=1)


def _free_slot(block_ids: np.ndarray, k: int) -> np.ndarray:
    """Block ids with ``-1`` (no block: free coordinates, rows of none) as ``k``, the extra segment."""
    return np.where(block_ids < 0, k, block_ids).astype(np.int32)


def _affine(x, kernel, bias):
    return matmul(x, ops.cast(kernel, x.dtype)) + ops.cast(bias, x.dtype)


def generator_outputs(x, w, layout: GeneratorLayout, mode: str, nonneg: str):
    """``sum softmax(.) V + nonneg(.) R + (.) L + offset``: (..., n) points of ``P_gen``.

    Args:
        x: (..., k) features (already in the compute dtype).
        w: the layer holding the weights as attributes (``kernel``, ``bias``,
            ``generators`` or ``complement_basis``/``ray_coordinates``/
            ``small_kernel``/``small_bias``, ``offset``, ``vertex_*``).
        layout: the generator layout; mode: ``"direct"`` or ``"projected"``.
        nonneg: key of :data:`NONNEG_FUNCTIONS` for the ray coefficients.
    """
    n_lin, n_rays = layout.n_lineality, layout.n_rays
    n_logits = layout.n_vertex_blocks * layout.block_size
    coeffs = _affine(x, w.kernel, w.bias)
    if mode == "direct":  # one matmul gives lineality, ray and vertex coefficients
        gen_end = n_lin + n_rays
        out, logits = None, coeffs[..., gen_end : gen_end + n_logits]
        if gen_end:
            gen_coeffs = coeffs if not n_logits else coeffs[..., :gen_end]
            if n_rays and not n_lin:
                gen_coeffs = NONNEG_FUNCTIONS[nonneg](gen_coeffs)
            elif n_rays:  # nonneg on the ray coefficients only
                gen_coeffs = ops.where(np.arange(gen_end) >= n_lin, NONNEG_FUNCTIONS[nonneg](gen_coeffs), gen_coeffs)
            if layout.generator_path == "diagonal":  # generator j = scale_j e_j
                out = gen_coeffs * ops.cast(w.generator_scale, x.dtype)
            elif layout.generator_path == "gather":  # generator j = scale_j e_column_j: O(n), no product
                scaled = gen_coeffs * ops.cast(w.generator_scale, x.dtype)
                padded = ops.concatenate([scaled, ops.zeros_like(scaled[..., :1])], axis=-1)
                out = ops.take(padded, w.generator_gather, axis=-1)
            else:
                out = matmul(gen_coeffs, ops.cast(w.generators, x.dtype))
    else:  # z + (nonneg(s) (R Q^T) - z Q^T) Q for a full map z
        out = coeffs
        small = _affine(x, w.small_kernel, w.small_bias) if n_rays + n_logits else None
        if layout.n_basis:
            basis = ops.cast(w.complement_basis, x.dtype)
            coords = -matmul(out, ops.transpose(basis))
            if n_rays:
                rays = NONNEG_FUNCTIONS[nonneg](small[..., :n_rays])
                coords = coords + matmul(rays, ops.cast(w.ray_coordinates, x.dtype))
            out = out + matmul(coords, basis)
        logits = small[..., n_rays:] if n_logits else None
    if layout.vertex_path != "none":
        vertex_part = _vertex_part(logits, w, layout, ops.shape(x)[:-1])
        out = vertex_part if out is None else out + vertex_part
    if layout.has_offset:
        out = out + ops.cast(w.offset, x.dtype)
    return out


def _vertex_part(logits, w, layout: GeneratorLayout, batch_shape):
    """Softmax per block over its vertices (padding slots hold real vertices)."""
    nb, smax, dtype = layout.n_vertex_blocks, layout.block_size, logits.dtype
    weights = ops.softmax(ops.reshape(logits, (-1, nb, smax)) + ops.cast(w.vertex_mask, dtype), axis=-1)
    if layout.vertex_path == "gather":
        local = ops.einsum("bjs,jsw->bjw", weights, ops.cast(w.vertex_local, dtype))
        flat = ops.pad(ops.reshape(local, (-1, nb * layout.block_width)), [[0, 0], [0, 1]])  # the zero slot
        vertex_part = ops.take(flat, w.vertex_gather, axis=1)
    else:
        vertex_part = matmul(ops.reshape(weights, (-1, nb * smax)), ops.cast(w.vertex_dense, dtype))
    return ops.reshape(vertex_part, batch_shape + (w.units,))


def scaled_stage(y, stage: scaling_plan.ScaledStage, mode: str, rhs=None, box_weights=None):
    """``keras.ops`` version of :func:`keras_lincon.planning.scaling_plan.scale_map`.

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
    seg = _free_slot(stage.coord_block, k)
    block_ratio = segment_max(ratio, seg, k + 1)
    if m:
        row_seg = _free_slot(stage.row_block, k)
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
    anchor = c + ops.zeros_like(y) if mode == "clip_scale" else per_block
    # the block's inequality rows: generator rows (fixed rhs; reordered, see _times_rows), scaled rows
    order, gen_rows = _planned(stage, "coordinate_rows", lambda: _coordinate_rows_first(stage.gen_rows))
    step = _times_rows(clipped - anchor, gen_rows, const)
    room = const(stage.gen_rhs[order]) - _times_rows(anchor, gen_rows, const)
    if m:
        s_rhs = const(stage.rhs) if rhs is None else rhs
        step = ops.concatenate([step, matmul(clipped - anchor, const(stage.rows.T))], axis=-1)
        room = ops.concatenate([room, s_rhs - matmul(anchor, const(stage.rows.T))], axis=-1)
    row_seg = np.concatenate([stage.gen_block[order], stage.row_block])
    row_seg = _free_slot(row_seg, k)
    positive = step > 0
    limit = ops.where(positive, ops.relu(room) / ops.where(positive, step, 1.0), _FAR)
    lam = ops.clip(-segment_max(-limit, row_seg, k + 1), 0.0, 1.0)
    keep = np.append(~stage.block_has_equality, False)  # clipping breaks equalities: lam = 0
    lam = segment_broadcast(lam * const(keep), seg, k + 1)
    blended = anchor + lam * (clipped - anchor)
    if mode == "clip_scale" and stage.block_has_equality.any():
        blended = ops.where(np.append(stage.block_has_equality, False)[seg], per_block, blended)
    out = ops.where(free, clipped, blended)
    return (per_block, out) if mode == "both" else out


def _coordinate_rows_first(rows: np.ndarray):
    """``(order, (columns, scales, dense))``: rows of one nonzero (bounds such as ``x >= 0``) first,
    as ``scale * e_column``; ``dense`` the others, in ``order``."""
    one = np.count_nonzero(rows, axis=1) == 1
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


def _project_single_rows(y, stage: scaling_plan.ScaledStage, rows: tuple, eligible: np.ndarray, rhs, const):
    """``clip(y - mu a, lower, upper)`` per block with one row ``a.x <= b`` (see ``scaling_lib``):
    the smallest feasible ``mu >= 0`` by bisection (the feasible end is kept, so the output
    is feasible whatever the step count), its gradient by the implicit function theorem.

    Works in a (B, blocks, widest block) layout: one gather in, one out, and only
    reshapes and reductions inside the bisection loop (gathers there are slow under XLA).
    Returns (B, n); coordinates outside the eligible blocks hold 0.
    """
    a, row_of_block, lower, upper = rows  # the box tightened by bound rows
    blocks, n = np.flatnonzero(eligible), stage.dim
    slot = np.full(stage.n_blocks + 1, len(blocks))  # eligible block -> its row of the table; others: dropped
    slot[blocks] = np.arange(len(blocks))
    table = _segment_table(slot[stage.coord_block], len(blocks) + 1)[:-1]  # (kb, w), padded with n
    padded = table == n
    pick = np.where(padded, 0, table)
    # padding slots: a = 0 and no bounds, so they add nothing to a.x
    a_b = np.where(padded, 0.0, a[pick])
    lo_b, hi_b = np.where(padded, -np.inf, lower[pick]), np.where(padded, np.inf, upper[pick])
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


def coupled_stage(y, coupled, others=None):
    """The exact projection of ``y`` (B, n) onto the coupled blocks' sets
    (:class:`keras_lincon.planning.stage_plan.CoupledBlocks`); ``others`` (B, n) gives the other
    coordinates (None when the blocks hold every coordinate)."""
    from keras_lincon.planning import coupled_projection

    columns, n = coupled.columns, y.shape[-1]
    if others is None:
        return coupled_projection.project(y, coupled.plan)
    part = coupled_projection.project(ops.take(y, columns, axis=1), coupled.plan)
    position = np.full(n, columns.size)  # back to (B, n) through a zero slot
    position[columns] = np.arange(columns.size)
    spread = ops.take(ops.concatenate([part, ops.zeros_like(part[:, :1])], axis=1), position, axis=1)
    return ops.where(np.isin(np.arange(n), columns), spread, others)


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
    alpha = ops.sigmoid(_affine(ops.cast(features, y.dtype), mix_kernel, mix_bias))
    # Free coordinates get 0: both candidates are the clip there.
    k = stage.n_blocks
    seg = _free_slot(stage.coord_block, k)
    if _segments(seg, k + 1).kind in ("one", "grid"):  # a slice or reshapes
        weight = segment_broadcast(ops.pad(alpha, [[0, 0], [0, 1]]), seg, k + 1)
    else:  # (k, n) block membership; a product, not a gather (torch.compile's CPU codegen fails on one here)
        member = (stage.coord_block[None, :] == np.arange(k)[:, None]).astype(np.float64)
        weight = matmul(alpha, constant(member, y.dtype))
    return per_block + weight * (clip_blend - per_block)
