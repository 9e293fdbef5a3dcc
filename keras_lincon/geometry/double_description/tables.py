"""cddlib's input: the H-table ``[b, -A; d, -C]``, scaled by powers of two or read as exact rationals."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

# Largest denominator accepted when reading a float as a small rational.
MAX_DENOMINATOR = 10**6


def h_table(A: np.ndarray, b: np.ndarray, C: np.ndarray, d: np.ndarray) -> np.ndarray:
    """The rows as given, in cdd's layout ``[b, -A; d, -C]``: (m + p, n + 1)."""
    m, n = A.shape
    table = np.empty((m + len(C), n + 1))
    table[:m, 0], table[:m, 1:], table[m:, 0], table[m:, 1:] = b, -A, d, -C
    return table


def normalised_table(A: np.ndarray, b: np.ndarray, C: np.ndarray, d: np.ndarray) -> np.ndarray:
    """cdd's H-table ``[b, -A; d, -C]`` (shape (m + p, n + 1)), rows scaled by powers of two.

    Each nonzero row is multiplied by ``2^-e`` so that its largest absolute
    entry lies in ``[1/2, 1)``; this is exact in binary floating point (a row
    for which it would not be, because entries would underflow, is kept).
    """
    return power_of_two_rows(h_table(A, b, C, d))


def power_of_two_rows(table: np.ndarray) -> np.ndarray:
    """:func:`normalised_table` of an H-table ``[b, -A; d, -C]`` already stacked."""
    peak = np.max(np.abs(table), axis=1) if table.size else np.zeros(len(table))
    exponent = np.where(peak > 0, np.frexp(peak)[1], 0)
    scaled = np.ldexp(table, -exponent[:, None])
    exact = np.all(np.ldexp(scaled, exponent[:, None]) == table, axis=1)
    return np.where(exact[:, None], scaled, table)


def rational(value: float) -> Fraction:
    """The float as a rational: a small one if it rounds back exactly, else exactly."""
    small = Fraction(value).limit_denominator(MAX_DENOMINATOR)
    return small if float(small) == value else Fraction(value)


def exact_rows(table: np.ndarray) -> list:
    """Rows of ``table`` as exact rationals for ``cdd.gmp``: integer rows as coprime ints (fastest in GMP)."""
    integral = ((table == np.round(table)) & (np.abs(table) < 2.0**53)).all(axis=1)
    if integral.all():  # the common case (integer rows), at once: int64 is exact below 2^53
        ints = table.astype(np.int64)
        g = np.gcd.reduce(ints, axis=1) if ints.shape[1] else np.zeros(len(ints), dtype=np.int64)
        return (ints // np.where(g > 1, g, 1)[:, None]).tolist()
    rows: list = []  # rows of ints or of Fractions
    for row, is_int in zip(table, integral, strict=True):
        if is_int:
            row_ints = [int(v) for v in row]
            g = math.gcd(*row_ints)
            rows.append([v // g for v in row_ints] if g > 1 else row_ints)
        else:
            rows.append([rational(float(v)) for v in row])
    return rows


def small_rationals(table: np.ndarray) -> bool:
    """Whether every entry is a rational with denominator <= :data:`MAX_DENOMINATOR` (integers: at once)."""
    if np.all(table == np.round(table)):
        return True
    return all(rational(float(v)).denominator <= MAX_DENOMINATOR for v in table.reshape(-1))
