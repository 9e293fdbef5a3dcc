"""A Keras metric for constraint violations, for ``compile(metrics=...)``.

Keras glue on ``keras.ops`` only (TensorFlow, JAX, PyTorch). The residual is
the formula of :func:`keras_lincon.geometry.violations` (``relative=True``), the
numpy reference, written with ``keras.ops`` so it runs inside a train or test
step.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from keras_lincon.errors import ConstraintShapeError, LinconError
from keras_lincon.geometry import as_box, as_constraint_system, with_box


@keras.saving.register_keras_serializable(package="keras_lincon")
class ConstraintViolation(keras.metrics.Metric):
    """Worst relative constraint violation of the outputs since the last reset.

    Reports ``max_i (g_i.x - h_i) / (|h_i| + ||g_i|| ||x||)`` over every
    output ``x`` seen and every row of ``G x <= h`` (box rows included;
    ``C x = d`` counts as ``C x <= d`` and ``-C x <= -d``), as
    :func:`keras_lincon.geometry.violations` with ``relative=True``. ``<= 0``
    means every output was feasible; the layers guarantee ``<= 1e-5`` in
    float32. An output holding NaN or infinity counts as ``+inf``; with no
    outputs (or no rows) the result is ``-inf``.

    Constructed from a layer, ``ConstraintViolation(layer)`` (a
    :class:`~keras_lincon.LinearInequalityConstraint`: its rows and box), or
    from arrays, ``ConstraintViolation(A=..., b=..., C=..., d=..., box=...)``
    as in the layer. The config holds the rows, so a compiled model saved as
    ``.keras`` reloads with the metric.

    For a layer with ``rhs_input=True`` the input rows' ``b`` changes per
    sample, so every update needs it: ``update_state(None, y, rhs=b_s)``
    (the :class:`~keras_lincon.ConstrainedVAE` passes it; ``compile(metrics=...)``
    cannot, and gets an error saying so).

    Args:
        layer: a layer with ``constraint_rows()`` and ``units``.
        A, b, C, d, box: the constraints, when no layer is given.
        units: output size n; needed only when ``A`` is None.
        rhs_rows: indices of the rows of ``A`` whose ``b`` each update
            passes as ``rhs`` (set from the layer when it has ``rhs_input``).
        name, dtype: as for every Keras metric (default ``"max_violation"``).

    Update:
        ``update_state(y_true, y_pred, sample_weight=None, rhs=None)``: ``y_true`` is
        ignored; ``y_pred`` is (batch, ..., n), or any (batch, ...) whose
        values per sample group into vectors of n (e.g. (batch, 8, 8) for
        n = 64). ``sample_weight`` (batch,) or (batch, vectors per sample):
        vectors with weight 0 are left out (Keras passes masks this way).
        ``rhs`` (batch, m_in): the ``b_s`` of a layer with ``rhs_input``
        (one ``b_s`` per sample, for each of its output vectors).

    Example:
        >>> import keras, numpy as np, keras_lincon as klc
        >>> layer = klc.LinearInequalityConstraint(klc.monotone_chain(4), box=(-1.0, 1.0))
        >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(8), layer])
        >>> model.compile(optimizer="adam", loss="mse", metrics=[klc.ConstraintViolation(layer)])
        >>> x = np.random.default_rng(0).normal(size=(32, 3)).astype("float32")
        >>> logs = model.fit(x, np.zeros((32, 4)), epochs=1, verbose=0).history
        >>> bool(logs["max_violation"][0] <= 1e-5)
        True
        >>> metric = klc.ConstraintViolation(A=[[1.0, 1.0]], b=[1.0])
        >>> metric.update_state(None, np.array([[1.0, 1.0], [0.0, 0.0]]))
        >>> round(float(metric.result()), 4)  # (2 - 1) / (1 + sqrt(2) sqrt(2))
        0.3333
    """

    def __init__(
        self,
        layer=None,
        *,
        A=None,
        b=None,
        C=None,
        d=None,
        box=None,
        units=None,
        rhs_rows=None,
        rhs_d: bool = False,
        name="max_violation",
        dtype=None,
    ):
        super().__init__(name=name, dtype=dtype)
        if layer is not None:
            if any(v is not None for v in (A, b, C, d, box, units)):
                raise LinconError("ConstraintViolation takes a layer or the arrays A, b, C, d, box; not both.")
            G, h, C, d, rhs_rows, rhs_d = _rows_of_layer(layer)
        else:
            G, h, C, d, rhs_rows = _rows_of_arrays(A, b, C, d, box, units, rhs_rows)
        self.units = G.shape[1]
        self.rows = (G, h, C, d)  # float64, for the config
        if rhs_d and not C.shape[0]:
            raise ConstraintShapeError("rhs_d=True needs equality rows C.")
        self.rhs_d = bool(rhs_d)
        if self.rhs_d and rhs_rows is None:
            rhs_rows = []
        self.rhs_rows = rhs_rows
        p, r = C.shape[0], G.shape[0]
        G, h = np.vstack([G, C, -C]), np.concatenate([h, d, -d])
        self._constants = (G.T, h, np.abs(h), np.linalg.norm(G, axis=1))  # (n, r), (r,) x 3
        if rhs_rows is not None:
            self._rhs_constants = _rhs_placement(rhs_rows, self.rhs_d, p, r, h.size)
        self.value = self.add_variable(shape=(), initializer=keras.initializers.Constant(-np.inf), name="value")

    def _rhs(self, rhs, vectors: int):
        """(B, r) right-hand side per output vector: the fixed one with the input rows replaced by ``rhs``."""
        keep, placement = (ops.convert_to_tensor(c, self.dtype) for c in self._rhs_constants)
        if isinstance(rhs, (list, tuple)):  # (b_s, d_s), as the layer takes them
            rhs = ops.concatenate([ops.cast(part, self.dtype) for part in rhs], axis=-1)
        b = ops.reshape(ops.cast(rhs, self.dtype), (-1, placement.shape[0]))
        h = ops.convert_to_tensor(self._constants[1], self.dtype) * keep + ops.matmul(b, placement)
        return ops.reshape(ops.repeat(h[:, None], vectors, axis=1), (-1, keep.shape[0]))

    def _per_vector(self, y_pred, rhs=None):
        """(batch, vectors per sample) worst relative violation of each n-vector of ``y_pred``."""
        n, y_pred = self.units, ops.cast(y_pred, self.dtype)
        size = int(np.prod(y_pred.shape[1:])) if None not in y_pred.shape[1:] else None
        if size is not None and size % n:
            raise ConstraintShapeError(
                f"{self.name}: outputs of shape {tuple(y_pred.shape)} do not split into vectors of {n} values."
            )
        if (rhs is None) != (self.rhs_rows is None):
            raise LinconError(
                f"{self.name}: the layer's right-hand sides are an input (rhs_input=True), so every update "
                "needs them: update_state(None, y_pred, rhs=b_s). compile(metrics=...) cannot pass them; "
                "measure with layer.max_violation(y, rhs=b_s) instead."
                if rhs is None
                else f"{self.name}: rhs= is only for a metric of a layer with rhs_input=True."
            )
        x = ops.reshape(y_pred, (-1, n))
        finite = ops.all(ops.isfinite(x), axis=-1)
        worst = -np.inf
        if self._constants[1].size:
            G_T, h, h_abs, g_norms = (ops.convert_to_tensor(c, self.dtype) for c in self._constants)
            if rhs is not None:
                h = self._rhs(rhs, 1 if size is None else size // n)
                h_abs = ops.abs(h)
            x = ops.where(finite[:, None], x, 0.0)
            # divided by max(1, max_j |x_j|): huge finite outputs do not overflow
            s = ops.max(ops.abs(x), axis=-1, keepdims=True, initial=1.0)
            x = x / s
            scale = h_abs / s + g_norms * ops.sqrt(ops.sum(ops.square(x), axis=-1, keepdims=True))
            worst = ops.max((ops.matmul(x, G_T) - h / s) / ops.maximum(scale, 1e-30), axis=-1, initial=-np.inf)
        worst = ops.cast(ops.where(finite, worst, np.inf), self.dtype)
        return ops.reshape(worst, (-1, size // n) if size is not None else (ops.shape(y_pred)[0], -1))

    def update_state(self, y_true, y_pred, sample_weight=None, rhs=None):
        worst = self._per_vector(y_pred, rhs)
        if sample_weight is not None:
            weight = ops.convert_to_tensor(sample_weight)
            weight = ops.reshape(weight, (-1, int(np.prod(weight.shape[1:]))))  # (batch, 1 or vectors)
            worst = ops.where(ops.not_equal(weight, 0), worst, -np.inf)
        self.value.assign(ops.maximum(self.value, ops.max(worst, initial=-np.inf)))

    def result(self):
        return ops.convert_to_tensor(self.value)  # a tensor, not the variable (JAX traces this)

    def reset_state(self):
        self.value.assign(-np.inf)

    def get_config(self):
        G, h, C, d = self.rows
        return {
            **super().get_config(),
            "A": G.tolist() if G.size else None,
            "b": h.tolist() if G.size else None,
            "C": C.tolist() if C.size else None,
            "d": d.tolist() if C.size else None,
            "units": self.units,
            **({"rhs_rows": self.rhs_rows} if self.rhs_rows is not None else {}),
            **({"rhs_d": True} if self.rhs_d else {}),
        }


def _rows_of_layer(layer) -> tuple:
    """``(G, h, C, d, rhs_rows, rhs_d)`` of a constraint layer (the rows of ``A`` come first in ``G``)."""
    if not (hasattr(layer, "constraint_rows") and hasattr(layer, "units")):
        raise LinconError(
            f"ConstraintViolation(layer) needs a LinearInequalityConstraint; got {type(layer).__name__}. "
            "Pass the arrays instead: ConstraintViolation(A=..., b=..., C=..., d=..., box=...)."
        )
    G, h, C, d = layer.constraint_rows()
    plan = getattr(layer, "_plan", None)
    rhs_rows = list(plan.input_rows) if plan is not None and plan.rhs_sizes else None
    return G, h, C, d, rhs_rows, bool(plan is not None and plan.rhs.d)


def _rows_of_arrays(A, b, C, d, box, units, rhs_rows) -> tuple:
    """``(G, h, C, d, rhs_rows)`` from the arrays (checked), the box as rows of ``G``."""
    if A is None and units is None:
        raise ConstraintShapeError("ConstraintViolation needs a layer, A, or units (for a box only).")
    A = np.zeros((0, int(units))) if A is None else A
    system = as_constraint_system(A, b, C, d)
    if units is not None and system.dim != int(units):
        raise ConstraintShapeError(f"A has {system.dim} columns but units={units}; they must match.")
    G, h = with_box(system.A, system.b, *(as_box(box, system.dim) or (None, None)))
    if rhs_rows is not None:
        rhs_rows = [int(i) for i in np.asarray(rhs_rows).reshape(-1)]
        if len(set(rhs_rows)) != len(rhs_rows) or not all(0 <= i < system.A.shape[0] for i in rhs_rows):
            raise ConstraintShapeError(
                f"rhs_rows must be distinct indices of the {system.A.shape[0]} rows of A; got {rhs_rows}."
            )
    return G, h, system.C, system.d, rhs_rows


def _rhs_placement(rhs_rows: list, rhs_d: bool, p: int, r: int, size: int) -> tuple:
    """``(keep, placement)``: per sample, ``h * keep + [b_s, d_s] @ placement`` is ``h`` with the input rows
    replaced (``C x = d`` enters as ``C x <= d`` and ``-C x <= -d``; ``r`` inequality rows, ``p`` equalities)."""
    placement = np.zeros((len(rhs_rows) + (p if rhs_d else 0), size))
    placement[np.arange(len(rhs_rows)), rhs_rows] = 1.0
    if rhs_d:
        placement[len(rhs_rows) + np.arange(p), r + np.arange(p)] = 1.0
        placement[len(rhs_rows) + np.arange(p), r + p + np.arange(p)] = -1.0
    return 1.0 - np.abs(placement).sum(axis=0), placement
