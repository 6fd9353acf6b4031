"""What a model computes on one batch, without optimization: class probabilities, the
activation maps of any set of layers (one forward pass that stops at the deepest one), and the
kernel weights of a convolution."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from interp.errors import InvalidInput
from interp.hooks import get_layer, run_until
from interp.validate import check_batch, check_logits


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


def activations(model: nn.Module, x: Tensor, layers: Sequence[str], *, top_k: int = 0) -> dict[str, LayerActivations]:
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
        raise InvalidInput(f"layers must be a sequence of module paths, got {layers!r}", param="layers")
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0:
        raise InvalidInput(f"top_k must be an integer >= 0, got {top_k!r}", param="top_k")
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
        raise InvalidInput(
            f"top_k must be in 0..{limit} ({smallest!r} has {limit} channels), got {top_k}", param="top_k"
        )
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


def predict(model: nn.Module, x: Tensor) -> Tensor:
    """Softmax of the model's logits, without building a graph.

    Args:
        model: classifier mapping (B, C, H, W) pixels in [0, 1] to (B, K) logits.
        x: (B, C, H, W) batch of pixels in [0, 1].

    Returns:
        (B, K) float32 class probabilities (rows sum to 1).
    """
    check_batch(x)
    with torch.no_grad():
        logits = model(x)
    check_logits(logits, x.shape[0])
    return torch.softmax(logits.float(), dim=1)


@dataclass(frozen=True)
class KernelWeights:
    """A Conv2d layer's parameters, copied out of the model.

    Attributes:
        layer: module path of the layer.
        weights: (O, I / groups, kH, kW) float32.
        bias: (O,) float32, or None when the layer has no bias.
    """

    layer: str
    weights: Tensor
    bias: Tensor | None

    @property
    def rgb(self) -> bool:
        """True when each kernel has three input channels: a first layer on RGB images, drawn in colour."""
        return self.weights.shape[1] == 3


def kernels(model: nn.Module, layer: str) -> KernelWeights:
    """Return the weights of the ``nn.Conv2d`` at module path ``layer``.

    The tensors are detached float32 copies: changing them does not change the model.

    Raises:
        InvalidInput: unknown layer (the message lists the valid ones) or not a Conv2d.
    """
    module = get_layer(model, layer)
    if not isinstance(module, nn.Conv2d):
        convs = [name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]
        listing = (
            f"conv layers: {', '.join(convs)}"
            if convs
            else "this model has no nn.Conv2d whose weights can be read (a TorchScript or exported model's "
            "layers are compiled code)"
        )
        raise InvalidInput(f"layer {layer!r} is a {type(module).__name__}, not a Conv2d; {listing}", param="layer")
    weights = module.weight.detach().float().clone()
    bias = None if module.bias is None else module.bias.detach().float().clone()
    return KernelWeights(layer=layer, weights=weights, bias=bias)
