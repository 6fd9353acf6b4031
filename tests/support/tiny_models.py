"""Small frozen models for the interp/ unit tests (not a test module itself)."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import Tensor, nn

from models.lenet import build_lenet


def frozen(model: nn.Module) -> nn.Module:
    """Eval mode and parameters without gradients, as the server serves modules."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def tiny_net(seed: int = 0, inplace: bool = False, classes: int = 5) -> nn.Sequential:
    """(B, 3, 8, 8) -> (B, classes): conv 3->4, relu, pool, conv 4->6, relu, flatten, fc."""
    torch.manual_seed(seed)
    return frozen(
        nn.Sequential(
            OrderedDict(
                [
                    ("conv1", nn.Conv2d(3, 4, 3, padding=1)),
                    ("relu1", nn.ReLU(inplace=inplace)),
                    ("pool1", nn.MaxPool2d(2)),
                    ("conv2", nn.Conv2d(4, 6, 3)),
                    ("relu2", nn.ReLU(inplace=inplace)),
                    ("flatten", nn.Flatten()),
                    ("fc", nn.Linear(6 * 2 * 2, classes)),
                ]
            )
        )
    )


def random_lenet(seed: int = 0) -> nn.Sequential:
    """LeNet with random weights and non-trivial batch-norm statistics, frozen."""
    torch.manual_seed(seed)
    model = build_lenet()
    for bn in (model.bn1, model.bn2):
        bn.running_mean.uniform_(-0.2, 0.2)
        bn.running_var.uniform_(0.5, 1.5)
    return frozen(model)


def images(batch: int, channels: int, size: int, seed: int = 0) -> Tensor:
    """(batch, channels, size, size) pixels on the 8-bit grid k/255, as decoded PNGs are."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, channels, size, size), generator=g).float() / 255


def hook_count(model: nn.Module) -> int:
    """Hooks of every kind on every module of ``model``."""
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) + len(m._backward_pre_hooks)
        for m in model.modules()
    )


class Explode(nn.Module):
    """Identity that raises when armed: an exception in the middle of a forward pass."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = False

    def forward(self, x: Tensor) -> Tensor:
        if self.armed:
            raise RuntimeError("boom")
        return x
