"""Tests of keras_lincon.planning.options: the layer's option groups and their keywords."""

import numpy as np
import pytest

import keras_lincon as klc
from keras_lincon.planning.options import SCALINGS, Construction, OutputMap, group_options


def test_loose_keywords_fill_the_groups_and_leave_the_rest():
    keywords = dict(scaling="project", scaled_rows="all", method="cdd", max_generators=7.0, name="c", dtype="float64")
    output_map, construction = group_options(None, None, keywords)
    assert output_map == OutputMap(scaling="project", scaled_rows="all")
    assert construction == Construction(method="cdd", max_generators=7)
    assert keywords == {"name": "c", "dtype": "float64"}  # for keras.layers.Layer


def test_groups_as_dicts_or_objects_and_keywords_agree():
    from_dict = group_options({"nonneg": "relu"}, {"fallback": False}, {})
    from_objects = group_options(OutputMap(nonneg="relu"), Construction(fallback=False), {})
    from_keywords = group_options(None, None, {"nonneg": "relu", "fallback": False})
    assert from_dict == from_objects == from_keywords


@pytest.mark.parametrize(
    "output_map,keywords,match",
    [
        ({"scaling": "project"}, {"scaling": "global"}, "both as keywords"),
        ({"colour": 1}, {}, "no option"),
        ("per_block", {}, "must be a keras_lincon OutputMap"),
        (None, {"scaling": "nearest"}, "scaling must be one of"),
        (None, {"nonneg": "exp"}, "nonneg must be one of"),
        (None, {"call_mode": "fast"}, "call_mode must be one of"),
        (None, {"max_generators": 0}, "max_generators must be a positive int"),
    ],
)
def test_bad_options_name_the_problem(output_map, keywords, match):
    with pytest.raises(klc.LinconError, match=match):
        group_options(output_map, None, dict(keywords))


def test_the_layer_takes_the_groups_and_saves_the_same_config_as_with_keywords():
    A = klc.monotone_chain(4)
    grouped = klc.LinearInequalityConstraint(A, box=(-1.0, 1.0), output_map={"scaling": "global", "nonneg": "relu"})
    loose = klc.LinearInequalityConstraint(A, box=(-1.0, 1.0), scaling="global", nonneg="relu")
    assert grouped.get_config() | {"name": None} == loose.get_config() | {"name": None}
    assert grouped.scaling == "global" and "project" in SCALINGS
    np.testing.assert_array_equal(grouped.box[0], -np.ones(4))
