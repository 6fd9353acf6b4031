"""Property-based fuzzing of the image path: server.imaging.decode_image + preprocess (hypothesis).

Whatever bytes or tensor a client sends, the outcome is one of two things: a client error
(BadRequest / TensorCodecError, i.e. INVALID_ARGUMENT with a message) or a valid model input, a
(C, H, W) float32 array in [0, 1] at the model's size. Never another exception, never NaN, never a
crash. Inputs: random bytes, real PNG/JPEG/BMP/TIFF/WebP/GIF files of a real photo mutated (bytes
flipped, truncated, spliced), PNG headers with random sizes and depths, raw tensors of random dtypes,
shapes and byte counts, and decoded arrays of random shapes and aspect ratios.
"""

from __future__ import annotations

import io
import struct
import zlib
from functools import lru_cache

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image as PILImage

from models.registry import get_spec
from protos import interp_pb2 as pb
from protos.codec import TensorCodecError, to_tensor
from server.errors import BadRequest
from server.imaging import decode_image, preprocess

# Small enough that every accepted image decodes in milliseconds; big enough for real photos' crops.
MAX_PIXELS = 1_000_000
SPECS = {name: get_spec(name).preprocessing for name in ("lenet", "vgg16")}
FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,  # the same examples on every run: CI stays reproducible
    database=None,  # nothing written into the repository
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def check_outcome(image: pb.Image) -> str:
    """Decode and preprocess ``image`` for every spec; return "ok" or "refused"; fail on anything else."""
    try:
        array = decode_image(image, MAX_PIXELS)
    except (BadRequest, TensorCodecError) as exc:
        assert str(exc)  # a message for the client
        return "refused"
    assert array.dtype == np.float32 and array.ndim in (2, 3)
    assert array.shape[0] * array.shape[1] <= MAX_PIXELS
    for spec in SPECS.values():
        try:
            x = preprocess(array, spec)
        except BadRequest as exc:  # e.g. a channel count the model cannot use
            assert str(exc)
            return "refused"
        side = spec.crop or spec.input_size
        assert x.shape == (spec.channels, side, side) and x.dtype == np.float32
        assert np.isfinite(x).all() and x.min() >= 0.0 and x.max() <= 1.0
    return "ok"


@lru_cache(maxsize=1)
def seed_files() -> tuple[bytes, ...]:
    """Real image files (crops of scikit-image's cat photo) in every format and depth we accept."""
    from skimage import data

    rgb = data.chelsea()[100:124, 150:182]  # 24 x 32
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    bgra = np.dstack([bgr, np.linspace(0, 255, 24 * 32).reshape(24, 32).astype(np.uint8)])
    files = []
    for ext in (".png", ".jpg", ".bmp", ".tiff", ".webp"):
        for array in (bgr, gray, bgra if ext in (".png", ".tiff", ".webp") else bgr):
            ok, buf = cv2.imencode(ext, array)
            assert ok
            files.append(buf.tobytes())
    for deep in (gray.astype(np.uint16) * 257, bgr.astype(np.uint16) * 257):
        files.append(cv2.imencode(".png", deep)[1].tobytes())
        files.append(cv2.imencode(".tiff", deep)[1].tobytes())
    for fmt, mode in (("GIF", None), ("PNG", "P"), ("PNG", "LA"), ("PNG", "1"), ("JPEG", "CMYK")):
        buf = io.BytesIO()
        image = PILImage.fromarray(rgb)
        (image.convert(mode) if mode else image).save(buf, fmt)
        files.append(buf.getvalue())
    return tuple(files)


def test_every_seed_file_is_accepted() -> None:
    """The mutations below start from valid files: each must decode to a valid input as it is."""
    for data in seed_files():
        assert check_outcome(pb.Image(encoded=data)) == "ok"


@FUZZ
@given(st.binary(max_size=4096))
def test_random_bytes(data: bytes) -> None:
    check_outcome(pb.Image(encoded=data))


@st.composite
def mutated_file(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(seed_files())))
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.sampled_from(["flip", "set", "insert", "delete", "splice"]))
        position = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[position] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and data:
            data[position] = draw(st.sampled_from([0x00, 0xFF, 0x7F, 0x80]))
        elif kind == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=64))
        elif kind == "delete":
            del data[position : position + draw(st.integers(1, 64))]
        else:  # splice in a piece of another file (e.g. a JPEG segment inside a PNG)
            other = draw(st.sampled_from(seed_files()))
            start = draw(st.integers(0, len(other) - 1))
            data[position:position] = other[start : start + draw(st.integers(1, 256))]
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


@FUZZ
@given(mutated_file())
def test_mutated_real_files(data: bytes) -> None:
    check_outcome(pb.Image(encoded=data))


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


@FUZZ
@given(
    width=st.one_of(st.integers(0, 64), st.integers(0, 2**31 - 1)),
    height=st.one_of(st.integers(0, 64), st.integers(0, 2**31 - 1)),
    depth=st.sampled_from([1, 2, 4, 8, 16, 3, 0]),
    colour=st.sampled_from([0, 2, 3, 4, 6, 1, 7]),
    payload=st.binary(max_size=512),
)
def test_png_headers_with_any_size_and_depth(width: int, height: int, depth: int, colour: int, payload: bytes) -> None:
    """Well-formed chunks (valid CRCs) around any IHDR: only the header-first cap and the decoder decide."""
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(payload)) + _chunk(b"IEND", b"")
    outcome = check_outcome(pb.Image(encoded=data))
    if width * height > MAX_PIXELS:
        assert outcome == "refused"


DTYPE_CODES = [code for code in pb.Tensor.DType.values()] + [7, 99, -1]


@FUZZ
@given(
    dtype=st.sampled_from(DTYPE_CODES),
    shape=st.lists(st.one_of(st.integers(-3, 40), st.sampled_from([2**31, 2**32, 2**62])), max_size=6),
    data=st.binary(max_size=8192),
)
def test_raw_tensor_messages_with_inconsistent_fields(dtype: int, shape: list[int], data: bytes) -> None:
    check_outcome(pb.Image(pixels=pb.Tensor(dtype=dtype, shape=shape, data=data)))


@st.composite
def raw_arrays(draw) -> np.ndarray:
    dtype = draw(st.sampled_from([np.uint8, np.uint16, np.float32, np.float64, np.int32, np.int64]))
    height, width = draw(st.integers(0, 48)), draw(st.integers(0, 48))
    shape = draw(
        st.sampled_from([(height, width), (height, width, 1), (height, width, 2), (height, width, 3),
                         (height, width, 4), (height, width, 5), (height,), (1, height, width, 3)])
    )  # fmt: skip
    if np.issubdtype(dtype, np.floating):
        elements = st.one_of(st.floats(0.0, 1.0, width=32), st.floats(allow_nan=True, allow_infinity=True, width=32))
        return draw(hnp.arrays(dtype, shape, elements=elements))
    return draw(hnp.arrays(dtype, shape))


@FUZZ
@given(raw_arrays())
def test_raw_arrays_of_any_dtype_and_shape(array: np.ndarray) -> None:
    outcome = check_outcome(pb.Image(pixels=to_tensor(array)))
    valid_layout = array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (1, 3, 4))
    in_range = array.dtype in (np.uint8, np.uint16) or (
        np.issubdtype(array.dtype, np.floating) and np.isfinite(array).all() and (array.size == 0 or
        (array.min() >= 0 and array.max() <= 1))
    )  # fmt: skip
    expected = "ok" if valid_layout and in_range and array.size > 0 else "refused"
    assert outcome == expected


@FUZZ
@given(
    height=st.integers(1, 3000),
    width=st.integers(1, 3000),
    channels=st.sampled_from([None, 1, 3, 4]),
)
def test_preprocess_any_size_and_aspect_ratio(height: int, width: int, channels: int | None) -> None:
    """Thin slivers included (1 x 3000): preprocessing stays bounded and lands on the model's input."""
    if height * width > MAX_PIXELS:
        height = max(1, MAX_PIXELS // width)
    shape = (height, width) if channels is None else (height, width, channels)
    array = np.random.default_rng(height * 7919 + width).random(shape, dtype=np.float32)
    for spec in SPECS.values():
        x = preprocess(array, spec)
        side = spec.crop or spec.input_size
        assert x.shape == (spec.channels, side, side)
        assert np.isfinite(x).all() and 0.0 <= x.min() and x.max() <= 1.0


@pytest.mark.parametrize("shape", [(1, 40_000), (40_000, 1), (2, 30_000, 3)])
def test_slivers_cost_no_more_than_a_4_to_1_image(shape: tuple[int, ...]) -> None:
    """Regression: a 1 x 40 000 image used to be resized to 256 x 10 240 000 before the crop (31 GB)."""
    x = preprocess(np.full(shape, 0.5, np.float32), SPECS["vgg16"])
    assert x.shape == (3, 224, 224)
    np.testing.assert_allclose(x, 0.5, atol=1e-6)
