"""Tests of keras_lincon.geometry.tolerances: one table, and the modules use its values."""

import re

from keras_lincon import geometry
from keras_lincon.geometry import double_description, generator_check, representation, system, tolerances


def test_the_table_lists_every_tolerance_with_its_value():
    rows = dict(re.findall(r"^([A-Z_]+)\s+([0-9.e-]+)\s", tolerances.__doc__, flags=re.M))
    constants = {k: v for k, v in vars(tolerances).items() if k.isupper()}
    assert set(rows) == set(constants)
    for name, value in rows.items():
        assert float(value) == constants[name], name


def test_re_exported_tolerances_are_the_table_s():
    assert geometry.CHECK_TOLERANCE is system.CHECK_TOLERANCE is tolerances.CHECK_TOLERANCE
    assert geometry.MERGE_RTOL is representation.MERGE_RTOL is tolerances.MERGE_RTOL
    assert double_description.RAY_RTOL is tolerances.RAY_RTOL
    assert generator_check.CHECK_RTOL is tolerances.CHECK_RTOL
    assert double_description.VertexWalk.TIGHT == tolerances.TIGHT_RTOL
