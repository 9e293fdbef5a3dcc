"""The weights of :class:`~keras_lincon.LinearInequalityConstraint`, in numpy.

Both directions between a V-representation and the stored weights: their
names, shapes and creation order (:func:`weight_specs`; saved files rely on
the order), their values (:func:`generator_arrays`, :func:`box_arrays`), and
the check that stored values generate only points of the constraints
(:func:`check_weights`, whenever weights are loaded or set). Knows nothing
of Keras.
"""

from __future__ import annotations

import numpy as np

from keras_lincon.errors import GeneratorMismatchError, RepresentationCheckError
from keras_lincon.geometry import ConstraintSystem, VRepresentation, check_representation, max_violation
from keras_lincon.planning.layout import (
    MASK_LOGIT,
    GeneratorLayout,
    coordinate_generators,
    diagonal_generators,
    offset_point,
    vertex_support,
)
from keras_lincon.tolerances import LOAD_TOLERANCE


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
        specs = affine("", n_gen + n_logits)
        if n_gen and layout.generator_path == "gather":  # generator j = scale_j e_column_j
            specs += [("generator_scale", (n_gen,), "fixed"), ("generator_gather", (n,), "index")]
        elif n_gen and layout.generator_path == "diagonal":  # generator j = scale_j e_j
            specs.append(("generator_scale", (n_gen,), "fixed"))
        elif n_gen:
            specs.append(("generators", (n_gen, n), "fixed"))
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
    arrays = {"offset": offset_point(rep)}
    if mode == "direct":
        if layout.n_lineality + layout.n_rays and layout.generator_path == "gather":
            found = coordinate_generators(rep)
            assert found is not None  # the layout's path says so
            columns, scales = found
            gather = np.full(n, len(columns))  # the zero slot
            gather[columns] = np.arange(len(columns))
            arrays.update(generator_scale=scales, generator_gather=gather.astype(np.int32))
        elif layout.n_lineality + layout.n_rays and layout.generator_path == "diagonal":
            diagonal = diagonal_generators(rep)
            assert diagonal is not None  # the layout's path says so
            arrays["generator_scale"] = diagonal
        elif layout.n_lineality + layout.n_rays:
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
                sup = vertex_support(polytopes[j])
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
        gens = _stored_generators(w, layout, n)
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
        plural = {"vertex": "vertices", "lineality": "lineality vectors"}
        worst = ", ".join(f"{plural.get(kind, kind + 's')} by {value:.3g}" for kind, value in exc.violations.items())
        raise GeneratorMismatchError(
            f"the layer's generator weights do not generate points of its constraints ({worst}, "
            f"relative; tolerance {tol:g}). They belong to another constraint set or box, or were "
            "edited. Load the weights saved with this layer, or build a new layer from the intended A, b."
        ) from None
    if box is not None:
        _check_box_weights(w, system, box, tol)


def _stored_generators(w: dict, layout: GeneratorLayout, n: int) -> np.ndarray:
    """(l + r, n) ``[L; R]`` of the direct mode's stored weights."""
    if layout.generator_path == "dense" or "generator_scale" not in w:
        return w.get("generators", np.zeros((0, n)))
    if layout.generator_path == "diagonal":
        return np.diag(w["generator_scale"])
    scales, gather = w["generator_scale"], w["generator_gather"].astype(np.int64)
    if gather.shape != (n,) or np.any(gather < 0) or np.any(gather > len(scales)):
        raise GeneratorMismatchError("generator_gather indices are out of range: the weights are corrupt.")
    used = gather < len(scales)
    if len(np.unique(gather[used])) != used.sum():
        raise GeneratorMismatchError("generator_gather uses a generator twice: the weights are corrupt.")
    gens = np.zeros((len(scales), n))
    gens[gather[used], np.flatnonzero(used)] = scales[gather[used]]
    return gens


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
