"""One cddlib run (pycddlib 3): exact (``cdd.gmp``) or floating point, read back as float64 generators."""

from __future__ import annotations

import numpy as np

from keras_lincon.errors import MissingDependencyError, RepresentationCheckError
from keras_lincon.geometry.double_description.tables import exact_rows
from keras_lincon.geometry.generator_check import ADVICE
from keras_lincon.geometry.tolerances import RAY_RTOL

_MODULES: tuple = ()  # (cdd, cdd.gmp) once imported


def _cdd_modules():
    global _MODULES
    if _MODULES:
        return _MODULES
    try:
        import cdd
        import cdd.gmp
    except ImportError:
        raise MissingDependencyError(
            "this constraint set needs double description, which needs pycddlib: "
            'pip install "keras-lincon[cdd]" (it builds against the cddlib and GMP headers: '
            "apt-get install libcdd-dev libgmp-dev, or brew install cddlib gmp). Sets whose "
            "blocks have full row rank (the checkerboard, monotone chains, boxes) never need it."
        ) from None
    _MODULES = (cdd, cdd.gmp)
    return _MODULES


def run_cdd(table: np.ndarray, num_ineq: int, exact: bool):
    """One cddlib run on an H-table ``[b, -A; d, -C]``; returns float (vertices, rays, lineality).

    Generators are classified exactly (first entry zero) in rational
    arithmetic and with :data:`~keras_lincon.geometry.tolerances.RAY_RTOL`
    in floating point. cddlib errors are re-raised as
    :class:`RepresentationCheckError`.
    """
    cdd, gmp = _cdd_modules()
    n = table.shape[1] - 1
    module = gmp if exact else cdd
    rows = exact_rows(table) if exact else table.tolist()
    try:
        matrix = module.matrix_from_array(rows, lin_set=range(num_ineq, len(table)), rep_type=cdd.RepType.INEQUALITY)
        generators = module.copy_generators(module.polyhedron_from_matrix(matrix))
    except (RuntimeError, ValueError, ArithmeticError, TypeError) as exc:
        raise RepresentationCheckError(
            f"cddlib failed on {num_ineq} inequalities and {len(table) - num_ineq} equalities "
            f"in {n} dimensions ({'exact' if exact else 'floating-point'} arithmetic): "
            f"{type(exc).__name__}: {exc}. {ADVICE}" + ("." if exact else ", or pass arithmetic='exact'.")
        ) from exc
    raw = generators.array  # a property that builds the rows (Fractions) on every access: once
    lines = np.zeros(len(raw), dtype=bool)
    lines[sorted(generators.lin_set)] = True
    vertices, is_point, array = (_read_exact if exact else _read_float)(raw, lines, n)
    return vertices, array[~is_point & ~lines, 1:], array[lines, 1:]


def _read_exact(raw: list, lines: np.ndarray, n: int) -> tuple:
    """Rational generators as ``(vertices (k, n), is_point (g,), rows (g, n + 1))``, vertices correctly rounded.

    ``rows`` holds the rays and lines as floats (vertex rows are left zero).
    """
    # x / t as one integer division (xn td) / (xd tn): Python's int true
    # division rounds correctly, so vertices are correctly rounded, without
    # the gcd of a Fraction division (several times faster on many vertices).
    # cddlib scales vertices to t = 1: then x = xn / xd, read from the
    # Fraction's slots (its properties cost twice as much).
    is_point = np.zeros(len(raw), dtype=bool)
    points = []
    for i, row in enumerate(raw):
        t = row[0]
        if lines[i] or t == 0:
            continue
        is_point[i] = True
        if t == 1:
            try:
                points.append([x._numerator / x._denominator for x in row[1:]])
                continue
            except AttributeError:  # not a fractions.Fraction: the public properties
                pass
        tn, td = t.numerator, t.denominator
        points.append([(x.numerator * td) / (x.denominator * tn) for x in row[1:]])
    vertices = np.array(points, dtype=np.float64).reshape(-1, n)
    array = np.zeros((len(raw), n + 1))
    for k in np.flatnonzero(~is_point):
        array[k] = [float(x) for x in raw[k]]
    return vertices, is_point, array


def _read_float(raw: list, lines: np.ndarray, n: int) -> tuple:
    """Float generators as :func:`_read_exact` returns them; a row is a ray when ``|t| <= RAY_RTOL max|x|``."""
    array = np.array(raw, dtype=np.float64).reshape(-1, n + 1)
    peak = np.max(np.abs(array[:, 1:]), axis=1) if n else np.zeros(len(array))
    is_point = (np.abs(array[:, 0]) > RAY_RTOL * peak) & ~lines
    return array[is_point, 1:] / array[is_point, :1], is_point, array
