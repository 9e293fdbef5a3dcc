"""Tests of keras_lincon.layers.segments: per-block reductions agree with a plain keras.ops reference."""

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keras_lincon.layers import segments


def test_segment_max():
    values = keras.ops.convert_to_tensor(np.array([[1.0, 5.0, -2.0, 3.0]], "float32"))
    out = keras.ops.convert_to_numpy(segments.segment_max(values, np.array([0, 1, 0, 1], np.int32), 2))
    np.testing.assert_array_equal(out, [[1.0, 5.0]])


@pytest.mark.parametrize(
    "ids,k,kind",
    [
        (np.repeat(np.arange(16), 16), 17, "grid"),  # budget groups in order, an empty free slot
        (np.arange(5), 5, "grid"),  # one row per block
        (np.tile(np.repeat(np.arange(4), 7), 28) + 4 * np.repeat(np.arange(4), 196), 17, "grid"),  # checkerboard
        (np.tile(np.repeat(np.arange(3), 2), 4) + 3 * np.repeat(np.arange(2), 12), 6, "grid"),  # 2 x 3 tiles of 2 x 2
        (np.zeros(7, int), 2, "one"),  # a polytope: one block, no free coordinate
        (np.full(4, 3), 4, "one"),  # every coordinate free
        (np.tile(np.repeat(np.arange(4), 7), 28), 5, "grid"),  # stripes: tiles of 28 x 7
        (np.array([1, 1, 0, 0, 2, 2]), 3, "table"),  # runs out of order
        (np.random.default_rng(5).integers(0, 6, 50), 6, "table"),  # uneven but close
        (np.r_[np.zeros(40, int), np.arange(1, 9)], 10, "scatter"),  # one big segment
    ],
)
def test_segment_max_and_broadcast_match_keras_on_every_plan(ids, k, kind):
    assert segments.segment_plan(ids, k).kind == kind
    rng = np.random.default_rng(6)
    values = keras.ops.convert_to_tensor(rng.normal(size=(9, ids.size)).astype("float32"))
    expected = keras.ops.transpose(keras.ops.segment_max(keras.ops.transpose(values), ids, num_segments=k))
    got = keras.ops.convert_to_numpy(segments.segment_max(values, ids, k))
    filled = np.bincount(ids, minlength=k) > 0  # empty segments: the backend's lowest value or -inf
    np.testing.assert_array_equal(got[:, filled], keras.ops.convert_to_numpy(expected)[:, filled])
    assert np.all(got[:, ~filled] <= np.finfo(np.float32).min)
    per_segment = rng.normal(size=(9, k)).astype("float32")
    spread = segments.segment_broadcast(keras.ops.convert_to_tensor(per_segment), ids, k)
    np.testing.assert_array_equal(
        np.broadcast_to(keras.ops.convert_to_numpy(spread), values.shape), per_segment[:, ids]
    )
    empty = keras.ops.zeros((0, ids.size))  # an empty batch
    assert tuple(keras.ops.shape(segments.segment_max(empty, ids, k))) == (0, k)


@settings(max_examples=40, deadline=None)
@given(
    rows=st.integers(1, 4), h=st.integers(1, 4), cols=st.integers(1, 4), w=st.integers(1, 4),
    extra=st.integers(0, 2), shuffle=st.booleans(),
)  # fmt: skip
def test_segment_plans_agree_with_keras_on_random_tilings(rows, h, cols, w, extra, shuffle):
    """Every tiling (or its shuffled ids: the table) gives keras's segment max and the take."""
    grid = (np.arange(rows * h)[:, None] // h) * cols + np.arange(cols * w)[None, :] // w
    ids = grid.reshape(-1)
    if shuffle:
        ids = np.random.default_rng(rows * 64 + h * 16 + cols * 4 + w).permutation(ids)
    k = rows * cols + extra
    rng = np.random.default_rng(0)
    values = rng.normal(size=(3, ids.size)).astype("float32")
    expected = keras.ops.convert_to_numpy(
        keras.ops.transpose(keras.ops.segment_max(keras.ops.transpose(values), ids, num_segments=k))
    )
    got = keras.ops.convert_to_numpy(segments.segment_max(keras.ops.convert_to_tensor(values), ids, k))
    np.testing.assert_array_equal(got[:, : rows * cols], expected[:, : rows * cols])
    per_segment = rng.normal(size=(3, k)).astype("float32")
    spread = keras.ops.convert_to_numpy(segments.segment_broadcast(keras.ops.convert_to_tensor(per_segment), ids, k))
    np.testing.assert_array_equal(np.broadcast_to(spread, values.shape), per_segment[:, ids])
