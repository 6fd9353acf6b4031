"""Watch's 8-bit maps (server.handlers.live.quantize) against the plain recipe: each channel's
values ``offset + scale * q`` within half a step of the float values, q the nearest step."""

from __future__ import annotations

import numpy as np
import pytest

from protos import interp_pb2 as pb
from server.handlers.live import quantize


def dequantized(maps: pb.QuantizedMaps) -> np.ndarray:
    q = np.frombuffer(maps.data, np.uint8).reshape(len(maps.scale), -1).astype(np.float64)
    return np.asarray(maps.offset)[:, None] + np.asarray(maps.scale)[:, None] * q


@pytest.mark.parametrize("shape", [(64, 13, 11), (5, 7), (10,)])
def test_quantize_is_the_nearest_step_of_each_channel(shape):
    values = np.maximum(np.random.default_rng(0).normal(size=shape), 0).astype(np.float32) * 7
    if len(shape) > 1:
        values[1] = 2.5  # a constant channel: its offset, step 1, every q 0
    maps = quantize(values)
    flat = values.reshape(values.shape[0], -1) if values.ndim > 1 else values.reshape(1, -1)
    low = flat.min(axis=1, keepdims=True).astype(np.float64)
    span = flat.max(axis=1, keepdims=True) - low
    step = np.where(span > 0, span / 255.0, 1.0)
    expected = np.rint((flat - low) / step)  # the plain recipe, in float64
    q = np.frombuffer(maps.data, np.uint8).reshape(flat.shape)
    assert list(maps.shape) == list(shape) and maps.dtype == pb.Tensor.UINT8
    assert np.abs(q.astype(np.int64) - expected).max() <= 1  # a tie may round either way
    assert q.max() <= 255 and (q.max(axis=1) == np.where(span[:, 0] > 0, 255, 0)).all()
    assert np.abs(dequantized(maps) - flat).max() <= step.max() / 2 * (1 + 1e-4)


def test_float16_keeps_the_values():
    values = np.random.default_rng(1).normal(size=(3, 4, 4)).astype(np.float32)
    maps = quantize(values, float16=True)
    np.testing.assert_array_equal(np.frombuffer(maps.data, "<f2").reshape(3, 4, 4), values.astype(np.float16))


def test_into_a_message_and_in_place_give_the_same_answer():
    values = np.maximum(np.random.default_rng(2).normal(size=(8, 9, 9)), 0).astype(np.float32)
    plain = quantize(values.copy())
    reply = pb.WatchResponse()
    scratch = values.copy()
    quantize(scratch, out=reply.maps, scratch=True)
    assert reply.maps == plain
    assert not np.array_equal(scratch, values)  # the working array was used
    kept = values.copy()
    quantize(kept, out=pb.QuantizedMaps())
    np.testing.assert_array_equal(kept, values)  # without scratch the values are untouched
