"""The trained LeNet of models/weights/, frozen, for the evaluations that run it in-process."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from models.lenet import build_lenet

REPO = Path(__file__).resolve().parent.parent


def lenet_checkpoint() -> Path:
    """The newest bundled ``lenet5_fashion*mnist*.pt``; exits when there is none."""
    found = sorted((REPO / "models" / "weights").glob("lenet5_fashion*mnist*.pt"))
    if not found:
        raise SystemExit("no models/weights/lenet5_fashion*mnist*.pt: train LeNet first (interp-train)")
    return found[-1]


def load_lenet(checkpoint: Path | None = None) -> nn.Module:
    """The LeNet of ``checkpoint`` (default :func:`lenet_checkpoint`) in eval mode, without gradients."""
    model = build_lenet()
    model.load_state_dict(torch.load(checkpoint or lenet_checkpoint(), map_location="cpu", weights_only=True))
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model
