"""Rendering helpers: exact pixel values where the contract fixes them, PNG round trips."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from interp.errors import InvalidInput
from interp.rendering import (
    COLORMAPS,
    GAP,
    GAP_GREY,
    MIN_CELL,
    channel_grid,
    encode_png,
    heatmap,
    kernel_grid,
    overlay,
    perturbation_image,
    to_uint8_image,
)


def decode_png(data: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    return image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def jet(level: int) -> np.ndarray:
    """Oracle: OpenCV's jet colour of one level, in RGB."""
    return cv2.applyColorMap(np.array([[level]], np.uint8), cv2.COLORMAP_JET)[0, 0, ::-1]


def test_to_uint8_keeps_every_8_bit_level():
    levels = torch.arange(256, dtype=torch.float32).view(1, 16, 16)
    assert np.array_equal(to_uint8_image(levels / 255), levels[0].numpy().astype(np.uint8))


def test_to_uint8_layouts_and_clipping():
    rgb = torch.zeros(3, 2, 4)
    rgb[0] = 1.0  # red
    out = to_uint8_image(rgb)
    assert out.shape == (2, 4, 3) and out.dtype == np.uint8
    assert (out == [255, 0, 0]).all()
    assert to_uint8_image(np.full((1, 3, 3), 1.00001, np.float32)).max() == 255
    with pytest.raises(InvalidInput, match="C = 1 or 3"):
        to_uint8_image(torch.zeros(2, 4, 4))
    with pytest.raises(InvalidInput, match="NaN"):
        to_uint8_image(torch.full((1, 2, 2), float("nan")))


def test_png_round_trip_grey_and_rgb():
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (7, 5), dtype=np.uint8)
    rgb = rng.integers(0, 256, (6, 9, 3), dtype=np.uint8)
    assert np.array_equal(decode_png(encode_png(grey)), grey)
    assert np.array_equal(decode_png(encode_png(rgb)), rgb)  # RGB in, RGB out: the BGR swap is internal
    with pytest.raises(InvalidInput, match="uint8"):
        encode_png(rgb.astype(np.float32))


def test_heatmap_colours_and_percentile_clipping():
    m = np.zeros((10, 10), np.float32)
    assert (heatmap(m) == jet(0)).all()  # nothing to show: the colormap's first colour
    m = np.linspace(0, 1, 10000, dtype=np.float32).reshape(100, 100)
    m[0, 0] = 1000.0  # one outlier must not wash the rest out
    h = heatmap(m, clip_percentile=99)
    assert (h[99, 99] == jet(255)).all() and (h[0, 0] == jet(255)).all()
    assert (h[50, 0] == jet(round(0.5 / np.percentile(m, 99) * 255))).all()
    unclipped = heatmap(m, clip_percentile=100)
    assert (unclipped[99, 99] == jet(0)).all()  # 1/1000 of the range: same colour as zero


def test_heatmap_colormap_names():
    m = np.random.default_rng(1).random((4, 4)).astype(np.float32)
    assert not np.array_equal(heatmap(m, colormap="viridis"), heatmap(m, colormap="jet"))
    assert "inferno" in COLORMAPS and "turbo" in COLORMAPS
    with pytest.raises(InvalidInput, match="unknown colormap 'rainbowish'; valid colormaps: .*jet.*viridis"):
        heatmap(m, colormap="rainbowish")
    with pytest.raises(InvalidInput, match=r"\(0, 100\]"):
        heatmap(m, clip_percentile=0)


def test_overlay_blends_image_and_heat():
    image = torch.full((1, 4, 4), 0.2)
    heat = np.full((4, 4, 3), 200, np.uint8)
    assert (overlay(image, heat, alpha=0.0) == 51).all()
    assert (overlay(image, heat, alpha=1.0) == 200).all()
    assert (overlay(image, heat, alpha=0.5) == 126).all()  # (51 + 200) / 2 rounded
    with pytest.raises(InvalidInput, match=r"shape \(4, 4, 3\)"):
        overlay(image, np.zeros((5, 5, 3), np.uint8))
    with pytest.raises(InvalidInput, match=r"alpha must be in \[0, 1\]"):
        overlay(image, heat, alpha=2.0)


def test_channel_grid_layout_normalization_and_upscaling():
    acts = torch.zeros(16, 5, 5)
    acts[3, 2, 2] = 7.0  # channel 3: one bright unit on zero
    acts[5] = 4.0  # channel 5: constant -> black
    grid = channel_grid(acts, labels=False)
    cell = 5 * -(-MIN_CELL // 5)  # 5x5 maps upscaled to at least MIN_CELL pixels: 65
    assert grid.shape == (4 * cell + 3 * GAP, 4 * cell + 3 * GAP)  # grey
    assert (grid[cell, :] == GAP_GREY).all()  # gap row between the first two rows of cells
    col3 = 3 * (cell + GAP)
    block = grid[:cell, col3 : col3 + cell]
    assert block.max() == 255 and block[cell // 2, cell // 2] == 255 and block[0, 0] == 0
    row1, col1 = cell + GAP, 1 * (cell + GAP)  # channel 5: row 1, column 1
    assert (grid[row1 : row1 + cell, col1 : col1 + cell] == 0).all()
    labelled = channel_grid(acts, labels=True)
    assert not np.array_equal(labelled, grid)


def test_channel_grid_selected_channels_and_limits():
    acts = torch.rand(10, 6, 6)
    acts[7] = 0.0
    one = channel_grid(acts, channels=[7], labels=False)
    assert (one == 0).all()
    assert (
        channel_grid(acts, channels=[9, 8, 7, 6], labels=False).shape[0]
        == channel_grid(acts[:4], labels=False).shape[0]
    )
    assert (
        channel_grid(torch.rand(100, 2, 2), max_channels=4, labels=False).shape
        == channel_grid(torch.rand(4, 2, 2), labels=False).shape
    )
    with pytest.raises(InvalidInput, match=r"channels must be in 0\.\.9, got \[10\]"):
        channel_grid(acts, channels=[1, 10])
    fc = channel_grid(torch.arange(6, dtype=torch.float32), labels=False)  # (F,): normalized together
    assert fc[0, 0] == 0 and fc[-1, -1] == 255


def test_kernel_grid_rgb_patches_keep_colour_and_sign():
    w = torch.zeros(2, 3, 3, 3)
    w[0, 0] = 1.0  # red-only positive kernel
    grid = kernel_grid(w, rgb=True)
    patch = grid[0, 0]
    assert tuple(patch) == (255, 128, 128)
    second = grid[0, -1]  # the all-zero kernel is plain grey
    assert tuple(second) == (128, 128, 128)
    with pytest.raises(InvalidInput, match="3 input channels"):
        kernel_grid(torch.zeros(4, 2, 3, 3), rgb=True)


def test_kernel_grid_per_input_channel_layout():
    w = torch.randn(4, 6, 5, 5)
    grid = kernel_grid(w, rgb=False)
    cell = 5 * -(-24 // 5)
    assert grid.shape == (4 * cell + 3 * GAP, 6 * cell + 5 * GAP, 3)  # a row per output channel
    w1 = -torch.ones(6, 1, 5, 5)
    single = kernel_grid(w1, rgb=False)  # I = 1: square layout, all at the negative extreme
    cell = 5 * -(-48 // 5)  # a first layer's patches are drawn larger
    assert single.shape[:2] == (2 * cell + GAP, 3 * cell + 2 * GAP) == (102, 154)
    assert single[0, 0, 0] == 0


def test_perturbation_image_grey_is_zero():
    d = torch.tensor([[[0.0, 0.1, -0.1, 0.05]]])
    out = perturbation_image(d, 0.1)
    assert out.tolist() == [[128, 255, 0, 191]]
    with pytest.raises(InvalidInput, match="> 0"):
        perturbation_image(d, 0.0)


def test_channel_grid_equals_a_cell_by_cell_drawing():
    """The vectorized grid against the plain recipe: each map alone normalized to its min..max
    (torch), rounded to 8 bits, upscaled by OpenCV's nearest neighbour, laid out with gaps."""
    acts = torch.randn(7, 5, 3) * 3
    acts[2] = 1.5  # constant: black
    chosen = [6, 2, 0, 4]
    grid = channel_grid(acts, channels=chosen, labels=False)
    factor = -(-MIN_CELL // 5)
    h, w = 5 * factor, 3 * factor
    for i, c in enumerate(chosen):
        m = acts[c]
        span = m.max() - m.min()
        norm = (m - m.min()) / span if span > 0 else torch.zeros_like(m)
        expected = cv2.resize(
            np.rint(norm.numpy() * 255).astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST
        )
        r, col = divmod(i, 2)
        cell = grid[r * (h + GAP) : r * (h + GAP) + h, col * (w + GAP) : col * (w + GAP) + w]
        np.testing.assert_array_equal(cell, expected)
    big = torch.rand(2, 300, 200)  # above MAX_CELL: area-downscaled to at most MAX_CELL
    assert channel_grid(big, labels=False).shape == (128, 2 * 85 + GAP)


def test_flat_png_is_lossless():
    grid = channel_grid(torch.rand(16, 10, 10))
    for flat in (False, True):
        np.testing.assert_array_equal(decode_png(encode_png(grid, flat=flat)), grid)
    rgb = np.random.default_rng(0).integers(0, 256, (9, 7, 3), dtype=np.uint8)
    np.testing.assert_array_equal(decode_png(encode_png(rgb, flat=True)), rgb)
