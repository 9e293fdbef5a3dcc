"""Exception classes of keras_lincon.

Every error derives from :class:`LinconError`, itself a ``ValueError``, so
``except ValueError`` keeps working for callers that do not care which
constraint problem occurred. Each message says what is wrong and what to do.
"""


class LinconError(ValueError):
    """Base class of all keras_lincon errors (a ``ValueError``): one ``except`` catches them all.

    Example:
        >>> import numpy as np, keras_lincon as klc
        >>> try:
        ...     klc.h_to_v(np.vstack([np.eye(2), -np.eye(2)]), -np.ones(4))  # x <= -1 and x >= 1
        ... except klc.LinconError as error:
        ...     print(type(error).__name__)
        InfeasibleError
    """


class ConstraintShapeError(LinconError):
    """Shapes of ``A``, ``b``, ``C``, ``d``, ``box`` or inputs disagree."""


class NonFiniteError(LinconError):
    """A constraint array holds NaN or infinity."""


class InfeasibleError(LinconError):
    """The constraint set is empty."""


class DegenerateSetError(LinconError):
    """The constraint set is a single point (for a cone: only ``{0}``)."""


class TooManyGeneratorsError(LinconError):
    """The V-representation has more generators than allowed.

    ``reason`` says which rule refused: ``"count"`` (double description ran
    and counted more than the cap: "above the cap after N generators") or,
    on :class:`GeneratorExplosionError`, ``"bound"`` (a true lower bound on
    the count is above the cap, so no enumeration was run). The same field on
    :class:`ConstructionTimeoutError` is ``"time"``.
    """

    reason = "count"


class RepresentationCheckError(LinconError):
    """A computed generator violates the constraints (numerical failure).

    ``violations`` maps the kind of generator (vertex, ray, lineality) to its
    worst relative violation, when known.
    """

    def __init__(self, *args):
        if args and isinstance(args[0], dict):
            self.violations, args = args[0], args[1:]
        else:
            self.violations = {}
        super().__init__(*args)


class ConstraintViolationError(LinconError):
    """Outputs violate the constraints by more than the stated tolerance."""


class ProjectionError(LinconError):
    """A projection solver did not reach a solution."""


class GeneratorMismatchError(LinconError):
    """Stored generator weights do not generate points of the layer's constraints."""


class GeneratorExplosionError(TooManyGeneratorsError):
    """Refused before double description: the set certainly has more generators than the cap.

    Raised up front (in milliseconds) only when a true lower bound on the
    number of vertices (a closed form: a product of intervals, a
    permutation-symmetric polytope's vertex orbit, a perfect-matching
    polytope's matchings; see
    :func:`keras_lincon.geometry.generator_lower_bound`) exceeds
    ``max_generators``, never on an upper bound alone. ``bound`` is that
    lower bound and ``rule`` names the closed form. A caller may catch it to
    fall back to another construction (for example scaled rows).
    """

    reason = "bound"

    def __init__(self, *args, bound: int | None = None, rule: str | None = None):
        super().__init__(*args)
        self.bound, self.rule = bound, rule


class ConstructionTimeoutError(LinconError):
    """Building the generators took longer than the allowed time budget (``reason == "time"``)."""

    reason = "time"


class MissingDependencyError(LinconError, ImportError):
    """An optional dependency (e.g. pycddlib for double description) is not installed."""


class NoStrictInteriorError(InfeasibleError):
    """No centre lies strictly inside the scaled rows and the box (scaled stage)."""


class ScaledRowsWarning(UserWarning):
    """Rows were moved from the generator stage to the scaled stage (exact, but lower quality)."""
