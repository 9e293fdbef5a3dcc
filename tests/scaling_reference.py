"""Numpy references of the scaled stage's treatments, for the tests (the layer runs
:mod:`keras_lincon.layers.scaled_kernel`; these say what it must compute).

See :mod:`keras_lincon.planning.scaling_plan` for the treatments.
"""

from __future__ import annotations

import numpy as np

from keras_lincon.errors import LinconError
from keras_lincon.planning.scaling_plan import MODES, ScaledStage, single_row_blocks


def _block_max(values: np.ndarray, index: np.ndarray, k: int) -> np.ndarray:
    """(B, k) max over columns with the same block index (-1 ignored); -inf if none."""
    out = np.full((values.shape[0], k), -np.inf)
    for j in range(k):
        cols = index == j
        if cols.any():
            out[:, j] = values[:, cols].max(axis=1)
    return out


def _ratios(stage: ScaledStage, y: np.ndarray, rhs: np.ndarray):
    """Per coordinate box ratios (B, n) and per scaled row ratios (B, m)."""
    c = stage.center
    centered = y - c
    box_ratio = np.maximum(centered * stage.inv_upper, centered * stage.inv_lower)
    slack = rhs - stage.row_center  # (B, m) or (m,)
    row_ratio = (centered @ stage.rows.T) / slack
    return centered, box_ratio, row_ratio


def _project_single_rows(stage: ScaledStage, y: np.ndarray, rhs: np.ndarray, steps: int = 200) -> np.ndarray:
    """(B, n) ``clip(y - mu a)`` on the eligible blocks (y elsewhere); ``mu`` by float64 bisection."""
    eligible, a, row_of_block, lower, upper = single_row_blocks(stage)
    rhs_all = np.concatenate([np.broadcast_to(stage.gen_rhs, (y.shape[0], stage.gen_rhs.size)), rhs], axis=1)
    out = y.copy()
    for j in np.flatnonzero(eligible):
        cols = stage.coord_block == j  # bound rows couple nothing, so the row covers the block
        aj, lo, hi, b = a[cols], lower[cols], upper[cols], rhs_all[:, row_of_block[j]][:, None]

        def excess(mu, yj=y[:, cols], aj=aj, lo=lo, hi=hi, b=b):
            return np.sum(np.clip(yj - mu * aj, lo, hi) * aj, axis=1, keepdims=True) - b

        mu_lo = np.zeros((y.shape[0], 1))
        mu_hi = np.max((y[:, cols] - np.where(aj > 0, lo, hi)) / aj, axis=1, keepdims=True).clip(0)  # all clipped
        for _ in range(steps):
            mid = 0.5 * (mu_lo + mu_hi)
            ok = excess(mid) <= 0
            mu_hi, mu_lo = np.where(ok, mid, mu_hi), np.where(ok, mu_lo, mid)
        mu = np.where(excess(np.zeros_like(mu_hi)) <= 0, 0.0, mu_hi)
        out[:, cols] = np.clip(y[:, cols] - mu * aj, lo, hi)
    return out


def scale_map(stage: ScaledStage, y, b_s=None, mode: str = "per_block") -> np.ndarray:
    """Numpy reference of the scaled stage.

    Args:
        stage: from :func:`plan`.
        y: (B, n) outputs of the generator stage (points of ``P_gen``).
        b_s: (B, m) or (m,) right-hand side of the scaled rows when the stage
            is input dependent (exact where ``b_s >= floor``); else ignored.
        mode: one of :data:`MODES`.

    Returns:
        (B, n) float64 points of ``P_gen`` satisfying the box and scaled rows.
    """
    if mode not in MODES:
        raise LinconError(f"mode must be one of {MODES}; got {mode!r}.")
    y = np.asarray(y, dtype=np.float64).reshape(-1, stage.dim)
    rhs = stage.rhs if (b_s is None or not stage.input_dependent) else np.asarray(b_s, dtype=np.float64)
    c = stage.center
    centered, box_ratio, row_ratio = _ratios(stage, y, rhs)
    if mode == "global":
        both = np.hstack([box_ratio, row_ratio, np.ones((y.shape[0], 1))])
        return c + centered / both.max(axis=1, keepdims=True)
    k = stage.n_blocks
    free = stage.coord_block < 0
    per_block = np.maximum(
        np.maximum(_block_max(box_ratio, stage.coord_block, k), _block_max(row_ratio, stage.row_block, k)), 1.0
    )
    scaled = y.copy()
    coupled = ~free
    scaled[:, coupled] = c[coupled] + centered[:, coupled] / per_block[:, stage.coord_block[coupled]]
    clipped = np.clip(y, stage.lower, stage.upper)
    scaled[:, free] = clipped[:, free]
    if mode == "per_block":
        return scaled
    if mode == "project":
        eligible = single_row_blocks(stage)[0]
        projected = _project_single_rows(stage, y, np.broadcast_to(rhs, (y.shape[0], stage.rows.shape[0])))
        on = coupled & eligible[np.maximum(stage.coord_block, 0)]
        scaled[:, on] = projected[:, on]
        return scaled
    # Clip variants: the box is met by clipping; the block's inequality rows
    # (generator and scaled) by moving back towards an anchor that meets them.
    rows = np.vstack([stage.gen_rows, stage.rows])
    row_block = np.concatenate([stage.gen_block, stage.row_block])
    rhs_all = np.concatenate(
        [
            np.broadcast_to(stage.gen_rhs, (y.shape[0], stage.gen_rhs.size)),
            np.broadcast_to(rhs, (y.shape[0], stage.rows.shape[0])),
        ],
        axis=1,
    )
    anchor = np.broadcast_to(c, y.shape) if mode == "clip_scale" else scaled
    step = (clipped - anchor) @ rows.T  # (B, rows)
    room = np.maximum(rhs_all - anchor @ rows.T, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        limit = np.where(step > 0, room / np.where(step > 0, step, 1.0), np.inf)
    lam = np.clip(-_block_max(-limit, row_block, k), 0.0, 1.0)  # min over each block's rows
    lam[:, stage.block_has_equality] = 0.0  # clipping would break the equalities
    out = clipped.copy()
    out[:, coupled] = anchor[:, coupled] + lam[:, stage.coord_block[coupled]] * (clipped - anchor)[:, coupled]
    if mode == "clip_scale":
        # blocks with equalities fall back to their per-block factor
        eq_coords = coupled & stage.block_has_equality[np.maximum(stage.coord_block, 0)]
        out[:, eq_coords] = scaled[:, eq_coords]
    return out
