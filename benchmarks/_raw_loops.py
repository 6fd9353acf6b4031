"""Plain-torch loops doing the same per-step work as interp's iterative methods (the baselines).

No hooks, no progress events, no cancellation checks, no service: a prefix ``nn.Sequential`` of
the served module (its children up to the objective's layer, which is what a truncated forward
computes), the same image parameterization and random transforms as
:mod:`interp.synthesis.feature_vis`, the same normalized ascent step as :mod:`interp.synthesis.deepdream`, and the
same random draws in the same order, so that with the same seed they reproduce the service's
images (checked by the benchmarks: the baseline must do the same work, not merely similar work).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# Constants of interp.synthesis (Lucid's), restated so the baseline does not call interp.
_COLOR = ((0.26, 0.09, 0.02), (0.27, 0.00, -0.05), (0.27, -0.09, 0.03))
_REFERENCE_SIZE = 128
_SMALL = 64


def prefix(model: nn.Module, path: str) -> nn.Sequential:
    """The modules of a served Sequential model, in order, up to and including ``path``."""
    layers: list[nn.Module] = []

    def walk(module: nn.Module, name: str) -> bool:
        if name == path:
            layers.append(module)
            return True
        if isinstance(module, nn.Sequential) and any(True for _ in module.children()):
            for child_name, child in module.named_children():
                if walk(child, f"{name}.{child_name}" if name else child_name):
                    return True
            return False
        layers.append(module)
        return False

    if not walk(model, ""):
        raise ValueError(f"{path!r} is not a layer of the model's Sequential tree")
    return nn.Sequential(*layers)


def feature_vis(
    trunk: nn.Module,
    channel: int,
    *,
    in_channels: int,
    size: int,
    steps: int,
    learning_rate: float,
    seed: int = 0,
) -> Tensor:
    """Activation maximization of one channel's spatial mean: Fourier (RGB) or pixel (grey) image,
    Lucid's transforms scaled to ``size``, Adam. Returns the (1, C, size, size) image."""
    g = torch.Generator().manual_seed(seed)
    if in_channels == 3:
        fy = torch.fft.fftfreq(size)[:, None]
        fx = torch.fft.rfftfreq(size)[None, :]
        scale = (1.0 / torch.sqrt(fx * fx + fy * fy).clamp_min(1.0 / size))[..., None]
        leaf = (torch.randn(1, 3, size, size // 2 + 1, 2, generator=g) * 0.01).requires_grad_(True)
        color = torch.tensor(_COLOR, dtype=torch.float64)
        color = (color / color.norm(dim=0).max()).float()

        def image() -> Tensor:
            spectrum = torch.view_as_complex((scale * leaf).contiguous())
            raw = torch.fft.irfft2(spectrum, s=(size, size), norm="ortho") / 4.0
            return torch.sigmoid(torch.einsum("nchw,dc->ndhw", raw, color))

    else:
        leaf = torch.randn(1, in_channels, size, size, generator=g).requires_grad_(True)

        def image() -> Tensor:
            return torch.sigmoid(leaf)

    f = size / _REFERENCE_SIZE
    pad, jitter, jitter_after = round(12 * f), round(8 * f), round(4 * f)
    resample = size > _SMALL
    optimizer = torch.optim.Adam([leaf], lr=learning_rate)
    for _ in range(steps):
        x = image()
        if pad:
            x = F.pad(x, (pad,) * 4, value=0.5)
        x = _crop(x, jitter, g)
        if resample:
            u = torch.rand(2, generator=g, dtype=torch.float64)
            x = _scale_rotate(x, 1.0 + (2.0 * float(u[0]) - 1.0) * 0.1, math.radians((2.0 * float(u[1]) - 1.0) * 10.0))
        x = _crop(x, jitter_after, g)
        objective = trunk(x)[0, channel].mean()
        optimizer.zero_grad(set_to_none=True)
        (-objective).backward()
        optimizer.step()
    with torch.no_grad():
        return image()


def _crop(x: Tensor, amount: int, g: torch.Generator) -> Tensor:
    if amount <= 0:
        return x
    dy, dx = (int(v) for v in torch.randint(0, amount + 1, (2,), generator=g))
    h, w = x.shape[-2:]
    return x[..., dy : dy + h - amount, dx : dx + w - amount]


def _scale_rotate(x: Tensor, scale: float, angle: float) -> Tensor:
    n, c, h, w = x.shape
    cos, sin = math.cos(angle), math.sin(angle)
    theta = torch.tensor([[cos, -sin, 0.0], [sin, cos, 0.0]], dtype=x.dtype).expand(n, 2, 3)
    grid = F.affine_grid(theta, [n, c, max(1, round(h * scale)), max(1, round(w * scale))], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def deepdream(trunk: nn.Module, x: Tensor, *, iterations: int, step_size: float, jitter: int, seed: int = 0) -> Tensor:
    """One octave of DeepDream on ``x`` (1, C, H, W): roll jitter, ``0.5 ||a||^2`` ascent normalized by
    the mean absolute gradient, roll back, clamp to [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    image = x.detach().clamp(0.0, 1.0)
    for _ in range(iterations):
        dy, dx = (int(v) for v in torch.randint(-jitter, jitter + 1, (2,), generator=g)) if jitter else (0, 0)
        rolled = torch.roll(image, shifts=(dy, dx), dims=(-2, -1)).requires_grad_(True)
        objective = 0.5 * trunk(rolled).pow(2).sum()
        (grad,) = torch.autograd.grad(objective, rolled)
        with torch.no_grad():
            step = step_size / grad.abs().mean().clamp_min(1e-12)
            image = (rolled + step * grad).roll(shifts=(-dy, -dx), dims=(-2, -1)).clamp_(0.0, 1.0)
    return image
