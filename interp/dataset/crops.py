"""Receptive-field crops of index entries: the input pixels a unit sees, cut out and marked.

A unit's field (from the layer catalogue's size, jump and start) may extend past the image; the
crop is then padded and the padded part hatched, so a border crop is visibly marked. The grid is
the lecture figure of the top images per channel (Zeiler & Fergus 2014).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch import Tensor

from interp.errors import InvalidInput
from interp.rendering import encode_png


@dataclass(frozen=True)
class Box:
    """Rows y0..y1-1 and columns x0..x1-1 of the input (may extend past its borders)."""

    y0: int
    x0: int
    y1: int
    x1: int


def receptive_box(rf_size: int, rf_jump: int, rf_start: float, y: int, x: int) -> Box:
    """The input pixels unit (y, x) sees (pixel-centre convention of the layer catalogue).

    Unit k's field is centred on ``start + k * jump`` and spans ``(size - 1) / 2`` on either side.
    """
    half = (rf_size - 1) / 2
    y0 = int(round(rf_start + y * rf_jump - half))
    x0 = int(round(rf_start + x * rf_jump - half))
    return Box(y0, x0, y0 + rf_size, x0 + rf_size)


def clip_box(box: Box, height: int, width: int) -> Box:
    return Box(max(0, box.y0), max(0, box.x0), min(height, box.y1), min(width, box.x1))


def crop_field(image: Tensor, box: Box, fill: float = 0.0) -> tuple[Tensor, bool]:
    """The (C, r, r) crop of ``image`` (C, H, W) under ``box``, padded with ``fill`` past the borders.

    Returns:
        the crop, and whether any of it was padding (the unit's field leaves the image).
    """
    c, h, w = image.shape
    out = torch.full((c, box.y1 - box.y0, box.x1 - box.x0), fill, dtype=image.dtype)
    inside = clip_box(box, h, w)
    if inside.y1 > inside.y0 and inside.x1 > inside.x0:
        out[:, inside.y0 - box.y0 : inside.y1 - box.y0, inside.x0 - box.x0 : inside.x1 - box.x0] = image[
            :, inside.y0 : inside.y1, inside.x0 : inside.x1
        ]
    return out, inside != box


def draw_box(image: np.ndarray, box: Box, scale: int, colour: tuple[int, int, int] = (255, 64, 64)) -> np.ndarray:
    """An (H*scale, W*scale, 3) uint8 copy of a (H, W, 3) uint8 image with ``box`` outlined."""
    h, w = image.shape[:2]
    big = cv2.resize(image, (w * scale, h * scale), interpolation=cv2.INTER_NEAREST)
    inside = clip_box(box, h, w)
    cv2.rectangle(
        big,
        (inside.x0 * scale, inside.y0 * scale),
        (inside.x1 * scale - 1, inside.y1 * scale - 1),
        colour,
        thickness=1,
    )
    return big


def mark_padding(crop_rgb: np.ndarray, crop_box: Box, height: int, width: int, scale: int) -> np.ndarray:
    """Hatch the padded part of an upscaled crop so a border crop is visibly marked (a new array)."""
    out = crop_rgb.copy()
    out[_padding_hatch(crop_box, height, width, scale)] = (48, 48, 96)
    return out


@functools.lru_cache(maxsize=1024)
def _padding_hatch(crop_box: Box, height: int, width: int, scale: int) -> np.ndarray:
    """The (h*scale, w*scale) bool hatch of a box's padded part; the few box positions of a layer recur."""
    rows = np.arange(crop_box.y0, crop_box.y1)
    cols = np.arange(crop_box.x0, crop_box.x1)
    outside = ~(((rows >= 0) & (rows < height))[:, None] & ((cols >= 0) & (cols < width))[None, :])
    checker = (np.add.outer(np.arange(len(rows)), np.arange(len(cols))) % 2) == 0
    mask = np.repeat(np.repeat(outside & checker, scale, axis=0), scale, axis=1)
    mask.flags.writeable = False
    return mask


def top_grid(cells: Sequence[Sequence[np.ndarray]], labels: Sequence[str], gap: int = 2) -> np.ndarray:
    """The lecture figure: one row of k cells per channel (uint8 (h, w, 3) each), labelled rows."""
    if not cells or not cells[0]:
        raise InvalidInput("no cells to draw")
    h, w = cells[0][0].shape[:2]
    columns = max(len(row) for row in cells)
    label_w = 48
    grid = np.full((len(cells) * (h + gap) + gap, label_w + columns * (w + gap) + gap, 3), 255, dtype=np.uint8)
    for r, row in enumerate(cells):
        top = gap + r * (h + gap)
        cv2.putText(grid, labels[r][:8], (2, top + h // 2 + 4), cv2.FONT_HERSHEY_PLAIN, 0.8, (0, 0, 0), 1)
        for c, cell in enumerate(row):
            left = label_w + gap + c * (w + gap)
            grid[top : top + h, left : left + w] = cell
    return grid


def fast_png(image: np.ndarray) -> bytes:
    """PNG bytes of an (H, W) grey or (H, W, 3) RGB uint8 image, fastest zlib level.

    A TopActivations answer holds hundreds of small crops; level 1 encodes them about twice as
    fast as OpenCV's default level for a few percent more bytes.
    """
    return encode_png(image, compression=1)
