"""Per-block reductions in ``keras.ops``: :func:`segment_max` and :func:`segment_broadcast`.

Each segment layout is planned once (numpy, cached per layout): a plain max
when there is one segment, reshapes when the segments tile a grid, else a
gather table.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
from keras import ops


def segment_table(ids: np.ndarray, num_segments: int) -> np.ndarray:
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
    table = segment_table(ids, num_segments)
    if table.size > 2 * max(size, num_segments):
        return _Segments("scatter", ids, num_segments)
    return _Segments("table", ids, num_segments, table=table)


def segment_plan(segment_ids: np.ndarray, num_segments: int) -> _Segments:
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
    plan = segment_plan(segment_ids, num_segments)
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
    table = plan.table
    assert table is not None  # the "table" plan
    gathered = ops.reshape(ops.take(padded, table.reshape(-1), axis=1), (batch, *table.shape))
    return ops.max(gathered, axis=-1, initial=lowest)


def segment_broadcast(values, segment_ids: np.ndarray, num_segments: int):
    """``values[:, segment_ids]``: (B, k) per-segment values -> (B, c), or (B, 1) when one segment
    holds every column (it broadcasts the same)."""
    plan = segment_plan(segment_ids, num_segments)
    if plan.kind == "one":
        return values[:, plan.first : plan.first + 1]
    if plan.kind == "grid":
        rows, h, cols, w = plan.tiles
        tiles = ops.reshape(values[:, : rows * cols], (ops.shape(values)[0], rows, 1, cols, 1))
        spread = ops.repeat(ops.repeat(tiles, h, axis=2), w, axis=4)  # no-ops where h or w is 1
        return ops.reshape(spread, (ops.shape(values)[0], rows * h * cols * w))
    return ops.take(values, plan.ids, axis=1)


def free_slot(block_ids: np.ndarray, k: int) -> np.ndarray:
    """Block ids with ``-1`` (no block: free coordinates, rows of none) as ``k``, the extra segment."""
    return np.where(block_ids < 0, k, block_ids).astype(np.int32)
