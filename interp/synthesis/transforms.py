"""Transformation robustness: the random pad / jitter / scale / rotate stack each optimization
step sees (Lucid's ``standard_transforms``; Mordvintsev et al. 2018), differentiable in the image."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor

SMALL_INPUT_SIZE = 64
"""Models whose input side is at most this (LeNet's 28) get the small-image defaults; images of
at most this side skip the resampling transforms (scale, rotate)."""
REFERENCE_SIZE = 128
"""Image side for which Lucid's transform constants (pad 12, jitter 8 and 4 px) were chosen."""


@dataclass(frozen=True)
class TransformSpec:
    """Lucid's standard transforms (pad 12 with 0.5, jitter 8, scale 0.9-1.1, rotate +-10 deg, jitter 4)."""

    pad: int = 12
    jitter: int = 8
    scale: float = 0.1
    angle_deg: float = 10.0
    jitter_after: int = 4
    pad_value: float = 0.5
    keep_size: bool = False

    @classmethod
    def for_size(cls, size: int) -> TransformSpec:
        """Pixel amounts scaled by ``size / 128`` (28 px: pad 3, jitter 2 and 1).

        Images of at most :data:`SMALL_INPUT_SIZE` pixels skip the random scale and rotation:
        bilinear resampling of a 28-px image blurs it at the scale of LeNet's 5x5 kernels, and
        optimizing for blur-robustness costs the untransformed image its activation (trained
        LeNet, ``relu2``: see benchmarks/eval_lenet_iterative.py and :mod:`interp.synthesis.feature_vis`).
        """
        base = cls()
        f = size / REFERENCE_SIZE
        resample = size > SMALL_INPUT_SIZE
        return replace(
            base,
            pad=round(base.pad * f),
            jitter=round(base.jitter * f),
            jitter_after=round(base.jitter_after * f),
            scale=base.scale if resample else 0.0,
            angle_deg=base.angle_deg if resample else 0.0,
        )


def random_transform(x: Tensor, spec: TransformSpec, generator: torch.Generator) -> Tensor:
    """One random draw of the transform stack, shared by the batch; differentiable in ``x``."""
    if spec.keep_size:
        return _random_transform_same_size(x, spec, generator)
    if spec.pad > 0:
        x = F.pad(x, (spec.pad,) * 4, mode="constant", value=spec.pad_value)
    x = _jitter(x, spec.jitter, generator)
    if spec.scale > 0 or spec.angle_deg > 0:
        scale, angle = _draw_scale_angle(spec, generator)
        h, w = x.shape[-2:]
        grid = _rotation_grid(x, math.cos(angle), math.sin(angle), (max(1, round(h * scale)), max(1, round(w * scale))))
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return _jitter(x, spec.jitter_after, generator)


def _random_transform_same_size(x: Tensor, spec: TransformSpec, generator: torch.Generator) -> Tensor:
    """Shift by up to +-``spec.jitter`` pixels, then scale and rotate about the centre; same side out."""
    if spec.jitter > 0:
        h, w = x.shape[-2:]
        x = F.pad(x, (spec.jitter,) * 4, mode="constant", value=spec.pad_value)
        dy, dx = (int(v) for v in torch.randint(0, 2 * spec.jitter + 1, (2,), generator=generator))
        x = x[..., dy : dy + h, dx : dx + w]
    if spec.scale > 0 or spec.angle_deg > 0:
        scale, angle = _draw_scale_angle(spec, generator)
        grid = _rotation_grid(x, math.cos(angle) / scale, math.sin(angle) / scale, tuple(x.shape[-2:]))
        x = spec.pad_value + F.grid_sample(
            x - spec.pad_value, grid, mode="bilinear", padding_mode="zeros", align_corners=False
        )
    return x


def _jitter(x: Tensor, amount: int, generator: torch.Generator) -> Tensor:
    """Random crop losing ``amount`` pixels per side pair: offsets uniform in [0, amount]."""
    if amount <= 0:
        return x
    dy, dx = (int(v) for v in torch.randint(0, amount + 1, (2,), generator=generator))
    h, w = x.shape[-2:]
    return x[..., dy : dy + h - amount, dx : dx + w - amount]


def _draw_scale_angle(spec: TransformSpec, generator: torch.Generator) -> tuple[float, float]:
    """A scale uniform in ``1 +- spec.scale`` and an angle uniform in ``+-spec.angle_deg`` (radians)."""
    u = torch.rand(2, generator=generator, dtype=torch.float64)
    scale = 1.0 + (2.0 * float(u[0]) - 1.0) * spec.scale
    return scale, math.radians((2.0 * float(u[1]) - 1.0) * spec.angle_deg)


def _rotation_grid(x: Tensor, cos: float, sin: float, size: tuple[int, ...]) -> Tensor:
    """The sampling grid of the affine map ``[[cos, -sin], [sin, cos]]`` about the centre, ``size`` out."""
    n, c = x.shape[:2]
    theta = torch.tensor([[cos, -sin, 0.0], [sin, cos, 0.0]], device=x.device, dtype=x.dtype).expand(n, 2, 3)
    return F.affine_grid(theta, [n, c, *size], align_corners=False)
