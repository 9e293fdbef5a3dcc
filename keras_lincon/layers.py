"""Keras layers whose outputs satisfy linear constraints by construction."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from keras_lincon import layer_lib, polyhedra, precision, scaling_lib
from keras_lincon.errors import (
    ConstraintShapeError,
    ConstraintViolationError,
    GeneratorMismatchError,
    InfeasibleError,
    LinconError,
)

try:  # where Keras traces a layer symbolically (model building, loading)
    from keras.src.backend.common.symbolic_scope import in_symbolic_scope as _in_symbolic_scope
except ImportError:  # pragma: no cover - future Keras layout

    def _in_symbolic_scope() -> bool:
        return True


#: Non-negative maps for ray coefficients (the paper uses ``abs``).
NONNEG_FUNCTIONS = {
    "abs": ops.abs,
    "softplus": ops.softplus,
    "relu": ops.relu,
    "square": ops.square,
}
#: Box rescalings of the layer (see the class docstring).
BOX_SCALINGS = ("per_block", "global")
#: Relative float32 tolerance stated by the layer (see the class docstring).
FLOAT32_TOLERANCE = 1e-5


def segment_max(values, segment_ids: np.ndarray, num_segments: int):
    """(B, k) max of the columns of ``values`` (B, c) that share a segment id."""
    return ops.transpose(ops.segment_max(ops.transpose(values), segment_ids, num_segments=num_segments))


def _per_block_scale(ratio, segments: np.ndarray, num_segments: int):
    """(..., n) factor ``max(1, max of ratio over the coordinate's segment)``."""
    block = segment_max(ops.reshape(ratio, (-1, ratio.shape[-1])), segments, num_segments)
    return ops.reshape(ops.take(ops.maximum(block, 1.0), segments, axis=1), ops.shape(ratio))


class _Fixed(keras.initializers.Initializer):
    """Initializer returning a fixed numpy array (generator weights)."""

    def __init__(self, value: np.ndarray):
        self.value = np.asarray(value)

    def __call__(self, shape, dtype=None):
        if tuple(shape) != self.value.shape:
            raise ConstraintShapeError(f"internal: weight shape {shape} != {self.value.shape}")
        return ops.convert_to_tensor(self.value, dtype=dtype)


@keras.saving.register_keras_serializable(package="keras_lincon")
class LinearInequalityConstraint(keras.layers.Layer):
    """Maps features to outputs that satisfy ``A x <= b`` (and ``C x = d``).

    The feasible set ``P`` is converted once, at construction, into generators
    (:func:`keras_lincon.h_to_v`): vertices ``V`` in blocks, rays ``R`` and a
    lineality basis ``L``. The layer learns maps from its input ``h`` to
    coefficients and returns

        x = sum_blocks softmax(h W_v + c_v) V  +  nonneg(h W_r + c_r) R  +  (h W_l + c_l) L

    which lies in ``P`` for every input and every weight value, in training
    and at inference, with no projection (Frerix et al., CVPR-W 2020). With
    ``b = None`` this is the paper's homogeneous cone ``A x <= 0``.

    ``box=(lower, upper)`` adds bounds by rescaling towards a point ``c`` of
    ``P`` inside the box: ``x <- c + (x - c) / max(1, max_i (x_i - c_i) /
    (bound_i - c_i))``, applied at every step; it keeps ``x`` in ``P``. With
    ``scaling="per_block"`` (the default) the max runs over each independent
    block of the rows of ``A`` and ``C`` separately, so one block's outlier no
    longer shrinks the others, and a coordinate no row couples is clipped;
    ``scaling="global"`` is the paper's single factor for the whole output
    (and what configs saved before this option mean). ``c`` is
    ``box_center`` if given (checked: in ``P``, strictly inside the box), else
    ``0`` for a cone with ``lower < 0 < upper`` (the paper), else the point of
    ``P`` deepest inside the box (an LP). A centre near typical outputs
    distorts them less. Rows enforced by scaling instead of generators, and
    right-hand sides given as an input, are in
    :class:`keras_lincon.scaled_layer.ScaledRowsConstraint`.

    Tolerance: the generators are exact to 1e-9; in float32 every output
    satisfies ``a_i.x - b_i <= 1e-5 (|b_i| + ||a_i|| ||x||)`` (and likewise
    ``|c_j.x - d_j|`` and the box), for inputs of any scale. Under a
    mixed-precision policy the layer still computes in float32 (fp16/bf16
    rounding breaks the constraints), unless ``force_float32=False``. On GPUs
    with TF32 tensor cores, float32 matmuls are rounded to TF32 by default in
    TensorFlow and JAX; the layer warns, and
    :func:`keras_lincon.precision.use_exact_float32_matmuls` restores float32.

    Cost: about one ``Dense`` of the same shape plus ``k * r + r * n`` for
    ``r`` rays; the lineality part uses whichever of ``(h W) L`` and a
    projection of a full ``k x n`` map onto ``span(L)`` is cheaper.

    Args:
        A: (m, n) constraint matrix; ``n`` is the output size.
        b: (m,) right-hand side, or None for ``A x <= 0``.
        C: optional (p, n) equality matrix; d: (p,) right-hand side.
        box: optional ``(lower, upper)`` bounds, scalars or (n,) arrays.
        box_center: optional (n,) centre of the box rescaling (see above).
        scaling: ``"per_block"`` (default) or ``"global"`` box rescaling.
        nonneg: ``"abs"`` (paper), ``"softplus"``, ``"relu"`` or ``"square"``.
        kernel_initializer, bias_initializer, kernel_regularizer: as in Dense.
        representation: a precomputed :class:`~keras_lincon.VRepresentation`
            of the same set (checked against ``A, b, C, d``).
        method, max_generators: passed to :func:`~keras_lincon.h_to_v`.
        force_float32: compute in float32 under mixed precision (default).

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
        nonneg: str = "abs",
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        representation: polyhedra.VRepresentation | None = None,
        method: str = "auto",
        max_generators: int = polyhedra.DEFAULT_MAX_GENERATORS,
        force_float32: bool = True,
        layout: dict | None = None,
        scaling: str | None = None,
        **kwargs,
    ):
        if force_float32:
            policy = keras.dtype_policies.get(kwargs.get("dtype") or keras.config.dtype_policy())
            if policy.compute_dtype in ("float16", "bfloat16"):
                kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        if A is None:
            A = np.zeros((0, self._units_without_rows(units, box)))
        self.system = polyhedra.as_constraint_system(A, b, C, d)
        n = self.system.dim
        if units is not None and int(units) != n:
            raise ConstraintShapeError(f"units={units} but A has {n} columns; the output size is A's column count.")
        if nonneg not in NONNEG_FUNCTIONS:
            raise LinconError(f"nonneg must be one of {sorted(NONNEG_FUNCTIONS)}; got {nonneg!r}.")
        self.nonneg = nonneg
        self.units = n
        self.box = polyhedra.as_box(box, n)
        self.box_center = None if box_center is None else self._checked_center(box_center)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.force_float32 = bool(force_float32)
        self.method = method
        self.max_generators = int(max_generators)
        self.supports_masking = True  # outputs per step, like Dense
        if layout is None:
            if representation is None:
                representation = polyhedra.h_to_v(
                    self.system.A,
                    self.system.b,
                    self.system.C,
                    self.system.d,
                    method=method,
                    max_generators=max_generators,
                )
            else:
                if not isinstance(representation, polyhedra.VRepresentation) or representation.dim != n:
                    raise ConstraintShapeError(
                        f"representation must be a VRepresentation with dimension {n} (columns of A)."
                    )
                polyhedra.check_representation(representation, self.system)
            self._representation = representation
            self._layout = layer_lib.plan_layout(representation)
            # validated up front; None without a box
            self._center = None if self.box is None else self._box_center(representation)
        else:
            # Rebuilt from a config: the weights are loaded (and checked) next.
            self._representation = None
            self._layout = layer_lib.GeneratorLayout.from_config(layout)
            self._center = None  # the loaded box_center weight holds it
        self._generators_ready = layout is None
        if scaling is None:  # a config saved before `scaling` existed means the paper's global factor
            scaling = "global" if layout is not None else "per_block"
        if scaling not in BOX_SCALINGS:
            raise LinconError(f"scaling must be one of {BOX_SCALINGS}; got {scaling!r}.")
        self.scaling = scaling
        self._box_segments = None
        if self.box is not None and scaling == "per_block":
            self._box_segments = scaling_lib.box_segments(self.system)
        self.input_spec = keras.layers.InputSpec(min_ndim=1)

    @staticmethod
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

    @property
    def layout(self) -> dict:
        """The generator layout as saved in the config (see :mod:`keras_lincon.layer_lib`)."""
        return self._layout.to_config()

    def _checked_center(self, center) -> np.ndarray:
        n = self.units
        if self.box is None:
            raise ConstraintShapeError("box_center needs a box: pass box=(lower, upper) too.")
        c = np.broadcast_to(np.asarray(center, dtype=np.float64), (n,)).copy()
        lo, hi = self.box
        if not np.all(np.isfinite(c)) or np.any(c <= lo) or np.any(c >= hi):
            raise ConstraintShapeError(
                "box_center must be finite and strictly inside the box on every coordinate; "
                f"coordinate(s) {np.flatnonzero(~((c > lo) & (c < hi)))[:8].tolist()} are not."
            )
        s = self.system
        worst = polyhedra.max_violation(c[None], s.A, s.b, s.C, s.d, relative=True)
        if worst > polyhedra.CHECK_TOLERANCE:
            raise InfeasibleError(
                f"box_center violates the constraints (worst relative violation {worst:.3g}); it must be a "
                "point of the feasible set, e.g. a feasible output scaled towards the cone's apex."
            )
        return c

    def _box_center(self, rep: polyhedra.VRepresentation) -> np.ndarray:
        lo, hi = self.box
        if self.box_center is not None:
            return self.box_center
        if rep.is_cone and np.all(lo < 0) and np.all(hi > 0):
            return np.zeros(self.units)  # the paper's choice: the apex
        s = self.system
        return polyhedra.interior_point_in_box(s.A, s.b, s.C, s.d, lower=lo, upper=hi)

    @property
    def representation(self) -> polyhedra.VRepresentation:
        """The V-representation used. After loading a saved model it is
        recomputed from ``A, b`` on first access (loading itself never runs
        double description)."""
        if self._representation is None:
            s = self.system
            self._representation = polyhedra.h_to_v(
                s.A, s.b, s.C, s.d, method=self.method, max_generators=self.max_generators
            )
        return self._representation

    # ------------------------------------------------------------ Keras API

    def _mode(self, input_dim: int) -> str:
        """``"direct"`` or ``"projected"``: see :func:`keras_lincon.layer_lib.call_mode`."""
        return layer_lib.call_mode(self._layout, input_dim, self.units)

    def build(self, input_shape):
        input_dim = input_shape[-1]
        if input_dim is None or input_dim == 0:
            raise ConstraintShapeError(
                f"{self.__class__.__name__} needs a known, non-zero last input "
                f"dimension; got input shape {tuple(input_shape)}. Put a layer "
                "with a fixed number of units (e.g. Dense) before it."
            )
        precision.warn_if_reduced_precision()
        n, lay = self.units, self._layout
        self._call_mode = self._mode(input_dim)
        arrays = None
        if self._representation is not None:
            arrays = layer_lib.generator_arrays(self._representation, lay, self._call_mode)
            if self.box is not None:
                arrays.update(layer_lib.box_arrays(self._center, *self.box))

        def fixed(name, shape, dtype=None):
            if arrays is not None:
                init = _Fixed(np.asarray(arrays[name]).reshape(shape))
            elif dtype == "int32":
                init = "zeros"
            else:
                # Rebuilt from config: the saved weights fill these (and are
                # checked). Until then they are NaN and call() refuses to run.
                init = keras.initializers.Constant(float("nan"))
            return self.add_weight(
                name=name,
                shape=shape,
                initializer=init,
                trainable=False,
                dtype=dtype or self.variable_dtype,
                autocast=False,
            )

        def trainable(name, width):
            kernel = self.add_weight(
                name=f"{name}kernel",
                shape=(input_dim, width),
                initializer=self.kernel_initializer,
                regularizer=self.kernel_regularizer,
            )
            bias = self.add_weight(name=f"{name}bias", shape=(width,), initializer=self.bias_initializer)
            return kernel, bias

        n_lin, n_rays, q = lay.n_lineality, lay.n_rays, lay.n_basis
        nb, smax = lay.n_vertex_blocks, lay.block_size
        n_logits = nb * smax
        if self._call_mode == "direct":
            # one matmul for lineality, ray and vertex coefficients
            self.kernel, self.bias = trainable("", n_lin + n_rays + n_logits)
            self._split = (n_lin + n_rays, n_lin + n_rays + n_logits)
            if n_lin + n_rays:
                self.generators = fixed("generators", (n_lin + n_rays, n))
        else:
            self.kernel, self.bias = trainable("", n)
            self._split = (n_rays, n_rays + n_logits)
            if n_rays + n_logits:
                self.small_kernel, self.small_bias = trainable("ray_vertex_", n_rays + n_logits)
            if q:
                self.complement_basis = fixed("complement_basis", (q, n))
            if n_rays and q:
                self.ray_coordinates = fixed("ray_coordinates", (n_rays, q))
        self.offset = fixed("offset", (n,))
        if lay.vertex_path != "none":
            self.vertex_mask = fixed("vertex_mask", (nb, smax))
        if lay.vertex_path == "gather":
            self.vertex_local = fixed("vertex_local", (nb, smax, lay.block_width))
            self.vertex_gather = fixed("vertex_gather", (n,), dtype="int32")
        elif lay.vertex_path == "dense":
            self.vertex_dense = fixed("vertex_dense", (nb * smax, n))
        if self.box is not None:
            self.box_center_weight = fixed("box_center", (n,))
            self.box_inv_upper = fixed("box_inv_upper", (n,))
            self.box_inv_lower = fixed("box_inv_lower", (n,))
        self.input_spec = keras.layers.InputSpec(min_ndim=1, axes={-1: input_dim})

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
        repaired = layer_lib.repair_padding(values, self._layout)
        layer_lib.check_weights(repaired, self._layout, self._call_mode, self.system, self.box)
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

    def call(self, inputs):
        if not self._generators_ready and not _in_symbolic_scope():
            self._verify_before_first_call()
        x = ops.cast(inputs, self.compute_dtype)
        if self._call_mode == "direct":
            out, logits = self._lineality_and_rays_direct(x)
        else:
            out, logits = self._lineality_and_rays_projected(x)
        if self._layout.vertex_path != "none":
            vertex_part = self._vertex_part(logits, ops.shape(x)[:-1])
            out = vertex_part if out is None else out + vertex_part
        if self._layout.has_offset:
            out = out + ops.cast(self.offset, x.dtype)
        if self.box is not None:
            out = self._box_rescaling(out)
        return out

    def _affine(self, x, kernel, bias):
        return ops.matmul(x, ops.cast(kernel, x.dtype)) + ops.cast(bias, x.dtype)

    def _lineality_and_rays_direct(self, x):
        """Coefficients times ``[L; R]``: (lineality + ray part or None, vertex logits)."""
        coeffs = self._affine(x, self.kernel, self.bias)
        gen_end, logit_end = self._split
        out = None
        if gen_end:
            gen_coeffs = coeffs if gen_end == logit_end else coeffs[..., :gen_end]
            if self._layout.n_rays:  # nonneg on the ray coefficients only
                is_ray = np.arange(gen_end) >= self._layout.n_lineality
                gen_coeffs = ops.where(is_ray, NONNEG_FUNCTIONS[self.nonneg](gen_coeffs), gen_coeffs)
            out = ops.matmul(gen_coeffs, ops.cast(self.generators, x.dtype))
        return out, coeffs[..., gen_end:logit_end]

    def _lineality_and_rays_projected(self, x):
        """``z + (nonneg(s) (R Q^T) - z Q^T) Q`` of a full map ``z``: (that, vertex logits)."""
        out = self._affine(x, self.kernel, self.bias)
        ray_end, logit_end = self._split
        small = self._affine(x, self.small_kernel, self.small_bias) if logit_end else None
        if self._layout.n_basis:
            basis = ops.cast(self.complement_basis, x.dtype)
            coords = -ops.matmul(out, ops.transpose(basis))
            if self._layout.n_rays:
                rays = NONNEG_FUNCTIONS[self.nonneg](small[..., :ray_end])
                coords = coords + ops.matmul(rays, ops.cast(self.ray_coordinates, x.dtype))
            out = out + ops.matmul(coords, basis)
        return out, small[..., ray_end:logit_end] if logit_end else None

    def _vertex_part(self, logits, batch_shape):
        """Softmax per block over its vertices (padding slots hold real vertices)."""
        lay, dtype = self._layout, logits.dtype
        nb, smax = lay.n_vertex_blocks, lay.block_size
        logits = ops.reshape(logits, (-1, nb, smax))
        weights = ops.softmax(logits + ops.cast(self.vertex_mask, dtype), axis=-1)
        if lay.vertex_path == "gather":
            local = ops.einsum("bjs,jsw->bjw", weights, ops.cast(self.vertex_local, dtype))
            flat = ops.reshape(local, (-1, nb * lay.block_width))
            flat = ops.pad(flat, [[0, 0], [0, 1]])  # the zero slot
            vertex_part = ops.take(flat, self.vertex_gather, axis=1)
        else:
            vertex_part = ops.matmul(ops.reshape(weights, (-1, nb * smax)), ops.cast(self.vertex_dense, dtype))
        return ops.reshape(vertex_part, batch_shape + (self.units,))

    def _box_rescaling(self, out):
        """``c + (x - c) / scale``, one scale per block (or one for all: ``scaling="global"``)."""
        dtype = out.dtype
        center = ops.cast(self.box_center_weight, dtype)
        centered = out - center
        ratio = ops.maximum(
            centered * ops.cast(self.box_inv_upper, dtype), centered * ops.cast(self.box_inv_lower, dtype)
        )
        if self._box_segments is None:
            scale = ops.max(ratio, axis=-1, keepdims=True, initial=1.0)  # initial: empty batches
        else:
            scale = _per_block_scale(ratio, *self._box_segments)
        return center + centered / scale

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self):
        config = super().get_config()
        s = self.system
        config.update(
            A=s.A.tolist() if s.A.shape[0] else None,
            units=self.units,
            b=s.b.tolist() if np.any(s.b) else None,
            C=s.C.tolist() if s.C.size else None,
            d=s.d.tolist() if np.any(s.d) else None,
            box=[self.box[0].tolist(), self.box[1].tolist()] if self.box is not None else None,
            box_center=self.box_center.tolist() if self.box_center is not None else None,
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
        return config

    # --------------------------------------------------------------- checks

    def constraint_rows(self):
        """The layer's feasible set as ``(G, h, C, d)``: ``G x <= h`` (box rows
        included) and ``C x = d``; float64 numpy arrays."""
        s = self.system
        lower, upper = self.box if self.box is not None else (None, None)
        G, h = polyhedra.with_box(s.A, s.b, lower, upper)
        return G, h, s.C, s.d

    def max_violation(self, outputs, relative: bool = False) -> float:
        """Largest violation of the layer's constraints and box by ``outputs``.

        Args:
            outputs: (..., n) array or tensor of layer outputs.
            relative: scale residuals as in the tolerance statement.

        Returns:
            float; ``<= 0`` means feasible.
        """
        y = np.asarray(keras.ops.convert_to_numpy(outputs), dtype=np.float64).reshape(-1, self.units)
        return polyhedra.max_violation(y, *self.constraint_rows(), relative=relative)

    def assert_constraints(self, outputs, tolerance: float = FLOAT32_TOLERANCE) -> float:
        """Raises ConstraintViolationError unless ``outputs`` are feasible.

        Uses the relative measure of the class docstring. Returns the worst
        relative violation (``<= tolerance``).
        """
        worst = self.max_violation(outputs, relative=True)
        if worst > tolerance:
            raise ConstraintViolationError(
                f"outputs violate the constraints: worst relative violation {worst:.3g} > tolerance {tolerance:g}."
            )
        return worst


def verify_generators(model: keras.layers.Layer) -> int:
    """Checks every :class:`LinearInequalityConstraint` in ``model`` (or the
    layer itself) against its constraints; returns how many were checked.

    Use it after ``model.set_weights(...)``, which writes variables without
    the layers' own checks.

    Raises:
        GeneratorMismatchError: a layer's weights do not match its constraints.
    """
    layers = (
        [model]
        if isinstance(model, LinearInequalityConstraint)
        else [
            layer
            for layer in model._flatten_layers(include_self=False)
            if isinstance(layer, LinearInequalityConstraint)
        ]
    )
    for layer in layers:
        layer.verify_generators()
    return len(layers)
