"""The Keras layer whose outputs satisfy linear constraints by construction.

This module holds the Keras life cycle only: ``__init__`` validates and calls
:func:`keras_lincon.planning.layer_plan.plan_layer` once; ``build`` creates
the weights (:mod:`keras_lincon.layers.layer_weights`); ``call`` runs the
kernels (:mod:`keras_lincon.layers.generator_kernel`, then
:mod:`keras_lincon.layers.output_stages`); the weight and output checks are
mixins (:mod:`keras_lincon.layers.generator_guard`,
:mod:`keras_lincon.layers.constraint_checks`).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from keras_lincon import geometry
from keras_lincon.errors import ConstraintShapeError
from keras_lincon.layers import moved_projection, output_stages, precision
from keras_lincon.layers.constraint_checks import ConstraintChecks
from keras_lincon.layers.generator_kernel import generator_outputs
from keras_lincon.layers.layer_weights import create_weights
from keras_lincon.planning.layer_plan import SavedPlan, plan_layer
from keras_lincon.planning.layout import call_mode
from keras_lincon.planning.options import CALL_MODES, SCALINGS, group_options

try:  # where Keras traces a layer symbolically (model building, loading)
    from keras.src.backend.common.symbolic_scope import in_symbolic_scope as _in_symbolic_scope
except ImportError:  # pragma: no cover - future Keras layout

    def _in_symbolic_scope() -> bool:
        return True


__all__ = ["CALL_MODES", "SCALINGS", "LinearInequalityConstraint"]


@keras.saving.register_keras_serializable(package="keras_lincon")
class LinearInequalityConstraint(ConstraintChecks, keras.layers.Layer):
    """Maps features to outputs that satisfy ``A x <= b`` (and ``C x = d``, and a box).

    The feasible set ``P`` is converted once, at construction, into generators
    (:func:`keras_lincon.h_to_v`): vertices ``V`` in blocks, rays ``R`` and a
    lineality basis ``L``. The layer learns maps from its input ``h`` to
    coefficients and returns

        y = sum_blocks softmax(h W_v + c_v) V  +  nonneg(h W_r + c_r) R  +  (h W_l + c_l) L

    which lies in ``P`` for every input and every weight value, in training
    and at inference, with no projection (Frerix et al., CVPR-W 2020). With
    ``b = None`` this is the paper's homogeneous cone ``A x <= 0``.

    **The output map** (``output_map=``, or its fields as keywords). The box
    and the *scaled rows* are enforced after the generators, towards a centre
    ``c`` strictly inside them (``box_center``, checked; else the cone's apex
    for a box around it, as in the paper; else the deepest point, an LP):
    ``x = c + (y - c) / max(1, max_i a_i.(y - c) / (b_i - a_i.c))``, a convex
    combination of two feasible points. ``scaling`` chooses the treatment:
    ``"auto"`` (default: ``"project"`` where it pays: where every row is
    scaled, the right-hand sides are inputs and one projection covers every
    output, an optimization proxy; and, with a box and no ``scaled_rows``,
    ``box_center`` or ``rhs_input``, where the rows other than bounds share
    no coordinate, as the paper's checkerboard: those rows are then scaled
    and each one with the box projected onto; else ``"per_block"``; the
    choice is saved), ``"per_block"`` (one factor
    per independent block, free coordinates clipped), ``"global"`` (the paper's single factor),
    ``"clip_blend"``, ``"clip_scale"``, ``"mix"`` (a learned blend of
    ``per_block`` and ``clip_blend``) or ``"project"`` (the exact Euclidean
    projection: a few safeguarded Newton steps for blocks of one row plus
    bounds, ADMM then ray
    scaling with an implicit gradient for coupled blocks and equalities).
    Rows listed in ``scaled_rows`` are scaled; so is, unless
    ``fallback=False``, every block whose generators would be refused (with a
    :class:`~keras_lincon.ScaledRowsWarning`). Scaling costs fit near those
    rows, never feasibility.

    **Right-hand sides as inputs** (optimization proxies). ``rhs_input="b"``
    (every row of ``A``; or ``{"b": rows}``), ``"d"`` or ``("b", "d")``: call
    ``layer([h, b])``, ``layer([h, d])`` or ``layer([h, b, d])``. The layer
    computes a point of the stored set and moves it by ``T (beta - beta_0)``,
    exact for every value; it raises at construction when the input rows
    depend on each other or on fixed rows. DC3's QP ``A y = x, G y <= h`` is
    ``LinearInequalityConstraint(G, h, C=A, rhs_input="d", scaled_rows="all")``.
    ``rhs_input=True`` keeps its first meaning: ``b_s`` of the scaled rows
    above their stored ``b`` (a floor; :meth:`below_floor` reports samples
    below it), or, without scaled rows, every row's ``b`` (the shifted-apex
    form ``x = M^+ [b_s; d] + z``; ``M = [A; C]`` of full row rank, no box).

    **Tolerance.** In float32 every output satisfies
    ``a_i.x - b_i <= 1e-5 (|b_i| + ||a_i|| ||x||)`` (likewise ``C`` and the
    box) for inputs of any scale; with ``dtype="float64"`` (or floatx
    float64; ``JAX_ENABLE_X64=1`` on JAX) every stage runs in float64 and the
    bound is 1e-10. Mixed-precision policies still compute in float32 unless
    ``force_float32=False``; TF32 matmuls on GPUs are warned about
    (:func:`keras_lincon.layers.precision.use_exact_float32_matmuls`).
    **Cost:** about one ``Dense`` of the same shape, plus ``k r + r n`` for
    ``r`` rays and ``m n`` for ``m`` scaled rows.

    Args:
        A: (m, n) inequality rows (``n`` is the output size), or None with ``units=``.
        b: (m,) right-hand side, or None for ``A x <= 0``.
        C: optional (p, n) equality rows; d: (p,) their right-hand side.
        box: optional ``(lower, upper)`` bounds, scalars or (n,) arrays.
        units: the output size when ``A`` is None.
        rhs_input: ``False``, ``"b"``, ``"d"``, ``("b", "d")``,
            ``{"b": rows, "d": bool}`` or ``True`` (see above).
        output_map: a :class:`~keras_lincon.planning.options.OutputMap` or a
            dict of its fields, ``scaling`` (default ``"auto"``),
            ``scaled_rows`` (indices, a boolean mask or ``"all"``),
            ``box_center`` ((n,)), ``nonneg`` (``"abs"``, the paper's,
            ``"softplus"``, ``"relu"`` or ``"square"``), ``call_mode``
            (``"auto"``, ``"direct"`` or ``"projected"``: same set, different
            weight shapes) and ``projection_penalty`` (with ``"project"``: the
            weight of ``||y - x||^2`` added to the losses; 0.01 on DC3's QP).
            Each field may also be given as a keyword.
        construction: a :class:`~keras_lincon.planning.options.Construction`
            or a dict of ``method`` and ``max_generators`` (for
            :func:`~keras_lincon.h_to_v`), ``representation`` (precomputed
            generators, checked) and ``fallback`` (default True); each may also
            be given as a keyword.
        kernel_initializer, bias_initializer, kernel_regularizer: as in Dense.
        force_float32: compute in float32 under mixed precision (default).

    Raises:
        ConstraintShapeError: inconsistent shapes or options (the message names the fix).
        InfeasibleError: the set is empty (NoStrictInteriorError: no centre strictly inside).
        TooManyGeneratorsError: the generators were refused and ``fallback=False``.

    Input shape:
        ``(..., k)`` features; with ``rhs_input``, ``[(..., k), *right_hand_sides]``.

    Output shape:
        ``(..., n)``.

    Example:
        >>> import keras, keras_lincon as klc
        >>> A = klc.checkerboard((8, 8), (2, 2))
        >>> model = keras.Sequential([
        ...     keras.Input((16,)),
        ...     keras.layers.Dense(32, activation="relu"),
        ...     klc.LinearInequalityConstraint(A, box=(-1.0, 1.0)),
        ... ])
        >>> y = model.predict(keras.random.normal((4, 16)), verbose=0)
        >>> bool(klc.max_violation(y, A) <= 1e-5)
        True
    """

    def __init__(
        self,
        A=None,
        b=None,
        *,
        C=None,
        d=None,
        box=None,
        units: int | None = None,
        rhs_input=False,
        output_map=None,
        construction=None,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        force_float32: bool = True,
        **kwargs,
    ):
        saved = kwargs.pop("_saved", None)  # from_config's layout and moved rows
        if "scaling" in kwargs and kwargs["scaling"] is None:  # None meant the default
            del kwargs["scaling"]
        output_map, construction = group_options(output_map, construction, kwargs)
        if force_float32:  # fp16/bf16 rounding would break the constraints
            policy = keras.dtype_policies.get(kwargs.get("dtype") or keras.config.dtype_policy())
            if policy.compute_dtype in ("float16", "bfloat16"):
                kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        if A is None:
            A = np.zeros((0, _units_without_rows(units, box)))
        system = geometry.as_constraint_system(A, b, C, d)
        if units is not None and int(units) != system.dim:
            raise ConstraintShapeError(
                f"units={units} but A has {system.dim} columns; the output size is A's column count."
            )
        self._plan = plan_layer(system, geometry.as_box(box, system.dim), output_map, construction, rhs_input, saved)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.force_float32 = bool(force_float32)
        self.supports_masking = True  # outputs per step, like Dense
        self._representation = self._plan.representation
        self._layout = self._plan.layout
        self._generators_ready = saved is None  # else the saved weights are loaded (and checked) next
        self.input_spec = None if self._plan.rhs_sizes else keras.layers.InputSpec(min_ndim=1)

    # the constructor's arguments, as given (checked)
    system = property(lambda self: self._plan.system, doc="The validated ``(A, b, C, d)`` (a ``ConstraintSystem``).")
    box = property(lambda self: self._plan.box, doc="``(lower, upper)``, (n,) each, or None.")
    units = property(lambda self: self._plan.system.dim, doc="The output size ``n``.")
    scaled_rows = property(lambda self: self._plan.scaled_rows, doc="The rows of ``A`` asked to be scaled (sorted).")
    scaling = property(lambda self: self._plan.output_map.scaling)
    nonneg = property(lambda self: self._plan.output_map.nonneg)
    call_mode = property(lambda self: self._plan.output_map.call_mode)
    fallback = property(lambda self: self._plan.construction.fallback)
    method = property(lambda self: self._plan.construction.method)
    max_generators = property(lambda self: self._plan.construction.max_generators)
    rhs_input = property(lambda self: self._plan.rhs.to_config(self._plan.system.A.shape[0]))

    @property
    def layout(self) -> dict:
        """The generator layout as saved in the config (see :mod:`keras_lincon.planning.layout`)."""
        return self._layout.to_config()

    @property
    def representation(self) -> geometry.VRepresentation:
        """The V-representation of the generator rows' set. After loading a
        saved model it is recomputed on first access (loading itself never
        runs double description)."""
        if self._representation is None:
            g, c = self._plan.stages.generator_system, self._plan.construction
            self._representation = geometry.h_to_v(g, method=c.method, max_generators=c.max_generators)
        return self._representation

    @property
    def box_center(self) -> np.ndarray | None:
        """(n,) centre of the scaled stage (box and scaled rows), or None without them."""
        stage = self._plan.stage
        if stage is None:
            return None
        center = stage.center
        if self._plan.stages.center_is_weight and self.built:
            center = np.asarray(keras.ops.convert_to_numpy(self.box_center_weight), dtype=np.float64)
        return None if np.isnan(center).any() else center  # NaN: rebuilt from a config, weights not loaded

    # ------------------------------------------------------------ Keras API

    def build(self, input_shape):
        features_shape = self._plan.features_shape(input_shape)
        input_dim = features_shape[-1]
        if not input_dim:
            raise ConstraintShapeError(
                f"{self.__class__.__name__} needs a known, non-zero last input dimension; got input shape "
                f"{tuple(features_shape)}. Put a layer with a fixed number of units (e.g. Dense) before it."
            )
        precision.warn_if_reduced_precision()
        mode = self.call_mode if self.call_mode != "auto" else call_mode(self._layout, input_dim, self.units)
        self._call_mode = mode
        create_weights(self, self._plan, self._representation, mode, input_dim)
        features_spec = keras.layers.InputSpec(min_ndim=1, axes={-1: input_dim})
        parts_spec = [keras.layers.InputSpec(min_ndim=1, axes={-1: size}) for size in self._plan.rhs_sizes]
        self.input_spec = [features_spec, *parts_spec] if parts_spec else features_spec
        self._install_generator_guard()  # every write and call is checked (generator_guard)

    def call(self, inputs):
        inputs = self._guard_generators(inputs)  # generator weights still the checked ones (generator_guard)
        if not self._generators_ready and not _in_symbolic_scope():
            self._verify_before_first_call()
        features, *parts = inputs if self._plan.rhs_sizes else (inputs,)
        x = ops.cast(features, self.compute_dtype)
        y = generator_outputs(x, self, self._layout, self._call_mode, self.nonneg)
        return output_stages.stored_to_output(self._plan, self, x, y, parts, self._penalize)

    def _penalize(self, before, after) -> None:
        """``projection_penalty`` times the batch mean of ``||before - after||^2``, added to the losses."""
        weight = self._plan.output_map.projection_penalty
        if weight:
            self.add_loss(moved_projection.distance_penalty(before, after, weight))

    def compute_output_shape(self, input_shape):
        return tuple(self._plan.features_shape(input_shape)[:-1]) + (self.units,)

    def get_config(self):
        config = super().get_config()
        s, plan = self.system, self._plan
        center = self.box_center
        config.update(
            A=s.A.tolist() if s.A.shape[0] else None,
            units=self.units,
            b=s.b.tolist() if np.any(s.b) else None,
            C=s.C.tolist() if s.C.size else None,
            d=s.d.tolist() if np.any(s.d) else None,
            box=[self.box[0].tolist(), self.box[1].tolist()] if self.box is not None else None,
            box_center=None if center is None else center.tolist(),
            nonneg=self.nonneg,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            bias_initializer=keras.initializers.serialize(self.bias_initializer),
            kernel_regularizer=keras.regularizers.serialize(self.kernel_regularizer),
            method=self.method,
            max_generators=self.max_generators,
            force_float32=self.force_float32,
            layout=self.layout,
            scaling=self.scaling,
        )
        if self._plan.output_map.projection_penalty:  # absent from older configs
            config.update(projection_penalty=self._plan.output_map.projection_penalty)
        if plan.stages.split.scaled or self.rhs_input or self.call_mode != "auto":  # absent from older configs
            config.update(
                scaled_rows=list(self.scaled_rows),
                moved_rows=list(plan.stages.split.moved),
                rhs_input=self.rhs_input,
                fallback=self.fallback,
                call_mode=self.call_mode,
            )
        return config

    @classmethod
    def from_config(cls, config):
        """Rebuilds a saved layer (the one place that adapts older configs): no double description runs,
        the saved layout is used and the weights loaded next are checked against the rows."""
        config = dict(config)
        layout = config.pop("layout", None)
        moved_rows = tuple(config.pop("moved_rows", None) or ())
        if layout is not None:
            # a config saved before `scaling` existed means the paper's single global factor (0.1.0)
            config["scaling"] = config.get("scaling") or "global"
            config["_saved"] = SavedPlan(layout, moved_rows)
        return cls(**config)


def _units_without_rows(units, box) -> int:
    if units is not None:
        if int(units) < 1:
            raise ConstraintShapeError(f"units must be a positive int; got {units!r}.")
        return int(units)
    for side in box if box is not None else ():
        if np.ndim(side) == 1:
            return len(side)
    raise ConstraintShapeError(
        "A is None: give the output size with units=... (e.g. "
        "LinearInequalityConstraint(None, box=(0.0, 1.0), units=10)) or pass box arrays of length n."
    )
