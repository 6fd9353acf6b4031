"""Decoding many raw-pixel images at once (load_stack) gives each exactly what it gets alone (load_input)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.zoo import FASHION_MNIST_PREPROCESSING, IMAGENET_PREPROCESSING
from protos import interp_pb2 as pb
from protos.codec import to_tensor
from server.errors import BadRequest
from server.imaging import load_input, load_stack, stack_key, stack_run

MAX = 40_000_000
RNG = np.random.default_rng(7)


def pixels(array: np.ndarray) -> pb.Image:
    return pb.Image(pixels=to_tensor(array))


def stack_of(shape: tuple[int, ...], dtype: str, count: int = 5) -> list[np.ndarray]:
    if dtype == "float32":
        return [RNG.random(shape, dtype=np.float32) for _ in range(count)]
    high = 256 if dtype == "uint8" else 65536
    return [RNG.integers(0, high, shape).astype(dtype) for _ in range(count)]


CASES = [
    # (preprocessing, shape, dtype): same size as the model's input (no resize), other sizes
    # (resized image by image), every channel count, ImageNet's resize-shorter-then-crop and its
    # trim of a long side beyond 4:1.
    (FASHION_MNIST_PREPROCESSING, (28, 28), "uint8"),
    (FASHION_MNIST_PREPROCESSING, (28, 28, 1), "uint16"),
    (FASHION_MNIST_PREPROCESSING, (28, 28, 3), "float32"),
    (FASHION_MNIST_PREPROCESSING, (28, 28, 4), "uint8"),
    (FASHION_MNIST_PREPROCESSING, (20, 35, 3), "uint8"),
    (FASHION_MNIST_PREPROCESSING, (50, 40), "float32"),
    (IMAGENET_PREPROCESSING, (240, 300, 3), "uint8"),
    (IMAGENET_PREPROCESSING, (60, 300, 4), "uint16"),
    (IMAGENET_PREPROCESSING, (300, 50), "uint8"),
]


@pytest.mark.parametrize(("spec", "shape", "dtype"), CASES, ids=[f"{c[0].channels}ch-{c[1]}-{c[2]}" for c in CASES])
def test_stack_equals_image_by_image(spec, shape, dtype) -> None:
    images = [pixels(a) for a in stack_of(shape, dtype)]
    keys = {stack_key(image, spec, MAX) for image in images}
    assert keys == {(images[0].pixels.dtype, shape)}
    x, refused = load_stack(images, spec)
    assert refused == []
    alone = torch.cat([load_input(image, spec, MAX) for image in images])
    assert x.shape == alone.shape and x.dtype == torch.float32
    assert torch.equal(x, alone)  # bit for bit, not merely close
    assert x.is_contiguous()


def test_float_images_out_of_range_are_left_to_decode_alone() -> None:
    arrays = stack_of((28, 28), "float32", count=6)
    arrays[1][3, 4] = 1.5
    arrays[3][0, 0] = np.nan
    arrays[4][5, 5] = -np.inf
    images = [pixels(a) for a in arrays]
    x, refused = load_stack(images, FASHION_MNIST_PREPROCESSING)
    assert refused == [1, 3, 4]
    good = [images[i] for i in (0, 2, 5)]
    assert torch.equal(x, torch.cat([load_input(image, FASHION_MNIST_PREPROCESSING, MAX) for image in good]))
    for i in refused:  # and alone they get the error naming what is wrong
        with pytest.raises(BadRequest, match=r"\[0, 1\]|NaN"):
            load_input(images[i], FASHION_MNIST_PREPROCESSING, MAX)


def test_what_goes_alone() -> None:
    spec = FASHION_MNIST_PREPROCESSING
    small = RNG.integers(0, 256, (28, 28)).astype(np.uint8)
    assert stack_key(pixels(small), spec, MAX) is not None
    assert stack_key(pb.Image(encoded=b"\x89PNG..."), spec, MAX) is None  # files: decoded one by one
    assert stack_key(pb.Image(), spec, MAX) is None
    assert stack_key(pixels(small.astype(np.float64)), spec, MAX) is None  # another dtype
    assert stack_key(pixels(small.astype(np.int32)), spec, MAX) is None  # refused alone
    assert stack_key(pixels(np.zeros((28, 28, 2), np.uint8)), spec, MAX) is None  # bad channel count
    assert stack_key(pixels(np.zeros((0, 28), np.uint8)), spec, MAX) is None
    assert stack_key(pixels(small), spec, 28 * 28 - 1) is None  # over the pixel cap
    assert stack_key(pixels(np.zeros((57, 57), np.uint8)), spec, MAX) is None  # reduced first, alone
    assert stack_key(pixels(np.zeros((56, 56), np.uint8)), spec, MAX) is not None
    short = pixels(small)
    short.pixels.data = short.pixels.data[:-1]  # byte count not matching the shape
    assert stack_key(short, spec, MAX) is None


def test_runs_are_the_images_that_share_a_key() -> None:
    spec = FASHION_MNIST_PREPROCESSING
    u8 = [RNG.integers(0, 256, (28, 28)).astype(np.uint8) for _ in range(3)]
    images = [
        pixels(u8[0]),
        pixels(u8[1]),
        pixels(u8[2]),
        pixels(u8[0].astype(np.uint16)),  # another dtype
        pixels(u8[0].reshape(28, 28, 1)),  # another shape, same bytes
        pixels(u8[1].reshape(28, 28, 1)),
        pb.Image(encoded=u8[2].tobytes()),  # a file (that happens to hold as many bytes)
        pixels(u8[2]),
        pb.Image(),
        pixels(np.zeros((57, 57), np.uint8)),  # reduced first: alone
        pixels(np.zeros((57, 57), np.uint8)),
    ]
    ends, i = [], 0
    while i < len(images):
        i = stack_run(images, i, spec, MAX)
        ends.append(i)
    assert ends == [3, 4, 6, 7, 8, 9, 10, 11]
    for start, end in zip([0, *ends], ends, strict=False):  # a run shares one key, its neighbours another
        keys = {stack_key(image, spec, MAX) for image in images[start:end]}
        assert len(keys) == 1
        if end < len(images):
            assert None in keys or stack_key(images[end], spec, MAX) not in keys
