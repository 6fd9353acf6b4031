"""Turn what a user holds (a path, encoded bytes, a numpy array) into an ``interp.v1.Image``.

Nothing is decoded here: files travel as their encoded bytes and the server decodes them
(PNG, JPEG, BMP, WebP, TIFF). Arrays travel as raw pixels and are validated first, so a
mistake (channels first, floats outside [0, 1], an unsupported dtype) fails fast with a
ValueError naming what was expected instead of a round trip to the server.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from protos import interp_pb2 as pb
from protos.codec import fill_tensor

__all__ = ["ImageLike", "add_image", "image_message"]

#: Anything the SDK accepts as an image.
ImageLike = str | os.PathLike | bytes | bytearray | memoryview | np.ndarray | pb.Image

_CHANNELS = (1, 3, 4)


def image_message(image: ImageLike) -> pb.Image:
    """Build the wire message for one image.

    Args:
        image: one of
            - a path (``str`` or ``os.PathLike``) to an image file: its bytes are sent as they are;
            - encoded file bytes (``bytes``, ``bytearray``, ``memoryview``);
            - a numpy array, channels last: (H, W) or (H, W, C) with C in {1, 3, 4} (RGB(A) order),
              dtype uint8 (0..255), uint16 (0..65535) or float (values in [0, 1]; sent as float32);
            - an ``interp.v1.Image`` message (passed through).

    Returns:
        The ``Image`` message.

    Raises:
        ValueError: empty input, or an array of the wrong shape, dtype or value range.
        TypeError: an object of another type.
        OSError: the file cannot be read.
    """
    if isinstance(image, pb.Image):
        return image
    message = pb.Image()
    _fill(message, image)
    return message


def add_image(images: Any, image: ImageLike) -> None:
    """Append ``image`` to a repeated ``Image`` field (``request.images``), converted in place.

    What :func:`image_message` makes, without building a message to copy into the request (for
    256 arrays: 0.5 ms instead of 3.4 ms). Raises as :func:`image_message` does, before anything is
    appended.
    """
    if isinstance(image, pb.Image):
        images.append(image)
        return
    if isinstance(image, np.ndarray):
        array = _check_pixels(image)  # validated before the entry exists
        fill_tensor(images.add().pixels, array)
        return
    images.add(encoded=_encoded(image))


def _fill(message: pb.Image, image: ImageLike) -> None:
    if isinstance(image, np.ndarray):
        fill_tensor(message.pixels, _check_pixels(image))
    else:
        message.encoded = _encoded(image)


def _encoded(image: object) -> bytes:
    """The bytes of an encoded image given as bytes or a path (validated), else TypeError."""
    if isinstance(image, bytes | bytearray | memoryview):
        data = bytes(image)
        if not data:
            raise ValueError("image bytes are empty; expected an encoded image file (PNG, JPEG, ...)")
        return data
    if isinstance(image, str | os.PathLike):
        return read_image_file(Path(image))
    raise TypeError(
        f"unsupported image type {type(image).__name__}; expected a path, encoded bytes, "
        "a numpy array (H, W[, C]) or an interp.v1.Image"
    )


def read_image_file(path: Path, error: type[Exception] = ValueError) -> bytes:
    """The bytes of an image file, unread by anyone; ``error`` (the CLI: OSError, a local file
    error) for a directory or an empty file, OSError when it cannot be read."""
    if path.is_dir():
        raise error(f"image path {str(path)!r} is a directory; expected an image file")
    data = path.read_bytes()
    if not data:
        raise error(f"image file {str(path)!r} is empty")
    return data


def _check_pixels(array: np.ndarray) -> np.ndarray:
    """Validate a channels-last pixel array; returns it (floats as float32)."""
    shape = tuple(array.shape)
    if array.ndim not in (2, 3):
        raise ValueError(f"image array must be (H, W) or (H, W, C) with C in {_CHANNELS}, got shape {shape}")
    if array.ndim == 3 and shape[2] not in _CHANNELS:
        hint = ""
        if shape[0] in _CHANNELS:
            hint = "; it looks channels-first: pass np.transpose(a, (1, 2, 0))"
        elif shape[2] > max(_CHANNELS):  # (N, H, W): a stack, as datasets keep grey images
            hint = f"; for {shape[0]} grayscale images pass a[..., None] (N, H, W, 1) or a list of (H, W) arrays"
        raise ValueError(
            f"image array must be channels last (H, W, C) with C in {_CHANNELS}, got shape {shape}{hint}"
        )
    if shape[0] < 1 or shape[1] < 1:
        raise ValueError(f"image array must have at least 1x1 pixels, got shape {shape}")

    if array.dtype in (np.uint8, np.uint16):
        return array
    if np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)):
            raise ValueError("float image array contains NaN or infinity; expected values in [0, 1]")
        low, high = float(array.min()), float(array.max())
        if low < 0.0 or high > 1.0:
            raise ValueError(
                f"float image array must have values in [0, 1], got range [{low:g}, {high:g}]"
                + ("; divide by 255 for 8-bit values" if high <= 255.0 and low >= 0.0 else "")
            )
        return array.astype(np.float32, copy=False)
    raise ValueError(
        f"unsupported image array dtype {array.dtype}; expected uint8 (0..255), uint16 (0..65535) "
        "or float in [0, 1]" + ("; e.g. a.astype(np.uint8)" if np.issubdtype(array.dtype, np.integer) else "")
    )
