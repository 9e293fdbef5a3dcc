"""Tests of keras_lincon.planning.coupled_plan: the projection's plan and its refusals."""

import numpy as np
import pytest

from keras_lincon.planning.coupled_plan import plan_projection


def test_plan_errors():
    A = np.array([[1.0, 0.0], [-1.0, 0.0]])
    with pytest.raises(ValueError, match="strictly feasible"):
        plan_projection(A, np.array([0.0, 0.0]))  # x_0 = 0 holds with equality: no interior
    with pytest.raises(ValueError, match="do not allow moving"):
        plan_projection(np.ones((3, 2)), None)  # three moving rows in two dimensions
    plan = plan_projection(np.eye(2), np.ones(2))
    with pytest.raises(ValueError, match="entries"):
        plan_projection(np.eye(2), np.ones(3))
    assert plan.dim == 2
