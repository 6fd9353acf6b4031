"""PNG encoding without OpenCV or PIL (the web process is numpy-only), and data: URLs."""

from __future__ import annotations

import base64
import struct
import zlib

import numpy as np


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode_png(image: np.ndarray) -> bytes:
    """An 8-bit PNG of ``image``: (H, W) or (H, W, 1|3) float in [0, 1] (clipped) or uint8."""
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] != 3):
        raise ValueError(f"expected (H, W) or (H, W, 1|3), got shape {array.shape}")
    if array.dtype != np.uint8:
        array = np.round(np.clip(array.astype(np.float32), 0.0, 1.0) * 255.0).astype(np.uint8)
    height, width = array.shape[:2]
    colour = 2 if array.ndim == 3 else 0
    rows = array.reshape(height, -1)
    raw = np.concatenate([np.zeros((height, 1), np.uint8), rows], axis=1).tobytes()  # filter 0 per row
    header = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0)
    body = _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw, 6)) + _chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


def normalized(image: np.ndarray) -> np.ndarray:
    """``image`` scaled to [0, 1] by its own min and max (a projection's signed values); flat: grey."""
    array = np.asarray(image, dtype=np.float32)
    low, high = float(array.min()), float(array.max())
    if high - low < 1e-12:
        return np.full_like(array, 0.5)
    return (array - low) / (high - low)


def data_url(png: bytes | None) -> str:
    """A ``data:image/png`` URL (the pages' CSP allows data: images from the origin's JSON only)."""
    if not png:
        return ""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")
