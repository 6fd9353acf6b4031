"""Image-space regularizers of feature visualization, applied between optimizer steps in pixel
units (L2 decay towards a reference, total variation, a decaying Gaussian blur, DVT's clipping
of low-norm and low-contribution pixels; see :class:`~interp.synthesis.feature_vis_params.FeatureVisParams`)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from interp.synthesis.feature_vis_params import FeatureVisParams
from interp.validate import filled


class Regularizers:
    """The image-space regularizers applied between optimizer steps (see :class:`FeatureVisParams`)."""

    def __init__(self, p: FeatureVisParams, reference: Tensor) -> None:
        self.p = p
        self.reference = reference
        self.needs_gradient = bool(p.clip_contribution_percentile)

    def active(self, step: int) -> bool:
        p = self.p
        return bool(
            p.l2_decay or p.tv_weight or p.clip_norm_percentile or p.clip_contribution_percentile or self._blurs(step)
        )

    def _blurs(self, step: int) -> bool:
        p = self.p
        every = filled(p.blur_every, "blur_every")
        return bool(every) and (step + 1) % every == 0 and self.sigma(step) > 0

    def sigma(self, step: int) -> float:
        """Blur width at ``step``: linear from ``blur_sigma`` to ``blur_sigma_end`` over the run."""
        p = self.p
        steps = filled(p.steps, "steps")
        start, end = filled(p.blur_sigma, "blur_sigma"), filled(p.blur_sigma_end, "blur_sigma_end")
        t = step / (steps - 1) if steps > 1 else 1.0
        return start + (end - start) * t

    def __call__(self, x: Tensor, step: int, grad: Tensor | None) -> Tensor:
        p, r = self.p, self.reference
        if p.l2_decay:
            x = r + (1.0 - p.l2_decay) * (x - r)
        if p.tv_weight:
            x = x - p.tv_weight * _total_variation_gradient(x)
        if self._blurs(step):
            x = gaussian_blur(x, self.sigma(step))
        if p.clip_norm_percentile:
            x = _clip_below_percentile(x, r, (x - r).norm(dim=1), p.clip_norm_percentile)
        if p.clip_contribution_percentile and grad is not None:
            contribution = ((x - r) * grad).sum(1).abs()
            x = _clip_below_percentile(x, r, contribution, p.clip_contribution_percentile)
        return x.clamp(0.0, 1.0)


def _clip_below_percentile(x: Tensor, reference: Tensor, score: Tensor, percentile: float) -> Tensor:
    """Set the pixels whose ``score`` ``(N, H, W)`` is below the image's percentile to ``reference``."""
    threshold = torch.quantile(score.flatten(1), percentile / 100.0, dim=1)
    keep = (score >= threshold[:, None, None]).unsqueeze(1)
    return torch.where(keep, x, reference.expand_as(x))


def _total_variation_gradient(x: Tensor) -> Tensor:
    """Gradient of the anisotropic total variation sum |x[i+1] - x[i]| over both axes; entries in [-4, 4]."""
    dy = torch.sign(x[..., 1:, :] - x[..., :-1, :])
    dx = torch.sign(x[..., :, 1:] - x[..., :, :-1])
    g = torch.zeros_like(x)
    g[..., 1:, :] += dy
    g[..., :-1, :] -= dy
    g[..., :, 1:] += dx
    g[..., :, :-1] -= dx
    return g


def gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of ``(N, C, H, W)`` with width ``sigma`` pixels, reflect-padded borders."""
    if sigma <= 0:
        return x
    radius = max(1, math.ceil(3.0 * sigma))
    radius = min(radius, x.shape[-1] - 1, x.shape[-2] - 1)
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    kernel = kernel / kernel.sum()
    c = x.shape[1]
    padded = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    horizontal = kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1)
    vertical = kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1)
    return F.conv2d(F.conv2d(padded, horizontal, groups=c), vertical, groups=c)
