"""Activation maps of any set of layers from one forward pass that stops at the deepest one."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from interp.errors import InvalidInput
from interp.hooks import check_batch, run_until


@dataclass(frozen=True)
class LayerActivations:
    """One layer's output for a batch.

    Attributes:
        layer: module path.
        tensor: (B, C, H, W) for conv-like layers or (B, F) for fully connected ones; float32, detached.
        channel_mean: (B, C) mean over the spatial positions (for (B, F) outputs: the values themselves).
        channel_max: (B, C) max over the spatial positions.
        top_channels: (B, k) int64 channel indices by ``channel_mean``, largest first; (B, 0) when k = 0.
    """

    layer: str
    tensor: Tensor
    channel_mean: Tensor
    channel_max: Tensor
    top_channels: Tensor


def activations(
    model: nn.Module, x: Tensor, layers: Sequence[str], *, top_k: int = 0
) -> dict[str, LayerActivations]:
    """Outputs of ``layers`` (module paths) for the batch ``x``, in the order requested.

    One forward pass serves all layers and stops once the deepest requested layer has run
    (:func:`interp.hooks.run_until`), so k layers cost one truncated forward, not k.

    Args:
        model: module taking (B, C, H, W) pixels in [0, 1].
        x: (B, C, H, W) batch of pixels in [0, 1].
        layers: module paths; duplicates are reported once.
        top_k: also rank the k channels with the largest mean activation; 0 (default) ranks none.
            Valid range: 0 to the smallest channel count among the requested layers.

    Returns:
        {module path: LayerActivations}.

    Raises:
        InvalidInput: bad batch, unknown layer (the message lists valid ones), top_k out of range.
    """
    check_batch(x)
    if isinstance(layers, str) or not isinstance(layers, Sequence):
        raise InvalidInput(f"layers must be a sequence of module paths, got {layers!r}")
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0:
        raise InvalidInput(f"top_k must be an integer >= 0, got {top_k!r}")
    names = list(dict.fromkeys(layers))
    with torch.no_grad():
        outputs = run_until(model, x, names)
    channels = {}
    for name in names:
        out = outputs[name]
        if not isinstance(out, Tensor) or out.dim() < 2:
            shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise InvalidInput(f"layer {name!r} does not produce a (B, C, ...) tensor (got {shape})")
        channels[name] = out.shape[1]
    smallest = min(channels, key=channels.__getitem__)
    if top_k > channels[smallest]:
        limit = channels[smallest]
        raise InvalidInput(f"top_k must be in 0..{limit} ({smallest!r} has {limit} channels), got {top_k}")
    result = {}
    for name in names:
        tensor = outputs[name].detach().float()
        flat = tensor.reshape(tensor.shape[0], tensor.shape[1], -1)
        mean = flat.mean(dim=2)
        top = torch.topk(mean, top_k, dim=1).indices  # (B, 0) int64 when top_k == 0
        result[name] = LayerActivations(
            layer=name, tensor=tensor, channel_mean=mean, channel_max=flat.amax(dim=2), top_channels=top
        )
    return result
