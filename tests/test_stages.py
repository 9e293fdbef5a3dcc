"""Tests of keras_lincon.planning.stages: the two stages, the fallback, the shifted apex and the coupled blocks."""

import warnings

import numpy as np
import pytest

import keras_lincon as klc
from keras_lincon import geometry
from keras_lincon.planning.options import Construction, OutputMap
from keras_lincon.planning.rhs_inputs import RhsInputs
from keras_lincon.planning.stages import plan_stages
from tests.polytope_families import permutahedron


def stages(A, b=None, C=None, d=None, box=None, output_map=OutputMap(), construction=Construction(), **kwargs):
    system = geometry.as_constraint_system(A, b, C, d)
    return plan_stages(system, geometry.as_box(box, system.dim), output_map, construction, **kwargs)


def test_generators_only_without_box_or_scaled_rows():
    plan = stages(klc.monotone_chain(4))
    assert plan.stage is None and plan.representation.rays.shape[0] > 0 and plan.apex is None


def test_the_papers_centre_is_the_apex_of_a_cone_in_a_box():
    plan = stages(klc.monotone_chain(4), box=(-1.0, 1.0))
    assert plan.center_is_weight
    np.testing.assert_array_equal(plan.stage.center, np.zeros(4))


def test_a_refused_set_moves_to_the_scaled_stage_with_a_warning_unless_fallback_is_off():
    P, h, C, d = permutahedron(6)  # 720 vertices
    with pytest.warns(klc.ScaledRowsWarning, match="enforced by scaling"):
        plan = stages(P, h, C, d, construction=Construction(max_generators=100))
    assert plan.split.generator == () and len(plan.split.moved) == 62 and plan.stage is not None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(klc.TooManyGeneratorsError):
            stages(P, h, C, d, construction=Construction(max_generators=100, fallback=False))


def test_shifted_apex_maps_every_b_to_its_set():
    A = np.array([[1.0, 0.0], [1.0, 1.0]])
    plan = stages(A, np.zeros(2), rhs=RhsInputs(floor=True))
    P, q = plan.apex
    for b in (np.array([1.0, 2.0]), np.array([-3.0, 0.5])):
        np.testing.assert_allclose(A @ (P @ b + q), b)  # the apex lies on every row: both bind
    with pytest.raises(klc.ConstraintShapeError, match="shifted-apex"):
        stages(A, np.zeros(2), box=(-1.0, 1.0), rhs=RhsInputs(floor=True))


def test_project_plans_the_coupled_blocks_only():
    A = np.array([[1.0, 1.0, 0.0, 0.0], [1.0, -1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]])
    plan = stages(A, np.ones(3), box=(-2.0, 2.0), output_map=OutputMap(scaling="project"), scaled_rows=(0, 1, 2))
    np.testing.assert_array_equal(plan.coupled.columns, [0, 1])  # two coupled rows; coordinate 2 has one row
