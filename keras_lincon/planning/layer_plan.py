"""Everything a :class:`~keras_lincon.LinearInequalityConstraint` needs, planned once (no Keras).

:func:`plan_layer` is called once, from the layer's ``__init__``, with the
validated constraint system. It reads top-down::

    options -> rows (scaled_rows, rhs_input) -> stages (row split, h_to_v,
    scaled stage, coupled blocks, translation) -> layout -> inputs

and returns a frozen :class:`LayerPlan`; ``build`` turns it into weights
(:mod:`keras_lincon.planning.weight_arrays`) and ``call`` runs the kernels.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from keras_lincon.errors import ConstraintShapeError, LinconError, NoStrictInteriorError
from keras_lincon.geometry import ConstraintSystem, VRepresentation
from keras_lincon.planning import stages
from keras_lincon.planning.layout import GeneratorLayout, plan_layout
from keras_lincon.planning.options import Construction, OutputMap
from keras_lincon.planning.rhs_inputs import RhsInputs, rhs_inputs, row_indices


@dataclasses.dataclass(frozen=True)
class SavedPlan:
    """What a saved config adds to the constructor's arguments: the generator
    layout (the weights follow, and are checked) and the rows the fallback moved."""

    layout: dict
    moved_rows: tuple = ()


@dataclasses.dataclass(frozen=True)
class LayerPlan:
    """The layer's plan.

    Attributes:
        system: all rows ``(A, b, C, d)``, validated once. box: ``(lower, upper)`` (n,) each, or None.
        output_map, construction: the options, checked.
        scaled_rows: sorted rows of ``A`` the user asked to scale.
        rhs: which right-hand sides are inputs (:class:`~keras_lincon.planning.rhs_inputs.RhsInputs`).
        stages: the two stages (:class:`~keras_lincon.planning.stages.StagePlan`).
        layout: the generator weights' shapes (saved in the config).
        input_rows: rows of ``A`` whose ``b`` is an input, in input order.
        rhs_sizes: the last dimension of each right-hand-side input, in call order (empty: no such input).
        loading: rebuilt from a saved config (no double description ran; the weights come next).
    """

    system: ConstraintSystem
    box: tuple | None
    output_map: OutputMap
    construction: Construction
    scaled_rows: tuple
    rhs: RhsInputs
    stages: stages.StagePlan
    layout: GeneratorLayout
    input_rows: tuple
    rhs_sizes: tuple
    loading: bool

    @property
    def representation(self) -> VRepresentation | None:
        return self.stages.representation

    @property
    def stage(self):
        """The scaled stage (:class:`~keras_lincon.planning.scaling_plan.ScaledStage`), or None."""
        return self.stages.stage

    @property
    def mixing(self) -> bool:
        """``scaling="mix"`` with blocks to mix (the layer then has mixing weights)."""
        return self.output_map.scaling == "mix" and self.stage is not None and self.stage.n_blocks > 0

    @property
    def rhs_names(self) -> tuple:
        """The names of the right-hand-side inputs, in call order."""
        if not self.rhs_sizes:
            return ()
        if self.rhs.floor:
            return ("b_s",)
        return (("b",) if self.rhs.b_rows else ()) + (("d",) if self.rhs.d else ())

    def features_shape(self, input_shape):
        """The features' shape from the layer's input shape, after checking the call's structure.

        Raises:
            ConstraintShapeError: the layer takes right-hand sides and was not
                called on ``[features, *right_hand_sides]`` of the right sizes.
        """
        if not self.rhs_sizes:
            return input_shape
        names = self.rhs_names
        rhs_input = self.rhs.to_config(self.system.A.shape[0])
        if not (
            isinstance(input_shape, (list, tuple))
            and len(input_shape) == 1 + len(names)
            and all(isinstance(shape, (list, tuple)) for shape in input_shape)
        ):
            raise ConstraintShapeError(
                f"with rhs_input={rhs_input!r} call the layer on [features, {', '.join(names)}]."
            )
        for name, size, shape in zip(names, self.rhs_sizes, input_shape[1:], strict=True):
            if shape[-1] != size:
                raise ConstraintShapeError(
                    f"{name} must have shape (batch, {size}) ({self._meaning(name)}); got {tuple(shape)}."
                )
        return input_shape[0]

    def _meaning(self, name: str) -> str:
        if name == "d":
            return "one per row of C"
        if self.rhs.translated:
            return f"one per row of A in rhs_input: rows {list(self.input_rows)[:10]}"
        return f"one per input row: {'scaled_rows' if self.scaled_rows else 'every row of A'}"

    def floor_columns(self) -> np.ndarray:
        """Positions of the user's scaled rows among the scaled stage's rows (``b_s`` above a floor)."""
        return np.searchsorted(np.array(self.stages.split.scaled), np.array(self.scaled_rows, dtype=int))


def plan_layer(
    system: ConstraintSystem,
    box: tuple | None,
    output_map: OutputMap,
    construction: Construction,
    rhs_input=False,
    saved: SavedPlan | None = None,
) -> LayerPlan:
    """Plans a layer: the one place where its construction runs, top-down.

    Args:
        system: the validated ``(A, b, C, d)``; box: the validated box or None.
        output_map, construction: the checked options.
        rhs_input: the constructor's ``rhs_input`` (parsed here).
        saved: a saved config's layout and moved rows, or None for a new layer.

    Returns:
        The :class:`LayerPlan`.

    Raises:
        ConstraintShapeError, LinconError: inconsistent arguments (with the fix);
        the errors of :func:`keras_lincon.h_to_v` when ``fallback`` is off.
    """
    m, p = system.A.shape[0], system.C.shape[0]
    scaled_rows = row_indices(output_map.scaled_rows, m)
    if output_map.box_center is not None and box is None and not scaled_rows:
        raise ConstraintShapeError("box_center needs a box or scaled rows: pass box=(lower, upper) too.")
    rhs = rhs_inputs(rhs_input, m, p)
    moved_rows = tuple(int(i) for i in saved.moved_rows) if saved else None
    projected = _separate_rows_projected(system, box, output_map, construction, rhs, saved)
    if projected is not None:  # "auto" on separate rows and a box: scale them and project (saved as such)
        stage_plan, scaled_rows = projected
        output_map = dataclasses.replace(output_map, scaling="project")
    else:
        stage_plan = stages.plan_stages(
            system, box, output_map, construction, scaled_rows=scaled_rows, rhs=rhs, saved_moved_rows=moved_rows
        )
    output_map = _resolved(output_map, stage_plan)
    # rows whose b is an input: the chosen rows; with a floor the scaled rows, or every row (shifted apex)
    input_rows = rhs.b_rows if rhs.translated else scaled_rows
    if stage_plan.apex is not None:
        input_rows = tuple(range(m))
    takes_rhs = rhs.floor or rhs.translated
    if saved is not None:
        layout = GeneratorLayout.from_config(saved.layout)
    else:
        assert stage_plan.representation is not None  # a new layer computed its generators
        layout = plan_layout(stage_plan.representation)
    return LayerPlan(
        system=system,
        box=box,
        output_map=output_map,
        construction=construction,
        scaled_rows=scaled_rows,
        rhs=rhs,
        stages=stage_plan,
        layout=layout,
        input_rows=input_rows,
        rhs_sizes=rhs.part_sizes(p, len(input_rows)) if takes_rhs else (),
        loading=saved is not None,
    )


def _separate_rows_projected(system, box, output_map: OutputMap, construction, rhs: RhsInputs, saved):
    """``(stages, rows)``: :func:`~keras_lincon.planning.stages.separate_rows` scaled and projected, where
    ``scaling="auto"`` and nothing asks for another map (no scaled rows, centre or right-hand sides given;
    a new layer: a saved config holds the map it chose); else None, as where the scaled rows have no
    centre strictly inside (per_block's generators need none)."""
    untouched = output_map.scaled_rows is None and output_map.box_center is None
    if not (output_map.scaling == "auto" and untouched and rhs == RhsInputs() and saved is None):
        return None
    separate = stages.separate_rows(system, box)
    if not separate:
        return None
    projecting = dataclasses.replace(output_map, scaling="project")
    try:
        return stages.plan_stages(system, box, projecting, construction, scaled_rows=separate, rhs=rhs), separate
    except NoStrictInteriorError:
        return None


def _resolved(output_map: OutputMap, stage_plan) -> OutputMap:
    """The options with ``scaling="auto"`` decided (saved as such, so a saved layer keeps its map).

    Raises:
        LinconError: ``projection_penalty`` where ``"auto"`` chose ``"per_block"``.
    """
    scaling = stages.resolved_scaling(output_map.scaling, stage_plan)
    if output_map.projection_penalty and scaling != "project":
        raise LinconError(
            "projection_penalty penalises the distance moved by the exact projection, but scaling='auto' chose "
            "'per_block' here (it projects where every row is scaled, the right-hand sides are inputs and one "
            "projection covers every output). Pass scaling='project', or drop projection_penalty."
        )
    return dataclasses.replace(output_map, scaling=scaling)
