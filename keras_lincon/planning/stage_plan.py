"""Planning for :class:`~keras_lincon.LinearInequalityConstraint`, in numpy.

This module knows nothing of Keras. It decides which rows get generators
and which are scaled (:func:`plan_stages`), the shapes of the generator
weights (:class:`GeneratorLayout`, saved in the config) and how the layer
computes (the cost model, :func:`call_mode`). The weights' values and their
check on load are in :mod:`keras_lincon.planning.weight_arrays`.

Data flow: ``A, b -> plan_stages`` (which rows get generators, which are
scaled; ``h_to_v`` of the generator rows; the scaled stage and its centre)
``-> plan_layout -> GeneratorLayout`` (saved in the config) ``->
weights_lib.generator_arrays -> weights``.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np

from keras_lincon import geometry
from keras_lincon.errors import (
    ConstraintShapeError,
    ConstructionTimeoutError,
    DegenerateSetError,
    GeneratorMismatchError,
    ScaledRowsWarning,
    TooManyGeneratorsError,
)
from keras_lincon.geometry import ConstraintSystem, VRepresentation, check_representation
from keras_lincon.planning import scaling_plan

#: Current version of the saved layout; configs without one are version 1.
LAYOUT_VERSION = 2
#: Logit added to padding slots of smaller vertex blocks. The slots hold a
#: real vertex of their block, so even a softmax that picks them stays exact.
MASK_LOGIT = -1e9
#: Relative tolerance when checking stored (float32) generator weights.
LOAD_TOLERANCE = 1e-6
VERTEX_PATHS = ("none", "gather", "dense")
GENERATOR_PATHS = ("dense", "gather", "diagonal")
CALL_MODES = ("direct", "projected")


@dataclasses.dataclass(frozen=True)
class GeneratorLayout:
    """Shapes of the layer's generator weights; saved in the layer config.

    Attributes:
        n_rays: rays ``r``. n_lineality: lineality dimension ``l``.
        n_basis: rows ``q = n - l`` of the row-space basis.
        n_vertex_blocks: polytope blocks with more than one vertex.
        block_size: vertex slots per block (the largest block's count).
        block_width: coordinates per block (gather path) or 0.
        vertex_path: ``"none"``, ``"gather"`` (disjoint blocks, O(n)) or ``"dense"``.
        generator_path: ``"gather"`` when every lineality vector and ray is a
            multiple of a unit vector, each on its own coordinate (e.g. the
            cone ``x >= 0``): in ``direct`` mode the product with ``[L; R]``
            is then a gather, O(n); ``"diagonal"`` when moreover every
            coordinate has one and the lineality's come first (the
            coefficients times a scale, no gather); else ``"dense"``.
        has_offset: whether a constant offset point is added.
        version: layout version (1: previous release, zero padding slots).
    """

    n_rays: int
    n_lineality: int
    n_basis: int
    n_vertex_blocks: int = 0
    block_size: int = 0
    block_width: int = 0
    vertex_path: str = "none"
    has_offset: bool = True
    generator_path: str = "dense"  # after the fields of the first release
    version: int = LAYOUT_VERSION

    @classmethod
    def from_config(cls, config: dict) -> GeneratorLayout:
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in dict(config).items() if k in known}
        values.setdefault("version", 1)
        layout = cls(**values)
        if layout.vertex_path not in VERTEX_PATHS or layout.generator_path not in GENERATOR_PATHS:
            raise GeneratorMismatchError(
                f"unknown vertex_path {layout.vertex_path!r} or generator_path {layout.generator_path!r} "
                "in the layer layout (a config from a newer keras_lincon?)."
            )
        return layout

    def to_config(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class CoupledBlocks:
    """The blocks ``scaling="project"`` projects onto by :mod:`keras_lincon.planning.coupled_projection`.

    Attributes:
        columns: (u,) the coordinates of those blocks, sorted.
        plan: the projection onto their rows, equalities and box, restricted to ``columns``.
    """

    columns: np.ndarray
    plan: object  # coupled_projection.ProjectionPlan (imported lazily: it is only needed with "project")


#: ADMM steps, active-set steps and gradient steps of the coupled projection in the layer: matrix
#: products only (XLA on the CPU runs batched solves as slow loops); see BENCHMARKS.md, issue 20.
COUPLED_STEPS = {"iterations": 50, "polish": 0, "gradient_iterations": 20}


def plan_coupled(system: ConstraintSystem, box, stage: scaling_plan.ScaledStage) -> CoupledBlocks | None:
    """The exact projection for the blocks the single-row bisection does not cover (several coupled
    rows, or equalities), or None when there are none.

    The projection of a point onto a product of blocks is the product of the
    blocks' projections, so one plan takes every such block at once. It
    projects onto all of the block's constraints (generator and scaled rows,
    equalities, box), so its output is exact whatever the generator stage gave.
    """
    from keras_lincon.planning import coupled_projection

    eligible = scaling_plan.single_row_blocks(stage)[0]
    columns = np.flatnonzero(np.isin(stage.coord_block, np.flatnonzero(~eligible)))
    if not columns.size:
        return None
    inside = np.zeros(system.dim, dtype=bool)
    inside[columns] = True
    rows, eq_rows = (np.flatnonzero(np.any(M[:, inside] != 0, axis=1)) for M in (system.A, system.C))
    if np.any(system.A[rows][:, ~inside]) or np.any(system.C[eq_rows][:, ~inside]):
        raise ConstraintShapeError("internal: a block's rows reach outside its coordinates.")
    plan = coupled_projection.plan_projection(
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
            the fallback moved (:class:`keras_lincon.planning.scaling_plan.RowSplit`).
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
    split: scaling_plan.RowSplit
    stage: scaling_plan.ScaledStage | None
    center_is_weight: bool
    apex: tuple | None = None
    shift: tuple | None = None
    coupled: CoupledBlocks | None = None


#: The string values of ``rhs_input`` (besides ``False``/``True`` and a dict; see :func:`rhs_inputs`).
RHS_PARTS = ("b", "d")
_RHS_CHOICES = (
    "False (none), 'b' (b of every row of A), 'd' (d of every row of C), ('b', 'd') (both, two inputs), "
    "{'b': rows, 'd': True/False} (b of chosen rows: indices, a boolean mask or 'all'), or True "
    "(its first meaning: b of scaled_rows above their floor, else b of every row)"
)


@dataclasses.dataclass(frozen=True)
class RhsInputs:
    """Which right-hand sides a layer takes as inputs (the parsed ``rhs_input``).

    Attributes:
        floor: the first ``rhs_input=True`` (``b`` of ``scaled_rows``
            exact above their floor, or the shifted-apex form).
        b_rows: rows of ``A`` whose ``b`` is an input, in input order.
        d: whether the equalities' ``d`` (every row of ``C``) is an input.
    """

    floor: bool = False
    b_rows: tuple = ()
    d: bool = False

    @property
    def translated(self) -> bool:
        """Right-hand sides that move the set rigidly (exact for every value, no floor)."""
        return bool(self.b_rows) or self.d

    def part_sizes(self, p: int, floor_rows: int) -> tuple:
        """Last dimension of each right-hand-side input, in call order (``layer([h, *parts])``)."""
        if self.floor:
            return (floor_rows,)
        return ((len(self.b_rows),) if self.b_rows else ()) + ((p,) if self.d else ())

    def to_config(self, m: int):
        """JSON-safe value of ``rhs_input`` that parses back to this object (``m``: rows of ``A``)."""
        if not self.translated:
            return self.floor
        every = self.b_rows == tuple(range(m))
        return {"b": "all" if every else list(self.b_rows) if self.b_rows else None, "d": self.d}


def rhs_inputs(value, m: int, p: int) -> RhsInputs:
    """Parses ``rhs_input`` for a layer with ``m`` rows in ``A`` and ``p`` in ``C``.

    Accepts ``False``/``None``, ``True``, ``"b"``, ``"d"``, a sequence of those
    two strings, or ``{"b": rows, "d": bool}``; anything else raises an error
    that lists the choices.
    """
    given = value
    if value is None or value is False:
        return RhsInputs()
    if value is True or (isinstance(value, np.bool_) and bool(value)):
        return RhsInputs(floor=True)
    if isinstance(value, str):
        value = (value,)
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
        unknown = [v for v in value if v not in RHS_PARTS]
        if unknown or len(set(value)) != len(value):
            raise ConstraintShapeError(f"rhs_input={given!r} is not defined; the choices are {_RHS_CHOICES}.")
        value = {"b": "all" if "b" in value else None, "d": "d" in value}
    if not isinstance(value, dict) or set(value) - set(RHS_PARTS) or not value:
        raise ConstraintShapeError(f"rhs_input={given!r} is not defined; the choices are {_RHS_CHOICES}.")
    b_value, d_value = value.get("b"), value.get("d", False)
    if isinstance(b_value, (bool, np.bool_)):  # {"b": True}: every row
        b_value = "all" if b_value else None
    if not isinstance(d_value, (bool, np.bool_)):
        raise ConstraintShapeError(f"rhs_input's 'd' must be True or False; got {d_value!r}.")
    b_rows = row_indices(b_value, m, what="rhs_input's 'b'") if b_value is not None else ()
    if (b_value is not None and not b_rows) or (bool(d_value) and not p):
        missing = "rows of A" if b_value is not None and not b_rows else "equality rows C"
        raise ConstraintShapeError(f"rhs_input={value!r} asks for right-hand sides of {missing}, but there are none.")
    if not b_rows and not d_value:
        raise ConstraintShapeError(f"rhs_input={value!r} names no right-hand side; the choices are {_RHS_CHOICES}.")
    return RhsInputs(b_rows=b_rows, d=bool(d_value))


def plan_translation(system: ConstraintSystem, box, rhs: RhsInputs) -> tuple:
    """``(T, q)`` with ``x + T beta + q`` in the set of right-hand sides ``beta`` whenever ``x`` is
    in the set of the stored ones (``beta = [b of rhs.b_rows; d]``, (k,); ``T`` (n, k), ``q`` (n,)).

    ``T`` moves the input rows by exactly their change and leaves every other
    row, equality and bounded coordinate where it is (``A T = [E_b; 0]``,
    ``C T = [0 | I]``, ``T`` zero on the box's coordinates); ``q = -T beta_0``
    for the stored ``beta_0``. Such a ``T`` exists when those rows are
    linearly independent of each other and of the fixed ones; otherwise the
    set changes shape with ``beta`` and no translation is exact.

    Raises:
        ConstraintShapeError: no exact translation exists (with the fix).
    """
    n, m, p = system.dim, system.A.shape[0], system.C.shape[0]
    bounded = np.zeros(n, dtype=bool) if box is None else np.isfinite(box[0]) | np.isfinite(box[1])
    K = np.vstack([system.A, system.C, np.eye(n)[bounded]])
    k = len(rhs.b_rows) + (p if rhs.d else 0)
    R = np.zeros((K.shape[0], k))
    R[list(rhs.b_rows), np.arange(len(rhs.b_rows))] = 1.0
    if rhs.d:
        R[m + np.arange(p), len(rhs.b_rows) + np.arange(p)] = 1.0
    norms = np.maximum(np.linalg.norm(K, axis=1), 1e-300)  # equilibrated rows: scale-free residuals
    T = np.linalg.lstsq(K / norms[:, None], R / norms[:, None], rcond=None)[0]
    # one step of iterative refinement: K T = R to rounding, not to rounding times cond(K) (float64 outputs)
    T = T + np.linalg.lstsq(K / norms[:, None], (R - K @ T) / norms[:, None], rcond=None)[0]
    residual = np.abs(K @ T - R) / norms[:, None]
    if not np.all(residual <= 1e-9 * np.maximum(1.0, np.abs(T).max(initial=0.0))):
        bad = np.flatnonzero(residual.max(axis=1) > 1e-9)
        names = [f"A[{i}]" if i < m else f"C[{i - m}]" if i < m + p else "the box" for i in bad[:8]]
        raise ConstraintShapeError(
            f"rhs_input: these right-hand sides cannot move the set without changing its shape (rows "
            f"{', '.join(dict.fromkeys(names))} depend on each other, or a box bounds the coordinates they move), "
            "so no output map is exact for every value. Make the input rows (and C) linearly independent of each "
            "other and of the fixed rows, or pass rhs_input=True with scaled_rows= (exact for b_s above a floor)."
        )
    beta0 = np.concatenate([system.b[list(rhs.b_rows)], system.d if rhs.d else np.zeros(0)])
    return T, -T @ beta0


def row_indices(scaled_rows, m: int, what: str = "scaled_rows") -> tuple:
    """Sorted row indices of ``A`` from indices, an (m,) boolean mask or ``"all"``."""
    if scaled_rows is None:
        return ()
    if isinstance(scaled_rows, str):
        if scaled_rows != "all":
            raise ConstraintShapeError(f"{what} must be row indices, a boolean mask or 'all'; got {scaled_rows!r}.")
        return tuple(range(m))
    arr = np.asarray(scaled_rows)
    if arr.dtype == bool:
        if arr.shape != (m,):
            raise ConstraintShapeError(f"a boolean {what} mask needs shape ({m},) (one per row of A).")
        return tuple(np.flatnonzero(arr).tolist())
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ConstraintShapeError(f"{what} must be row indices of A (integers) or a boolean mask.")
    rows = sorted(set(arr.reshape(-1).astype(int).tolist()))
    if rows and (rows[0] < 0 or rows[-1] >= m):
        raise ConstraintShapeError(f"{what} must be indices of rows of A (0..{m - 1}); got {rows}.")
    return tuple(rows)


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
    box,
    center=None,
    *,
    scaled_rows=(),
    moved_rows=(),
    rhs: RhsInputs = RhsInputs(),
    scaling: str = "per_block",
    fallback: bool = True,
    method: str = "auto",
    max_generators: int = geometry.DEFAULT_MAX_GENERATORS,
    representation: VRepresentation | None = None,
    loading: bool = False,
) -> StagePlan:
    """Decides the two stages of a layer and computes what each needs.

    Args:
        system: all rows ``(A, b, C, d)``; box: ``(lower, upper)`` or None.
        center: optional (n,) centre of the scaled stage (checked).
        scaled_rows: row indices of ``A`` enforced by scaling (their ``b``
            is the floor when ``rhs.floor``); moved_rows: rows a saved config
            says the fallback moved.
        rhs: which right-hand sides are inputs (:func:`rhs_inputs`).
        scaling: the layer's treatment (``clip_scale`` needs a centre strictly
            inside the generator rows too).
        fallback: move blocks whose double description would be refused (or
            fails) to the scaled stage, with a :class:`ScaledRowsWarning`.
        method, max_generators: as for :func:`keras_lincon.h_to_v`.
        representation: precomputed generators of ``P_gen`` (checked).
        loading: rebuilt from a config: no double description, no LP.
    """
    if rhs.floor and not scaled_rows:
        return _shifted_apex(system, box, method, max_generators, representation, loading)
    shift = plan_translation(system, box, rhs) if rhs.translated else None  # first: it may refuse, and is cheap
    options = dict(scaling=scaling, fallback=fallback, method=method, max_generators=max_generators)
    plan = _two_stages(
        system,
        box,
        center,
        scaled_rows,
        moved_rows,
        rhs.floor,
        representation=representation,
        loading=loading,
        **options,
    )
    # with b_s above a floor the scaled rows' b is per sample; the coupled projection takes the stored b only
    coupled = None
    if scaling == "project" and plan.stage is not None and not rhs.floor:
        coupled = plan_coupled(system, box, plan.stage)
    return dataclasses.replace(plan, shift=shift, coupled=coupled)


def _two_stages(
    system, box, center, scaled_rows, moved_rows, rhs_input, *, scaling, fallback, method, max_generators,
    representation, loading,
) -> StagePlan:  # fmt: skip
    """:func:`plan_stages` for right-hand sides that are stored or above a floor."""
    n, m = system.dim, system.A.shape[0]
    # Blocks that certainly exceed the cap (a true lower bound, as h_to_v refuses up front) move now.
    split = scaling_plan.split_rows(
        system, set(scaled_rows) | set(moved_rows), max_generators, fallback and not loading
    )
    if moved_rows:
        split = scaling_plan.RowSplit(split.generator, split.scaled, tuple(sorted(moved_rows)), ())
    elif split.moved:
        _warn_moved(split.moved, f"at least {max(split.bounds):,} vertices, max_generators={max_generators}", "bound")
    gen_system = _rows(system, split.generator)
    if loading:
        representation = None
    elif representation is not None:
        _check_given(representation, gen_system)
    else:
        try:
            representation = geometry.h_to_v(*_arrays(gen_system), method=method, max_generators=max_generators)
        except (TooManyGeneratorsError, ConstructionTimeoutError) as exc:
            if not fallback or not split.generator:
                raise
            _warn_moved(split.generator, str(exc).split(". ")[0], exc.reason)
            split = scaling_plan.RowSplit(
                (), tuple(range(m)), tuple(sorted(set(split.moved) | set(split.generator))), ()
            )
            gen_system = _rows(system, ())
            representation = geometry.h_to_v(*_arrays(gen_system), method=method, max_generators=max_generators)
    if box is None and not split.scaled:
        return StagePlan(gen_system, representation, split, None, False)
    center_is_weight = box is not None and not split.scaled and scaling in ("per_block", "global")
    if center is None and center_is_weight and representation is not None:
        lo, hi = box
        if representation.is_cone and np.all(lo < 0) and np.all(hi > 0):
            center = np.zeros(n)  # the paper's choice: the apex
        else:
            center = geometry.interior_point_in_box(*_arrays(gen_system), lower=lo, upper=hi)
    scaled = np.array(split.scaled, dtype=int)
    stage = scaling_plan.plan(
        *_arrays(gen_system),
        scaled_rows=system.A[scaled] if scaled.size else None,
        scaled_rhs=system.b[scaled] if scaled.size else None,
        box=box,
        center=center,
        input_dependent=rhs_input,
        strict_generator_rows=(scaling == "clip_scale"),
        find_center=not (loading and center_is_weight),
    )
    return StagePlan(gen_system, representation, split, stage, center_is_weight)


def _shifted_apex(system: ConstraintSystem, box, method, max_generators, representation, loading) -> StagePlan:
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
    if loading:
        representation = None
    elif representation is not None:
        _check_given(representation, cone)
    else:
        representation = geometry.h_to_v(*_arrays(cone), method=method, max_generators=max_generators)
    split = scaling_plan.RowSplit(tuple(range(m)), (), (), ())
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


def _arrays(system: ConstraintSystem) -> tuple:
    return system.A, system.b, (system.C if system.C.size else None), (system.d if system.C.size else None)


def plan_layout(rep: VRepresentation) -> GeneratorLayout:
    """The layout for ``rep`` (cheap: no ``n x n`` work)."""
    polytopes = [v for v in rep.block_vertices() if len(v) > 1]
    offset = offset_point(rep)
    if not (rep.rays.shape[0] or rep.lineality_dim or polytopes):
        raise DegenerateSetError(
            "the representation is a single point: every output would be the "
            "same constant, so there is nothing to learn."
        )
    layout = dict(
        n_rays=int(rep.rays.shape[0]),
        n_lineality=int(rep.lineality_dim),
        n_basis=int(rep.dim - rep.lineality_dim),
        has_offset=bool(np.any(offset)),
        generator_path=generator_path(rep),
    )
    if polytopes:
        supports = [vertex_support(v) for v in polytopes]
        disjoint = sum(len(s) for s in supports) == len(np.unique(np.concatenate(supports)))
        layout.update(
            n_vertex_blocks=len(polytopes),
            block_size=max(len(v) for v in polytopes),
            vertex_path="gather" if disjoint else "dense",
            block_width=max(max(len(s) for s in supports), 1) if disjoint else 0,
        )
    return GeneratorLayout(**layout)


def coordinate_generators(rep: VRepresentation) -> tuple | None:
    """``(columns, scales)``, (l + r,) each, when every row of ``[L; R]`` is
    ``scale * e_column`` with distinct columns; else None.

    The rest of a row may be rounding of ``h_to_v`` (it would vanish in
    float32): its norm may be up to ``1e-12 sqrt(n)`` of the row's largest
    entry. The lineality's unit vectors are never formed (a box alone on
    n = 20,000 outputs has 20,000), and the other rows take three passes and
    no copy.
    """
    unit_columns, rest = rep.lineality_parts()
    columns, scales = [unit_columns], [np.ones(unit_columns.size)]
    for gens in (rest, rep.rays):
        if not gens.shape[0]:
            continue
        rows = np.arange(gens.shape[0])
        top, bottom = np.argmax(gens, axis=1), np.argmin(gens, axis=1)
        column = np.where(np.abs(gens[rows, top]) >= np.abs(gens[rows, bottom]), top, bottom)
        peak = gens[rows, column]
        off_peak = np.einsum("ij,ij->i", gens, gens) - peak**2  # squared norm of the rest of the row
        if np.any(peak == 0) or np.any(off_peak > gens.shape[1] * (1e-12 * peak) ** 2):
            return None
        columns.append(column)
        scales.append(peak)
    columns = np.concatenate(columns)
    if not columns.size:
        return None
    if len(np.unique(columns)) != len(columns):
        return None
    return columns, np.concatenate(scales)


def generator_path(rep: VRepresentation) -> str:
    """``"diagonal"``, ``"gather"`` or ``"dense"`` (see :class:`GeneratorLayout`)."""
    found = coordinate_generators(rep)
    if found is None:
        return "dense"
    return "diagonal" if diagonal_generators(rep, found) is not None else "gather"


def diagonal_generators(rep: VRepresentation, found: tuple | None = None) -> np.ndarray | None:
    """(n,) scales ``s`` when ``[L; R]``, reordered by coordinate, is ``diag(s)``
    with the lineality's coordinates first (``0 .. l-1``); else None.

    In that order coefficient ``j`` drives coordinate ``j`` alone, so the
    layer's product with the generators is ``coefficients * s``. ``found``:
    :func:`coordinate_generators`'s result, if already computed.
    """
    found = coordinate_generators(rep) if found is None else found
    if found is None or len(found[0]) != rep.dim:
        return None
    columns, scales = found
    if not np.array_equal(np.sort(columns[: rep.lineality_dim]), np.arange(rep.lineality_dim)):
        return None
    diagonal = np.empty(rep.dim)
    diagonal[columns] = scales
    return diagonal


def call_mode(layout: GeneratorLayout, input_dim: int, units: int) -> str:
    """How the lineality part is computed, whichever costs fewer flops.

    ``direct``: coefficients times ``[L; R]``: ``k (l + r) + (l + r) n`` per
    sample. ``projected``: a full ``k x n`` map ``z`` minus its row-space
    component, rays written in the row-space basis ``Q``:
    ``z + (nonneg(s) (R Q^T) - z Q^T) Q``: ``k (n + r) + 2 n q + r q``.
    Projecting the output (not the kernel) keeps rounding relative to ``||x||``.
    """
    n, n_lin, n_rays, q = units, layout.n_lineality, layout.n_rays, layout.n_basis
    direct = input_dim * (n_lin + n_rays) + (n if layout.generator_path != "dense" else (n_lin + n_rays) * n)
    projected = input_dim * (n + n_rays) + 2 * n * q + n_rays * q
    return "direct" if direct <= projected else "projected"


def offset_point(rep: VRepresentation) -> np.ndarray:
    return sum((v[0] for v in rep.block_vertices() if len(v) == 1), np.zeros(rep.dim))


def vertex_support(vertices: np.ndarray) -> np.ndarray:
    return np.flatnonzero(np.any(np.abs(vertices) > 0, axis=0))
