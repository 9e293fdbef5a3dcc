"""Projection baselines: make outputs feasible after the fact.

The paper compares its layer with "train unconstrained, project at test
time". Two projections onto ``P = {x : A x <= b, C x = d, lower <= x <= upper}``:

* :class:`OSQPProjector`: one quadratic program per sample with OSQP,
  warm-started, as the paper's reference code does (accurate, slow).
* :class:`ADMMProjection`: a Keras layer running a batched ADMM inside the
  graph with an iteration budget and a tolerance, XLA-compilable: the
  strongest projection baseline we could write, so the comparison is fair.

Both solve ``min_x 0.5 ||x - y||^2`` subject to ``l <= M x <= u`` with
``M = [A; C; I]`` (identity rows only for the bounded coordinates).
"""

from __future__ import annotations

import time

import keras
import numpy as np
from keras import ops

from keras_lincon import geometry
from keras_lincon.errors import ConstraintShapeError, LinconError, MissingDependencyError, ProjectionError


def _stacked_constraints(A, b, C, d, box):
    """``M, l, u`` with ``l <= M x <= u`` for the system and optional box."""
    system = geometry.as_constraint_system(A, b, C, d)
    bounds = geometry.as_box(box, system.dim)
    G, h = geometry.with_box(system.A, system.b, *(bounds or (None, None)))
    M = np.vstack([G, system.C])
    lower = np.concatenate([np.full(len(h), -np.inf), system.d])
    return system, M, lower, np.concatenate([h, system.d])


class OSQPProjector:
    """Euclidean projection onto ``{A x <= b, C x = d} ∩ box``, one sample at a time.

    Sets the QP up once and warm-starts each solve from the previous sample,
    with absolute and relative tolerances ``eps`` (1e-6, as the reference
    code). Needs ``pip install osqp`` (extra ``projection``).

    Args:
        A, b, C, d: the constraints, as in :func:`keras_lincon.h_to_v`.
        box: optional ``(lower, upper)``, scalars or (n,) arrays.
        eps: solver tolerance.
        max_iter: OSQP iteration cap per sample.

    Example:
        >>> proj = OSQPProjector([[1.0, 1.0]], [0.0])
        >>> proj.project(np.array([[1.0, 1.0]])).round(6) + 0.0  # + 0.0 folds -0.0
        array([[0., 0.]])
    """

    def __init__(self, A, b=None, *, C=None, d=None, box=None, eps: float = 1e-6, max_iter: int = 20_000):
        try:
            import osqp
        except ImportError:
            raise MissingDependencyError(
                "OSQPProjector needs OSQP: pip install osqp (or keras-lincon[projection])."
            ) from None
        import scipy.sparse

        self.system, M, self.lower, self.upper = _stacked_constraints(A, b, C, d, box)
        n = self.system.dim
        self._solver = osqp.OSQP()
        self._solver.setup(
            scipy.sparse.eye(n, format="csc"),
            np.zeros(n),
            scipy.sparse.csc_matrix(M),
            self.lower,
            self.upper,
            eps_abs=eps,
            eps_rel=eps,
            max_iter=max_iter,
            verbose=False,
            warm_starting=True,
            polishing=True,
        )
        self.M = M
        self.seconds = 0.0

    @property
    def dim(self) -> int:
        return self.system.dim

    def project(self, y) -> np.ndarray:
        """Projects each row of ``y`` (batch, n); returns float64 (batch, n).

        Raises:
            ProjectionError: OSQP did not solve a sample (names the status).
        """
        y = np.asarray(y, dtype=np.float64)
        if y.ndim != 2 or y.shape[1] != self.dim:
            raise ConstraintShapeError(f"y must have shape (batch, {self.dim}); got {y.shape}.")
        out = np.empty_like(y)
        start = time.perf_counter()
        for i, row in enumerate(y):
            self._solver.update(q=-row)
            result = self._solver.solve(raise_error=False)
            if result.info.status not in ("solved", "solved inaccurate"):
                raise ProjectionError(
                    f"OSQP could not project sample {i}: status {result.info.status!r}. "
                    "Check that the constraint set is non-empty; raise max_iter for hard problems."
                )
            out[i] = result.x
        self.seconds += time.perf_counter() - start
        return out


@keras.saving.register_keras_serializable(package="keras_lincon")
class ADMMProjection(keras.layers.Layer):
    """Batched Euclidean projection by ADMM, as a Keras layer (no weights).

    Solves ``min 0.5 ||x - y||^2 s.t. lB <= B x <= uB, lower <= x <= upper``
    (``B = [A; C]``) for every row of the batch at once, with the splitting
    ``z = (B x, x)``. The x-update solves ``(E + rho B^T B) x = v`` with
    ``E = I + rho diag(bounded)`` by the Woodbury identity, factored once at
    construction, so an iteration costs O(batch * n * m) (not n^2) plus clips:
    it runs inside a graph or under XLA. It stops after ``iterations`` or
    when the largest constraint violation and the largest change of ``x``
    fall below ``tolerance``. Its output is only as feasible as that
    tolerance allows (float32 stalls near 1e-5): see :meth:`max_violation`.

    Args:
        A, b, C, d, box: the constraints, as in :class:`OSQPProjector`.
        iterations: iteration budget.
        tolerance: absolute stopping tolerance.
        rho: ADMM penalty; 0.3 reached 1e-5 on the checkerboard with the
            [-1, 1] box in about 100 iterations, where 1.0 and 3.0 stalled.
    """

    def __init__(
        self,
        A,
        b=None,
        *,
        C=None,
        d=None,
        box=None,
        iterations: int = 1000,
        tolerance: float = 1e-5,
        rho: float = 0.3,
        **kwargs,
    ):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self._spec = dict(
            A=np.asarray(A, dtype=np.float64).tolist(),
            b=None if b is None else np.asarray(b, dtype=np.float64).reshape(-1).tolist(),
            C=None if C is None else np.asarray(C, dtype=np.float64).tolist(),
            d=None if d is None else np.asarray(d, dtype=np.float64).reshape(-1).tolist(),
            box=None if box is None else [np.asarray(v, dtype=np.float64).tolist() for v in box],
        )
        if iterations < 1 or tolerance <= 0 or rho <= 0:
            raise LinconError("iterations must be >= 1, tolerance > 0 and rho > 0.")
        system = geometry.as_constraint_system(A, b, C, d)
        self.system = system
        self.iterations, self.tolerance, self.rho = int(iterations), float(tolerance), float(rho)
        n = system.dim
        big = 1e30  # finite stand-in for infinity keeps the clips free of inf arithmetic
        lo, hi = geometry.as_box(box, n) or (np.full(n, -np.inf), np.full(n, np.inf))
        # The exact rows, for max_violation.
        self._rows = (*geometry.with_box(system.A, system.b, lo, hi), system.C, system.d)
        lo, hi = np.maximum(lo, -big), np.minimum(hi, big)
        bounded = ((lo > -big) | (hi < big)).astype(np.float64)
        B = np.vstack([system.A, system.C])
        e = 1.0 + rho * bounded
        gram = np.eye(B.shape[0]) / rho + (B / e) @ B.T
        self._consts = dict(
            Bt=B.T.astype(np.float32),
            woodbury=np.linalg.inv(gram).astype(np.float32) if B.shape[0] else np.zeros((0, 0), np.float32),
            inv_e=(1.0 / e).astype(np.float32),
            bounded=bounded.astype(np.float32),
            lower_B=np.concatenate([np.full(system.A.shape[0], -big), system.d]).astype(np.float32),
            upper_B=np.concatenate([system.b, system.d]).astype(np.float32),
            lower=lo.astype(np.float32),
            upper=hi.astype(np.float32),
        )
        self.units = n

    def call(self, inputs):
        y = ops.cast(inputs, "float32")
        c = {k: ops.convert_to_tensor(v) for k, v in self._consts.items()}
        Bt, B = c["Bt"], ops.transpose(c["Bt"])
        rho, tol = self.rho, self.tolerance

        def solve(v):  # (E + rho B^T B)^{-1} v, row-wise, by Woodbury
            ve = v * c["inv_e"]
            return ve - ops.matmul(ops.matmul(ops.matmul(ve, Bt), c["woodbury"]), B) * c["inv_e"]

        def cond(i, x, zb, zx, wb, wx, residual):
            return ops.logical_and(i < self.iterations, residual > tol)

        def body(i, x, zb, zx, wb, wx, residual):
            v = y + rho * (ops.matmul(zb - wb, B) + c["bounded"] * (zx - wx))
            x_new = solve(v)
            Bx = ops.matmul(x_new, Bt)
            zb_new = ops.clip(Bx + wb, c["lower_B"], c["upper_B"])
            zx_new = ops.clip(x_new + wx, c["lower"], c["upper"])
            wb_new = wb + Bx - zb_new
            wx_new = wx + x_new - zx_new
            violation = ops.maximum(
                ops.max(ops.maximum(Bx - c["upper_B"], c["lower_B"] - Bx)),
                ops.max(ops.maximum(x_new - c["upper"], c["lower"] - x_new)),
            )
            change = ops.max(ops.abs(x_new - x))
            return i + 1, x_new, zb_new, zx_new, wb_new, wx_new, ops.maximum(violation, change)

        By = ops.matmul(y, Bt)
        start = (
            ops.convert_to_tensor(0),
            y,
            ops.clip(By, c["lower_B"], c["upper_B"]),
            ops.clip(y, c["lower"], c["upper"]),
            ops.zeros_like(By),
            ops.zeros_like(y),
            ops.convert_to_tensor(np.float32(np.inf)),
        )
        return ops.while_loop(cond, body, start)[1]

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def max_violation(self, outputs) -> float:
        """Largest absolute violation of the constraints and box by ``outputs``."""
        x = np.asarray(ops.convert_to_numpy(outputs), dtype=np.float64).reshape(-1, self.units)
        return geometry.max_violation(x, *self._rows)

    def get_config(self):
        config = super().get_config()
        config.update(self._spec, iterations=self.iterations, tolerance=self.tolerance, rho=self.rho)
        return config


def projection_error(x, reference) -> float:
    """Largest absolute difference between two batches of projections."""
    return float(np.max(np.abs(np.asarray(x, dtype=np.float64) - np.asarray(reference, dtype=np.float64))))
