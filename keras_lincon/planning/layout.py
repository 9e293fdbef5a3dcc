"""The shapes of the layer's generator weights (:class:`GeneratorLayout`, saved in the config)
and the cost model that picks how the layer computes (:func:`call_mode`). Numpy only.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from keras_lincon.errors import DegenerateSetError, GeneratorMismatchError
from keras_lincon.geometry import VRepresentation

#: Current version of the saved layout; configs without one are version 1.
LAYOUT_VERSION = 2


#: Logit added to padding slots of smaller vertex blocks. The slots hold a
#: real vertex of their block, so even a softmax that picks them stays exact.
MASK_LOGIT = -1e9


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


def plan_layout(rep: VRepresentation) -> GeneratorLayout:
    """The layout for ``rep`` (cheap: no ``n x n`` work)."""
    polytopes = [v for v in rep.block_vertices() if len(v) > 1]
    offset = offset_point(rep)
    if not (rep.rays.shape[0] or rep.lineality_dim or polytopes):
        raise DegenerateSetError(
            "the representation is a single point: every output would be the "
            "same constant, so there is nothing to learn."
        )
    layout: dict[str, Any] = dict(
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
    every = np.concatenate(columns)
    if not every.size or len(np.unique(every)) != len(every):
        return None
    return every, np.concatenate(scales)


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
