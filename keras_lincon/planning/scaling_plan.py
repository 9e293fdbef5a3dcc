"""The second (scaled) stage of the layer: ray scaling of rows without generators.

Numpy/scipy only (no Keras). See "Two stages" in the design notes: the
generator stage yields ``y`` in ``P_gen = {A_g y <= b_g, C y = d}``; the
scaled rows ``A_s x <= b_s`` (the box is one kind of them) are then enforced by

    x = c + (y - c) / max(1, max_i a_i.(y - c) / (b_i - a_i.c))

with a centre ``c`` in ``P_gen`` strictly inside the scaled rows: ``x`` is a
convex combination of ``y`` and ``c``, so it stays in ``P_gen`` and satisfies
the scaled rows. Independent blocks of the row/variable graph (over *all*
rows) share no variable, so each block gets its own factor, and a coordinate
that no row couples is simply clipped to its box (the exact projection).

This module plans the stage (blocks, centre, validation, the arrays a layer
needs) and holds the numpy reference of every treatment:

* ``"global"``: one factor for the whole output (the paper; old configs).
* ``"per_block"``: one factor per block (free coordinates: clipping).
* ``"clip_scale"``: clip to the box, then scale each block towards a centre
  strictly inside its generator rows, only as far as those rows need.
* ``"clip_blend"``: clip to the box, then move back towards the per-block
  result ``x_pb`` (a feasible point of the same sample) only as far as the
  block's rows need: ``x = x_pb + lam (clip(y) - x_pb)``, ``lam`` in [0, 1]
  per block. Exact for the same reason (a convex combination of a box point
  and a feasible point), and needs no centre strictly inside the generator
  rows, so it also works for cones with the apex as centre.
* ``"project"``: the exact Euclidean projection onto the block's set, for
  blocks with a single inequality row ``a.x <= b`` (generator or scaled)
  besides bounds, no equality, and finite bounds on the row's support (the
  checkerboard's blocks, a budget group): ``x = clip(y - mu a, lower,
  upper)`` with the smallest ``mu >= 0`` that meets the row (one scalar per
  block, found by safeguarded Newton steps). Generator rows of one nonzero (``x_j >= 0``)
  count as bounds. Other blocks get ``"per_block"``.

Input-dependent right-hand sides: ``b_s`` may change per sample when the
centre is computed for a declared floor ``b_floor``. The map is exact for
every sample with ``b_s >= b_floor`` (elementwise), because then
``b_s,i - a_i.c >= b_floor,i - a_i.c > 0``.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from keras_lincon import geometry
from keras_lincon.errors import ConstraintShapeError, InfeasibleError, NoStrictInteriorError
from keras_lincon.geometry import blocks, deepest_point
from keras_lincon.tolerances import MIN_RELATIVE_SLACK

#: Treatments of the scaled stage (see the module docstring).
MODES = ("global", "per_block", "clip_scale", "clip_blend", "project")


@dataclasses.dataclass(frozen=True, eq=False)
class ScaledStage:
    """Everything a layer needs for the scaled stage; float64 numpy arrays.

    Shapes (``n`` outputs, ``m`` scaled rows besides the box, ``g`` generator
    inequality rows, ``k`` blocks):

    * ``center`` (n,): the centre ``c`` (in ``P_gen``, strictly inside the
      scaled rows; for input-dependent rows, inside the floor).
    * ``lower``, ``upper`` (n,): the box (``-inf``/``inf`` where absent).
    * ``inv_upper``, ``inv_lower`` (n,): ``1 / (upper - c)``, ``1 / (lower - c)``
      (0 where the side is absent).
    * ``rows`` (m, n), ``rhs`` (m,): scaled rows; ``rhs`` is ``b_floor`` when
      the right-hand side is an input. ``row_center`` (m,) is ``rows @ c``.
    * ``coord_block`` (n,) int: block of each coordinate, -1 for a coordinate
      no row couples (clipped). ``row_block`` (m,), ``gen_block`` (g,): block
      of each scaled / generator row.
    * ``gen_rows`` (g, n), ``gen_rhs`` (g,): the generator stage's inequality
      rows (used by the clip variants); ``block_has_equality`` (k,) bool.
    """

    center: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    rows: np.ndarray
    rhs: np.ndarray
    coord_block: np.ndarray
    row_block: np.ndarray
    gen_rows: np.ndarray
    gen_rhs: np.ndarray
    gen_block: np.ndarray
    block_has_equality: np.ndarray
    input_dependent: bool = False

    @property
    def dim(self) -> int:
        return self.center.shape[0]

    @property
    def n_blocks(self) -> int:
        return self.block_has_equality.shape[0]

    @property
    def row_center(self) -> np.ndarray:
        return self.rows @ self.center

    @property
    def inv_upper(self) -> np.ndarray:
        with np.errstate(divide="ignore"):
            return np.where(np.isfinite(self.upper), 1.0 / (self.upper - self.center), 0.0)

    @property
    def inv_lower(self) -> np.ndarray:
        with np.errstate(divide="ignore"):
            return np.where(np.isfinite(self.lower), 1.0 / (self.lower - self.center), 0.0)

    @property
    def inv_slack(self) -> np.ndarray:
        """(m,) ``1 / (rhs - a_i.c)`` for the stored right-hand side (or floor)."""
        return 1.0 / (self.rhs - self.row_center)


# ----------------------------------------------------------------- blocks


# ----------------------------------------------------------------- centres


def _relative_slack(A: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    scale = np.abs(b) + np.linalg.norm(A, axis=1) * np.linalg.norm(c)
    return (b - A @ c) / np.maximum(scale, 1e-300)


def check_center(
    center,
    system: geometry.ConstraintSystem,
    rows: np.ndarray,
    rhs: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    *,
    strict_generator_rows: bool = False,
) -> np.ndarray:
    """Validates both centre conditions; returns the centre as (n,) float64.

    1. ``c`` is in ``P_gen`` (relative tolerance ``geometry.CHECK_TOLERANCE``);
    2. ``c`` is strictly inside the box and the scaled rows (relative slack at
       least ``MIN_RELATIVE_SLACK``), and inside the generator rows too when
       ``strict_generator_rows``.

    Raises:
        ConstraintShapeError: wrong shape or non-finite centre.
        InfeasibleError: ``c`` is not in ``P_gen``.
        NoStrictInteriorError: ``c`` touches a scaled row or the box.
    """
    n = system.dim
    try:
        c = np.broadcast_to(np.asarray(center, dtype=np.float64), (n,)).copy()
    except ValueError:
        raise ConstraintShapeError(
            f"the centre must be a scalar or a length-{n} array (one value per output); got shape {np.shape(center)}."
        ) from None
    if not np.all(np.isfinite(c)):
        raise ConstraintShapeError("the centre must be finite on every coordinate.")
    outside, worst = geometry.centre_defects(c, system, lower, upper)
    if outside.size:
        raise NoStrictInteriorError(
            f"the centre (box_center) must lie strictly inside the box; coordinate(s) {outside[:8].tolist()} do not. "
            "Move it inside or widen the box."
        )
    if worst > geometry.CHECK_TOLERANCE:
        raise InfeasibleError(
            f"the centre (box_center) violates the generator rows (worst relative violation {worst:.3g}); it must be "
            "a point of their feasible set (e.g. a feasible output moved inside the box)."
        )
    tight = np.flatnonzero(_relative_slack(rows, rhs, c) < MIN_RELATIVE_SLACK)
    if tight.size:
        raise NoStrictInteriorError(
            f"the centre must satisfy the scaled rows strictly (relative slack >= {MIN_RELATIVE_SLACK:g}); "
            f"scaled row(s) {tight[:8].tolist()} are tight or violated. Move the centre inside or raise "
            "their right-hand side (floor)."
        )
    if strict_generator_rows and system.A.shape[0]:
        tight = np.flatnonzero(_relative_slack(system.A, system.b, c) < MIN_RELATIVE_SLACK)
        if tight.size:
            raise NoStrictInteriorError(
                f"this treatment needs a centre strictly inside the generator rows; row(s) "
                f"{tight[:8].tolist()} are tight at it."
            )
    return c


# ----------------------------------------------------------------- plan


def plan(
    A_g,
    b_g=None,
    C=None,
    d=None,
    *,
    scaled_rows=None,
    scaled_rhs=None,
    box=None,
    center=None,
    input_dependent: bool = False,
    strict_generator_rows: bool = False,
    find_center: bool = True,
) -> ScaledStage:
    """Plans the scaled stage from raw arrays (validates them, then :func:`plan_stage`).

    Args:
        A_g, b_g, C, d: the generator stage (as :func:`keras_lincon.h_to_v`).
        scaled_rows: (m, n) rows ``A_s`` enforced by scaling, or None.
        scaled_rhs: (m,) ``b_s``; with ``input_dependent`` it is the declared
            floor ``b_floor``: the map is exact for any ``b_s >= b_floor``.
        box: ``(lower, upper)`` as for the layer, or None.
        center, input_dependent, strict_generator_rows, find_center: as for :func:`plan_stage`.

    Returns:
        A :class:`ScaledStage`.
    """
    system = geometry.as_constraint_system(A_g, b_g, C, d)
    n = system.dim
    if scaled_rows is None:
        if scaled_rhs is not None and np.size(scaled_rhs):
            raise ConstraintShapeError("scaled_rhs was given without scaled_rows: pass both.")
        scaled = geometry.ConstraintSystem(np.zeros((0, n)), np.zeros(0), np.zeros((0, n)), np.zeros(0))
    else:
        scaled = geometry.as_constraint_system(scaled_rows, scaled_rhs)
        if scaled.dim != n:
            raise ConstraintShapeError(
                f"scaled_rows has {scaled.dim} columns but the generator rows have {n}: one column per output."
            )
    bounds = geometry.as_box(box, n)
    strict = strict_generator_rows
    return plan_stage(
        system,
        scaled.A,
        scaled.b,
        bounds,
        center,
        input_dependent=input_dependent,
        strict_generator_rows=strict,
        find_center=find_center,
    )


def plan_stage(
    system: geometry.ConstraintSystem,
    rows: np.ndarray,
    rhs: np.ndarray,
    box: tuple | None,
    center=None,
    *,
    input_dependent: bool = False,
    strict_generator_rows: bool = False,
    find_center: bool = True,
    graph: tuple | None = None,
) -> ScaledStage:
    """Plans the scaled stage for a validated generator system and scaled rows.

    Args:
        system: the generator stage ``(A_g, b_g, C, d)``, validated.
        rows: (m, n) scaled rows ``A_s``; rhs: (m,) their ``b_s`` (the floor with ``input_dependent``).
        box: validated ``(lower, upper)``, (n,) each, or None.
        center: optional (n,) user centre (checked), else :func:`keras_lincon.geometry.deepest_point`.
        input_dependent: the right-hand side of the scaled rows is an input.
        strict_generator_rows: the centre must also be strictly inside the generator rows (``clip_scale``).
        find_center: with ``center=None``, False leaves the centre NaN (held as a weight, no scaled rows).
        graph: ``geometry.blocks(n, A_g, C, rows)``, if the caller already decomposed the rows.

    Raises:
        ConstraintShapeError: an all-zero scaled row, or ``input_dependent`` without scaled rows.
        NoStrictInteriorError: no centre strictly inside the scaled rows and the box.
    """
    n = system.dim
    zero = np.flatnonzero(~np.any(rows != 0, axis=1))
    if zero.size:
        raise ConstraintShapeError(
            f"scaled row(s) {zero[:8].tolist()} are all zero: drop them (0 <= b needs no enforcing)."
        )
    if input_dependent and rows.shape[0] == 0:
        raise ConstraintShapeError("input_dependent needs scaled_rows (the rows whose right-hand side is an input).")
    lower, upper = box if box is not None else (np.full(n, -np.inf), np.full(n, np.inf))
    if center is None and not find_center:
        if rows.shape[0]:
            raise ConstraintShapeError("internal: scaled rows need a centre.")
        center = np.full(n, np.nan)
    else:
        center = _centre(system, rows, rhs, lower, upper, center, strict_generator_rows)
    coord_block, (gen_block, eq_block, row_block) = graph if graph is not None else blocks(n, system.A, system.C, rows)
    has_eq = np.zeros(int(coord_block.max()) + 1 if coord_block.size else 0, dtype=bool)
    has_eq[eq_block[eq_block >= 0]] = True
    return ScaledStage(
        center=center,
        lower=lower,
        upper=upper,
        rows=rows,
        rhs=rhs,
        coord_block=coord_block,
        row_block=row_block,
        gen_rows=system.A,
        gen_rhs=system.b,
        gen_block=gen_block,
        block_has_equality=has_eq,
        input_dependent=bool(input_dependent),
    )


def _centre(system, rows, rhs, lower, upper, center, strict_generator_rows: bool) -> np.ndarray:
    """The user's centre (checked), else the deepest point of the generator rows' set inside the rest."""
    if center is None:
        center, depth = deepest_point(system, lower, upper, rows, rhs, strict_rows=strict_generator_rows)
        if center is None or depth <= 1e-9:
            raise NoStrictInteriorError(
                "no point of the generator rows' set lies strictly inside the scaled rows and the box "
                "(the scaled rows or the box pin some coordinate, or the sets do not meet). Widen the box or "
                "the right-hand side (floor) of the scaled rows, or make those rows generator rows."
            )
    return check_center(center, system, rows, rhs, lower, upper, strict_generator_rows=strict_generator_rows)


def single_row_blocks(stage: ScaledStage) -> tuple:
    """The blocks ``"project"`` projects onto exactly.

    Returns:
        ``(eligible, a, row_of_block, lower, upper)``: (k,) bool, blocks with
        one inequality row besides bounds, no equality and finite bounds on
        the row's support; (n,) that row's coefficients on those blocks'
        coordinates (0 elsewhere); (k,) index of each eligible block's row in
        ``[gen_rows; rows]`` (-1 if not); (n,) the box tightened by the
        generator rows of one nonzero.
    """
    k, n, g = stage.n_blocks, stage.dim, stage.gen_rows.shape[0]
    all_rows = np.vstack([stage.gen_rows, stage.rows])
    row_block = np.concatenate([stage.gen_block, stage.row_block])
    bound_rows = geometry.single_variable_rows(all_rows) & (np.arange(len(all_rows)) < g)  # fixed b: bounds
    lower, upper = stage.lower.copy(), stage.upper.copy()
    for i in np.flatnonzero(bound_rows):
        col = int(np.flatnonzero(all_rows[i])[0])
        limit = stage.gen_rhs[i] / all_rows[i, col]
        if all_rows[i, col] > 0:
            upper[col] = min(upper[col], limit)
        else:
            lower[col] = max(lower[col], limit)
    others = ~bound_rows & (row_block >= 0)
    counts = np.bincount(row_block[others], minlength=k)
    eligible, a, row_of_block = np.zeros(k, bool), np.zeros(n), np.full(k, -1)
    for j in np.flatnonzero((counts == 1) & ~stage.block_has_equality):
        row = int(np.flatnonzero(others & (row_block == j))[0])
        support = all_rows[row] != 0
        if np.all(np.isfinite(lower[support])) and np.all(np.isfinite(upper[support])):
            eligible[j], row_of_block[j] = True, row
            a[support] = all_rows[row, support]
    return eligible, a, row_of_block, lower, upper


# ----------------------------------------------------------------- row split
