"""Decoding and preprocessing of request images (OpenCV), on real photos."""

from __future__ import annotations

import struct
import zlib
from dataclasses import replace

import cv2
import numpy as np
import pytest
import torch

from models.registry import get_spec
from protos import interp_pb2 as pb
from protos.codec import to_tensor
from server import imaging
from server.errors import BadRequest
from server.imaging import decode_image, header_size, preprocess

MAX = 40_000_000


def encoded(image_rgb: np.ndarray, ext: str) -> pb.Image:
    bgr = (
        image_rgb
        if image_rgb.ndim == 2
        else cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR if image_rgb.shape[2] == 3 else cv2.COLOR_RGBA2BGRA)
    )
    ok, buf = cv2.imencode(ext, bgr)
    assert ok
    return pb.Image(encoded=buf.tobytes())


@pytest.mark.parametrize("ext", [".png", ".bmp", ".tiff", ".webp", ".jpg"])
def test_common_formats_decode_to_the_same_rgb(cat_rgb, ext) -> None:
    decoded = decode_image(encoded(cat_rgb, ext), MAX)
    assert decoded.shape == cat_rgb.shape and decoded.dtype == np.float32
    tolerance = 0.0 if ext in (".png", ".bmp", ".tiff") else 0.1  # lossy codecs
    assert np.abs(decoded - cat_rgb / 255.0).mean() <= tolerance + 1e-6
    # channel order: the cat photo is reddish-brown; R mean > B mean survives decoding
    assert decoded[..., 0].mean() > decoded[..., 2].mean()


def test_grayscale_alpha_and_16bit(cat_rgb) -> None:
    gray = cv2.cvtColor(cat_rgb, cv2.COLOR_RGB2GRAY)
    assert decode_image(encoded(gray, ".png"), MAX).shape == gray.shape
    rgba = np.dstack([cat_rgb, np.full(cat_rgb.shape[:2], 255, np.uint8)])
    decoded = decode_image(encoded(rgba, ".png"), MAX)
    assert decoded.shape == (*cat_rgb.shape[:2], 4)
    deep = gray.astype(np.uint16) * 257
    ok, buf = cv2.imencode(".png", deep)
    decoded16 = decode_image(pb.Image(encoded=buf.tobytes()), MAX)
    np.testing.assert_allclose(decoded16, gray / 255.0, atol=1e-6)


def test_raw_tensors(cat_rgb) -> None:
    as_uint8 = decode_image(pb.Image(pixels=to_tensor(cat_rgb)), MAX)
    as_float = decode_image(pb.Image(pixels=to_tensor(cat_rgb.astype(np.float32) / 255)), MAX)
    np.testing.assert_allclose(as_uint8, as_float, atol=1e-6)


@pytest.mark.parametrize(
    "image",
    [
        pb.Image(),
        pb.Image(encoded=b""),
        pb.Image(encoded=b"not an image at all"),
        pb.Image(pixels=to_tensor(np.zeros((4, 4, 2), np.uint8))),
        pb.Image(pixels=to_tensor(np.zeros((0, 4), np.uint8))),
        pb.Image(pixels=to_tensor(np.full((4, 4), 2.0, np.float32))),
        pb.Image(pixels=to_tensor(np.full((4, 4), np.nan, np.float32))),
        pb.Image(pixels=to_tensor(np.zeros((4, 4), np.int64))),
        pb.Image(pixels=pb.Tensor(dtype=pb.Tensor.UINT8, shape=[4, 4], data=b"\x00" * 3)),
    ],
)
def test_bad_images_are_client_errors(image) -> None:
    from protos.codec import TensorCodecError

    with pytest.raises((BadRequest, TensorCodecError)):
        decode_image(image, MAX)


def test_truncated_png_is_refused(cat_png) -> None:
    with pytest.raises(BadRequest):
        decode_image(pb.Image(encoded=cat_png[: len(cat_png) // 2]), MAX)


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_header(width: int, height: int) -> bytes:
    """A small PNG file whose header declares width x height (a decompression bomb's shape)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 4096)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def test_huge_header_refused_before_decoding(monkeypatch) -> None:
    data = png_header(50_000, 50_000)
    assert header_size(data) == (50_000, 50_000)
    decoded: list[int] = []
    real = imaging.cv2.imdecode
    monkeypatch.setattr(imaging.cv2, "imdecode", lambda *a: decoded.append(1) or real(*a))
    with pytest.raises(BadRequest, match="exceeds"):
        decode_image(pb.Image(encoded=data), MAX)
    assert decoded == []  # refused from the header; 2.5 Gpx were never decoded nor allocated
    small = cv2.imencode(".png", np.zeros((4, 4), np.uint8))[1].tobytes()
    assert decode_image(pb.Image(encoded=small), MAX).shape == (4, 4) and decoded == [1]  # the probe works


def test_imagenet_preprocessing_shorter_side_and_centre_crop(cat_rgb) -> None:
    spec = get_spec("vgg16").preprocessing
    x = preprocess(cat_rgb.astype(np.float32) / 255, spec)
    assert x.shape == (3, 224, 224) and x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 1.0


def test_lenet_preprocessing_grayscale_28(cat_rgb) -> None:
    x = preprocess(cat_rgb.astype(np.float32) / 255, get_spec("lenet").preprocessing)
    assert x.shape == (1, 28, 28)


@pytest.mark.parametrize(
    ("dtype", "shape", "channels"),
    [("u1", (28, 28), 1), ("u1", (28, 28, 1), 1), ("<u2", (28, 28), 1), ("u1", (28, 28, 3), 3)]
    + [("<u2", (28, 28, 3), 3)],
)
def test_model_sized_pixels_take_the_short_path_to_the_same_values(dtype, shape, channels):
    """8/16-bit pixels at the model's size skip the general path: the input is its q / 255 (q / 65535)."""
    from server.imaging import _model_sized, _to_unit_float, decode_native, load_input, reduce_native

    spec = replace(get_spec("lenet").preprocessing, channels=channels, mean=(0.5,) * channels, std=(0.5,) * channels)
    high = 255 if dtype == "u1" else 65535
    pixels = np.random.default_rng(0).integers(0, high + 1, shape).astype(dtype)
    image = pb.Image(pixels=to_tensor(pixels))
    short = _model_sized(image, spec, 10**6)
    array, size = reduce_native(decode_native(image, 10**6), spec)
    general = torch.from_numpy(preprocess(_to_unit_float(array), spec, size)).unsqueeze(0)
    assert short is not None and short.dtype == torch.float32 and short.is_contiguous()
    assert torch.equal(short, general) and torch.equal(load_input(image, spec, 10**6), general)
    assert _model_sized(pb.Image(pixels=to_tensor(pixels[:27])), spec, 10**6) is None  # another size
    assert _model_sized(image, spec, 27 * 27) is None  # above the pixel cap: the general path refuses it
