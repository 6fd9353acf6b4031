"""Trained convolution kernels of a layer, as stored (no normalization; rendering does that)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from interp.errors import InvalidInput
from interp.hooks import get_layer


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
        raise InvalidInput(
            f"layer {layer!r} is a {type(module).__name__}, not a Conv2d; conv layers: {', '.join(convs)}"
        )
    weights = module.weight.detach().float().clone()
    bias = None if module.bias is None else module.bias.detach().float().clone()
    return KernelWeights(layer=layer, weights=weights, bias=bias)
