"""Fingerprints of weight values: on the host (numpy) and in a traced graph (``keras.ops``).

A traced write of a generator variable stores its value only when the
fingerprint matches the checked one (:mod:`keras_lincon.layers.generator_guard`):
an odd-weighted sum of the mixed bit patterns modulo 2**32, exact for single
changes. The host checks compare bits exactly (:func:`same_bits`).
"""

from __future__ import annotations

import functools
import warnings

import keras
import numpy as np

#: Odd multiplier of the word mixer (an xor-shift and an odd product: a bijection of 32-bit words).
_MIX = 0x045D9F3B


def _host_mix(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return (x ^ (x >> np.uint32(16))) * np.uint32(_MIX)


@functools.lru_cache(maxsize=64)
def _position_weights(size: int) -> np.ndarray:
    """(size,) odd int32 weights ``mix(mix(j)) | 1``: a constant of the compiled check, not computed per call."""
    return (_host_mix(_host_mix(np.arange(size, dtype=np.uint32))) | np.uint32(1)).view(np.int32)


def host_fingerprint(value) -> int:
    """Exact fingerprint of an array's bits, as a signed int32:
    ``sum_j mix(word_j) * w_j mod 2**32`` with fixed odd pseudo-random ``w_j``.

    The bit patterns are read as 32-bit words (a 64-bit value gives two).
    ``mix`` (``x`` XOR ``x`` shifted right by 16, times an odd constant) is a bijection of
    32-bit words and each weight is odd, so changing any single word always
    changes the sum; other changes collide with probability about 2**-32,
    structured ones (pairs of sign flips) about 2**-16: without ``mix`` two
    sign flips always cancel. One round keeps the compiled check cheap (XLA
    on CPU spends tens of microseconds per extra round on 4,000 words). The
    in-graph version (:func:`graph_fingerprint`) computes the same number.
    """
    words = np.ascontiguousarray(value).reshape(-1).view(np.uint32)
    weights = _position_weights(words.size).view(np.uint32)
    with np.errstate(over="ignore"):  # uint32 wraps: exact modulo 2**32
        total = int(np.sum(_host_mix(words) * weights, dtype=np.uint32))
    return total - 2**32 if total >= 2**31 else total


def _graph_mix(x):
    ops = keras.ops
    # int32 has no logical shift: an arithmetic one, masked to the low 16 bits, is the same
    return ops.bitwise_xor(x, ops.bitwise_and(ops.right_shift(x, 16), 0xFFFF)) * _MIX


def graph_fingerprint(value):
    """:func:`host_fingerprint` with ``keras.ops`` (int32 arithmetic wraps modulo 2**32 on every backend)."""
    ops = keras.ops
    words = ops.reshape(ops.view(value, "int32"), (-1,))
    weights = ops.convert_to_tensor(_position_weights(int(words.shape[0])))
    # torch sums int32 in int64: the cast back keeps the value modulo 2**32
    return ops.cast(ops.sum(_graph_mix(words) * weights), "int32")


def to_numpy(x) -> np.ndarray:
    """A copy of a variable's or tensor's value. NumPy 2 warns that the backends' ``__array__``
    take no ``copy`` keyword; that is theirs to fix, and tests that turn warnings into errors
    build layers."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "__array__ implementation doesn't accept", DeprecationWarning)
        return np.array(keras.ops.convert_to_numpy(x))


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Bit-for-bit equality (the host checks are exact; the fingerprint is for compiled code)."""
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()
