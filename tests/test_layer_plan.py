"""Tests of keras_lincon.planning.layer_plan: one plan per layer, computed once, and what it tells build and call."""

import numpy as np
import pytest

import keras_lincon as klc
from keras_lincon import geometry
from keras_lincon.planning import layer_plan
from keras_lincon.planning.options import Construction, OutputMap


def plan(A, b=None, C=None, d=None, box=None, rhs_input=False, saved=None, **output_map):
    system = geometry.as_constraint_system(A, b, C, d)
    return layer_plan.plan_layer(
        system, geometry.as_box(box, system.dim), OutputMap(**output_map), Construction(), rhs_input, saved
    )


def test_plan_of_a_box_alone_has_its_centre_as_a_weight():
    p = plan(np.zeros((0, 3)), box=(0.0, 1.0))
    assert p.stages.center_is_weight and p.stage is not None and p.rhs_sizes == () and not p.loading
    assert p.features_shape((None, 7)) == (None, 7)


def test_rhs_inputs_give_the_call_structure_and_check_it():
    A, C = np.eye(3)[:2], np.ones((1, 3))
    p = plan(A, np.ones(2), C, np.zeros(1), rhs_input=("b", "d"))
    assert p.rhs_names == ("b", "d") and p.rhs_sizes == (2, 1) and p.input_rows == (0, 1)
    assert p.features_shape([(None, 5), (None, 2), (None, 1)]) == (None, 5)
    with pytest.raises(klc.ConstraintShapeError, match=r"call the layer on \[features, b, d\]"):
        p.features_shape((None, 5))
    with pytest.raises(klc.ConstraintShapeError, match=r"d must have shape \(batch, 1\)"):
        p.features_shape([(None, 5), (None, 2), (None, 3)])


def test_floor_columns_place_the_users_rows_among_the_scaled_ones():
    A = klc.checkerboard((4, 4), (2, 2))
    p = plan(A, np.ones(A.shape[0]), box=(-1.0, 1.0), rhs_input=True, scaled_rows=[1, 3])
    assert p.rhs_names == ("b_s",) and p.rhs_sizes == (2,)
    np.testing.assert_array_equal(p.floor_columns(), [0, 1])


def test_a_saved_plan_runs_no_double_description_and_keeps_the_layout():
    A = klc.monotone_chain(5)
    new = plan(A)
    saved = plan(A, saved=layer_plan.SavedPlan(new.layout.to_config()))
    assert saved.loading and saved.representation is None and saved.layout == new.layout


def test_box_center_without_a_box_or_scaled_rows_is_refused():
    with pytest.raises(klc.ConstraintShapeError, match="box_center needs a box"):
        plan(klc.monotone_chain(3), box_center=np.zeros(3))


def test_auto_projects_only_where_it_pays():
    from keras_lincon.experiments.qp_problems import make_problem

    qp = make_problem("convex")
    proxy = plan(qp.G, qp.h, qp.A, np.zeros(qp.A.shape[0]), rhs_input="d", scaled_rows="all")
    assert proxy.output_map.scaling == "project" and proxy.stages.coupled is not None
    not_all_rows = plan(qp.G, qp.h, qp.A, np.zeros(qp.A.shape[0]), rhs_input="d", scaled_rows=[0, 1])
    assert not_all_rows.output_map.scaling == "per_block" and not_all_rows.stages.coupled is None
    toy = plan(klc.checkerboard((4, 4), (2, 2)), box=(-1.0, 1.0))  # separate rows and a box: scale and project
    assert toy.output_map.scaling == "project" and toy.scaled_rows == (0, 1, 2, 3) and toy.stages.coupled is None
    paper = plan(klc.checkerboard((4, 4), (2, 2)), box=(-1.0, 1.0), scaling="per_block")
    assert paper.scaled_rows == () and paper.stages.center_is_weight  # the paper's layout, when asked for
    coupled = plan(klc.monotone_chain(4), box=(-1.0, 1.0))  # rows share coordinates: per block
    assert coupled.output_map.scaling == "per_block" and coupled.scaled_rows == ()
    narrow = plan(np.array([[1.0, -1.0]]), box=(1e-12, 1e-9))  # no centre strictly inside for the scaled row
    assert narrow.output_map.scaling == "per_block" and narrow.scaled_rows == ()
    centred = plan(klc.checkerboard((4, 4), (2, 2)), box=(-1.0, 1.0), box_center=np.zeros(16))
    assert centred.output_map.scaling == "per_block"  # a centre asks for ray scaling
    explicit = plan(qp.G, qp.h, qp.A, np.zeros(qp.A.shape[0]), rhs_input="d", scaled_rows="all", scaling="per_block")
    assert explicit.output_map.scaling == "per_block" and explicit.stages.coupled is None
