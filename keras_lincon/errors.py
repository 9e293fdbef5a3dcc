"""Exception classes of keras_lincon.

Every error derives from :class:`LinconError`, itself a ``ValueError``, so
``except ValueError`` keeps working for callers that do not care which
constraint problem occurred. Each message says what is wrong and what to do.
"""


class LinconError(ValueError):
    """Base class of all keras_lincon errors."""


class ConstraintShapeError(LinconError):
    """Shapes of ``A``, ``b``, ``C``, ``d``, ``box`` or inputs disagree."""


class NonFiniteError(LinconError):
    """A constraint array holds NaN or infinity."""


class InfeasibleError(LinconError):
    """The constraint set is empty."""


class DegenerateSetError(LinconError):
    """The constraint set is a single point (for a cone: only ``{0}``)."""


class TooManyGeneratorsError(LinconError):
    """The V-representation has more generators than allowed."""


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
    """Refused before double description: the generator bound is far above the cap.

    Raised up front (in milliseconds) when McMullen's upper bound on the
    number of generators exceeds ``max_generators`` by a large factor; a
    caller may catch it to fall back to another construction (for example
    scaled rows) without waiting for an enumeration that would be refused.
    """


class ConstructionTimeoutError(LinconError):
    """Building the generators took longer than the allowed time budget."""


class MissingDependencyError(LinconError, ImportError):
    """An optional dependency (e.g. pycddlib for double description) is not installed."""


class NoStrictInteriorError(InfeasibleError):
    """No centre lies strictly inside the scaled rows and the box (scaled stage)."""


class ScaledRowsWarning(UserWarning):
    """Rows were moved from the generator stage to the scaled stage (exact, but lower quality)."""
