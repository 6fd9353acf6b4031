"""Guided-backprop projection of one unit per image onto the input (TopActivations' projections)."""

from __future__ import annotations

import torch
from captum.attr import GuidedBackprop
from torch import Tensor, nn

from interp.errors import InvalidInput
from interp.hooks import get_layer, out_of_place_relus, run_until, structural_copy
from interp.validate import check_batch


class _UnitScore(nn.Module):
    """Per image, one unit of a layer: ``layer[b, channel[b], y[b], x[b]]`` (or ``[b, channel[b]]``), as (B, 1)."""

    def __init__(self, view: nn.Module, layer: str, channels: Tensor, ys: Tensor, xs: Tensor) -> None:
        super().__init__()
        self.view = view
        self.layer = layer
        self.channels, self.ys, self.xs = channels, ys, xs

    def forward(self, x: Tensor) -> Tensor:
        out = run_until(self.view, x, [self.layer])[self.layer]
        rows = torch.arange(out.shape[0], device=out.device)
        if out.dim() == 4:
            return out[rows, self.channels, self.ys, self.xs].unsqueeze(1)
        return out[rows, self.channels].unsqueeze(1)


def unit_guided_backprop(model: nn.Module, x: Tensor, layer: str, channels: Tensor, ys: Tensor, xs: Tensor) -> Tensor:
    """Guided-backprop projection of one unit per image onto the input (Springenberg et al. 2014).

    Zeiler & Fergus (2014) show, beside each top-activating patch, the unit's deconvnet projection;
    guided backprop is its variant that also masks by the forward ReLU pattern (captum's
    ``GuidedBackprop``: ReLU backward passes keep only positive gradients). Image b's map is the
    input gradient of ``layer[b, channels[b], ys[b], xs[b]]`` (``[b, channels[b]]`` for a linear
    layer); images are independent, so one backward serves the batch. Runs on a structural copy
    (no hook reaches ``model``).

    Args:
        model: the classifier; x: (B, C, H, W) pixels in [0, 1]; layer: module path;
        channels, ys, xs: (B,) int64 unit per image (ys, xs ignored for linear layers).

    Returns:
        (B, C, H, W) float32 signed projection.
    """
    check_batch(x)
    batch = x.shape[0]
    for name, t in (("channels", channels), ("ys", ys), ("xs", xs)):
        if t.shape != (batch,):
            raise InvalidInput(f"{name} must have shape ({batch},), got {tuple(t.shape)}")
    get_layer(model, layer)
    score = _UnitScore(out_of_place_relus(structural_copy(model)), layer, channels, ys, xs)
    inputs = x.detach().clone().requires_grad_(True)
    return GuidedBackprop(score).attribute(inputs, target=0).detach().float()
