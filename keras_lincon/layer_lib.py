"""Planning for :class:`~keras_lincon.LinearInequalityConstraint`, in numpy.

This module knows nothing of Keras. It turns a V-representation into the
arrays the layer stores as non-trainable weights, decides how the layer
computes (the cost model), and checks stored arrays against the constraints
(used whenever weights are loaded or set).

Data flow: ``A, b -> plan_stages`` (which rows get generators, which are
scaled; ``h_to_v`` of the generator rows; the scaled stage and its centre)
``-> plan_layout -> GeneratorLayout`` (saved in the config) ``->
generator_arrays -> weights``.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np

from keras_lincon import double_description, polyhedra, scaling_lib
from keras_lincon.errors import (
    ConstraintShapeError,
    ConstructionTimeoutError,
    DegenerateSetError,
    GeneratorMismatchError,
    RepresentationCheckError,
    ScaledRowsWarning,
    TooManyGeneratorsError,
)
from keras_lincon.representation import VRepresentation, check_representation
from keras_lincon.system import ConstraintSystem, max_violation

#: Current version of the saved layout; configs without one are version 1.
LAYOUT_VERSION = 2
#: Logit added to padding slots of smaller vertex blocks. The slots hold a
#: real vertex of their block, so even a softmax that picks them stays exact.
MASK_LOGIT = -1e9
#: Relative tolerance when checking stored (float32) generator weights.
LOAD_TOLERANCE = 1e-6
VERTEX_PATHS = ("none", "gather", "dense")
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
    version: int = LAYOUT_VERSION

    @classmethod
    def from_config(cls, config: dict) -> GeneratorLayout:
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in dict(config).items() if k in known}
        values.setdefault("version", 1)
        layout = cls(**values)
        if layout.vertex_path not in VERTEX_PATHS:
            raise GeneratorMismatchError(f"unknown vertex_path {layout.vertex_path!r} in the layer layout.")
        return layout

    def to_config(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class StagePlan:
    """How a layer enforces its rows (see "Two stages" in the design notes).

    Attributes:
        generator_system: ``P_gen``: the generator rows of ``A`` and all of ``C, d``.
        representation: generators of ``P_gen``, or None when loading (the
            saved weights hold them).
        split: which rows of ``A`` are generator rows, which are scaled, which
            the fallback moved (:class:`keras_lincon.scaling_lib.RowSplit`).
        stage: the scaled stage (box and scaled rows), or None for neither.
        center_is_weight: the stage's centre and inverse box widths are layer
            weights (a box and no scaled rows: the layout of the first release).
        apex: the shifted-apex form (every row's ``b`` an input): ``(P, q)``
            with the apex ``P b + q`` ((n, m), (n,)); else None.
    """

    generator_system: ConstraintSystem
    representation: VRepresentation | None
    split: scaling_lib.RowSplit
    stage: scaling_lib.ScaledStage | None
    center_is_weight: bool
    apex: tuple | None = None


def row_indices(scaled_rows, m: int) -> tuple:
    """Sorted row indices of ``A`` from indices or an (m,) boolean mask."""
    if scaled_rows is None:
        return ()
    arr = np.asarray(scaled_rows)
    if arr.dtype == bool:
        if arr.shape != (m,):
            raise ConstraintShapeError(f"a boolean scaled_rows mask needs shape ({m},) (one per row of A).")
        return tuple(np.flatnonzero(arr).tolist())
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ConstraintShapeError("scaled_rows must be row indices of A (integers) or a boolean mask.")
    return tuple(sorted(set(arr.reshape(-1).astype(int).tolist())))


def _warn_moved(rows, why: str) -> None:
    rows = list(rows)
    warnings.warn(
        f"rows {rows[:20]}{' ...' if len(rows) > 20 else ''} of A ({len(rows)} rows) are enforced by scaling, "
        f"not generators: {why}. Outputs stay exactly feasible, but are pulled towards a centre where those "
        "rows bind, so the layer fits targets near them less well. Pass fallback=False to refuse instead, "
        "or scaled_rows= to choose.",
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
    rhs_input: bool = False,
    scaling: str = "per_block",
    fallback: bool = True,
    method: str = "auto",
    max_generators: int = polyhedra.DEFAULT_MAX_GENERATORS,
    representation: VRepresentation | None = None,
    loading: bool = False,
) -> StagePlan:
    """Decides the two stages of a layer and computes what each needs.

    Args:
        system: all rows ``(A, b, C, d)``; box: ``(lower, upper)`` or None.
        center: optional (n,) centre of the scaled stage (checked).
        scaled_rows: row indices of ``A`` enforced by scaling (their ``b``
            is the floor when ``rhs_input``); moved_rows: rows a saved config
            says the fallback moved.
        scaling: the layer's treatment (``clip_scale`` needs a centre strictly
            inside the generator rows too).
        fallback: move blocks whose double description would be refused (or
            fails) to the scaled stage, with a :class:`ScaledRowsWarning`.
        method, max_generators: as for :func:`keras_lincon.h_to_v`.
        representation: precomputed generators of ``P_gen`` (checked).
        loading: rebuilt from a config: no double description, no LP.
    """
    n, m = system.dim, system.A.shape[0]
    if rhs_input and not scaled_rows:
        return _shifted_apex(system, box, method, max_generators, representation, loading)
    limit = double_description.REFUSE_FACTOR * max_generators  # h_to_v refuses above this without enumerating
    split = scaling_lib.split_rows(system, set(scaled_rows) | set(moved_rows), limit, fallback and not loading)
    if moved_rows:
        split = scaling_lib.RowSplit(split.generator, split.scaled, tuple(sorted(moved_rows)), ())
    elif split.moved:
        _warn_moved(
            split.moved, f"their block's double description could have up to {max(split.bounds):.3g} generators"
        )
    gen_system = _rows(system, split.generator)
    if loading:
        representation = None
    elif representation is not None:
        _check_given(representation, gen_system)
    else:
        try:
            representation = polyhedra.h_to_v(*_arrays(gen_system), method=method, max_generators=max_generators)
        except (TooManyGeneratorsError, ConstructionTimeoutError) as exc:
            if not fallback or not split.generator:
                raise
            _warn_moved(split.generator, f"their double description was refused ({exc})")
            split = scaling_lib.RowSplit(
                (), tuple(range(m)), tuple(sorted(set(split.moved) | set(split.generator))), ()
            )
            gen_system = _rows(system, ())
            representation = polyhedra.h_to_v(*_arrays(gen_system), method=method, max_generators=max_generators)
    if box is None and not split.scaled:
        return StagePlan(gen_system, representation, split, None, False)
    center_is_weight = box is not None and not split.scaled and scaling in ("per_block", "global")
    if center is None and center_is_weight and representation is not None:
        lo, hi = box
        if representation.is_cone and np.all(lo < 0) and np.all(hi > 0):
            center = np.zeros(n)  # the paper's choice: the apex
        else:
            center = polyhedra.interior_point_in_box(*_arrays(gen_system), lower=lo, upper=hi)
    scaled = np.array(split.scaled, dtype=int)
    stage = scaling_lib.plan(
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
        representation = polyhedra.h_to_v(*_arrays(cone), method=method, max_generators=max_generators)
    split = scaling_lib.RowSplit(tuple(range(m)), (), (), ())
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
    offset = _offset(rep)
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
    )
    if polytopes:
        supports = [_support(v) for v in polytopes]
        disjoint = sum(len(s) for s in supports) == len(np.unique(np.concatenate(supports)))
        layout.update(
            n_vertex_blocks=len(polytopes),
            block_size=max(len(v) for v in polytopes),
            vertex_path="gather" if disjoint else "dense",
            block_width=max(max(len(s) for s in supports), 1) if disjoint else 0,
        )
    return GeneratorLayout(**layout)


def call_mode(layout: GeneratorLayout, input_dim: int, units: int) -> str:
    """How the lineality part is computed, whichever costs fewer flops.

    ``direct``: coefficients times ``[L; R]``: ``k (l + r) + (l + r) n`` per
    sample. ``projected``: a full ``k x n`` map ``z`` minus its row-space
    component, rays written in the row-space basis ``Q``:
    ``z + (nonneg(s) (R Q^T) - z Q^T) Q``: ``k (n + r) + 2 n q + r q``.
    Projecting the output (not the kernel) keeps rounding relative to ``||x||``.
    """
    n, n_lin, n_rays, q = units, layout.n_lineality, layout.n_rays, layout.n_basis
    direct = input_dim * (n_lin + n_rays) + (n_lin + n_rays) * n
    projected = input_dim * (n + n_rays) + 2 * n * q + n_rays * q
    return "direct" if direct <= projected else "projected"


def weight_specs(layout: GeneratorLayout, mode: str, units: int, input_dim: int, *, box: bool, mix_blocks: int = 0):
    """The layer's weights in creation order (the order saved files rely on).

    Returns:
        list of ``(name, shape, kind)``; ``kind`` is ``"kernel"``, ``"bias"``
        (trainable), ``"fixed"`` or ``"index"`` (non-trainable float / int32).
    """
    n, n_gen = units, layout.n_lineality + layout.n_rays
    n_logits = layout.n_vertex_blocks * layout.block_size

    def affine(prefix, width):
        return [(f"{prefix}kernel", (input_dim, width), "kernel"), (f"{prefix}bias", (width,), "bias")]

    if mode == "direct":  # one matmul for lineality, ray and vertex coefficients
        specs = affine("", n_gen + n_logits) + ([("generators", (n_gen, n), "fixed")] if n_gen else [])
    else:
        specs = affine("", n) + (affine("ray_vertex_", layout.n_rays + n_logits) if layout.n_rays + n_logits else [])
        if layout.n_basis:
            specs.append(("complement_basis", (layout.n_basis, n), "fixed"))
        if layout.n_rays and layout.n_basis:
            specs.append(("ray_coordinates", (layout.n_rays, layout.n_basis), "fixed"))
    specs.append(("offset", (n,), "fixed"))
    nb, smax = layout.n_vertex_blocks, layout.block_size
    if layout.vertex_path != "none":
        specs.append(("vertex_mask", (nb, smax), "fixed"))
    if layout.vertex_path == "gather":
        specs += [("vertex_local", (nb, smax, layout.block_width), "fixed"), ("vertex_gather", (n,), "index")]
    elif layout.vertex_path == "dense":
        specs.append(("vertex_dense", (n_logits, n), "fixed"))
    if box:
        specs += [(name, (n,), "fixed") for name in ("box_center", "box_inv_upper", "box_inv_lower")]
    if mix_blocks:
        specs += affine("mix_", mix_blocks)
    return specs


def generator_arrays(rep: VRepresentation, layout: GeneratorLayout, mode: str) -> dict:
    """Numpy values of the generator weights, by weight name."""
    n = rep.dim
    arrays = {"offset": _offset(rep)}
    if mode == "direct":
        if layout.n_lineality + layout.n_rays:
            arrays["generators"] = np.vstack([rep.lineality, rep.rays])
    else:
        # Without lineality the identity is a basis: z - z I I cancels exactly.
        basis = rep.row_space if layout.n_lineality else np.eye(n)
        if layout.n_basis:
            arrays["complement_basis"] = basis
            if layout.n_rays:
                arrays["ray_coordinates"] = rep.rays @ basis.T
    polytopes = [v for v in rep.block_vertices() if len(v) > 1]
    if polytopes:
        nb, smax = layout.n_vertex_blocks, layout.block_size
        mask = np.full((nb, smax), MASK_LOGIT)
        for j, verts in enumerate(polytopes):
            mask[j, : len(verts)] = 0.0
        # Padding slots repeat the block's first vertex (see MASK_LOGIT).
        padded = [np.vstack([v, np.repeat(v[:1], smax - len(v), axis=0)]) for v in polytopes]
        if layout.vertex_path == "gather":
            width = layout.block_width
            local = np.zeros((nb, smax, width))
            gather = np.full(n, nb * width)  # the zero slot
            for j, verts in enumerate(padded):
                sup = _support(polytopes[j])
                local[j, :, : len(sup)] = verts[:, sup]
                gather[sup] = j * width + np.arange(len(sup))
            arrays.update(vertex_local=local, vertex_gather=gather.astype(np.int32))
        else:
            arrays["vertex_dense"] = np.stack(padded).reshape(nb * smax, n)
        arrays["vertex_mask"] = mask
    return arrays


def box_arrays(center: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> dict:
    """Weights of the box rescaling towards ``center`` (n,)."""
    with np.errstate(divide="ignore"):
        return {
            "box_center": center,
            "box_inv_upper": np.where(np.isfinite(upper), 1.0 / (upper - center), 0.0),
            "box_inv_lower": np.where(np.isfinite(lower), 1.0 / (lower - center), 0.0),
        }


def repair_padding(weights: dict, layout: GeneratorLayout) -> dict:
    """Fills zero padding slots written by layout version 1 with the block's
    first vertex (outputs are unchanged except where the old padding leaked)."""
    if layout.vertex_path == "none" or layout.version >= 2:
        return weights
    weights = dict(weights)
    padding = weights["vertex_mask"] < MASK_LOGIT / 10
    nb, smax = layout.n_vertex_blocks, layout.block_size
    key = "vertex_local" if layout.vertex_path == "gather" else "vertex_dense"
    values = np.array(weights[key]).reshape(nb, smax, -1)
    for j, s in zip(*np.nonzero(padding), strict=False):
        values[j, s] = values[j, 0]
    weights[key] = values.reshape(np.shape(weights[key]))
    return weights


def check_weights(
    weights: dict,
    layout: GeneratorLayout,
    mode: str,
    system: ConstraintSystem,
    box: tuple | None = None,
    tol: float = LOAD_TOLERANCE,
) -> None:
    """Raises GeneratorMismatchError unless stored weights generate only
    points of ``system`` (and the box arrays match ``box``).

    Args:
        weights: weight name -> numpy array, as stored by the layer.
        layout, mode: how the layer uses them.
        system: the constraints of the layer's config.
        box: ``(lower, upper)`` (n,) arrays or None.
        tol: relative tolerance (float32 weights).
    """
    n = system.dim
    w = {k: np.asarray(v, dtype=np.float64) for k, v in weights.items()}
    if not all(np.all(np.isfinite(v)) for v in w.values()):
        raise GeneratorMismatchError(
            "generator weights contain NaN or infinity: the layer was rebuilt from its config "
            "without its weights (e.g. keras.models.clone_model) or the weights are corrupt. "
            "Load the matching weights, or construct the layer again from A, b."
        )
    lineality, row_space, rays = None, None, np.zeros((0, n))
    if mode == "direct":
        gens = w.get("generators", np.zeros((0, n)))
        lineality, rays = gens[: layout.n_lineality], gens[layout.n_lineality :]
    else:
        row_space = w.get("complement_basis", np.zeros((0, n)))
        if row_space.size and np.max(np.abs(row_space @ row_space.T - np.eye(len(row_space)))) > 1e-5:
            raise GeneratorMismatchError("the stored row-space basis is not orthonormal: the weights are corrupt.")
        if "ray_coordinates" in w:
            rays = w["ray_coordinates"] @ row_space
    blocks = [w["offset"][None]] + _stored_vertex_blocks(w, layout, n)
    vertices = np.vstack(blocks)
    vertex_blocks = np.concatenate([np.full(len(b), j) for j, b in enumerate(blocks)])
    rep = VRepresentation(vertices, rays, lineality, vertex_blocks, row_space=row_space)
    try:
        check_representation(rep, system, tol)
    except RepresentationCheckError as exc:
        worst = ", ".join(f"{kind}s by {value:.3g}" for kind, value in exc.violations.items())
        raise GeneratorMismatchError(
            f"the layer's generator weights do not generate points of its constraints ({worst}, "
            f"relative; tolerance {tol:g}). They belong to another constraint set or box, or were "
            "edited. Load the weights saved with this layer, or build a new layer from the intended A, b."
        ) from None
    if box is not None:
        _check_box_weights(w, system, box, tol)


def _stored_vertex_blocks(w: dict, layout: GeneratorLayout, n: int) -> list:
    if layout.vertex_path == "none":
        return []
    nb, smax = layout.n_vertex_blocks, layout.block_size
    if layout.vertex_path == "dense":
        return list(w["vertex_dense"].reshape(nb, smax, n))
    width = layout.block_width
    gather = w["vertex_gather"].astype(np.int64)
    if gather.shape != (n,) or np.any(gather < 0) or np.any(gather > nb * width):
        raise GeneratorMismatchError("vertex_gather indices are out of range: the weights are corrupt.")
    flat = np.zeros((nb, smax, nb * width + 1))
    local = w["vertex_local"].reshape(nb, smax, width)
    for j in range(nb):
        flat[j, :, j * width : (j + 1) * width] = local[j]
    return list(flat[:, :, gather])


def _check_box_weights(w: dict, system: ConstraintSystem, box, tol: float) -> None:
    lower, upper = box
    center = w["box_center"]
    expected = box_arrays(center, lower, upper)
    inside = np.all(center > lower) and np.all(center < upper)
    worst = max_violation(center[None], system.A, system.b, system.C, system.d, relative=True)
    consistent = all(np.allclose(w[k], expected[k], rtol=1e-5, atol=0) for k in ("box_inv_upper", "box_inv_lower"))
    if not (inside and worst <= tol and consistent):
        raise GeneratorMismatchError(
            "the layer's box weights do not match its box and constraints (centre "
            f"{'outside the box' if not inside else 'infeasible' if worst > tol else 'ok'}, "
            f"inverse widths {'consistent' if consistent else 'from another box'}). Load the "
            "weights saved with this layer."
        )


def _offset(rep: VRepresentation) -> np.ndarray:
    return sum((v[0] for v in rep.block_vertices() if len(v) == 1), np.zeros(rep.dim))


def _support(vertices: np.ndarray) -> np.ndarray:
    return np.flatnonzero(np.any(np.abs(vertices) > 0, axis=0))
