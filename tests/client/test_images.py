"""Image arguments: paths and bytes travel encoded and untouched; arrays are validated and sent raw."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from client.images import add_image, image_message
from protos import interp_pb2 as pb
from protos.codec import from_tensor

FAKE_PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256))  # never decoded client-side


def test_path_str_and_pathlike_send_the_file_bytes_unchanged(tmp_path: Path):
    path = tmp_path / "cat.png"
    path.write_bytes(FAKE_PNG)
    for arg in (path, str(path)):
        message = image_message(arg)
        assert message.WhichOneof("source") == "encoded"
        assert message.encoded == FAKE_PNG


@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview])
def test_encoded_bytes_are_passed_through(wrap):
    message = image_message(wrap(FAKE_PNG))
    assert message.encoded == FAKE_PNG


def test_empty_inputs_are_refused(tmp_path: Path):
    with pytest.raises(ValueError, match="empty"):
        image_message(b"")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        image_message(empty)
    with pytest.raises(ValueError, match="directory"):
        image_message(tmp_path)


def test_missing_file_is_an_os_error(tmp_path: Path):
    with pytest.raises(FileNotFoundError):
        image_message(tmp_path / "nope.png")


@pytest.mark.parametrize(
    ("array", "dtype"),
    [
        (np.arange(12, dtype=np.uint8).reshape(3, 4), pb.Tensor.UINT8),  # (H, W) grey
        (np.arange(36, dtype=np.uint8).reshape(3, 4, 3), pb.Tensor.UINT8),  # RGB
        (np.arange(48, dtype=np.uint8).reshape(3, 4, 4), pb.Tensor.UINT8),  # RGBA
        (np.arange(12, dtype=np.uint8).reshape(3, 4, 1), pb.Tensor.UINT8),  # (H, W, 1)
        (np.array([[0, 65535], [1000, 40000]], dtype=np.uint16), pb.Tensor.UINT16),
    ],
)
def test_integer_arrays_travel_exactly(array, dtype):
    message = image_message(array)
    assert message.WhichOneof("source") == "pixels"
    assert message.pixels.dtype == dtype
    decoded = from_tensor(message.pixels)
    assert decoded.dtype == array.dtype
    np.testing.assert_array_equal(decoded, array)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_float_arrays_in_unit_range_travel_as_float32(dtype):
    array = np.linspace(0, 1, 2 * 3 * 3).reshape(2, 3, 3).astype(dtype)
    message = image_message(array)
    assert message.pixels.dtype == pb.Tensor.FLOAT32
    decoded = from_tensor(message.pixels)
    assert decoded.shape == (2, 3, 3)
    np.testing.assert_array_equal(decoded, array.astype(np.float32))


def test_non_contiguous_arrays_are_fine():
    array = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)[:, ::2]
    np.testing.assert_array_equal(from_tensor(image_message(array).pixels), array)


@pytest.mark.parametrize(
    ("array", "match"),
    [
        (np.zeros((3, 8, 8), np.uint8), "channels-first"),  # CHW instead of HWC
        (np.zeros((64, 28, 28), np.uint8), r"for 64 grayscale images pass a\[\.\.\., None\]"),  # a stack of grey images
        (np.zeros((8, 8, 2), np.uint8), r"channels last"),
        (np.zeros((8,), np.uint8), r"\(H, W\)"),
        (np.zeros((1, 8, 8, 3), np.uint8), r"got shape \(1, 8, 8, 3\)"),
        (np.zeros((0, 8), np.uint8), "1x1"),
        (np.zeros((8, 8), np.int64), "dtype int64"),
        (np.zeros((8, 8), np.bool_), "dtype bool"),
        (np.zeros((8, 8), np.int8), "uint8"),
        (np.full((4, 4), 255.0, np.float32), r"\[0, 1\].*divide by 255"),
        (np.full((4, 4), -0.1, np.float32), r"\[-0.1, -0.1\]"),
        (np.full((4, 4), 1.5, np.float64), r"\[0, 1\]"),
        (np.full((4, 4), np.nan, np.float32), "NaN"),
        (np.full((4, 4), np.inf, np.float32), "NaN or infinity"),
    ],
)
def test_bad_arrays_raise_value_error_naming_the_problem(array, match):
    with pytest.raises(ValueError, match=match):
        image_message(array)


def test_other_types_raise_type_error():
    with pytest.raises(TypeError, match="path, encoded bytes"):
        image_message(3.14)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        image_message([[0, 1], [1, 0]])  # type: ignore[arg-type]


def test_an_image_message_passes_through():
    message = pb.Image(encoded=FAKE_PNG)
    assert image_message(message) is message


def test_add_image_appends_what_image_message_makes(tmp_path: Path):
    path = tmp_path / "a.png"
    path.write_bytes(FAKE_PNG)
    given = [
        np.arange(12, dtype=np.uint8).reshape(3, 4),
        np.linspace(0, 1, 24, dtype=np.float64).reshape(2, 4, 3),
        np.arange(8, dtype=np.uint16).reshape(2, 4)[:, ::2],  # not contiguous
        FAKE_PNG,
        path,
        pb.Image(encoded=FAKE_PNG),
    ]
    request = pb.ClassifyRequest()
    for image in given:
        add_image(request.images, image)
    assert list(request.images) == [image_message(image) for image in given]


@pytest.mark.parametrize("bad", [np.zeros((8, 8), np.int64), np.full((4, 4), np.nan, np.float32), b"", 3.14])
def test_add_image_raises_before_appending(bad):
    request = pb.ClassifyRequest()
    add_image(request.images, np.zeros((2, 2), np.uint8))
    with pytest.raises((ValueError, TypeError)):
        add_image(request.images, bad)
    assert len(request.images) == 1
