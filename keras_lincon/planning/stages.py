"""The layer's two stages: which rows get generators and which are scaled, and what each needs.

:func:`plan_stages` splits the rows (:mod:`keras_lincon.planning.row_split`), runs
``h_to_v`` on the generator rows (moving refused blocks to the scaled stage
with a :class:`~keras_lincon.ScaledRowsWarning` when ``fallback``), plans the
scaled stage and its centre (:mod:`keras_lincon.planning.scaling_plan`), the
coupled blocks' projection (``scaling="project"``) and the translation of
right-hand-side inputs. Numpy only.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np

from keras_lincon import geometry
from keras_lincon.errors import (
    ConstraintShapeError,
    ConstructionTimeoutError,
    ScaledRowsWarning,
    TooManyGeneratorsError,
)
from keras_lincon.geometry import ConstraintSystem, VRepresentation, blocks, check_representation
from keras_lincon.planning import scaling_plan
from keras_lincon.planning.coupled_plan import ProjectionPlan, plan_projection
from keras_lincon.planning.options import Construction, OutputMap
from keras_lincon.planning.rhs_inputs import RhsInputs, plan_translation
from keras_lincon.planning.row_split import RowSplit, split_rows


@dataclasses.dataclass(frozen=True)
class CoupledBlocks:
    """The blocks ``scaling="project"`` projects onto (:mod:`keras_lincon.layers.coupled_kernel`).

    Attributes:
        columns: (u,) the coordinates of those blocks, sorted.
        plan: the projection onto their rows, equalities and box, restricted to ``columns``.
    """

    columns: np.ndarray
    plan: ProjectionPlan


#: ADMM steps, active-set steps and gradient steps of the coupled projection in the layer: matrix
#: products only (XLA on the CPU runs batched solves as slow loops); see BENCHMARKS.md, issue 20.
COUPLED_STEPS = {"iterations": 50, "polish": 0, "gradient_iterations": 20}


def plan_coupled(system: ConstraintSystem, box, stage: scaling_plan.ScaledStage) -> CoupledBlocks | None:
    """The exact projection for the blocks the single-row projection does not cover (several coupled
    rows, or equalities), or None when there are none.

    The projection of a point onto a product of blocks is the product of the
    blocks' projections, so one plan takes every such block at once. It
    projects onto all of the block's constraints (generator and scaled rows,
    equalities, box), so its output is exact whatever the generator stage gave.
    """
    eligible = scaling_plan.single_row_blocks(stage)[0]
    columns = np.flatnonzero(np.isin(stage.coord_block, np.flatnonzero(~eligible)))
    if not columns.size:
        return None
    inside = np.zeros(system.dim, dtype=bool)
    inside[columns] = True
    rows, eq_rows = (np.flatnonzero(np.any(M[:, inside] != 0, axis=1)) for M in (system.A, system.C))
    if np.any(system.A[rows][:, ~inside]) or np.any(system.C[eq_rows][:, ~inside]):
        raise ConstraintShapeError("internal: a block's rows reach outside its coordinates.")
    plan = plan_projection(
        system.A[rows][:, columns],
        system.b[rows],
        system.C[eq_rows][:, columns] if eq_rows.size else None,
        system.d[eq_rows] if eq_rows.size else None,
        None if box is None else (box[0][columns], box[1][columns]),
        **COUPLED_STEPS,
    )
    return CoupledBlocks(columns, plan)


@dataclasses.dataclass(frozen=True)
class StagePlan:
    """How a layer enforces its rows (see "Two stages" in the design notes).

    Attributes:
        generator_system: ``P_gen``: the generator rows of ``A`` and all of ``C, d``.
        representation: generators of ``P_gen``, or None when loading (the
            saved weights hold them).
        split: which rows of ``A`` are generator rows, which are scaled, which
            the fallback moved (:class:`keras_lincon.planning.RowSplit`).
        stage: the scaled stage (box and scaled rows), or None for neither.
        center_is_weight: the stage's centre and inverse box widths are layer
            weights (a box and no scaled rows: the layout of the first release).
        apex: the shifted-apex form (every row's ``b`` an input): ``(P, q)``
            with the apex ``P b + q`` ((n, m), (n,)); else None.
        shift: right-hand sides that move the set (:func:`plan_translation`):
            ``(T, q)``, the output is the stored set's point plus ``beta T^T + q``;
            else None.
        coupled: ``scaling="project"`` on blocks with several coupled rows
            (:func:`plan_coupled`), else None.
    """

    generator_system: ConstraintSystem
    representation: VRepresentation | None
    split: RowSplit
    stage: scaling_plan.ScaledStage | None
    center_is_weight: bool
    apex: tuple | None = None
    shift: tuple | None = None
    coupled: CoupledBlocks | None = None


#: What each refusal rule means, for the fallback warning (the ``reason`` of the error).
_REFUSALS = {
    "bound": "certainly above the cap: a true lower bound on their block's vertices exceeds max_generators, "
    "so no double description was run",
    "count": "above the cap: double description ran and counted more generators than max_generators",
    "time": "double description did not finish within the time budget (the count is unknown)",
}


def _warn_moved(rows, why: str, reason: str) -> None:
    """Warns that ``rows`` moved to the scaled stage; ``reason`` is the refusal rule (bound, count or time)."""
    rows = list(rows)
    warnings.warn(
        f"rows {rows[:20]}{' ...' if len(rows) > 20 else ''} of A ({len(rows)} rows) are enforced by scaling, "
        f"not generators: their generators were refused as {_REFUSALS.get(reason, reason)} ({why}). Outputs "
        "stay exactly feasible, but are pulled towards a centre where those rows bind, so the layer fits "
        "targets near them less well. Pass fallback=False to refuse instead, or scaled_rows= to choose.",
        ScaledRowsWarning,
        stacklevel=4,
    )


def plan_stages(
    system: ConstraintSystem,
    box: tuple | None,
    output_map: OutputMap,
    construction: Construction,
    *,
    scaled_rows: tuple = (),
    rhs: RhsInputs = RhsInputs(),
    saved_moved_rows: tuple | None = None,
) -> StagePlan:
    """Decides the two stages of a layer and computes what each needs.

    Args:
        system: all rows ``(A, b, C, d)``, validated; box: validated ``(lower, upper)`` or None.
        output_map: ``scaling`` (``clip_scale`` needs a centre strictly inside the generator rows
            too) and ``box_center`` (checked) are read here.
        construction: ``method``, ``max_generators``, ``representation`` (checked) and ``fallback``
            (blocks whose generators are refused move to the scaled stage, with a ``ScaledRowsWarning``).
        scaled_rows: sorted rows of ``A`` enforced by scaling (their ``b`` is the floor with ``rhs.floor``).
        rhs: which right-hand sides are inputs (:func:`keras_lincon.planning.rhs_inputs.rhs_inputs`).
        saved_moved_rows: a saved config's rows the fallback moved (rebuilding: no double description, no
            LP), or None for a new layer.
    """
    if rhs.floor and not scaled_rows:
        return _shifted_apex(system, box, construction, saved_moved_rows is not None)
    shift = plan_translation(system, box, rhs) if rhs.translated else None  # first: it may refuse, and is cheap
    plan = _two_stages(system, box, output_map, construction, scaled_rows, rhs.floor, saved_moved_rows)
    # with b_s above a floor the scaled rows' b is per sample; the coupled projection takes the stored b only
    coupled, scaling = None, output_map.scaling
    candidate = scaling == "project" or (scaling == "auto" and _every_row(system, scaled_rows) and shift is not None)
    if candidate and plan.stage is not None and not rhs.floor:
        coupled = plan_coupled(system, box, plan.stage)
    if scaling == "auto" and not projection_pays(system, coupled, shift, scaled_rows):
        coupled = None
    return dataclasses.replace(plan, shift=shift, coupled=coupled)


def projection_pays(system: ConstraintSystem, coupled, shift, scaled_rows) -> bool:
    """Where ``scaling="auto"`` means ``"project"``: every row scaled, right-hand sides that move the set,
    and one coupled projection over every output (an optimization proxy such as DC3's QP).

    There the projection onto each sample's own set fits about 40x better (DC3's QP: mean relative
    suboptimality 1.2e-4 against 4.9e-3) for about 2x a Dense head's training step (BENCHMARKS.md,
    issue 20). Rows that share no coordinate, with a box, are the other case (:func:`separate_rows`,
    decided before the split); elsewhere ``"per_block"``.
    """
    every_row = _every_row(system, scaled_rows)
    return coupled is not None and shift is not None and every_row and coupled.columns.size == system.dim


def separate_rows(system: ConstraintSystem, box) -> tuple:
    """The rows ``scaling="auto"`` scales and projects onto when no ``scaled_rows`` are given: every row
    but bounds (rows of one nonzero), where each coordinate is in at most one of them, the box is finite
    on their support and there are no equalities (the paper's checkerboard with its box); else ``()``.

    Each such row and the box is a block the layer projects onto exactly, a few Newton steps per call
    (:mod:`keras_lincon.layers.single_row_projection`): on the paper's toy this fits about 7% better than
    ``"per_block"`` (1.08x against 1.15x the optimal projection) for about 1.8x Dense's training step;
    without a box the generators alone are exact and cost least (BENCHMARKS.md, issue 20).
    """
    if box is None or system.C.shape[0] or not system.A.shape[0]:
        return ()
    rows = np.flatnonzero(~geometry.single_variable_rows(system.A))
    support = system.A[rows] != 0
    if not rows.size or np.any(support.sum(axis=0) > 1):
        return ()
    on_rows = support.any(axis=0)
    if not (np.all(np.isfinite(box[0][on_rows])) and np.all(np.isfinite(box[1][on_rows]))):
        return ()
    return tuple(int(i) for i in rows)


def _every_row(system: ConstraintSystem, scaled_rows) -> bool:
    return 0 < system.A.shape[0] == len(scaled_rows)


def resolved_scaling(scaling: str, stages: StagePlan) -> str:
    """The treatment ``scaling`` means for this plan: ``"auto"`` becomes ``"project"`` or ``"per_block"``."""
    if scaling != "auto":
        return scaling
    return "project" if stages.coupled is not None else "per_block"


def _two_stages(system, box, output_map, construction, scaled_rows, floor: bool, saved_moved_rows) -> StagePlan:
    """:func:`plan_stages` for right-hand sides that are stored or above a floor: split, generators, scaled stage."""
    loading = saved_moved_rows is not None
    graph = blocks(system.dim, system.A, system.C)  # the row graph, decomposed once for the split and the stage
    split = _split(system, scaled_rows, saved_moved_rows or (), construction, graph, loading)
    # every row a generator row: h_to_v's row graph is this one
    gen_graph = graph if len(split.generator) == system.A.shape[0] else None
    split, gen_system, representation = _generators(system, split, construction, loading, gen_graph)
    if box is None and not split.scaled:
        return StagePlan(gen_system, representation, split, None, False)
    center, scaling = output_map.box_center, output_map.scaling
    center_is_weight = box is not None and not split.scaled and scaling in ("per_block", "global", "auto")
    if center is None and center_is_weight and representation is not None:
        lo, hi = box
        if representation.is_cone and np.all(lo < 0) and np.all(hi > 0):
            center = np.zeros(system.dim)  # the paper's choice: the apex
        else:
            center = geometry.interior_point_in_box(gen_system, lower=lo, upper=hi)
    coord_block, (a_block, eq_block) = graph
    scaled = np.array(split.scaled, dtype=int)
    stage = scaling_plan.plan_stage(
        gen_system,
        system.A[scaled].reshape(-1, system.dim),
        system.b[scaled],
        box,
        center,
        input_dependent=floor,
        strict_generator_rows=(scaling == "clip_scale"),
        find_center=not (loading and center_is_weight),
        graph=(coord_block, (a_block[np.array(split.generator, dtype=int)], eq_block, a_block[scaled])),
    )
    return StagePlan(gen_system, representation, split, stage, center_is_weight)


def _split(system, scaled_rows, moved_rows, construction: Construction, graph, loading: bool) -> RowSplit:
    """The row split; blocks that certainly exceed the cap (a true lower bound, as h_to_v refuses up front)
    move now, with a warning; a saved config's moved rows move again, silently."""
    cap = construction.max_generators
    fallback = construction.fallback and not loading
    split = split_rows(system, set(scaled_rows) | set(moved_rows), cap, fallback, graph=graph)
    if moved_rows:
        return RowSplit(split.generator, split.scaled, tuple(sorted(moved_rows)), ())
    if split.moved:
        _warn_moved(split.moved, f"at least {max(split.bounds):,} vertices, max_generators={cap}", "bound")
    return split


def _generators(system, split: RowSplit, construction: Construction, loading: bool, graph=None) -> tuple:
    """``(split, generator system, representation)``; a refused set moves every row to the scaled
    stage when ``fallback``."""
    gen_system = _rows(system, split.generator)
    try:
        return split, gen_system, _representation(gen_system, construction, loading, graph)
    except (TooManyGeneratorsError, ConstructionTimeoutError) as exc:
        if not construction.fallback or not split.generator:
            raise
        _warn_moved(split.generator, str(exc).split(". ")[0], exc.reason)
    m = system.A.shape[0]
    split = RowSplit((), tuple(range(m)), tuple(sorted(set(split.moved) | set(split.generator))), ())
    gen_system = _rows(system, ())
    return split, gen_system, _representation(gen_system, construction, loading)


def _representation(system: ConstraintSystem, construction: Construction, loading: bool, graph=None):
    """The generators of ``system``: None when loading (the saved weights hold them), the given
    representation (checked), or ``h_to_v``'s."""
    if loading:
        return None
    if construction.representation is not None:
        _check_given(construction.representation, system)
        return construction.representation
    cap = construction.max_generators
    return geometry.h_to_v(system, method=construction.method, max_generators=cap, row_graph=graph)


def _shifted_apex(system: ConstraintSystem, box, construction: Construction, loading: bool) -> StagePlan:
    """``{x : A x <= b, C x = d} = M^+ [b; d] + {z : A z <= 0, C z = 0}`` for ``M = [A; C]`` of full row rank.

    Exact for every right-hand side ``b`` (``A M^+ = [I 0]``), so ``b`` can be
    any input: the cone's generators are computed once, the apex per sample.
    """
    m, p = system.A.shape[0], system.C.shape[0]
    M = np.vstack([system.A, system.C])
    if box is not None or m == 0 or np.linalg.matrix_rank(M) < m + p:
        raise ConstraintShapeError(
            "rhs_input=True without scaled_rows makes every row's b an input (the shifted-apex form, exact for "
            "every b); it needs rows of A, linearly independent together with C, and no box (the box would "
            "need a centre that moves with b). Otherwise pass scaled_rows= (the rows whose b is an input, with "
            "b as their floor), which also takes a box."
        )
    pinv = np.linalg.pinv(M)
    cone = ConstraintSystem(system.A, np.zeros(m), system.C, np.zeros(p))
    representation = _representation(cone, construction, loading)
    split = RowSplit(tuple(range(m)), (), (), ())
    return StagePlan(cone, representation, split, None, False, apex=(pinv[:, :m], pinv[:, m:] @ system.d))


def _check_given(representation, system: ConstraintSystem) -> None:
    """A user's ``representation=`` must generate the generator rows' set."""
    if not isinstance(representation, VRepresentation) or representation.dim != system.dim:
        raise ConstraintShapeError(
            f"representation must be a VRepresentation with dimension {system.dim} (columns of A)."
        )
    check_representation(representation, system)


def _rows(system: ConstraintSystem, rows) -> ConstraintSystem:
    idx = np.array(rows, dtype=int)
    return ConstraintSystem(system.A[idx].reshape(-1, system.dim), system.b[idx], system.C, system.d)
