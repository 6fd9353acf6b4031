"""Decoding many answers at once (the SDK's path for a many-image call) equals decoding each alone."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from client.results import ClassifyResult
from protos import interp_pb2 as pb
from protos.codec import TensorCodecError, from_tensor, from_tensors, to_tensor

RNG = np.random.default_rng(3)


def test_tensors_of_one_dtype_and_shape_are_decoded_as_rows() -> None:
    arrays = [RNG.random((2, 5)).astype(np.float32) for _ in range(4)]
    decoded = from_tensors([to_tensor(a) for a in arrays])
    for got, want in zip(decoded, arrays, strict=True):
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
        assert got.flags.writeable
    decoded[0][...] = -1  # rows do not overlap
    np.testing.assert_array_equal(decoded[1], arrays[1])


@pytest.mark.parametrize(
    "arrays",
    [
        [np.zeros(3, np.float32), np.zeros(4, np.float32)],  # shapes differ
        [np.zeros(3, np.float32), np.zeros(3, np.int64)],  # dtypes differ
        [np.float32(1.5) * np.ones((), np.float32), np.zeros((), np.float32)],  # 0-d
        [np.arange(6, dtype=np.uint16).reshape(2, 3)],
        [],
    ],
)
def test_mixed_tensors_are_decoded_one_by_one(arrays) -> None:
    decoded = from_tensors([to_tensor(a) for a in arrays])
    assert len(decoded) == len(arrays)
    for got, want in zip(decoded, arrays, strict=True):
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)


def test_a_tensor_with_a_wrong_byte_count_raises_as_alone() -> None:
    messages = [to_tensor(np.zeros(4, np.float32)) for _ in range(3)]
    messages[2].data = messages[2].data[:-4]
    with pytest.raises(TensorCodecError, match="needs 16 bytes, got 12"):
        from_tensors(messages)
    with pytest.raises(TensorCodecError, match="needs 16 bytes, got 12"):
        from_tensor(messages[2])


def _answers(echo: bool, logits: bool = True) -> pb.ClassifyResponse:
    reply = pb.ClassifyResponse()
    reply.stamp.MergeFrom(
        pb.ModelStamp(model="lenet", pretrained=True, weights_sha256="ab" * 32, request_id="r-1", elapsed_ms=3.5)
    )
    for i in range(5):
        item = reply.items.add()
        for c in RNG.permutation(10)[:3]:
            item.predictions.add(index=int(c), label=f"class {c}", probability=float(RNG.random()))
        if logits:
            item.logits.CopyFrom(to_tensor(RNG.standard_normal(10).astype(np.float32)))
        if echo:
            item.input.tensor.CopyFrom(to_tensor(RNG.random((1, 4, 4)).astype(np.float32)))
            item.input.png = b"png %d" % i
    return reply


@pytest.mark.parametrize(("echo", "logits"), [(False, True), (True, True), (False, False)])
def test_classify_items_equal_each_item_with_the_stamp(echo, logits) -> None:
    reply = _answers(echo, logits)
    together = ClassifyResult.from_items(list(reply.items), reply.stamp)
    alone = []
    for item in reply.items:
        copy = pb.ClassifyResponse()
        copy.CopyFrom(item)
        copy.stamp.CopyFrom(reply.stamp)
        alone.append(ClassifyResult.from_proto(copy))
    assert len(together) == len(alone) == 5
    for a, b in zip(together, alone, strict=True):
        assert type(a) is ClassifyResult and a.request_id == "r-1" and a.elapsed_ms == 3.5
        for field in dataclasses.fields(ClassifyResult):
            x, y = getattr(a, field.name), getattr(b, field.name)
            if isinstance(y, np.ndarray):
                assert isinstance(x, np.ndarray) and x.shape == y.shape and x.dtype == y.dtype
                np.testing.assert_array_equal(x, y)
            else:
                assert x == y, field.name
        with pytest.raises(dataclasses.FrozenInstanceError):
            a.request_id = "changed"  # type: ignore[misc]
        assert a.top == b.top and hash(a.top) == hash(b.top)
