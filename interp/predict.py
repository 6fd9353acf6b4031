"""Class probabilities of a classifier on a batch of pixels in [0, 1]."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from interp.errors import InvalidInput
from interp.hooks import check_batch


def check_logits(logits: Tensor, batch: int) -> None:
    """Raise InvalidInput unless ``logits`` is a (batch, K) tensor, as a classifier returns."""
    if logits.dim() != 2 or logits.shape[0] != batch:
        shape = tuple(logits.shape)
        raise InvalidInput(f"expected the model to return ({batch}, K) logits, got shape {shape}")


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
