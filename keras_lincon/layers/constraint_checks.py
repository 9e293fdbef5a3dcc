"""Output checks of :class:`~keras_lincon.LinearInequalityConstraint`, with the one residual formula.

A mixin: ``violations``, ``max_violation``, ``assert_constraints``,
``below_floor``, ``floor`` and ``constraint_rows`` measure outputs against the
layer's rows with :func:`keras_lincon.geometry.violations` (per-sample ``b``
and ``d`` for layers that take right-hand sides as inputs). The weight checks
and the generator guard come from :class:`~keras_lincon.layers.generator_guard.GeneratorGuard`.
"""

from __future__ import annotations

import keras
import numpy as np

from keras_lincon import geometry
from keras_lincon.errors import ConstraintShapeError, ConstraintViolationError
from keras_lincon.layers.generator_guard import GeneratorGuard
from keras_lincon.tolerances import FLOAT32_TOLERANCE


class ConstraintChecks(GeneratorGuard):
    """Output checks for the constraint layer (and, inherited, its weight checks and generator guard)."""

    # --------------------------------------------------------- output checks

    def constraint_rows(self):
        """The layer's feasible set as ``(G, h, C, d)``: ``G x <= h`` (box rows
        included; scaled rows with their stored ``b``, the floor when
        ``rhs_input``) and ``C x = d``; float64 numpy arrays."""
        s = self.system
        lower, upper = self.box if self.box is not None else (None, None)
        G, h = geometry.with_box(s.A, s.b, lower, upper)
        return G, h, s.C, s.d

    @property
    def floor(self) -> np.ndarray:
        """(m_in,) declared floor of the input ``b`` (``b`` of ``scaled_rows`` with
        ``rhs_input=True``; ``-inf`` where the layer is exact for every value)."""
        if self._plan.stages.apex is not None or self._plan.stages.shift is not None:
            return np.full(len(self._plan.input_rows), -np.inf)
        return self.system.b[np.array(self._plan.input_rows, dtype=int)]

    def _rhs_parts(self, rhs) -> list:
        """``rhs`` as a list of float64 arrays, one per right-hand-side input (checked)."""
        names = self._plan.rhs_names
        parts = list(rhs) if isinstance(rhs, (list, tuple)) else [rhs]
        if len(parts) != len(names):
            raise ConstraintShapeError(f"rhs= must be {', '.join(names)}: the layer's right-hand-side inputs.")
        arrays = []
        for name, size, part in zip(names, self._plan.rhs_sizes, parts, strict=True):
            array = np.asarray(keras.ops.convert_to_numpy(part), dtype=np.float64)
            if array.shape[-1:] != (size,):
                raise ConstraintShapeError(f"rhs= {name} must have shape (batch, {size}); got {array.shape}.")
            arrays.append(array.reshape(-1, size))
        return arrays

    def _rhs_rows(self, rhs, batch: int):
        """``(b, d)`` per sample, (batch, m) and (batch, p): the stored ones, with the inputs in ``rhs``."""
        b = np.repeat(self.system.b[None], batch, axis=0)
        d = np.repeat(self.system.d[None], batch, axis=0)
        if rhs is None:
            return b, d
        parts = self._rhs_parts(rhs)
        if self._plan.rhs.d:
            d = np.broadcast_to(parts.pop(), d.shape)
        if parts:
            b[:, np.array(self._plan.input_rows, dtype=int)] = parts[0]
        return b, d

    def below_floor(self, rhs) -> np.ndarray:
        """Indices of the samples whose ``b_s`` is below the floor somewhere (not guaranteed)."""
        if self._plan.stages.shift is not None:
            return np.zeros(0, dtype=int)  # exact for every value
        r = self._rhs_parts(rhs)[0]
        return np.flatnonzero(np.any(r < self.floor, axis=1))

    def violations(self, outputs, relative: bool = False, *, rhs=None) -> np.ndarray:
        """(B,) worst violation of each output; ``<= 0`` feasible, NaN/inf count as violations.

        Args:
            outputs: (..., n) layer outputs.
            rhs: the right-hand sides they were computed for, as passed to the
                layer after the features (``b_s``, ``b``, ``d``, or ``(b, d)``
                for two inputs), else None for the stored ones.
            relative: scale residuals as in the tolerance statement.
        """
        y = np.asarray(keras.ops.convert_to_numpy(outputs), dtype=np.float64).reshape(-1, self.units)
        G, h, C, d = self.constraint_rows()
        if rhs is None:
            return geometry.violations(y, G, h, C, d, relative=relative)
        b, d = self._rhs_rows(rhs, y.shape[0])  # the rows of A come first in G
        h = np.concatenate([b, np.broadcast_to(h[b.shape[1] :], (y.shape[0], h.size - b.shape[1]))], axis=1)
        return geometry.violations(y, G, h, C, d, relative=relative)

    def max_violation(self, outputs, relative: bool = False, *, rhs=None) -> float:
        """Largest violation of the layer's constraints and box by ``outputs``.

        Args:
            outputs: (..., n) array or tensor of layer outputs; rhs: as for
                :meth:`violations`.
            relative: scale residuals as in the tolerance statement.

        Returns:
            float; ``<= 0`` means feasible.
        """
        v = self.violations(outputs, relative, rhs=rhs)
        return float(v.max()) if v.size else -np.inf

    def assert_constraints(self, outputs, tolerance: float = FLOAT32_TOLERANCE, *, rhs=None) -> float:
        """Raises ConstraintViolationError naming the infeasible samples; returns the worst one.

        Uses the relative measure of the tolerance statement.
        """
        v = self.violations(outputs, relative=True, rhs=rhs)
        bad = np.flatnonzero(~(v <= tolerance))  # NaN counts as infeasible
        if bad.size:
            hint = ""
            if rhs is not None and self.below_floor(rhs).size:
                hint = f" Samples {self.below_floor(rhs)[:8].tolist()} have b_s below the declared floor."
            raise ConstraintViolationError(
                f"samples {bad[:8].tolist()} violate the constraints (worst relative violation "
                f"{np.nanmax(v) if np.isfinite(v).any() else float('nan'):.3g} > tolerance {tolerance:g}).{hint}"
            )
        return float(v.max()) if v.size else -np.inf
