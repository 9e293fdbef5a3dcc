"""The layer's options, grouped as they belong together, and checked once (no Keras).

:class:`OutputMap` says how outputs are formed (the scaled stage and the
generator coefficients' maps); :class:`Construction` how the generators are
computed. The layer also takes each of their fields as a keyword of its own
(``scaled_rows=..., scaling=...``): :func:`group_options` folds those in.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from keras_lincon.errors import ConstraintShapeError, LinconError
from keras_lincon.geometry import DEFAULT_MAX_GENERATORS, VRepresentation

#: Treatments of the box and the scaled rows (see :class:`keras_lincon.LinearInequalityConstraint`);
#: ``"auto"`` (the default) is resolved by the plan (:func:`keras_lincon.planning.stages.plan_stages`).
SCALINGS = ("auto", "per_block", "global", "clip_blend", "clip_scale", "mix", "project")
#: Non-negative maps of the ray coefficients (the paper uses ``abs``).
NONNEG_CHOICES = ("abs", "softplus", "relu", "square")
#: ``call_mode`` values: ``"auto"`` picks the cheaper path (:func:`keras_lincon.planning.layout.call_mode`).
CALL_MODES = ("auto", "direct", "projected")


@dataclasses.dataclass(frozen=True)
class OutputMap:
    """How the layer forms its outputs.

    Attributes:
        scaling: the treatment of the box and the scaled rows, one of :data:`SCALINGS`; ``"auto"``
            is ``"project"`` where it pays (below), else ``"per_block"``.
        scaled_rows: rows of ``A`` enforced by scaling (indices, a boolean mask or ``"all"``), or None.
        box_center: optional (n,) centre of the scaled stage.
        nonneg: the ray coefficients' map, one of :data:`NONNEG_CHOICES`.
        call_mode: one of :data:`CALL_MODES` (same sets, different weight shapes).
        projection_penalty: with ``scaling="project"``: the weight of the batch mean of
            ``||y - x||^2`` (``y`` the point before the projection, ``x`` after) added to the
            layer's losses; it never changes an output, and keeps ``y`` from drifting along the
            normal cones, where the projection passes no gradient (0.01 on DC3's QP). 0: none.
    """

    scaling: str = "auto"
    scaled_rows: Any = None
    box_center: Any = None
    nonneg: str = "abs"
    call_mode: str = "auto"
    projection_penalty: float = 0.0

    def __post_init__(self):
        for name, allowed in (("scaling", SCALINGS), ("nonneg", NONNEG_CHOICES), ("call_mode", CALL_MODES)):
            if getattr(self, name) not in allowed:
                raise LinconError(f"{name} must be one of {allowed}; got {getattr(self, name)!r}.")
        object.__setattr__(self, "projection_penalty", _checked_penalty(self.projection_penalty, self.scaling))


def _checked_penalty(value, scaling: str) -> float:
    """``projection_penalty`` as a float: finite, >= 0, and positive only with ``scaling="project"``."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise LinconError(f"projection_penalty must be a number >= 0; got {value!r}.") from None
    if not (math.isfinite(value) and value >= 0):
        raise LinconError(f"projection_penalty must be a finite number >= 0; got {value!r}.")
    if value and scaling not in ("project", "auto"):
        raise LinconError(
            "projection_penalty penalises the distance moved by the exact projection: it needs "
            f"scaling='project' (got scaling={scaling!r})."
        )
    return value


@dataclasses.dataclass(frozen=True)
class Construction:
    """How the generators are computed (once, at construction).

    Attributes:
        method: :func:`keras_lincon.h_to_v`'s ``method``.
        max_generators: the cap on the generator count.
        representation: precomputed :class:`~keras_lincon.VRepresentation` of
            the generator rows' set (checked against them), or None.
        fallback: move blocks whose generators are refused (or fail) to the
            scaled stage, with a :class:`~keras_lincon.ScaledRowsWarning`.
    """

    method: str = "auto"
    max_generators: int = DEFAULT_MAX_GENERATORS
    representation: VRepresentation | None = None
    fallback: bool = True

    def __post_init__(self):  # method is checked by h_to_v, which lists the choices
        if isinstance(self.max_generators, bool) or int(self.max_generators) < 1:
            raise LinconError(f"max_generators must be a positive int; got {self.max_generators!r}.")
        object.__setattr__(self, "max_generators", int(self.max_generators))
        object.__setattr__(self, "fallback", bool(self.fallback))


def _grouped(cls, given, keywords: dict, what: str):
    """``given`` (an instance, a dict or None) updated with the matching ``keywords`` (popped)."""
    names = {f.name for f in dataclasses.fields(cls)}
    loose = {name: keywords.pop(name) for name in list(keywords) if name in names}
    if given is None:
        return cls(**loose)
    if isinstance(given, dict):
        unknown = set(given) - names
        if unknown:
            raise LinconError(f"{what} has no option {sorted(unknown)}; its options are {sorted(names)}.")
        given = cls(**given)
    if not isinstance(given, cls):
        raise LinconError(f"{what} must be a keras_lincon {cls.__name__}, a dict or None; got {type(given).__name__}.")
    default = cls()
    twice = sorted(name for name in loose if not _same(getattr(given, name), getattr(default, name)))
    if twice:
        raise ConstraintShapeError(f"{twice} given both as keywords and in {what}=; give each once.")
    return dataclasses.replace(given, **loose)


def _same(a, b) -> bool:
    """Whether two option values are equal (arrays such as ``box_center`` elementwise)."""
    if a is None or b is None:
        return a is b
    try:
        return bool(np.array_equal(np.asarray(a, dtype=object), np.asarray(b, dtype=object)))
    except ValueError:  # ragged values: not the default
        return False


def group_options(output_map, construction, keywords: dict) -> tuple[OutputMap, Construction]:
    """The layer's two option groups from ``output_map=``, ``construction=`` and loose keywords.

    Loose keywords (``scaling=``, ``scaled_rows=``, ``method=``, ...) are popped
    from ``keywords``, which keeps the rest (for ``keras.layers.Layer``).
    """
    return _grouped(OutputMap, output_map, keywords, "output_map"), _grouped(
        Construction, construction, keywords, "construction"
    )
