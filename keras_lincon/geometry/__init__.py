"""The constraint system and its generators: numpy and scipy only, no Keras.

Data flows top-down through these modules: :mod:`.system` validates
``A, b, C, d`` (once) and boxes; :mod:`.residual` measures points against
them (the one residual formula); :mod:`.centre` finds centres (one LP);
:mod:`.row_graph` splits the variables into independent blocks;
:mod:`.representation` holds the V-representation; :mod:`.enumeration`
turns H into V (blocks, :mod:`.closed_form`, or :mod:`.double_description`
with :mod:`.generator_check`); :mod:`.builders` makes example rows.
:mod:`.tolerances` lists every tolerance with what it guarantees. Code
outside the geometry imports the names below from ``keras_lincon.geometry``.
"""

from keras_lincon.geometry.builders import checkerboard, monotone_chain
from keras_lincon.geometry.centre import centre_defects, deepest_point, interior_point_in_box, outside_box
from keras_lincon.geometry.double_description import (
    DEFAULT_TIME_BUDGET,
    enumerate_generators,
    generator_lower_bound,
    generator_upper_bound,
)
from keras_lincon.geometry.enumeration import DEFAULT_MAX_GENERATORS, METHODS, h_to_v
from keras_lincon.geometry.representation import MERGE_RTOL, VRepresentation, check_representation, merge_close_rows
from keras_lincon.geometry.residual import max_violation, violations
from keras_lincon.geometry.row_graph import blocks, single_variable_rows
from keras_lincon.geometry.system import (
    CHECK_TOLERANCE,
    ConstraintSystem,
    as_box,
    as_constraint_system,
    normalized_rows,
    with_box,
)

__all__ = [
    "CHECK_TOLERANCE",
    "DEFAULT_MAX_GENERATORS",
    "DEFAULT_TIME_BUDGET",
    "MERGE_RTOL",
    "METHODS",
    "ConstraintSystem",
    "VRepresentation",
    "as_box",
    "as_constraint_system",
    "blocks",
    "centre_defects",
    "check_representation",
    "checkerboard",
    "deepest_point",
    "enumerate_generators",
    "generator_lower_bound",
    "generator_upper_bound",
    "h_to_v",
    "interior_point_in_box",
    "max_violation",
    "merge_close_rows",
    "monotone_chain",
    "normalized_rows",
    "outside_box",
    "single_variable_rows",
    "violations",
    "with_box",
]
