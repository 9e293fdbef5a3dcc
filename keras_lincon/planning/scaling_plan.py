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
  block, found by bisection). Generator rows of one nonzero (``x_j >= 0``)
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
from keras_lincon.errors import ConstraintShapeError, InfeasibleError, LinconError, NoStrictInteriorError
from keras_lincon.geometry import blocks, deepest_point

#: Treatments of the scaled stage (see the module docstring).
MODES = ("global", "per_block", "clip_scale", "clip_blend", "project")
#: Smallest relative slack ``(b_i - a_i.c) / (|b_i| + ||a_i|| ||c||)`` accepted
#: for a centre: a smaller one makes ``1 / slack`` amplify float32 round-off.
MIN_RELATIVE_SLACK = 1e-6


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
    outside = np.flatnonzero(~((c > lower) & (c < upper)))
    if outside.size:
        raise NoStrictInteriorError(
            f"the centre (box_center) must lie strictly inside the box; coordinate(s) {outside[:8].tolist()} do not. "
            "Move it inside or widen the box."
        )
    worst = geometry.max_violation(c[None], system.A, system.b, system.C, system.d, relative=True)
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
    """Plans the scaled stage for a generator system and scaled rows.

    Args:
        A_g, b_g, C, d: the generator stage (as :func:`keras_lincon.h_to_v`).
        scaled_rows: (m, n) rows ``A_s`` enforced by scaling, or None.
        scaled_rhs: (m,) ``b_s``; with ``input_dependent`` it is the declared
            floor ``b_floor``: the map is exact for any ``b_s >= b_floor``.
        box: ``(lower, upper)`` as for the layer, or None.
        center: optional (n,) user centre (validated), else the deepest point
            (:func:`keras_lincon.geometry.deepest_point`).
        input_dependent: the right-hand side of the scaled rows is an input.
        strict_generator_rows: the centre must also be strictly inside the
            generator rows (the ``clip_scale`` treatment needs it).
        find_center: with ``center=None``, False leaves the centre NaN (a
            layer that holds it as a weight and has no scaled rows).

    Returns:
        A :class:`ScaledStage`.
    """
    system = geometry.as_constraint_system(A_g, b_g, C, d)
    n = system.dim
    if scaled_rows is None:
        if scaled_rhs is not None and np.size(scaled_rhs):
            raise ConstraintShapeError("scaled_rhs was given without scaled_rows: pass both.")
        rows, rhs = np.zeros((0, n)), np.zeros(0)
    else:
        scaled = geometry.as_constraint_system(scaled_rows, scaled_rhs)
        if scaled.dim != n:
            raise ConstraintShapeError(
                f"scaled_rows has {scaled.dim} columns but the generator rows have {n}: one column per output."
            )
        rows, rhs = scaled.A, scaled.b
        zero = np.flatnonzero(~np.any(rows != 0, axis=1))
        if zero.size:
            raise ConstraintShapeError(
                f"scaled row(s) {zero[:8].tolist()} are all zero: drop them (0 <= b needs no enforcing)."
            )
    if input_dependent and rows.shape[0] == 0:
        raise ConstraintShapeError("input_dependent needs scaled_rows (the rows whose right-hand side is an input).")
    bounds = geometry.as_box(box, n)
    lower, upper = bounds if bounds is not None else (np.full(n, -np.inf), np.full(n, np.inf))
    if center is None and not find_center:
        if rows.shape[0]:
            raise ConstraintShapeError("internal: scaled rows need a centre.")
        center = np.full(n, np.nan)
    else:
        if center is None:
            center, depth = deepest_point(system, lower, upper, rows, rhs, strict_rows=strict_generator_rows)
            if center is None or depth <= 1e-9:
                raise NoStrictInteriorError(
                    "no point of the generator rows' set lies strictly inside the scaled rows and the box "
                    "(the scaled rows or the box pin some coordinate, or the sets do not meet). Widen the box or "
                    "the right-hand side (floor) of the scaled rows, or make those rows generator rows."
                )
        center = check_center(center, system, rows, rhs, lower, upper, strict_generator_rows=strict_generator_rows)
    coord_block, (gen_block, eq_block, row_block) = blocks(n, system.A, system.C, rows)
    k = int(coord_block.max()) + 1 if coord_block.size else 0
    has_eq = np.zeros(k, dtype=bool)
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


# ----------------------------------------------------------------- reference maps


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
    bound_rows = (np.count_nonzero(all_rows, axis=1) == 1) & (np.arange(len(all_rows)) < g)  # fixed b: bounds
    lower, upper = stage.lower.copy(), stage.upper.copy()
    for i in np.flatnonzero(bound_rows):
        j = int(np.flatnonzero(all_rows[i])[0])
        limit = stage.gen_rhs[i] / all_rows[i, j]
        if all_rows[i, j] > 0:
            upper[j] = min(upper[j], limit)
        else:
            lower[j] = max(lower[j], limit)
    others = ~bound_rows & (row_block >= 0)
    counts = np.bincount(row_block[others], minlength=k)
    eligible, a, row_of_block = np.zeros(k, bool), np.zeros(n), np.full(k, -1)
    for j in np.flatnonzero((counts == 1) & ~stage.block_has_equality):
        i = int(np.flatnonzero(others & (row_block == j))[0])
        support = all_rows[i] != 0
        if np.all(np.isfinite(lower[support])) and np.all(np.isfinite(upper[support])):
            eligible[j], row_of_block[j] = True, i
            a[support] = all_rows[i, support]
    return eligible, a, row_of_block, lower, upper


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


# ----------------------------------------------------------------- row split


@dataclasses.dataclass(frozen=True)
class RowSplit:
    """Which inequality rows of ``A`` go to which stage.

    ``generator`` / ``scaled``: sorted row indices of ``A``; ``moved``: rows the
    automatic fallback moved to the scaled stage (a subset of ``scaled``), with
    ``bounds`` a true lower bound on the generators of each moved block.
    """

    generator: tuple
    scaled: tuple
    moved: tuple
    bounds: tuple


def split_rows(
    system: geometry.ConstraintSystem,
    scaled=(),
    limit: float = geometry.DEFAULT_MAX_GENERATORS,
    fallback: bool = True,
) -> RowSplit:
    """Splits the rows of ``system.A`` into generator rows and scaled rows.

    Rows in ``scaled`` always go to the scaled stage. With ``fallback``, every
    independent block of the remaining rows that certainly has more than
    ``limit`` generators (a true lower bound on its vertices,
    :func:`keras_lincon.geometry.generator_lower_bound`, the rule
    by which :func:`keras_lincon.h_to_v` refuses up front) moves to the
    scaled stage as a whole: its output is then exact but no longer covers
    the whole set freely (ray scaling towards a centre instead of
    generators). An upper bound alone (McMullen's) moves nothing: such
    blocks are enumerated, and the layer moves them only if that is refused
    (cap or time budget). Blocks with at most as many rows as variables never
    move (closed form or few generators).

    Args:
        system: all rows ``(A, b, C, d)``; ``scaled``: row indices of ``A``.
        limit: the generator cap (the layer's ``max_generators``).
        fallback: move blocks at all.

    Returns:
        A :class:`RowSplit`; ``bounds`` holds each moved block's lower bound.
    """
    m, n = system.A.shape
    scaled_set = set(int(i) for i in scaled)
    if any(i < 0 or i >= m for i in scaled_set):
        raise ConstraintShapeError(f"scaled_rows must be indices of rows of A (0..{m - 1}); got {sorted(scaled_set)}.")
    keep = np.array([i for i in range(m) if i not in scaled_set], dtype=int)
    moved, bounds = [], []
    if fallback and keep.size:
        coord, (row_blk, eq_blk) = blocks(n, system.A[keep], system.C)
        for j in range(int(coord.max()) + 1 if coord.size else 0):
            rows = keep[row_blk == j]
            var = coord == j
            eqs = eq_blk == j
            n_vars = int(np.sum(var))
            dim = n_vars - (np.linalg.matrix_rank(system.C[eqs]) if np.any(eqs) else 0)
            if rows.size <= dim or geometry.generator_upper_bound(rows.size, dim) <= limit:
                continue  # cannot exceed the cap: no lower bound needed
            bound, _ = geometry.generator_lower_bound(
                system.A[np.ix_(rows, var)], system.b[rows], system.C[np.ix_(eqs, var)], system.d[eqs]
            )
            if bound > limit:
                moved.extend(rows.tolist())
                bounds.append(bound)
    scaled_all = sorted(scaled_set | set(moved))
    generator = [i for i in range(m) if i not in set(scaled_all)]
    return RowSplit(tuple(generator), tuple(scaled_all), tuple(sorted(moved)), tuple(bounds))
