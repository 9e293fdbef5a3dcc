"""``scaling="project"`` with right-hand sides as inputs: the projection onto each sample's own set.

A layer with ``rhs_input`` ("b", "d", both) and ``scaling="project"`` whose
coupled projection covers every output (DC3's QP stated as
``LinearInequalityConstraint(G, h, C=A, rhs_input="d", scaled_rows="all",
scaling="project")``) returns ::

    x = Proj_{S(beta)}(y)          S(beta) = {A x <= b(beta), C x = d(beta), box}

with ``y`` the generator stage's point, projected directly onto the sample's
own set (the *correction form*: a feasible ``y`` comes back unchanged). The
projection eliminates the equalities around the minimum-norm particular
solution ``pinv(C) d``, so the network learns the solution's null-space part.

The stored set's projection moved by the translation,
``Proj_{S(beta_0)}(y) + T (beta - beta_0) = Proj_{S(beta)}(y + T (beta - beta_0))``,
made the network cancel ``N N^T T (beta - beta_0)``, large where ``[A; C]``
is ill-conditioned (DC3's QP: ``||T x||`` about 25 against ``||y*||`` about 7;
2,441 against 26 on the large set).

Exact feasibility: the solver's iterate is pulled towards the stored centre
moved by ``T (beta - beta_0)``, with the stored slack (a translation keeps
it), so float32 rounding does not grow with ``|T (beta - beta_0)|``
(:func:`keras_lincon.layers.coupled_kernel.project`'s ``move=``).
"""

from __future__ import annotations

import numpy as np
from keras import ops

from keras_lincon.layers.backend_ops import constant, matmul
from keras_lincon.layers.coupled_kernel import project


def applies(plan) -> bool:
    """Whether a layer's :class:`~keras_lincon.planning.layer_plan.LayerPlan` takes the moved-set
    projection: translated right-hand sides and one coupled projection over every output."""
    coupled = plan.stages.coupled
    return plan.stages.shift is not None and coupled is not None and coupled.columns.size == plan.system.dim


def project_moved(y, plan, parts: list, move):
    """``Proj_{S(beta)}(y)`` for (B, n) ``y``, exact to rounding (see the module docstring).

    Args:
        y: (B, n) the generator stage's points (in the stored set's frame).
        plan: the layer's ``LayerPlan`` (:func:`applies` holds).
        parts: (B, k_i) the right-hand-side inputs in call order (``b`` of ``rhs.b_rows``, then ``d``).
        move: (B, n) ``T (beta - beta_0)``: ``S(beta) = S(beta_0) + move``.
    """
    system, rhs, dtype = plan.system, plan.rhs, y.dtype
    parts = [ops.cast(part, dtype) for part in parts]
    b = d = None
    if rhs.b_rows:
        # the projection's rows are the rows of A that touch its block; rows not in rhs_input keep their b
        rows = _rows_with_entries(system.A)
        position = {row: i for i, row in enumerate(rows.tolist())}
        select = np.zeros((len(rhs.b_rows), rows.size))
        for k, row in enumerate(rhs.b_rows):
            if row in position:
                select[k, position[row]] = 1.0
        stored = system.b[rows].copy()
        stored[[position[r] for r in rhs.b_rows if r in position]] = 0.0
        b = constant(stored, dtype) + matmul(parts.pop(0), constant(select, dtype))
    if rhs.d:
        eq_rows = _rows_with_entries(system.C)
        d = parts.pop(0)
        d = d if eq_rows.size == system.C.shape[0] else ops.take(d, eq_rows, axis=-1)
    return project(y, plan.stages.coupled.plan, b, d, move=move)


def _rows_with_entries(M: np.ndarray) -> np.ndarray:
    """Rows with a nonzero entry (the coupled plan's rows when it covers every coordinate)."""
    return np.flatnonzero(np.any(M != 0, axis=1))


def distance_penalty(y, out, weight: float):
    """``weight`` times the batch mean of ``||y - out||^2``, with ``out`` held fixed (a scalar tensor).

    For a projection ``out = Proj(y)`` the gradient in ``y`` is
    ``2 weight (y - Proj(y))``: it points along the normal cone, where the
    projection's own gradient is zero, and it never changes an output. Without
    it nothing stops ``y`` from drifting far outside the set along those
    normals (DC3's QP with Adam 2e-3 stalls at mean RS 3.5e-3 with
    ``||y - out||`` about 9; 0.01 keeps it near 0.7 and reaches 5e-4).
    """
    gap = y - ops.stop_gradient(ops.cast(out, y.dtype))
    return weight * ops.mean(ops.sum(gap * gap, axis=-1))
