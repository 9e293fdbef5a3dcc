"""The Keras layer whose outputs satisfy linear constraints by construction.

Planning is numpy (:mod:`keras_lincon.planning.stage_plan`, :mod:`keras_lincon.planning.scaling_plan`),
the arithmetic ``keras.ops`` (:mod:`keras_lincon.layers.kernels`), the weight and
output checks a mixin (:mod:`keras_lincon.layers.constraint_checks`); this module holds
the Keras life cycle.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from keras_lincon import geometry
from keras_lincon.errors import ConstraintShapeError, LinconError
from keras_lincon.layers import backend_ops, kernels, precision
from keras_lincon.layers.constraint_checks import FLOAT32_TOLERANCE, ConstraintChecks, verify_generators  # noqa: F401
from keras_lincon.layers.kernels import NONNEG_FUNCTIONS, segment_max  # noqa: F401  (public names of this module)
from keras_lincon.planning import stage_plan, weight_arrays

try:  # where Keras traces a layer symbolically (model building, loading)
    from keras.src.backend.common.symbolic_scope import in_symbolic_scope as _in_symbolic_scope
except ImportError:  # pragma: no cover - future Keras layout

    def _in_symbolic_scope() -> bool:
        return True


#: Treatments of the box and the scaled rows (see the class docstring).
SCALINGS = ("per_block", "global", "clip_blend", "clip_scale", "mix", "project")
#: Former name of :data:`SCALINGS` (deprecated, removed in 0.3.0).
BOX_SCALINGS = SCALINGS
#: ``call_mode`` values: ``"auto"`` picks the cheaper path (:func:`keras_lincon.planning.stage_plan.call_mode`).
CALL_MODES = ("auto",) + stage_plan.CALL_MODES


# weight name -> layer attribute, where they differ (``box_center`` is the centre as a numpy property)
_ATTRIBUTES = {"box_center": "box_center_weight", "ray_vertex_kernel": "small_kernel", "ray_vertex_bias": "small_bias"}


class _Fixed(keras.initializers.Initializer):
    """Initializer returning a fixed numpy array (generator weights)."""

    def __init__(self, value: np.ndarray):
        self.value = np.asarray(value)

    def __call__(self, shape, dtype=None):
        if tuple(shape) != self.value.shape:
            raise ConstraintShapeError(f"internal: weight shape {shape} != {self.value.shape}")
        return ops.convert_to_tensor(self.value, dtype=dtype)


@keras.saving.register_keras_serializable(package="keras_lincon")
class LinearInequalityConstraint(ConstraintChecks, keras.layers.Layer):
    """Maps features to outputs that satisfy ``A x <= b`` (and ``C x = d``).

    The feasible set ``P`` is converted once, at construction, into generators
    (:func:`keras_lincon.h_to_v`): vertices ``V`` in blocks, rays ``R`` and a
    lineality basis ``L``. The layer learns maps from its input ``h`` to
    coefficients and returns

        y = sum_blocks softmax(h W_v + c_v) V  +  nonneg(h W_r + c_r) R  +  (h W_l + c_l) L

    which lies in ``P`` for every input and every weight value, in training
    and at inference, with no projection (Frerix et al., CVPR-W 2020). With
    ``b = None`` this is the paper's homogeneous cone ``A x <= 0``.

    **Scaled stage.** ``box=(lower, upper)`` and *scaled rows* are enforced
    afterwards by ray scaling towards a centre ``c`` (in the generator rows'
    set, strictly inside the box and the scaled rows):
    ``x = c + (y - c) / max(1, max_i a_i.(y - c) / (b_i - a_i.c))``, a convex
    combination of ``y`` and ``c``, so it stays feasible. ``c`` is
    ``box_center`` if given (checked), else the cone's apex ``0`` for a box
    around it with no scaled rows (the paper), else the deepest point (an LP).
    ``scaling``: ``"per_block"`` (default; one factor per independent block
    of the rows, free coordinates clipped), ``"global"`` (the paper's one
    factor; what configs saved before this option mean), ``"clip_blend"``
    (clip to the box, then move back towards the per-block result only as far
    as the block's rows need), ``"clip_scale"`` (clip, then scale towards a
    centre strictly inside the generator rows too), ``"mix"`` (per block a
    learned ``sigmoid(h W + w0)`` mix of ``per_block`` and ``clip_blend``) or
    ``"project"`` (the exact Euclidean projection: for blocks with one row,
    no equality and a finite box, e.g. the checkerboard's, by a bisection on
    one multiplier per block, about 3x slower to train; for blocks of
    several coupled rows or equalities, e.g. DC3's QP, by
    :mod:`keras_lincon.planning.coupled_projection`: 50 ADMM steps, then ray scaling
    towards a strictly feasible centre, so outputs are feasible whatever the
    step count, and an implicit-function gradient; right-hand sides above a
    floor, ``rhs_input=True``, keep ``per_block`` on such blocks). With
    ``scaled_rows="all"`` and ``scaling="project"`` the layer is an affine
    map followed by the exact projection onto each block's rows and box,
    trained end to end: on the paper's toy it fits better than an
    unconstrained Dense projected by a QP solver after training
    (BENCHMARKS.md); with generator rows, ``nonneg="relu"`` suits it best.

    Which rows are scaled: ``scaled_rows`` (indices or a boolean mask of the
    rows of ``A``, or ``"all"``), plus, unless ``fallback=False``, every independent block
    whose double description would be refused or fails (McMullen's bound,
    checked before enumerating), with a :class:`~keras_lincon.ScaledRowsWarning`
    naming the rows. Scaling costs quality (outputs are pulled towards ``c``
    where those rows bind), never feasibility.

    **Right-hand sides as inputs** (optimization proxies: a network maps a
    problem's parameters to a feasible point). ``rhs_input`` says which:

    * ``"b"``: ``b`` of every row of ``A``; call ``layer([features, b])``
      with ``b`` (batch, m). ``{"b": rows}`` takes only the chosen rows
      (indices, a boolean mask or ``"all"``), ``b`` (batch, len(rows)).
    * ``"d"``: ``d`` of the equalities; ``layer([features, d])``, (batch, p).
    * ``("b", "d")`` (or ``{"b": rows, "d": True}``): both, as
      ``layer([features, b, d])``.

    These are exact for every value, with no floor: the layer computes a
    point of the set of the stored ``b, d`` (the constructor's; zero where
    not given) and moves it by ``T (beta - beta_0)``, where ``T`` moves each
    input row by exactly its change and leaves the other rows, ``C`` and the
    box's coordinates where they are. Such a ``T`` exists when the input rows
    (and ``C``) are linearly independent of each other and of the fixed rows;
    otherwise the constructor raises an error. Example, DC3's QP
    ``A y = x, G y <= h`` with ``x`` the input:
    ``LinearInequalityConstraint(G, h, C=A, rhs_input="d", scaled_rows="all")``.

    ``rhs_input=True`` keeps its first meaning. With ``scaled_rows``,
    ``b_s`` (batch, len(scaled_rows)) replaces ``b`` of the scaled rows,
    whose stored ``b`` is a *floor*: outputs are feasible for their own
    ``b_s`` whenever ``b_s >= floor`` (:meth:`below_floor` and
    ``max_violation(y, rhs=b_s)`` report samples where it did not hold).
    Without ``scaled_rows`` every row's ``b`` is the input (the
    *shifted-apex form* ``x = M^+ [b_s; d] + z``, ``z`` in the cone
    ``{A z <= 0, C z = 0}``; ``M = [A; C]`` of full row rank; no box).
    Any other value raises an error that lists these choices.

    Tolerance: the generators are exact to 1e-9; in float32 every output
    satisfies ``a_i.x - b_i <= 1e-5 (|b_i| + ||a_i|| ||x||)`` (and likewise
    ``|c_j.x - d_j|`` and the box), for inputs of any scale; in float64
    (``keras.config.set_floatx("float64")``, or ``dtype="float64"``; note
    that ``fit``/``predict`` cast numpy inputs to floatx; on JAX set
    ``JAX_ENABLE_X64=1``) every stage computes in float64 and the bound is
    1e-10 (1e-12 and below where the generators' apex is not far from the
    outputs: about 1e-15 on DC3's QP). Under a
    mixed-precision policy the layer still computes in float32 (fp16/bf16
    rounding breaks the constraints), unless ``force_float32=False``. On GPUs
    with TF32 tensor cores, float32 matmuls are rounded to TF32 by default in
    TensorFlow and JAX; the layer warns, and
    :func:`keras_lincon.layers.precision.use_exact_float32_matmuls` restores float32.

    Cost: about one ``Dense`` of the same shape plus ``k * r + r * n`` for
    ``r`` rays; the lineality part uses whichever of ``(h W) L`` and a
    projection of a full ``k x n`` map onto ``span(L)`` is cheaper
    (``call_mode="auto"``; ``"direct"`` or ``"projected"`` force one). The
    scaled stage adds ``m n`` for ``m`` scaled rows and a few passes over
    the output (``"project"``: 32 bisection passes; ``"mix"``: two candidates).

    Args:
        A: (m, n) constraint matrix (``n`` is the output size), or None with ``units=``.
        b: (m,) right-hand side, or None for ``A x <= 0``.
        C: optional (p, n) equality matrix; d: (p,) right-hand side.
        box: optional ``(lower, upper)`` bounds, scalars or (n,) arrays.
        box_center: optional (n,) centre of the scaled stage (see above).
        units: the output size when ``A`` is None.
        scaled_rows: rows of ``A`` enforced by scaling (indices, a mask or ``"all"``).
        rhs_input: which right-hand sides are inputs: ``False``, ``"b"``,
            ``"d"``, ``("b", "d")``, ``{"b": rows, "d": bool}`` or ``True``
            (see above).
        scaling: see above. fallback: see above (default True).
        call_mode: ``"auto"``, ``"direct"`` or ``"projected"`` (same sets, different weight shapes).
        nonneg: ``"abs"`` (paper), ``"softplus"``, ``"relu"`` or ``"square"``.
        kernel_initializer, bias_initializer, kernel_regularizer: as in Dense.
        representation: precomputed :class:`~keras_lincon.VRepresentation`
            of the generator rows' set (checked against them).
        method, max_generators: passed to :func:`~keras_lincon.h_to_v`.
        force_float32: compute in float32 under mixed precision (default).
        layout, moved_rows: written by ``get_config`` (loading runs no double
            description).

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
        box_center=None,
        units: int | None = None,
        scaled_rows=None,
        rhs_input=False,
        scaling: str | None = None,
        fallback: bool = True,
        call_mode: str = "auto",
        nonneg: str = "abs",
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        representation: geometry.VRepresentation | None = None,
        method: str = "auto",
        max_generators: int = geometry.DEFAULT_MAX_GENERATORS,
        force_float32: bool = True,
        layout: dict | None = None,
        moved_rows=(),
        **kwargs,
    ):
        if force_float32:
            policy = keras.dtype_policies.get(kwargs.get("dtype") or keras.config.dtype_policy())
            if policy.compute_dtype in ("float16", "bfloat16"):
                kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        if A is None:
            A = np.zeros((0, _units_without_rows(units, box)))
        self.system = geometry.as_constraint_system(A, b, C, d)
        n = self.units = self.system.dim
        if units is not None and int(units) != n:
            raise ConstraintShapeError(f"units={units} but A has {n} columns; the output size is A's column count.")
        if scaling is None:  # a config saved before `scaling` existed means the paper's global factor
            scaling = "global" if layout is not None else "per_block"
        for name, value, allowed in (
            ("nonneg", nonneg, tuple(NONNEG_FUNCTIONS)),
            ("scaling", scaling, SCALINGS),
            ("call_mode", call_mode, CALL_MODES),
        ):
            if value not in allowed:
                raise LinconError(f"{name} must be one of {allowed}; got {value!r}.")
        self.nonneg, self.scaling, self.call_mode = nonneg, scaling, call_mode
        self.box = geometry.as_box(box, n)
        self.scaled_rows = stage_plan.row_indices(scaled_rows, self.system.A.shape[0])
        if box_center is not None and self.box is None and not self.scaled_rows:
            raise ConstraintShapeError("box_center needs a box or scaled rows: pass box=(lower, upper) too.")
        self._rhs = stage_plan.rhs_inputs(rhs_input, self.system.A.shape[0], self.system.C.shape[0])
        self.rhs_input, self.fallback = self._rhs.to_config(self.system.A.shape[0]), bool(fallback)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.force_float32 = bool(force_float32)
        self.method, self.max_generators = method, int(max_generators)
        self.supports_masking = True  # outputs per step, like Dense
        self._plan = stage_plan.plan_stages(
            self.system,
            self.box,
            box_center,
            scaled_rows=self.scaled_rows,
            moved_rows=tuple(int(i) for i in moved_rows),
            rhs=self._rhs,
            scaling=scaling,
            fallback=self.fallback,
            method=method,
            max_generators=self.max_generators,
            representation=representation,
            loading=layout is not None,
        )
        self._representation = self._plan.representation
        # rows whose b is an input: the chosen rows; with a floor the scaled rows, or every row (shifted apex)
        self._input_rows = self._rhs.b_rows if self._rhs.translated else self.scaled_rows
        if self._plan.apex:
            self._input_rows = tuple(range(self.system.A.shape[0]))
        takes_rhs = self._rhs.floor or self._rhs.translated
        self._rhs_sizes = self._rhs.part_sizes(self.system.C.shape[0], len(self._input_rows)) if takes_rhs else ()
        # a config's layout: the weights are loaded (and checked) next
        if layout is not None:
            self._layout = stage_plan.GeneratorLayout.from_config(layout)
        else:
            self._layout = stage_plan.plan_layout(self._representation)
        self._generators_ready = layout is None
        self.input_spec = None if self.rhs_input else keras.layers.InputSpec(min_ndim=1)

    @property
    def layout(self) -> dict:
        """The generator layout as saved in the config (see :mod:`keras_lincon.planning.stage_plan`)."""
        return self._layout.to_config()

    @property
    def representation(self) -> geometry.VRepresentation:
        """The V-representation of the generator rows' set. After loading a
        saved model it is recomputed on first access (loading itself never
        runs double description)."""
        if self._representation is None:
            g = self._plan.generator_system
            self._representation = geometry.h_to_v(
                g.A, g.b, g.C, g.d, method=self.method, max_generators=self.max_generators
            )
        return self._representation

    @property
    def box_center(self) -> np.ndarray | None:
        """(n,) centre of the scaled stage (box and scaled rows), or None without them."""
        if self._stage is None:
            return None
        if self._plan.center_is_weight and self.built:
            return np.asarray(keras.ops.convert_to_numpy(self.box_center_weight), dtype=np.float64)
        return None if np.isnan(self._stage.center).any() else self._stage.center

    @property
    def _stage(self):
        return self._plan.stage

    @property
    def _mixing(self) -> bool:
        return self.scaling == "mix" and self._stage is not None and self._stage.n_blocks > 0

    # ------------------------------------------------------------ Keras API

    def build(self, input_shape):
        features_shape = self._features_shape(input_shape)
        input_dim = features_shape[-1]
        if not input_dim:
            raise ConstraintShapeError(
                f"{self.__class__.__name__} needs a known, non-zero last input dimension; got input shape "
                f"{tuple(features_shape)}. Put a layer with a fixed number of units (e.g. Dense) before it."
            )
        precision.warn_if_reduced_precision()
        n, lay = self.units, self._layout
        mode = self.call_mode if self.call_mode != "auto" else stage_plan.call_mode(lay, input_dim, n)
        self._call_mode = mode
        arrays = None
        if self._representation is not None:
            arrays = weight_arrays.generator_arrays(self._representation, lay, mode)
            if self._plan.center_is_weight:
                arrays.update(weight_arrays.box_arrays(self._stage.center, *self.box))

        mix_blocks = self._stage.n_blocks if self._mixing else 0
        for name, shape, kind in weight_arrays.weight_specs(
            lay, mode, n, input_dim, box=self._plan.center_is_weight, mix_blocks=mix_blocks
        ):
            if kind in ("kernel", "bias"):  # the mix starts at zero: half way between per_block and clip_blend
                init = "zeros" if name.startswith("mix_") else getattr(self, f"{kind}_initializer")
                regularizer = self.kernel_regularizer if kind == "kernel" and not name.startswith("mix_") else None
                weight = self.add_weight(name=name, shape=shape, initializer=init, regularizer=regularizer)
            else:
                if arrays is not None:
                    init = _Fixed(np.asarray(arrays[name]).reshape(shape))
                else:  # from a config: the saved weights fill these (and are checked); NaN until then
                    init = "zeros" if kind == "index" else keras.initializers.Constant(float("nan"))
                dtype = "int32" if kind == "index" else self.variable_dtype
                weight = self.add_weight(
                    name=name, shape=shape, initializer=init, trainable=False, dtype=dtype, autocast=False
                )
            setattr(self, _ATTRIBUTES.get(name, name), weight)
        features_spec = keras.layers.InputSpec(min_ndim=1, axes={-1: input_dim})
        parts_spec = [keras.layers.InputSpec(min_ndim=1, axes={-1: size}) for size in self._rhs_sizes]
        self.input_spec = [features_spec, *parts_spec] if parts_spec else features_spec
        self._install_generator_guard()  # every write and call is checked (layer_checks)

    def _features_shape(self, input_shape):
        if not self._rhs_sizes:
            return input_shape
        names = self._rhs_names()
        call = f"[features, {', '.join(names)}]"
        if not (
            isinstance(input_shape, (list, tuple))
            and len(input_shape) == 1 + len(names)
            and all(isinstance(shape, (list, tuple)) for shape in input_shape)
        ):
            raise ConstraintShapeError(f"with rhs_input={self.rhs_input!r} call the layer on {call}.")
        for name, size, shape in zip(names, self._rhs_sizes, input_shape[1:], strict=True):
            if shape[-1] != size:
                raise ConstraintShapeError(
                    f"{name} must have shape (batch, {size}) ({self._rhs_meaning(name)}); got {tuple(shape)}."
                )
        return input_shape[0]

    def _rhs_names(self) -> tuple:
        if self._rhs.floor:
            return ("b_s",)
        return (("b",) if self._rhs.b_rows else ()) + (("d",) if self._rhs.d else ())

    def _rhs_meaning(self, name: str) -> str:
        if name == "d":
            return "one per row of C"
        if self._rhs.translated:
            return f"one per row of A in rhs_input: rows {list(self._input_rows)[:10]}"
        return f"one per input row: {'scaled_rows' if self.scaled_rows else 'every row of A'}"

    def call(self, inputs):
        inputs = self._guard_generators(inputs)  # generator weights still the checked ones (layer_checks)
        if not self._generators_ready and not _in_symbolic_scope():
            self._verify_before_first_call()
        features, *parts = inputs if self._rhs_sizes else (inputs,)
        rhs = parts[0] if self._rhs.floor else None
        x = ops.cast(features, self.compute_dtype)
        y = kernels.generator_outputs(x, self, self._layout, self._call_mode, self.nonneg)
        if self._plan.apex is not None:  # apex P b + q of this sample's set, plus a point of the cone
            P, q = (backend_ops.constant(a, y.dtype) for a in self._plan.apex)
            return y + backend_ops.matmul(ops.cast(rhs, y.dtype), ops.transpose(P)) + q
        if self._plan.shift is not None:  # right-hand sides that move the set: the stored set's point, moved
            return self._stored_set_point(x, y) + self._translation(parts, y.dtype)
        return self._stored_set_point(x, y, rhs)

    def _translation(self, parts, dtype):
        T, q = self._plan.shift
        beta = ops.concatenate([ops.cast(part, dtype) for part in parts], axis=-1)
        return backend_ops.matmul(beta, backend_ops.constant(T.T, dtype)) + backend_ops.constant(q, dtype)

    def _stored_set_point(self, x, y, rhs=None):
        """The scaled stage on the generator stage's ``y`` (``rhs``: ``b_s`` above a floor, or None)."""
        if self._stage is None:
            return y
        batch_shape, y = ops.shape(y), ops.reshape(y, (-1, self.units))  # the stage works on (B, n)
        if rhs is not None:
            columns = np.searchsorted(np.array(self._plan.split.scaled), np.array(self.scaled_rows, dtype=int))
            rhs = kernels.full_rhs(ops.reshape(ops.cast(rhs, y.dtype), (-1, columns.size)), self._stage, columns)
        if self._mixing:
            x = ops.reshape(x, (-1, ops.shape(x)[-1]))
            out = kernels.mixed_stage(y, x, self._stage, self.mix_kernel, self.mix_bias, rhs)
        else:
            box_weights = None
            if self._plan.center_is_weight:
                box_weights = (self.box_center_weight, self.box_inv_upper, self.box_inv_lower)
            mode = "per_block" if self.scaling == "mix" else self.scaling
            coupled = self._plan.coupled
            if coupled is not None and coupled.columns.size == self.units:  # one projection does it all
                return ops.reshape(kernels.coupled_stage(y, coupled), batch_shape)
            out = kernels.scaled_stage(y, self._stage, mode, rhs, box_weights)
            if coupled is not None:
                out = kernels.coupled_stage(y, coupled, out)
        return ops.reshape(out, batch_shape)

    def compute_output_shape(self, input_shape):
        return tuple(self._features_shape(input_shape)[:-1]) + (self.units,)

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
        if plan.split.scaled or self.rhs_input or self.call_mode != "auto":  # absent from older configs
            config.update(
                scaled_rows=list(self.scaled_rows),
                moved_rows=list(plan.split.moved),
                rhs_input=self.rhs_input,
                fallback=self.fallback,
                call_mode=self.call_mode,
            )
        return config


def _units_without_rows(units, box) -> int:
    if units is not None:
        if int(units) < 1:
            raise ConstraintShapeError(f"units must be a positive int; got {units!r}.")
        return int(units)
    for side in box or (None, None):
        if np.ndim(side) == 1:
            return len(side)
    raise ConstraintShapeError(
        "A is None: give the output size with units=... (e.g. "
        "LinearInequalityConstraint(None, box=(0.0, 1.0), units=10)) or pass box arrays of length n."
    )
