"""The exact projection onto blocks of one row plus bounds (``scaling="project"``), in ``keras.ops``.

For a block with one row ``a.x <= b`` and the box ``lower <= x <= upper``,
the projection of ``y`` is ``clip(y - mu a, lower, upper)`` with the
smallest ``mu >= 0`` that makes ``e(mu) = a.clip(y - mu a) - b <= 0``;
``e`` is piecewise linear and non-increasing in ``mu``. Safeguarded Newton
steps find its root: each is exact once it lands on the root's linear
piece, and each aims a rounding margin below ``b``, so the step that finds
the root also lands on the feasible side; a step that would leave the
bracket bisects it instead. The output is the bracket's feasible end, so it
is feasible whatever the step count, and its gradient is the implicit one.

Two layouts, planned once in numpy: up to :data:`PRODUCT_BLOCKS` blocks sum
and spread by products with the blocks' rows (no gathers; fastest in
TensorFlow graphs, where each elementwise op is a pass); more blocks are
gathered into a (blocks, widest block) table and back.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
from keras import ops

from keras_lincon.layers.backend_ops import constant, matmul, maximum
from keras_lincon.layers.segments import segment_table
from keras_lincon.planning import scaling_plan

#: Most steps per call. The loop stops once every block is within rounding of its root: 4 to 6
#: steps on image-like points (measured on the paper's toy); points far outside the box (where every
#: coordinate is clipped and Newton has no slope) bisect first, about one step per factor of 2.
PROJECT_STEPS = 40

#: The Newton steps aim this many rounding units (of ``a.x``'s largest terms and ``|b|``) below ``b``.
MARGIN_ULPS = 2

#: Up to this many blocks, block sums are products with the rows; above, a gathered table.
PRODUCT_BLOCKS = 64


@dataclasses.dataclass(frozen=True)
class SingleRowBlocks:
    """The blocks of one row plus bounds, laid out for :func:`project_single_rows` (numpy).

    Attributes:
        rows: (kb, n) each block's row, for the product layout; None for the table layout.
        take: (kb * w,) the coordinate in each slot of the table (padding slots repeat 0); None for products.
        back: (n,) each coordinate's slot in the flat table (``kb * w``: none); None for products.
        a, lower, upper: the rows' coefficients and the box per coordinate, (n,) for products or
            (kb, w) for the table (padding: ``a = 0``, no bounds); coordinates of no block: ``a = 0``.
        reach: (kb,) ``sum |a_i| max(|lower_i|, |upper_i|)``: the size of ``a.x``'s terms.
        squares: (kb,) ``sum a_i^2``.
        far: (2, kb) ``(largest |bound|, smallest |a_i|)`` on each row's support: ``mu`` at most
            ``(max|y| + far[0]) / far[1]`` puts every coordinate at the bound ``mu`` pushes it to.
        row: (kb,) each block's row in ``[gen_rows; rows]``.
        covered: (n,) the coordinates in these blocks.
    """

    rows: np.ndarray | None
    take: np.ndarray | None
    back: np.ndarray | None
    a: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    reach: np.ndarray
    squares: np.ndarray
    far: np.ndarray
    row: np.ndarray
    covered: np.ndarray


def plan_single_rows(stage: scaling_plan.ScaledStage) -> SingleRowBlocks:
    """The layout of ``stage``'s blocks of one row plus bounds (``scaling_plan.single_row_blocks``)."""
    eligible, a, row_of_block, lower, upper = scaling_plan.single_row_blocks(stage)
    blocks, n, k = np.flatnonzero(eligible), stage.dim, stage.n_blocks
    member = stage.coord_block[None, :] == blocks[:, None]  # (kb, n)
    rows = np.where(member, a, 0.0)
    support = rows != 0
    bound = np.where(support, np.maximum(np.abs(np.where(support, lower, 0)), np.abs(np.where(support, upper, 0))), 0)
    reach, squares = np.sum(np.abs(rows) * bound, axis=1), np.sum(rows * rows, axis=1)
    far = np.stack([bound.max(axis=1, initial=0.0), np.where(support, np.abs(rows), np.inf).min(axis=1)])
    covered = member.any(axis=0)
    a = np.where(covered, a, 0.0)
    if blocks.size <= PRODUCT_BLOCKS:
        return SingleRowBlocks(rows, None, None, a, lower, upper, reach, squares, far, row_of_block[blocks], covered)
    slot = np.full(k + 1, blocks.size)  # eligible block -> its row of the table; others: dropped
    slot[blocks] = np.arange(blocks.size)
    table = segment_table(slot[np.where(stage.coord_block < 0, k, stage.coord_block)], blocks.size + 1)[:-1]
    padded = table == n
    pick = np.where(padded, 0, table)
    back = np.full(n, table.size)
    back[table[~padded]] = np.flatnonzero(~padded.reshape(-1))
    return SingleRowBlocks(
        None,
        pick.reshape(-1),
        back,
        np.where(padded, 0.0, a[pick]),
        np.where(padded, -np.inf, lower[pick]),
        np.where(padded, np.inf, upper[pick]),
        reach,
        squares,
        far,
        row_of_block[blocks],
        covered,
    )


class _Layout:
    """The blocks' sums and spreads in ``keras.ops``, for either layout of :class:`SingleRowBlocks`."""

    def __init__(self, plan: SingleRowBlocks, dtype, batch):
        self.plan, self.dtype, self.batch = plan, dtype, batch
        self.a, self.lower, self.upper = self.const(plan.a), self.const(plan.lower), self.const(plan.upper)
        weights = plan.a if plan.rows is None else plan.rows.T  # (kb, w) per slot, or (n, kb) for products
        self.weights = {
            name: self.const(w) for name, w in (("a", weights), ("squares", weights**2), ("magnitudes", abs(weights)))
        }
        self.rows = None if plan.rows is None else self.const(plan.rows)  # the products' spread, made once

    def const(self, v):
        return constant(v, self.dtype)

    def view(self, y):
        """(B, n) -> the layout's view: itself for products, (B, kb, w) for the table."""
        if self.plan.rows is None:
            return ops.reshape(ops.take(y, self.plan.take, axis=1), (self.batch, *self.plan.a.shape))
        return y

    def block_sum(self, v, weights: str = "a"):
        """(B, kb): ``sum_i w_i v_i`` per block, ``w`` the row's coefficients, their squares or magnitudes."""
        if self.plan.rows is None:
            return ops.sum(v * self.weights[weights], axis=-1)
        return matmul(v, self.weights[weights])

    def spread(self, mu):
        """``mu_block a_i`` per coordinate of the view."""
        if self.plan.rows is None:
            return mu[..., None] * self.a
        return matmul(mu, self.rows)

    def back(self, x):
        """The view -> (B, n) (coordinates of no block: 0 from the table)."""
        if self.plan.rows is not None:
            return x
        x = ops.reshape(x, (self.batch, -1))
        return ops.take(ops.concatenate([x, ops.zeros_like(x[:, :1])], axis=1), self.plan.back, axis=1)


def project_single_rows(y, stage: scaling_plan.ScaledStage, plan: SingleRowBlocks, rhs=None):
    """``clip(y - mu a, lower, upper)`` per block of one row ``a.x <= b`` plus bounds.

    Args:
        y: (B, n) points.
        stage: the planned scaled stage; plan: its :func:`plan_single_rows`.
        rhs: (B, m) right-hand sides of the stage's scaled rows, or None for the stored ones.

    Returns:
        (B, n): the projection on the blocks' coordinates; other coordinates are for the caller to fill.
    """
    dtype = y.dtype
    layout = _Layout(plan, dtype, ops.shape(y)[0])
    y = layout.view(y)
    z = ops.stop_gradient(y)
    mu = ops.stop_gradient(_multiplier(layout, z, _block_rhs(stage, plan, rhs, layout.const)))
    # d mu / d y = (D a) / (a^T D a), D the unclipped coordinates; y - z is 0, so the value stays
    shifted = z - layout.spread(mu)
    free = ops.stop_gradient(ops.cast(ops.equal(ops.clip(shifted, layout.lower, layout.upper), shifted), dtype))
    slope = layout.block_sum(free * (y - z)) / maximum(layout.block_sum(free, "squares"), 1e-30)
    return layout.back(ops.clip(y - layout.spread(mu + ops.cast(mu > 0, dtype) * slope), layout.lower, layout.upper))


def _multiplier(layout: _Layout, z, b):
    """(B, kb) the smallest ``mu >= 0`` with ``e(mu) <= 0`` per block, to rounding (the feasible end)."""
    eps = float(np.finfo(keras.backend.standardize_dtype(layout.dtype)).eps)
    # e's rounding: forming z - mu a and summing a_i x_i (terms up to |a_i| (|z_i| + bound_i))
    aim = (
        MARGIN_ULPS * eps * (layout.block_sum(ops.abs(z), "magnitudes") + layout.const(layout.plan.reach) + ops.abs(b))
    )
    norms = layout.const(layout.plan.squares)  # sum a_i^2 per block

    def excess(mu):
        """``e(mu)``, and the slope's size (coordinates at a bound count as free: a tie makes a
        step shorter, never longer)."""
        shifted = z - layout.spread(mu)
        clipped = ops.clip(shifted, layout.lower, layout.upper)
        free = ops.cast(ops.equal(clipped, shifted), layout.dtype)
        return layout.block_sum(clipped) - b, layout.block_sum(free, "squares")

    def step(i, mu, low, high, done):
        """Keeps the bracket from ``e(mu)``; next point: Newton where it stays inside, else bisection."""
        e, slope = excess(mu)
        feasible = e <= 0
        # e falls at most sum a_i^2 per unit of mu, so the root lies at least e / sum a_i^2 above mu
        low, high = ops.where(feasible, low, maximum(mu, mu + e / norms)), ops.where(feasible, mu, high)
        per_slope = 1.0 / ops.where(slope > 0, slope, 1.0)
        newton = mu + (e + aim) * per_slope
        # a step from the feasible side that lands within rounding below low: the root is just above low
        nudge = maximum(low + 2.0 * aim * per_slope, low + 4.0 * eps * low)
        newton = ops.where(ops.logical_and(newton <= low, newton > 2.0 * low - nudge), nudge, newton)
        inside = ops.logical_and(slope > 0, ops.logical_and(newton > low, newton < high))
        # bisection by the geometric mean while the bracket spans orders of magnitude (a far point)
        bottom = maximum(low, aim / norms)  # aim / sum a_i^2: the rounding scale of mu
        middle = ops.where(high > 4.0 * bottom, ops.sqrt(bottom * high), 0.5 * (low + high))
        # at the root to rounding, or feasible at 0; once done, high stays the answer
        done = ops.logical_or(done, ops.logical_and(feasible, ops.logical_or(e >= -2.0 * aim, mu <= 0)))
        return i + 1, ops.where(inside, newton, middle), low, high, done

    def unfinished(i, mu, low, high, done):
        return ops.logical_and(i < PROJECT_STEPS, ops.logical_not(ops.all(done)))

    biggest = ops.max(ops.abs(ops.reshape(z, (layout.batch, -1))), axis=-1, keepdims=True, initial=0.0)
    far = (biggest + layout.const(layout.plan.far[0])) / layout.const(
        layout.plan.far[1]
    )  # every coordinate at its bound
    zero = ops.zeros_like(b + biggest)
    # a loop that stops once every block is within rounding of its root
    state = (0, zero, zero, far, ops.zeros_like(zero, dtype="bool"))
    return ops.while_loop(unfinished, step, state, maximum_iterations=PROJECT_STEPS)[3]


def _block_rhs(stage: scaling_plan.ScaledStage, plan: SingleRowBlocks, rhs, const):
    """Each block's ``b``, (1 or B, kb): stored for generator rows, the input for scaled rows."""
    if rhs is None:
        return const(np.concatenate([stage.gen_rhs, stage.rhs])[plan.row][None])
    every = ops.concatenate([ops.zeros_like(rhs[:, :1]) + const(stage.gen_rhs), rhs], axis=1)
    return ops.take(every, plan.row, axis=1)
