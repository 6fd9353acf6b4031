"""Pictures of tensors (OpenCV + numpy): images, heatmaps, overlays, channel and kernel grids, PNG.

Every function returns ``uint8`` arrays in RGB order, (H, W) for grey or (H, W, 3) for colour;
:func:`encode_png` converts to OpenCV's BGR only at the very end. Inputs may be torch tensors or
numpy arrays; pixels are in [0, 1] (slight overshoot is clipped, NaN/inf rejected).
Conversion to 8 bits rounds to the nearest level, ``round(255 x)``, the same rounding the attacks
use, so the PNG of a quantized adversarial image carries exactly its k/255 values.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import cv2
import numpy as np
from torch import Tensor

from interp.errors import InvalidInput, echoed

COLORMAPS: dict[str, int] = {
    name.removeprefix("COLORMAP_").lower(): getattr(cv2, name)
    for name in dir(cv2)
    if name.startswith("COLORMAP_")
}
"""OpenCV colormaps by lower-case name (``jet``, ``viridis``, ``inferno``, ``turbo``, ...)."""

DEFAULT_CLIP_PERCENTILE = 99.0
"""Saliency heatmaps saturate at this percentile of the map (docs/methods.md, "Saliency")."""
DEFAULT_COLORMAP = "jet"
"""OpenCV colormap of saliency heatmaps."""

MIN_CELL = 64
"""Channel-grid cells are upscaled (nearest neighbour) to at least this many pixels per side."""
MAX_CELL = 128
"""...and downscaled (area averaging) to at most this many, so a 64-channel 224x224 grid stays small."""
MIN_KERNEL_CELL = 24
"""Kernel-grid cells are upscaled (nearest neighbour) to at least this many pixels per side..."""
MIN_FIRST_KERNEL_CELL = 48
"""...and a first layer's (one patch per kernel: RGB, or one grey input channel) to this many, so
LeNet's six 5x5 kernels make a picture a class can see (154 x 102 px, not 79 x 52)."""
GAP = 2
"""Pixels between grid cells."""
GAP_COLOUR = (70, 130, 180)
"""Between the cells of colour grids (images, kernels)."""
GAP_GREY = 128
"""Between the cells of grey channel grids."""
LABEL_COLOUR = (255, 255, 0)
LABEL_SCALE = 0.4  # OpenCV's Hershey simplex at 0.4: about 10 px high


def to_uint8_image(x: Tensor | np.ndarray) -> np.ndarray:
    """(C, H, W) pixels in [0, 1], C = 1 or 3 -> (H, W) grey or (H, W, 3) RGB uint8."""
    a = _as_array(x, "image")
    if a.ndim != 3 or a.shape[0] not in (1, 3):
        raise InvalidInput(f"expected a (C, H, W) image with C = 1 or 3, got shape {a.shape}")
    levels = _to_levels(a)
    return levels[0] if a.shape[0] == 1 else np.ascontiguousarray(levels.transpose(1, 2, 0))


def encode_png(image: np.ndarray, *, compression: int | None = None, flat: bool = False) -> bytes:
    """PNG bytes of an (H, W) grey or (H, W, 3) RGB uint8 image.

    ``compression``: zlib level 0..9; None keeps OpenCV's default (3). ``flat``: for pictures made
    of flat blocks (upscaled grids): no per-row filter and zlib's fastest level (unless
    ``compression`` says otherwise); libpng's adaptive row filters are most of the encoding time
    and gain nothing on runs of equal pixels.
    """
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        kind = image.dtype if isinstance(image, np.ndarray) else type(image).__name__
        raise InvalidInput(f"expected a uint8 numpy image, got {kind}")
    if image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    elif image.ndim != 2:
        raise InvalidInput(f"expected an (H, W) or (H, W, 3) image, got shape {image.shape}")
    flags = [] if compression is None else [cv2.IMWRITE_PNG_COMPRESSION, compression]
    if flat:
        flags = [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_NONE, cv2.IMWRITE_PNG_COMPRESSION, 1, *flags]
    ok, buffer = cv2.imencode(".png", image, flags)
    if not ok:  # pragma: no cover - OpenCV fails only on empty images, which the checks exclude
        raise InvalidInput(f"OpenCV could not encode an image of shape {image.shape}")
    return buffer.tobytes()


def heatmap(
    map_: Tensor | np.ndarray, clip_percentile: float = DEFAULT_CLIP_PERCENTILE, colormap: str = DEFAULT_COLORMAP
) -> np.ndarray:
    """Colour a (H, W) map: ``lo`` -> the colormap's first colour, the percentile and above -> its last.

    ``lo`` is 0 for a non-negative map (so "no attribution" is always the same colour) and the
    map's minimum otherwise. Clipping at a high percentile keeps a few extreme pixels from
    washing out the rest (the usual saliency rendering).

    Args:
        map_: (H, W) finite values, e.g. a saliency map.
        clip_percentile: in (0, 100]; values above this percentile saturate.
        colormap: a name in :data:`COLORMAPS`.

    Returns:
        (H, W, 3) uint8 RGB.
    """
    m = _as_array(map_, "map")
    if m.ndim != 2:
        raise InvalidInput(f"expected an (H, W) map, got shape {m.shape}")
    if isinstance(clip_percentile, bool) or not isinstance(clip_percentile, int | float):
        raise InvalidInput(
            f"clip_percentile must be a number in (0, 100], got {clip_percentile!r}", param="clip_percentile"
        )
    if not math.isfinite(clip_percentile) or not 0 < clip_percentile <= 100:
        raise InvalidInput(f"clip_percentile must be in (0, 100], got {clip_percentile!r}", param="clip_percentile")
    code = colormap_code(colormap)
    lo = min(float(m.min()), 0.0)
    hi = float(np.percentile(m, clip_percentile))
    scaled = np.clip((m - lo) / (hi - lo), 0.0, 1.0) if hi > lo else np.zeros_like(m)
    levels = np.rint(scaled * 255).astype(np.uint8)
    # Exactly cv2.applyColorMap + BGR->RGB, without rebuilding the colormap on every call
    # (which costs ~0.15 ms, most of the heatmap time for a 28x28 map).
    return cv2.LUT(cv2.cvtColor(levels, cv2.COLOR_GRAY2RGB), _colormap_lut(code))


@functools.cache
def _colormap_lut(code: int) -> np.ndarray:
    """(256, 1, 3) uint8 RGB table of an OpenCV colormap: entry i is the colour of grey level i."""
    ramp = np.arange(256, dtype=np.uint8).reshape(256, 1)
    lut = cv2.cvtColor(cv2.applyColorMap(ramp, code), cv2.COLOR_BGR2RGB)
    lut.flags.writeable = False  # shared by every call (and thread)
    return lut


def colormap_code(name: str) -> int:
    """OpenCV's code for a colormap name, or InvalidInput listing the valid names."""
    if not isinstance(name, str) or name.lower() not in COLORMAPS:
        raise InvalidInput(f"unknown colormap {echoed(name)}; valid colormaps: {', '.join(sorted(COLORMAPS))}")
    return COLORMAPS[name.lower()]


def overlay(image: Tensor | np.ndarray, heat: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend a heatmap over the (preprocessed) input: ``(1 - alpha) * image + alpha * heat``.

    Args:
        image: (C, H, W) pixels in [0, 1], C = 1 or 3 (grey is replicated to RGB).
        heat: (H, W, 3) uint8 RGB, e.g. from :func:`heatmap` of a map at input resolution.
        alpha: weight of the heatmap, in [0, 1].

    Returns:
        (H, W, 3) uint8 RGB.
    """
    base = to_uint8_image(image)
    if base.ndim == 2:
        base = np.repeat(base[:, :, None], 3, axis=2)
    if not isinstance(heat, np.ndarray) or heat.dtype != np.uint8 or heat.shape != base.shape:
        shape = heat.shape if isinstance(heat, np.ndarray) else type(heat).__name__
        raise InvalidInput(
            f"heat must be a uint8 RGB image of shape {base.shape} like the input, got {shape}"
        )
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0.0 <= alpha <= 1.0:
        raise InvalidInput(f"alpha must be in [0, 1], got {alpha!r}")
    return cv2.addWeighted(base, 1.0 - alpha, heat, alpha, 0.0)


def channel_grid(
    acts: Tensor | np.ndarray,
    channels: Sequence[int] | None = None,
    labels: bool = True,
    max_channels: int = 64,
) -> np.ndarray:
    """Activation maps of one image side by side, each normalized to its own min..max, in grey.

    Args:
        acts: (C, H, W) activations of one image, or (C,) for a fully connected layer (drawn as
            1x1 cells normalized together, since a single value has no range of its own).
        channels: channel indices to draw, in order (e.g. the top-k); None -> 0, 1, 2, ...
        labels: write each channel's index in its cell's corner (white on a darkened band).
        max_channels: at most this many cells are drawn (the first of ``channels``); >= 1.

    Returns:
        (H', W') uint8 grey grid, :data:`GAP_GREY` between the cells, cells upscaled with nearest
        neighbour so that a 5x5 map is at least :data:`MIN_CELL` pixels wide, and downscaled to
        at most :data:`MAX_CELL`. Grey because the maps are: a third of the bytes of RGB to
        encode and send (encode it with ``encode_png(grid, flat=True)``).
    """
    a = _as_array(acts, "activations")
    if a.ndim == 1:
        lo, hi = float(a.min()), float(a.max())
        a = ((a - lo) / (hi - lo) if hi > lo else np.zeros_like(a))[:, None, None]
        per_channel = False
    elif a.ndim == 3:
        per_channel = True
    else:
        raise InvalidInput(f"expected (C, H, W) or (C,) activations, got shape {a.shape}")
    if isinstance(max_channels, bool) or not isinstance(max_channels, int) or max_channels < 1:
        raise InvalidInput(f"max_channels must be an integer >= 1, got {max_channels!r}")
    count = a.shape[0]
    if channels is None:
        chosen = list(range(min(count, max_channels)))
    else:
        chosen = [int(c) for c in channels]
        bad = [c for c in chosen if not 0 <= c < count]
        if bad:
            raise InvalidInput(f"channels must be in 0..{count - 1}, got {bad}")
        chosen = chosen[:max_channels]
    if not chosen:
        raise InvalidInput("no channels to draw")
    maps = a[chosen]  # (n, h, w), one normalization for all of them
    if per_channel:
        lo = maps.min(axis=(1, 2), keepdims=True)
        span = maps.max(axis=(1, 2), keepdims=True) - lo
        maps = np.where(span > 0, (maps - lo) / np.where(span > 0, span, 1), 0)
    levels = np.rint(maps * 255).astype(np.uint8)
    h, w = a.shape[1:]
    side = max(h, w)
    if side < MIN_CELL:
        factor = math.ceil(MIN_CELL / side)
        cells = levels.repeat(factor, axis=1).repeat(factor, axis=2)  # nearest neighbour, exactly
    else:
        scale = min(1.0, MAX_CELL / side)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        cells = np.stack([cv2.resize(m, size, interpolation=cv2.INTER_AREA) for m in levels])
    if labels:
        for c, cell in zip(chosen, cells, strict=True):
            _label(cell, str(c), 255)
    return _tile(list(cells), columns=math.ceil(math.sqrt(len(cells))), gap=GAP_GREY)


def kernel_grid(weights: Tensor | np.ndarray, rgb: bool, max_kernels: int = 64) -> np.ndarray:
    """Draw convolution kernels; grey (128) is a zero weight.

    Each output kernel is scaled by its own largest magnitude, ``0.5 + 0.5 w / max|w|``, so its
    pattern is visible whatever its norm and the sign is kept.

    Args:
        weights: (O, I, kH, kW) conv weights.
        rgb: draw each kernel as one colour patch (requires I = 3: a first layer on RGB input);
            otherwise one grey patch per (output, input) channel pair, a row per output channel
            (or a square grid when I = 1).
        max_kernels: at most this many output (and input) channels are drawn, the first ones.

    Returns:
        (H', W', 3) uint8 RGB.
    """
    wts = _as_array(weights, "weights")
    if wts.ndim != 4:
        raise InvalidInput(f"expected (O, I, kH, kW) weights, got shape {wts.shape}")
    if isinstance(max_kernels, bool) or not isinstance(max_kernels, int) or max_kernels < 1:
        raise InvalidInput(f"max_kernels must be an integer >= 1, got {max_kernels!r}")
    if rgb and wts.shape[1] != 3:
        raise InvalidInput(f"rgb kernels need 3 input channels, got weights of shape {wts.shape}")
    wts = wts[:max_kernels, :max_kernels]
    peak = np.abs(wts).reshape(wts.shape[0], -1).max(axis=1)
    scaled = 0.5 + 0.5 * wts / np.where(peak > 0, peak, 1.0)[:, None, None, None]
    kh, kw = wts.shape[2:]
    one_patch_each = rgb or wts.shape[1] == 1
    factor = max(1, math.ceil((MIN_FIRST_KERNEL_CELL if one_patch_each else MIN_KERNEL_CELL) / max(kh, kw)))

    def cell(patch: np.ndarray) -> np.ndarray:  # (C, kh, kw) in [0, 1] -> upscaled RGB uint8
        img = to_uint8_image(patch)
        img = cv2.resize(img, (kw * factor, kh * factor), interpolation=cv2.INTER_NEAREST)
        return img if img.ndim == 3 else np.repeat(img[:, :, None], 3, axis=2)

    if one_patch_each:
        cells = [cell(k) for k in scaled]
        return _tile(cells, columns=math.ceil(math.sqrt(len(cells))))
    cells = [cell(k[i : i + 1]) for k in scaled for i in range(k.shape[0])]
    return _tile(cells, columns=wts.shape[1])


def image_grid(images: Tensor | np.ndarray, labels: Sequence[str] | None = None) -> np.ndarray:
    """Images of a batch side by side, in their own colours (no per-image normalization).

    Args:
        images: (N, C, H, W) pixels in [0, 1], C = 1 or 3 (e.g. filter visualizations, previews).
        labels: optional text per image, written in its cell's corner (``\n`` starts a line).

    Returns:
        (H', W', 3) uint8 RGB, cells upscaled (nearest) to at least :data:`MIN_CELL` pixels a side.
    """
    a = _as_array(images, "images")
    if a.ndim != 4 or a.shape[1] not in (1, 3):
        raise InvalidInput(f"expected (N, C, H, W) images with C = 1 or 3, got shape {a.shape}")
    if labels is not None and len(labels) != a.shape[0]:
        raise InvalidInput(f"expected {a.shape[0]} labels, got {len(labels)}")
    h, w = a.shape[2:]
    factor = max(1, math.ceil(MIN_CELL / max(h, w)))
    cells = []
    for i, image in enumerate(a):
        cell = to_uint8_image(image)
        cell = cv2.resize(cell, (w * factor, h * factor), interpolation=cv2.INTER_NEAREST)
        cell = cell if cell.ndim == 3 else np.repeat(cell[:, :, None], 3, axis=2)
        if labels is not None:
            _label(cell, labels[i])
        cells.append(np.ascontiguousarray(cell))
    return _tile(cells, columns=math.ceil(math.sqrt(len(cells))))


def perturbation_image(delta: Tensor | np.ndarray, epsilon: float) -> np.ndarray:
    """An adversarial perturbation made visible: ``0.5 + 0.5 * delta / epsilon``.

    Grey (128) is no change, white is +epsilon, black is -epsilon (per channel for RGB).

    Args:
        delta: (C, H, W) adversarial - clean, in pixel units, C = 1 or 3.
        epsilon: the attack's L-inf radius, > 0.

    Returns:
        (H, W) grey or (H, W, 3) RGB uint8.
    """
    d = _as_array(delta, "delta")
    if (
        isinstance(epsilon, bool)
        or not isinstance(epsilon, int | float)
        or not math.isfinite(epsilon)
        or epsilon <= 0
    ):
        raise InvalidInput(f"epsilon must be a finite number > 0, got {epsilon!r}")
    return to_uint8_image(np.clip(0.5 + 0.5 * d / epsilon, 0.0, 1.0))


def _as_array(x: Tensor | np.ndarray, what: str) -> np.ndarray:
    if isinstance(x, Tensor):
        a = x.detach().cpu().float().numpy()
    elif isinstance(x, np.ndarray):
        a = x.astype(np.float32, copy=False)
    else:
        raise InvalidInput(f"{what} must be a torch.Tensor or numpy array, got {type(x).__name__}")
    if a.size == 0:
        raise InvalidInput(f"{what} is empty, shape {a.shape}")
    if not np.isfinite(a).all():
        raise InvalidInput(f"{what} contains NaN or infinite values")
    return a


def _to_levels(a: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(a, 0.0, 1.0) * 255).astype(np.uint8)


def _label(cell: np.ndarray, text: str, colour: int | tuple[int, int, int] = LABEL_COLOUR) -> None:
    """Write ``text`` in the top-left corner of a contiguous cell, in ``colour`` on a darkened band
    so it reads on any map and the map still shows through; one line per ``\n``-separated part, a
    line too wide for the cell broken at its spaces, then written smaller (never cut at the right;
    lines past the cell's bottom are)."""
    font, width = cv2.FONT_HERSHEY_SIMPLEX, cell.shape[1] - 4
    top = 1
    for line in _fitted_lines(text, font, width):
        if not line:  # an empty line (or label): no text, no band
            continue
        scale = min(LABEL_SCALE, LABEL_SCALE * width / cv2.getTextSize(line, font, LABEL_SCALE, 1)[0][0])
        (text_w, text_h), base = cv2.getTextSize(line, font, scale, 1)
        band = cell[top : top + text_h + base + 2, : text_w + 4]
        band //= 3
        cv2.putText(cell, line, (2, top + text_h + 1), font, scale, colour, 1, cv2.LINE_AA)
        top += text_h + base + 2


def _fitted_lines(text: str, font: int, width: int) -> list[str]:
    """The label's lines, each broken at spaces into pieces that fit ``width`` at the label's size."""
    out: list[str] = []
    for line in text.split("\n"):
        words, current = line.split(" "), ""
        for word in words:
            joined = f"{current} {word}" if current else word
            if current and cv2.getTextSize(joined, font, LABEL_SCALE, 1)[0][0] > width:
                out.append(current)
                current = word
            else:
                current = joined
        out.append(current)
    return out


def _tile(cells: list[np.ndarray], columns: int, gap: int | tuple[int, int, int] = GAP_COLOUR) -> np.ndarray:
    """Lay equally sized (h, w, 3) or (h, w) cells out row by row, :data:`GAP` pixels of ``gap`` between them."""
    h, w = cells[0].shape[:2]
    rows = math.ceil(len(cells) / columns)
    grid = np.empty((rows * h + (rows - 1) * GAP, columns * w + (columns - 1) * GAP, *cells[0].shape[2:]), np.uint8)
    grid[:] = gap
    for i, cell in enumerate(cells):
        r, c = divmod(i, columns)
        grid[r * (h + GAP) : r * (h + GAP) + h, c * (w + GAP) : c * (w + GAP) + w] = cell
    return grid
