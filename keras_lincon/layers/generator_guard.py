"""The layer's generator weights: checked against ``A, b, C, d`` whenever they are loaded or set.

A mixin of :class:`~keras_lincon.LinearInequalityConstraint` (through
:class:`keras_lincon.layers.constraint_checks.ConstraintChecks`), so that the
layer class holds only its Keras life cycle.

**The generator guard.** The generator weights are non-trainable variables,
so Keras paths that write variables directly (``model.set_weights``, legacy
``.h5`` weights, ``variable.assign``, an optimizer given them) could make the
layer silently infeasible. The guard closes them where they write:

- *eager writes*: every write of a concrete value that changes a generator
  variable is checked at once with the layer's other generator weights; a
  write that makes them wrong is undone and raises
  :class:`~keras_lincon.GeneratorMismatchError` (``model.set_weights``,
  ``variable.assign``/``assign_add``/``assign_sub``, legacy ``.h5`` files,
  JAX's end-of-``fit`` state sync);
- *writes traced into compiled code* (``variable.assign`` inside a
  ``tf.function``; JAX's compiled writes reach the variables through the
  state sync above): the compiled write stores the new value only if its
  fingerprint is the checked one, else it keeps the current value (XLA too);
  a plain ``tf.function`` also raises;
- *optimizers*: each generator variable carries a Keras ``constraint`` that
  restores its checked value after every optimizer step (with a warning);
- *calls*: eager calls compare the stored values with the checked ones on
  the host after anything may have written them (a Keras write, torch
  tensors written in place, a JAX array replaced, a traced write), else only
  a write stamp; a ``tf.function`` checks the values it starts from when it
  is traced. Compiled code gets no extra operation (so no cost): the writes
  above are all checked where they happen. Only a write to the backend
  variable itself in TensorFlow (``variable.value.assign``, past Keras) is
  left to :func:`verify_generators` (``export_for_serving`` runs it, and a
  file saved from such a layer is refused when it is loaded).

The host checks compare bits exactly; traced writes compare fingerprints
(:func:`host_fingerprint`, exact for single changes: an odd-weighted sum of
the mixed bit patterns modulo 2**32).
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from typing import TYPE_CHECKING, Any

import keras
import numpy as np

from keras_lincon.errors import GeneratorMismatchError
from keras_lincon.planning import weight_arrays

try:  # where Keras traces a layer symbolically (model building, loading)
    from keras.src.backend.common.symbolic_scope import in_symbolic_scope as _in_symbolic_scope
except ImportError:  # pragma: no cover - future Keras layout

    def _in_symbolic_scope() -> bool:
        return True


try:  # stateless calls (the JAX trainers, stateless_call) compute with given values, not the variables
    from keras.src.backend.common.stateless_scope import in_stateless_scope as _in_stateless_scope
except ImportError:  # pragma: no cover - future Keras layout

    def _in_stateless_scope() -> bool:
        return False


#: Relative float32 tolerance stated by the layer (see its docstring).

from keras_lincon.layers.fingerprints import graph_fingerprint, host_fingerprint, same_bits, to_numpy

_CHANGED_HINT = (
    "Generator weights are fixed by the layer's constraints: load the weights saved with this layer "
    "(model.load_weights / keras.saving.load_model), or set a full matching set with layer.set_weights(...), "
    "or build a new layer from the intended A, b and box."
)


class _GeneratorGuard:
    """State of the guard of one layer (a plain object, so Keras does not track it)."""

    def __init__(self, variables: dict):
        self.variables = variables  # name -> variable, in creation order
        self.expected: Any = None  # fingerprints of the checked values (a tuple once checked)
        self.verified: Any = None  # name -> numpy copy of the checked values (a dict once checked)
        self.writes = 0  # writes seen by the hook (eager calls skip the check while it is unchanged)
        self.graph_writes = False  # a write was traced: TF eager calls must always look
        self.stamp = None  # write stamp at the last eager check
        self.bulk = 0  # > 0 while the layer writes and checks a whole set itself
        self.warned = False


class _RestoreChecked:
    """Keras variable ``constraint``: an optimizer step on a generator weight is undone."""

    def __init__(self, layer, name: str):
        self.layer, self.name = layer, name

    def __call__(self, value):
        guard = self.layer._generator_guard
        if guard.verified is None:
            return value
        if not guard.warned:
            guard.warned = True
            warnings.warn(
                f"an optimizer updated generator weight {self.name!r} of layer {self.layer.name!r}; "
                "generator weights are fixed by the constraints, so the update is undone after every step "
                "(pass only layer.trainable_weights to optimizers).",
                stacklevel=2,
            )
        return keras.ops.convert_to_tensor(guard.verified[self.name], dtype=value.dtype)


@contextlib.contextmanager
def _outside_traces():
    """Runs eagerly even while a ``tf.function`` is being traced (reading and assigning variables)."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        with tf.init_scope():
            yield
    else:
        yield


if TYPE_CHECKING:  # the mixins run on a keras.layers.Layer (Any to the type checker: Keras ships no types)
    from keras.layers import Layer as _LayerBase

    from keras_lincon.planning.layer_plan import LayerPlan
    from keras_lincon.planning.layout import GeneratorLayout
else:
    _LayerBase = object


class GeneratorGuard(_LayerBase):
    """Weight verification and the generator guard (see the module docstring)."""

    # set by the layer: its plan, layout, call mode and guard
    _plan: LayerPlan
    _layout: GeneratorLayout
    _call_mode: str
    _generators_ready: bool

    # ------------------------------------------------- generator weight checks

    def _generator_variables(self) -> dict:
        guard = getattr(self, "_generator_guard", None)
        if guard is not None:  # fixed at build: layer.trainable = False must not add the kernels
            return guard.variables
        trainable_ids = {id(v) for v in self.trainable_weights}
        return {v.name.split("/")[-1]: v for v in self.weights if id(v) not in trainable_ids}

    def _check_values(self, values: dict) -> dict:
        """Raises GeneratorMismatchError unless ``values`` (name -> numpy) match the constraints;
        returns them with layout-1 padding repaired."""
        repaired = weight_arrays.repair_padding(values, self._layout)
        stages = self._plan.stages
        box = self._plan.box if stages.center_is_weight else None
        weight_arrays.check_weights(repaired, self._layout, self._call_mode, stages.generator_system, box)
        return repaired

    def verify_generators(self) -> None:
        """Checks the stored generator (and box) weights against ``A, b, C, d``.

        Run automatically when weights are loaded (``load_model``,
        ``load_weights``) or set (``layer.set_weights``, ``model.set_weights``,
        ``variable.assign``), before a call that follows a write, and by
        :func:`keras_lincon.export.serving.export_for_serving`. The checked values
        become the ones the layer's guard compares against.

        Raises:
            GeneratorMismatchError: the weights belong to another constraint
                set or box, were edited, or were never loaded.
        """
        if not self.built:
            return
        variables = self._generator_variables()
        with _outside_traces():
            values = {name: to_numpy(v) for name, v in variables.items()}
            repaired = self._check_values(values)
            with self._checked_as_a_whole():
                for name, value in repaired.items():
                    if value is not values[name]:
                        variables[name].assign(value)
            self._record_checked(repaired)
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
        self._write_checked(lambda: super(GeneratorGuard, self).load_own_variables(store))

    def set_weights(self, weights):
        self._write_checked(lambda: super(GeneratorGuard, self).set_weights(weights))

    def _write_checked(self, write) -> None:
        """Runs ``write()`` (a whole set of weights at once), then the check; on a mismatch the previous
        weights go back before the error propagates (``load_weights(skip_mismatch=True)`` turns it
        into a warning: the layer must stay as it was)."""
        previous = self.get_weights()
        with self._checked_as_a_whole():
            write()
        try:
            self.verify_generators()
        except GeneratorMismatchError:
            with self._checked_as_a_whole():
                super().set_weights(previous)
            raise

    # ---------------------------------------------------------- generator guard

    def _install_generator_guard(self) -> None:
        """Installs the guard (see the module docstring); called at the end of ``build``."""
        variables = dict(self._generator_variables())
        guard = _GeneratorGuard(variables)
        for name, variable in variables.items():
            # An instance attribute shadows the backend's method: Keras's assign() ends in it.
            variable._direct_assign = functools.partial(self._guarded_assign, name, variable._direct_assign)
            if "float" in str(variable.dtype):
                variable.constraint = _RestoreChecked(self, name)
        self._generator_guard = guard
        if self._generators_ready:  # built from the representation: the values are right by construction
            with _outside_traces():
                self._record_checked({name: to_numpy(v) for name, v in variables.items()})

    @contextlib.contextmanager
    def _checked_as_a_whole(self):
        """The layer writes a whole set and checks it itself: the per-write check stays out."""
        guard = getattr(self, "_generator_guard", None)
        if guard is None:
            yield
            return
        guard.bulk += 1
        try:
            yield
        finally:
            guard.bulk -= 1

    def _record_checked(self, values: dict) -> None:
        guard = getattr(self, "_generator_guard", None)
        if guard is None:
            return
        guard.verified = {name: np.array(values[name]) for name in guard.variables}
        guard.expected = tuple(host_fingerprint(guard.verified[name]) for name in guard.variables)
        guard.stamp = None

    def _guarded_assign(self, name: str, direct_assign, value) -> None:
        """Every write of a generator variable outside a stateless scope ends here."""
        guard = self._generator_guard
        guard.writes += 1
        if guard.bulk or guard.expected is None:  # a whole set checked by the caller, or nothing checked yet
            direct_assign(value)
            return
        try:
            new = to_numpy(value)
        except Exception:  # a symbolic value: a write traced into a compiled function
            guard.graph_writes = True
            direct_assign(self._traced_write(name, value))
            return
        direct_assign(value)
        if same_bits(new, guard.verified[name]):
            return
        try:
            self.verify_generators()
        except GeneratorMismatchError as exc:
            direct_assign(keras.ops.convert_to_tensor(guard.verified[name], dtype=guard.variables[name].dtype))
            raise GeneratorMismatchError(
                f"a write to generator weight {name!r} of layer {self.name!r} (model.set_weights, "
                f"variable.assign or an .h5 weights file) was refused and undone: {exc} "
                "model.set_weights writes one variable at a time, so a different but matching set must be "
                "set with layer.set_weights(...), which checks it as a whole."
            ) from None

    def _traced_write(self, name: str, value):
        """The value a traced write stores: ``value`` if it is the checked one (same fingerprint),
        else the variable's current value, so compiled code (XLA included) cannot change the
        generators; a plain ``tf.function`` also raises."""
        guard = self._generator_guard
        variable = guard.variables[name]
        expected = np.int32(guard.expected[list(guard.variables).index(name)])
        same = keras.ops.equal(graph_fingerprint(value), expected)
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            message = (
                f"keras_lincon GeneratorMismatchError: a write traced into a compiled function would change "
                f"generator weight {name!r} of layer {self.name!r}; it was refused (the weight keeps its "
                f"checked value). {_CHANGED_HINT}"
            )
            tf.debugging.Assert(same, [message])
        return keras.ops.where(same, value, variable.value)

    def _write_stamp(self):
        """Changes whenever a generator variable may have been written (None: always look)."""
        guard = self._generator_guard
        backend = keras.backend.backend()
        # Backend tensors as stored (`_value`: `.value` may autocast and costs more than the whole check)
        if backend == "torch":  # optimizers write torch tensors in place, past Keras's assign
            return (guard.writes, *(v._value._version for v in guard.variables.values()))
        if backend == "jax":  # a JAX write replaces the stored array, whatever path it takes
            return (guard.writes, *(id(v._value) for v in guard.variables.values()))
        if backend == "tensorflow" and guard.graph_writes:  # traced writes do not pass the hook
            return None
        return (guard.writes,)

    def _check_generators_now(self) -> None:
        """Host check of the stored values, skipped while nothing wrote them since the last one."""
        guard = self._generator_guard
        stamp = self._write_stamp()
        if stamp is not None and stamp == guard.stamp:
            return
        with _outside_traces():
            values = {name: to_numpy(v) for name, v in guard.variables.items()}
        if not all(same_bits(values[name], guard.verified[name]) for name in guard.variables):
            self.verify_generators()  # raises, or accepts a matching set written past the hooks
        guard.stamp = self._write_stamp()

    def _guard_generators(self, inputs):
        """Called first in ``call``: refuses a call whose generator weights are not the checked ones.

        Eager calls compare the stored values with the checked ones on the
        host once something may have written them (a Python comparison of a
        write stamp otherwise). A traced call (``tf.function``) checks the
        values it starts from at trace time; compiled code itself gets no
        extra operation: every way to change the variables is checked where
        it writes (module docstring). Returns ``inputs`` unchanged.
        """
        guard = getattr(self, "_generator_guard", None)
        if guard is None or not guard.variables or guard.expected is None:
            return inputs  # not checked yet: the first call verifies them (_verify_before_first_call)
        # Symbolic calls build models; stateless ones compute with values they are given (the
        # variables are checked when the JAX trainers write those values back).
        if not (_in_symbolic_scope() or _in_stateless_scope()):
            self._check_generators_now()
        return inputs


def verify_generators(model: keras.layers.Layer) -> int:
    """Checks every constraint layer in ``model`` (or the layer itself)
    against its constraints; returns how many were checked.

    ``model.set_weights``, ``load_weights`` and ``variable.assign`` are
    checked already (see the module docstring); this checks the current
    values on demand, e.g. before exporting.

    Raises:
        GeneratorMismatchError: a layer's weights do not match its constraints.

    Example:
        >>> import keras, numpy as np, keras_lincon as klc
        >>> model = keras.Sequential([keras.Input((4,)), klc.LinearInequalityConstraint(klc.monotone_chain(3))])
        >>> clone = keras.models.clone_model(model)  # a copy rebuilt from its config: no checked weights yet
        >>> clone.set_weights(model.get_weights())
        >>> klc.verify_generators(clone)
        1
    """
    layers = [model] if isinstance(model, GeneratorGuard) else []
    layers += [layer for layer in model._flatten_layers(include_self=False) if isinstance(layer, GeneratorGuard)]
    for layer in layers:
        layer.verify_generators()
    return len(layers)
