"""Checks of :class:`~keras_lincon.LinearInequalityConstraint`: its stored weights and its outputs.

A mixin, so that the layer class holds only its Keras life cycle
(``__init__``/``build``/``call``/``get_config``): the generator weights are
checked against ``A, b, C, d`` whenever they are loaded or set, and outputs
are measured with the one residual formula (:func:`keras_lincon.system.violations`).
"""

from __future__ import annotations

import keras
import numpy as np

from keras_lincon import polyhedra, weights_lib
from keras_lincon.errors import ConstraintShapeError, ConstraintViolationError, GeneratorMismatchError

#: Relative float32 tolerance stated by the layer (see its docstring).
FLOAT32_TOLERANCE = 1e-5


class ConstraintChecks:
    """Weight verification and output checks for the constraint layer."""

    # ------------------------------------------------- generator weight checks

    def _generator_variables(self) -> dict:
        trainable_ids = {id(v) for v in self.trainable_weights}
        return {v.name.split("/")[-1]: v for v in self.weights if id(v) not in trainable_ids}

    def verify_generators(self) -> None:
        """Checks the stored generator (and box) weights against ``A, b, C, d``.

        Run automatically when weights are loaded (``load_model``,
        ``load_weights``) or set with ``layer.set_weights``, and by
        :func:`keras_lincon.serving.export_for_serving`. ``model.set_weights``
        writes variables directly: call :func:`keras_lincon.verify_generators`
        on the model after it.

        Raises:
            GeneratorMismatchError: the weights belong to another constraint
                set or box, were edited, or were never loaded.
        """
        if not self.built:
            return
        variables = self._generator_variables()
        values = {name: keras.ops.convert_to_numpy(v) for name, v in variables.items()}
        repaired = weights_lib.repair_padding(values, self._layout)
        plan = self._plan
        box = self.box if plan.center_is_weight else None
        weights_lib.check_weights(repaired, self._layout, self._call_mode, plan.generator_system, box)
        for name, value in repaired.items():
            if value is not values[name]:
                variables[name].assign(value)
        self._generators_ready = True

    def _verify_before_first_call(self) -> None:
        """A layer rebuilt from its config runs only once its weights passed the check."""
        try:
            values_readable = all(
                np.all(np.isfinite(keras.ops.convert_to_numpy(v))) for v in self._generator_variables().values()
            )
        except Exception:  # symbolic values inside a traced function: cannot look
            values_readable = False
        if not values_readable:
            raise GeneratorMismatchError(
                f"layer {self.name!r} was rebuilt from its config without checked generator weights "
                "(e.g. by keras.models.clone_model). Copy them with clone.set_weights(model.get_weights()) "
                "and then call keras_lincon.verify_generators(clone), or load a saved model, or construct "
                "the layer again from A, b."
            )
        self.verify_generators()

    def load_own_variables(self, store):
        super().load_own_variables(store)
        self.verify_generators()

    def set_weights(self, weights):
        previous = self.get_weights()
        super().set_weights(weights)
        try:
            self.verify_generators()
        except GeneratorMismatchError:
            super().set_weights(previous)
            raise

    # --------------------------------------------------------- output checks

    def constraint_rows(self):
        """The layer's feasible set as ``(G, h, C, d)``: ``G x <= h`` (box rows
        included; scaled rows with their stored ``b``, the floor when
        ``rhs_input``) and ``C x = d``; float64 numpy arrays."""
        s = self.system
        lower, upper = self.box if self.box is not None else (None, None)
        G, h = polyhedra.with_box(s.A, s.b, lower, upper)
        return G, h, s.C, s.d

    @property
    def floor(self) -> np.ndarray:
        """(m_in,) declared floor of the input ``b`` (``b`` of ``scaled_rows`` with
        ``rhs_input=True``; ``-inf`` where the layer is exact for every value)."""
        if self._plan.apex is not None or self._plan.shift is not None:
            return np.full(len(self._input_rows), -np.inf)
        return self.system.b[np.array(self._input_rows, dtype=int)]

    def _rhs_parts(self, rhs) -> list:
        """``rhs`` as a list of float64 arrays, one per right-hand-side input (checked)."""
        names = self._rhs_names()
        parts = list(rhs) if isinstance(rhs, (list, tuple)) else [rhs]
        if len(parts) != len(names):
            raise ConstraintShapeError(f"rhs= must be {', '.join(names)}: the layer's right-hand-side inputs.")
        arrays = []
        for name, size, part in zip(names, self._rhs_sizes, parts, strict=True):
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
        if self._rhs.d:
            d = np.broadcast_to(parts.pop(), d.shape)
        if parts:
            b[:, np.array(self._input_rows, dtype=int)] = parts[0]
        return b, d

    def below_floor(self, rhs) -> np.ndarray:
        """Indices of the samples whose ``b_s`` is below the floor somewhere (not guaranteed)."""
        if self._plan.shift is not None:
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
            return polyhedra.violations(y, G, h, C, d, relative=relative)
        b, d = self._rhs_rows(rhs, y.shape[0])  # the rows of A come first in G
        h = np.concatenate([b, np.broadcast_to(h[b.shape[1] :], (y.shape[0], h.size - b.shape[1]))], axis=1)
        return polyhedra.violations(y, G, h, C, d, relative=relative)

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


def verify_generators(model: keras.layers.Layer) -> int:
    """Checks every constraint layer in ``model`` (or the layer itself)
    against its constraints; returns how many were checked.

    Use it after ``model.set_weights(...)``, which writes variables without
    the layers' own checks.

    Raises:
        GeneratorMismatchError: a layer's weights do not match its constraints.
    """
    layers = [model] if isinstance(model, ConstraintChecks) else []
    layers += [layer for layer in model._flatten_layers(include_self=False) if isinstance(layer, ConstraintChecks)]
    for layer in layers:
        layer.verify_generators()
    return len(layers)
