"""A constraint layer with a second, scaled stage (issue 11).

The generator stage is a :class:`~keras_lincon.LinearInequalityConstraint`
without box; the box and the *scaled rows* are then enforced by ray scaling
towards a centre (see :mod:`keras_lincon.scaling_lib` and "Two stages" in the
design notes). This covers sets whose double description explodes (their
rows move to the scaled stage automatically) and right-hand sides that are
a model input (``layer([features, b_s])``).
"""

from __future__ import annotations

import warnings

import keras
import numpy as np
from keras import ops

from keras_lincon import polyhedra, scaling_lib
from keras_lincon.errors import ConstraintShapeError, ConstraintViolationError, LinconError, TooManyGeneratorsError
from keras_lincon.layers import FLOAT32_TOLERANCE, LinearInequalityConstraint, segment_max

_FAR = 1e30  # "no limit" for a row the clipped point does not push against
_MIN_SLACK = 1e-30  # keeps 1 / slack finite when a right-hand side is below its floor
#: ``scaling`` values of the layer: the fixed maps of scaling_lib plus the learned mix.
SCALINGS = scaling_lib.MODES + ("mix",)


class ScaledRowsWarning(UserWarning):
    """Rows were moved from the generator stage to the scaled stage."""


def scaled_stage(y, stage: scaling_lib.ScaledStage, mode: str, rhs=None):
    """``keras.ops`` version of :func:`keras_lincon.scaling_lib.scale_map`.

    Args:
        y: (B, n) generator-stage outputs (points of ``P_gen``).
        stage: the planned stage (numpy constants, embedded in the graph).
        mode: ``"global"``, ``"per_block"``, ``"clip_scale"``, ``"clip_blend"``,
            or ``"both"`` (returns the ``per_block`` and ``clip_blend`` results).
        rhs: (B, m) per-sample right-hand side of the scaled rows, or None
            for the stored one. Exact where ``rhs >= floor``.

    Returns:
        (B, n) outputs in ``P_gen``, the box and the scaled rows.
    """
    dtype = y.dtype

    def const(a):
        return ops.convert_to_tensor(np.asarray(a, dtype=np.float32), dtype=dtype)

    k = stage.n_blocks
    seg = np.where(stage.coord_block < 0, k, stage.coord_block).astype(np.int32)  # k: free slot
    c = const(stage.center)
    centered = y - c
    ratio = ops.maximum(centered * const(stage.inv_upper), centered * const(stage.inv_lower))
    m = stage.rows.shape[0]
    if m:
        if rhs is None:
            inv_slack = const(stage.inv_slack)
        else:
            inv_slack = 1.0 / ops.maximum(rhs - const(stage.row_center), _MIN_SLACK)
        row_ratio = ops.matmul(centered, const(stage.rows.T)) * inv_slack
    if mode == "global":
        worst = ops.max(ratio, axis=-1, keepdims=True)
        if m:
            worst = ops.maximum(worst, ops.max(row_ratio, axis=-1, keepdims=True))
        return c + centered / ops.maximum(worst, 1.0)
    block_ratio = segment_max(ratio, seg, k + 1)
    if m:
        row_seg = np.where(stage.row_block < 0, k, stage.row_block).astype(np.int32)
        block_ratio = ops.maximum(block_ratio, segment_max(row_ratio, row_seg, k + 1))
    scale = ops.take(ops.maximum(block_ratio, 1.0), seg, axis=1)
    free = np.asarray(stage.coord_block < 0)
    clipped = ops.clip(y, const(stage.lower), const(stage.upper))
    per_block = ops.where(free, clipped, c + centered / scale)
    if mode == "per_block":
        return per_block
    anchor = c + ops.zeros_like(y) if mode == "clip_scale" else per_block
    # the block's inequality rows: generator rows (fixed rhs), scaled rows (maybe per sample)
    step = ops.matmul(clipped - anchor, const(stage.gen_rows.T))
    room = const(stage.gen_rhs) - ops.matmul(anchor, const(stage.gen_rows.T))
    if m:
        s_rhs = const(stage.rhs) if rhs is None else rhs
        step = ops.concatenate([step, ops.matmul(clipped - anchor, const(stage.rows.T))], axis=-1)
        room = ops.concatenate([room, s_rhs - ops.matmul(anchor, const(stage.rows.T))], axis=-1)
    row_seg = np.concatenate([stage.gen_block, stage.row_block])
    row_seg = np.where(row_seg < 0, k, row_seg).astype(np.int32)
    positive = step > 0
    limit = ops.where(positive, ops.relu(room) / ops.where(positive, step, 1.0), _FAR)
    lam = ops.clip(-segment_max(-limit, row_seg, k + 1), 0.0, 1.0)
    keep = np.append(~stage.block_has_equality, False)  # clipping breaks equalities: lam = 0
    lam = ops.take(lam * const(keep), seg, axis=1)
    blended = anchor + lam * (clipped - anchor)
    if mode == "clip_scale" and stage.block_has_equality.any():
        blended = ops.where(np.append(stage.block_has_equality, False)[seg], per_block, blended)
    out = ops.where(free, clipped, blended)
    return (per_block, out) if mode == "both" else out


@keras.saving.register_keras_serializable(package="keras_lincon")
class ScaledRowsConstraint(keras.layers.Layer):
    """``A x <= b``, ``C x = d`` and a box, with some rows enforced by scaling.

    The *generator rows* are enforced as in
    :class:`~keras_lincon.LinearInequalityConstraint` (the output ``y`` of
    generators lies in ``P_gen`` for every input); the box and the *scaled
    rows* ``a_i.x <= b_i`` (``i`` in ``scaled_rows``) by

        x = c + (y - c) / max(1, max_i a_i.(y - c) / (b_i - a_i.c))

    with one factor per independent block of the rows (``scaling``), where the
    centre ``c`` is in ``P_gen`` and strictly inside the scaled rows and the box
    (computed once by an LP, or ``center=``, validated). ``x`` is a convex
    combination of ``y`` and ``c``: every output is feasible, for every input.

    Which rows are scaled: those listed in ``scaled_rows`` (indices or a
    boolean mask over the rows of ``A``), plus, unless ``fallback=False``, every
    block whose double description could exceed ``max_generators`` (McMullen's
    bound, checked before any enumeration). Such a move is announced with a
    :class:`ScaledRowsWarning` naming the rows. Its cost is quality, not
    feasibility: scaled outputs are pulled towards ``c`` instead of reaching
    every point of the set freely.

    Input-dependent right-hand sides: with ``rhs_input=True`` the layer is
    called as ``layer([features, b_s])`` with ``b_s`` of shape
    ``(batch, len(scaled_rows))`` (in the order of the sorted row indices) and
    ``b`` of those rows is the declared *floor*; rows the fallback moves keep
    their fixed ``b``. **Exactness condition:**
    every output is feasible for its own ``b_s`` whenever ``b_s >= floor``
    elementwise (the centre is computed for the floor). Samples below the
    floor are not guaranteed; :meth:`max_violation` (given ``rhs=``) and
    :meth:`below_floor` report them.

    ``scaling``: ``"per_block"`` (default: one factor per block, free
    coordinates clipped), ``"global"`` (the paper's one factor),
    ``"clip_blend"`` (clip to the box, then move back towards the per-block
    result only as far as the block's rows need), ``"clip_scale"`` (clip,
    then scale towards a centre strictly inside the generator rows too) or
    ``"mix"``: per block a learned convex combination
    ``x_pb + a (x_cb - x_pb)``, ``a = sigmoid(h W + w0)`` of the layer input,
    of the ``per_block`` and ``clip_blend`` results (both feasible, so the
    mix is too; best on the paper's toy, see BENCHMARKS.md).

    Tolerance: as :class:`~keras_lincon.LinearInequalityConstraint` (float32,
    relative 1e-5); computes in float32 under mixed precision.

    Args:
        A, b, C, d, box, nonneg, method, max_generators, force_float32,
            kernel_initializer, bias_initializer, kernel_regularizer: as for
            :class:`~keras_lincon.LinearInequalityConstraint`.
        scaled_rows: row indices or (m,) boolean mask of ``A``, or None.
        rhs_input: the scaled rows' right-hand side is the second input.
        center: optional (n,) centre (checked).
        scaling: see above.
        fallback: move exploding blocks to the scaled stage (default True).
        generator_layer, moved_rows: written by ``get_config`` (the built
            generator sublayer and the rows the fallback moved), so loading
            runs no double description.

    Example:
        >>> import keras, numpy as np, keras_lincon as klc
        >>> from keras_lincon.scaled_layer import ScaledRowsConstraint
        >>> layer = ScaledRowsConstraint(-np.eye(3), np.zeros(3), box=(0.0, 2.0))
        >>> x = layer(np.random.normal(size=(4, 5)).astype("float32"))
        >>> bool(layer.max_violation(x) <= 1e-6)
        True
    """

    def __init__(
        self,
        A,
        b=None,
        *,
        C=None,
        d=None,
        box=None,
        scaled_rows=None,
        rhs_input: bool = False,
        center=None,
        scaling: str = "per_block",
        fallback: bool = True,
        nonneg: str = "abs",
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        method: str = "auto",
        max_generators: int = polyhedra.DEFAULT_MAX_GENERATORS,
        force_float32: bool = True,
        generator_layer=None,
        moved_rows=(),
        **kwargs,
    ):
        if force_float32:
            policy = keras.dtype_policies.get(kwargs.get("dtype") or keras.config.dtype_policy())
            if policy.compute_dtype in ("float16", "bfloat16"):
                kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        if scaling not in SCALINGS:
            raise LinconError(f"scaling must be one of {SCALINGS}; got {scaling!r}.")
        self.system = polyhedra.as_constraint_system(A, b, C, d)
        s, n = self.system, self.system.dim
        self.units = n
        self.box = polyhedra.as_box(box, n)
        self.scaling = scaling
        self.rhs_input = bool(rhs_input)
        self.fallback = bool(fallback)
        self.max_generators = int(max_generators)
        self.input_rows = tuple(sorted(set(self._row_indices(scaled_rows))))  # the user's scaled rows
        self.split = scaling_lib.split_rows(
            s,
            sorted(set(self.input_rows) | set(int(i) for i in moved_rows)),
            self.max_generators,
            fallback=self.fallback and generator_layer is None,
        )
        if moved_rows:  # from a saved config
            self.split = scaling_lib.RowSplit(
                self.split.generator, self.split.scaled, tuple(sorted(int(i) for i in moved_rows)), ()
            )
        if self.split.moved and not moved_rows:
            rows = list(self.split.moved)
            warnings.warn(
                f"rows {rows[:20]}{' ...' if len(rows) > 20 else ''} of A ({len(rows)} rows) are enforced by "
                f"scaling, not generators: their block's double description could have up to "
                f"{max(self.split.bounds):.3g} vertices (> max_generators={self.max_generators}). Outputs stay "
                "exactly feasible, but are pulled towards a centre where those rows bind, so the layer fits "
                "targets near them less well. Pass fallback=False to refuse instead, or scaled_rows= to choose.",
                ScaledRowsWarning,
                stacklevel=2,
            )
        if self.rhs_input and not self.input_rows:
            raise ConstraintShapeError("rhs_input=True needs scaled_rows: the rows whose right-hand side is an input.")
        gen = np.array(self.split.generator, dtype=int)
        sc = np.array(self.split.scaled, dtype=int)
        self.stage = scaling_lib.plan(
            s.A[gen] if gen.size else np.zeros((0, n)),
            s.b[gen] if gen.size else None,
            s.C if s.C.size else None,
            s.d if s.C.size else None,
            scaled_rows=s.A[sc] if sc.size else None,
            scaled_rhs=s.b[sc] if sc.size else None,
            box=box,
            center=center,
            input_dependent=self.rhs_input,
            strict_generator_rows=(scaling == "clip_scale"),
        )
        if generator_layer is None:
            gen_kwargs = dict(
                C=s.C if s.C.size else None,
                d=s.d if s.C.size else None,
                nonneg=nonneg,
                kernel_initializer=kernel_initializer,
                bias_initializer=bias_initializer,
                kernel_regularizer=kernel_regularizer,
                method=method,
                max_generators=max_generators,
                force_float32=force_float32,
                dtype=self.dtype_policy,
            )
            try:
                generator_layer = LinearInequalityConstraint(self.stage.gen_rows, self.stage.gen_rhs, **gen_kwargs)
            except TooManyGeneratorsError as exc:
                if not self.fallback or not len(self.split.generator):
                    raise
                # The bound did not predict it (e.g. an unbounded set): scale every inequality row.
                rows = list(self.split.generator)
                warnings.warn(
                    f"rows {rows[:20]}{' ...' if len(rows) > 20 else ''} of A ({len(rows)} rows) are enforced by "
                    f"scaling, not generators: their double description was refused ({exc}). Outputs stay exactly "
                    "feasible but fit targets near those rows less well.",
                    ScaledRowsWarning,
                    stacklevel=2,
                )
                self.split = scaling_lib.RowSplit(
                    (), tuple(range(s.A.shape[0])), tuple(sorted(set(self.split.moved) | set(rows))), self.split.bounds
                )
                self.stage = scaling_lib.plan(
                    np.zeros((0, n)),
                    None,
                    gen_kwargs["C"],
                    gen_kwargs["d"],
                    scaled_rows=s.A,
                    scaled_rhs=s.b,
                    box=box,
                    center=center,
                    input_dependent=self.rhs_input,
                    strict_generator_rows=(scaling == "clip_scale"),
                )
                generator_layer = LinearInequalityConstraint(np.zeros((0, n)), None, **gen_kwargs)
        elif isinstance(generator_layer, dict):  # from a saved config: no double description
            generator_layer = keras.saving.deserialize_keras_object(generator_layer)
        if not isinstance(generator_layer, LinearInequalityConstraint) or generator_layer.units != n:
            raise ConstraintShapeError(f"generator_layer must be a LinearInequalityConstraint with {n} outputs.")
        self.generator_layer = generator_layer
        self.force_float32 = bool(force_float32)

    @property
    def _mixing(self) -> bool:
        return self.scaling == "mix" and self.stage.n_blocks > 0  # no block: the mix is the clip

    def _row_indices(self, scaled_rows) -> list:
        m = self.system.A.shape[0]
        if scaled_rows is None:
            return []
        arr = np.asarray(scaled_rows)
        if arr.dtype == bool:
            if arr.shape != (m,):
                raise ConstraintShapeError(f"a boolean scaled_rows mask needs shape ({m},) (one per row of A).")
            return np.flatnonzero(arr).tolist()
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            raise ConstraintShapeError("scaled_rows must be row indices of A (integers) or a boolean mask.")
        return arr.reshape(-1).astype(int).tolist()

    # ------------------------------------------------------------ Keras API

    def build(self, input_shape):
        if self.rhs_input:
            if not (
                isinstance(input_shape, (list, tuple))
                and len(input_shape) == 2
                and isinstance(input_shape[0], (list, tuple))
            ):
                raise ConstraintShapeError("with rhs_input=True call the layer on [features, b_s].")
            features_shape, rhs_shape = input_shape
            if rhs_shape[-1] != len(self.input_rows):
                raise ConstraintShapeError(
                    f"b_s must have last dimension {len(self.input_rows)} (one per row in scaled_rows); "
                    f"got {tuple(rhs_shape)}."
                )
        else:
            features_shape = input_shape
        if not self.generator_layer.built:  # a deserialized sublayer is built already
            self.generator_layer.build(features_shape)
        if self._mixing:
            k = self.stage.n_blocks
            self.mix_kernel = self.add_weight(name="mix_kernel", shape=(features_shape[-1], k), initializer="zeros")
            self.mix_bias = self.add_weight(name="mix_bias", shape=(k,), initializer="zeros")

    def call(self, inputs):
        if self.rhs_input:
            features, rhs = inputs
            y = self.generator_layer(features)
            rhs = self._full_rhs(ops.cast(rhs, y.dtype))
        else:
            features = inputs
            y, rhs = self.generator_layer(inputs), None
        if not self._mixing:
            mode = "per_block" if self.scaling == "mix" else self.scaling
            return scaled_stage(y, self.stage, mode, rhs)
        per_block, clip_blend = scaled_stage(y, self.stage, "both", rhs)
        h = ops.cast(features, y.dtype)
        alpha = ops.sigmoid(ops.matmul(h, ops.cast(self.mix_kernel, y.dtype)) + ops.cast(self.mix_bias, y.dtype))
        seg = np.maximum(self.stage.coord_block, 0).astype(np.int32)  # free coordinates: both are the clip
        return per_block + ops.take(alpha, seg, axis=1) * (clip_blend - per_block)

    def compute_output_shape(self, input_shape):
        features_shape = input_shape[0] if self.rhs_input else input_shape
        return tuple(features_shape[:-1]) + (self.units,)

    def get_config(self):
        config = super().get_config()
        s = self.system
        config.update(
            A=s.A.tolist(),
            b=s.b.tolist(),
            C=s.C.tolist() if s.C.size else None,
            d=s.d.tolist() if s.C.size else None,
            box=[self.box[0].tolist(), self.box[1].tolist()] if self.box is not None else None,
            scaled_rows=list(self.input_rows),
            moved_rows=list(self.split.moved),
            rhs_input=self.rhs_input,
            center=self.stage.center.tolist(),
            scaling=self.scaling,
            fallback=self.fallback,
            max_generators=self.max_generators,
            force_float32=self.force_float32,
            generator_layer=keras.saving.serialize_keras_object(self.generator_layer),
        )
        return config

    # --------------------------------------------------------------- checks

    @property
    def _input_columns(self) -> np.ndarray:
        """Positions of the input rows among the stage's scaled rows."""
        return np.searchsorted(np.array(self.split.scaled), np.array(self.input_rows, dtype=int))

    def _full_rhs(self, rhs):
        """(B, m_in) input right-hand sides -> (B, m) for every scaled row (moved rows keep ``b``)."""
        cols = self._input_columns
        select = np.zeros((cols.size, self.stage.rhs.size), dtype=np.float32)
        select[np.arange(cols.size), cols] = 1.0
        base = self.stage.rhs.astype(np.float32)
        return ops.convert_to_tensor(base, rhs.dtype) + ops.matmul(
            rhs - ops.convert_to_tensor(base[cols], rhs.dtype), ops.convert_to_tensor(select, rhs.dtype)
        )

    def _full_rhs_numpy(self, rhs) -> np.ndarray:
        r = np.asarray(keras.ops.convert_to_numpy(rhs), dtype=np.float64).reshape(-1, len(self.input_rows))
        full = np.repeat(self.stage.rhs[None], r.shape[0], axis=0)
        full[:, self._input_columns] = r
        return full

    @property
    def floor(self) -> np.ndarray:
        """(m_in,) declared floor of the input right-hand sides (``b`` of ``scaled_rows``)."""
        return self.system.b[np.array(self.input_rows, dtype=int)]

    def below_floor(self, rhs) -> np.ndarray:
        """Indices of the samples whose ``b_s`` is below the floor somewhere (not guaranteed)."""
        r = np.asarray(keras.ops.convert_to_numpy(rhs), dtype=np.float64).reshape(-1, len(self.input_rows))
        return np.flatnonzero(np.any(r < self.floor, axis=1))

    def violations(self, outputs, rhs=None, relative: bool = False) -> np.ndarray:
        """(B,) worst violation of each output (``<= 0`` feasible).

        Args:
            outputs: (B, n) layer outputs; rhs: (B, len(scaled_rows)) the ``b_s``
                they were computed for (``rhs_input``), else None for ``b``.
            relative: the relative measure of the tolerance statement.
        """
        y = np.asarray(keras.ops.convert_to_numpy(outputs), dtype=np.float64).reshape(-1, self.units)
        st = self.stage
        lower, upper = self.box if self.box is not None else (None, None)
        G, h = polyhedra.with_box(st.gen_rows, st.gen_rhs, lower, upper)
        worst = polyhedra.violations(y, G, h, self.system.C, self.system.d, relative=relative)
        if st.rows.shape[0]:
            r = st.rhs if rhs is None else self._full_rhs_numpy(rhs)
            r = np.broadcast_to(r, (y.shape[0], st.rows.shape[0]))
            res = y @ st.rows.T - r
            if relative:
                res = res / np.maximum(
                    np.abs(r) + np.linalg.norm(st.rows, axis=1) * np.linalg.norm(y, axis=1, keepdims=True), 1e-30
                )
            worst = np.maximum(worst, res.max(axis=1))
        return worst

    def max_violation(self, outputs, rhs=None, relative: bool = False) -> float:
        """Largest violation over a batch (see :meth:`violations`); ``<= 0`` feasible."""
        v = self.violations(outputs, rhs, relative)
        return float(v.max()) if v.size else -np.inf

    def assert_constraints(self, outputs, rhs=None, tolerance: float = FLOAT32_TOLERANCE) -> float:
        """Raises ConstraintViolationError naming the infeasible samples; returns the worst one."""
        v = self.violations(outputs, rhs, relative=True)
        bad = np.flatnonzero(~(v <= tolerance))  # NaN counts as infeasible
        if bad.size:
            hint = ""
            if rhs is not None and self.below_floor(rhs).size:
                hint = f" Samples {self.below_floor(rhs)[:8].tolist()} have b_s below the declared floor."
            raise ConstraintViolationError(
                f"samples {bad[:8].tolist()} violate the constraints (worst relative violation "
                f"{np.nanmax(v) if np.isfinite(v).any() else float('nan'):.3g} > {tolerance:g}).{hint}"
            )
        return float(v.max()) if v.size else -np.inf
