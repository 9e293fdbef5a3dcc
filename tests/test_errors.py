"""Tests of keras_lincon.errors: one hierarchy, refusal reasons, and errors that keep working with older excepts."""

import pytest

import keras_lincon as klc
from keras_lincon import errors

ERRORS = [getattr(klc, name) for name in klc.__all__ if name.endswith("Error")]


@pytest.mark.parametrize("error", ERRORS, ids=[e.__name__ for e in ERRORS])
def test_every_public_error_is_a_lincon_error_and_a_value_error(error):
    assert issubclass(error, klc.LinconError) and issubclass(error, ValueError)
    assert error.__doc__, f"{error.__name__} has no docstring"


def test_refusals_say_which_rule_refused():
    assert errors.TooManyGeneratorsError.reason == "count"
    assert errors.GeneratorExplosionError.reason == "bound"
    assert issubclass(errors.GeneratorExplosionError, errors.TooManyGeneratorsError)
    assert errors.ConstructionTimeoutError.reason == "time"


def test_compatible_bases():
    assert issubclass(klc.MissingDependencyError, ImportError)  # except ImportError still catches it
    assert issubclass(klc.NoStrictInteriorError, klc.InfeasibleError)
    assert issubclass(klc.ScaledRowsWarning, UserWarning) and not issubclass(klc.ScaledRowsWarning, klc.LinconError)
