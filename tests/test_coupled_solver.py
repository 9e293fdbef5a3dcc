"""Tests of keras_lincon.layers.coupled_solver: ADMM and active-set steps converge to the reduced projection."""

import keras
import numpy as np

from keras_lincon.layers.coupled_solver import solve_reduced
from keras_lincon.planning.coupled_plan import plan_projection


def test_box_projection_is_the_clip():
    # rows x_i <= 1 and a box [-1, 2]: the projection of w is clip(w, -1, 1); K is the identity (normalised rows)
    plan = plan_projection(np.eye(3), np.ones(3), box=(-1.0, 2.0))
    w = np.array([[3.0, -4.0, 0.5], [0.2, 1.5, -0.5]])
    const = lambda a: keras.ops.convert_to_tensor(np.asarray(a, dtype=np.float64), "float64")  # noqa: E731
    K, gram = const(plan.K), const(plan.gram)
    l = const(np.concatenate([np.full(3, -1e30), plan.lower[plan.bounded]]))[None] + 0 * const(w[:, :1])
    u = const(np.concatenate([np.ones(3), plan.upper[plan.bounded]]))[None] + 0 * const(w[:, :1])
    z, lam, converged, _ = solve_reduced(const(w), K, gram, l, u, plan, 100, 5, 1e-9, 1e-10)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(z), np.clip(w, -1.0, 1.0), atol=1e-8)
    assert np.all(keras.ops.convert_to_numpy(converged))
