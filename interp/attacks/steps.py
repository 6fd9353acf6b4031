"""The one FGSM / BIM / PGD step loop, and the 8-bit rounding every attack is judged on.

:func:`linf_steps` serves the Attack RPC (:func:`interp.attacks.linf.attack`, one radius for the
batch), the minimal-epsilon search and the robustness curves (:func:`interp.attacks.minimal_epsilon.attack_at`,
each image at its own radius):

- ``fgsm`` (Goodfellow et al. 2014): one step of size eps, ``x' = clamp(x + eps * sign(g), 0, 1)``
  (targeted: ``-``), with ``g`` the input gradient of the cross-entropy on the logits;
- ``bim`` (Kurakin et al. 2016) and ``pgd`` (Madry et al. 2017): ``steps`` such steps of size
  ``step_size``, each followed by a projection onto the eps-ball around x and [0, 1]; a random start
  (PGD's, optional for BIM) draws uniform noise in the ball from a private seeded generator.

8-bit quantization: the image a client receives is a PNG, so success is judged on the adversarial
image rounded to the 8-bit grid k/255. Plain rounding can leave the eps-ball (eps = 0.1 is
25.5/255, which rounds to 26/255), so each pixel is rounded to the nearest k/255 *inside* the
ball: ``k`` is clamped to ``[ceil(255 (x - eps)), floor(255 (x + eps))]``, with a final
check in float32 that ``|k/255 - x| <= eps`` exactly as the reported L-inf is computed. For an
input on the 8-bit grid (a decoded PNG) the ball always contains a grid point and the quantized
L-inf never exceeds eps. For an off-grid pixel whose ball holds no grid point (only possible for
eps < 1/510), the nearest grid value is used and the reported L-inf, always measured, shows it.

Thread safety: plain autograd on private copies of the input and private ``torch.Generator``\\ s;
no hooks, no module or global state is touched.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from interp.errors import Cancelled, InvalidInput
from interp.validate import check_batch, check_classes, check_logits

LINF_METHODS = ("fgsm", "bim", "pgd")


def attack_goal(
    model: nn.Module, x: Tensor, labels: Tensor | None, target: Tensor | None
) -> tuple[Tensor, Tensor, Tensor, bool]:
    """Check an attack's inputs and name the classes it moves away from or towards.

    Args:
        model: classifier, (B, C, H, W) pixels in [0, 1] -> (B, K) logits.
        x: (B, C, H, W) pixels in [0, 1].
        labels: untargeted: (B,) classes to move away from; None -> the model's predictions on x.
        target: (B,) classes to move towards (targeted); excludes ``labels``.

    Returns:
        ``(x, logits, goal, targeted)``: a private detached copy of x, its (B, K) clean logits,
        the (B,) int64 goal classes on x's device, and whether they are targets.

    Raises:
        InvalidInput: bad batch, both labels and target, classes out of 0..K-1, or a model that
            does not return (B, K) logits.
    """
    check_batch(x)
    if labels is not None and target is not None:
        raise InvalidInput("pass labels (untargeted) or target (targeted), not both")
    x = x.detach().clone()
    batch = x.shape[0]
    with torch.no_grad():
        logits = model(x)
    check_logits(logits, batch)
    targeted = target is not None
    goal = target if targeted else labels
    if goal is None:
        goal = logits.argmax(dim=1)
    else:
        check_classes("target" if targeted else "labels", goal, batch, logits.shape[1])
    return x, logits, goal.to(device=x.device, dtype=torch.long), targeted


def linf_steps(
    model: nn.Module,
    x: Tensor,
    goal: Tensor,
    *,
    method: str,
    epsilons: Sequence[float],
    step_sizes: Sequence[float],
    steps: int,
    targeted: bool,
    random_start: bool,
    seed: int,
    per_image: bool,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[Tensor, Tensor]:
    """FGSM / BIM / PGD steps on the batch, image i within ``epsilons[i]`` of ``x[i]`` (L-inf).

    Args:
        model: classifier on pixels in [0, 1]; not modified.
        x: (B, C, H, W) pixels in [0, 1] (a private copy: it is not modified, but not copied).
        goal: (B,) int64 classes to move away from (untargeted) or towards (targeted).
        method: fgsm | bim | pgd (fgsm: one step, clamped to [0, 1] only).
        epsilons: per image, the L-inf radius in pixel units.
        step_sizes: per image, the step in pixel units (fgsm: its epsilon).
        steps: iterations (fgsm: 1).
        targeted: descend the loss towards ``goal`` instead of ascending it away.
        random_start: start from uniform noise in each ball (drawn from a generator seeded ``seed``).
        seed: seed of the random start.
        per_image: each image as it would be alone: its random start from its own generator
            seeded ``seed`` and the loss summed over the batch (each gradient its own, unscaled).
            False: one draw for the whole batch (every epsilon must then be the same) and the
            mean loss, as torchattacks does (equal to it bit for bit).
        should_stop: asked before each step; True raises :class:`~interp.errors.Cancelled`.

    Returns:
        ``(raw, quantized)``: (B, C, H, W) the iterate, and it rounded into each ball on the
        8-bit grid (:func:`quantize_in_ball`), both detached.
    """
    batch = x.shape[0]
    column = (batch,) + (1,) * (x.dim() - 1)
    eps = torch.tensor([float(e) for e in epsilons], dtype=x.dtype, device=x.device).reshape(column)
    step = torch.tensor([float(s) for s in step_sizes], dtype=x.dtype, device=x.device).reshape(column)
    adv = x.clone()
    if random_start:
        adv = (adv + _uniform_start(x, epsilons, seed, per_image)).clamp(0.0, 1.0)
    for _ in range(steps):
        if should_stop is not None and should_stop():
            raise Cancelled(f"{method} cancelled")
        adv.requires_grad_(True)
        loss = F.cross_entropy(model(adv), goal, reduction="sum" if per_image else "mean")
        if targeted:
            loss = -loss
        (grad,) = torch.autograd.grad(loss, adv)
        adv = adv.detach() + step * grad.sign()
        if method == "fgsm":
            adv = adv.clamp(0.0, 1.0)
        else:
            adv = (x + torch.maximum(torch.minimum(adv - x, eps), -eps)).clamp(0.0, 1.0)
    adv = adv.detach()
    return adv, quantize_in_ball(adv, x, eps)


def _uniform_start(x: Tensor, epsilons: Sequence[float], seed: int, per_image: bool) -> Tensor:
    """Uniform noise in each image's ball: one draw for the batch, or one generator per image."""
    if not per_image:
        if len(set(epsilons)) > 1:
            raise InvalidInput("a shared random start needs one epsilon for the whole batch")
        generator = torch.Generator(device=x.device).manual_seed(seed)
        eps = float(epsilons[0])
        return torch.empty_like(x).uniform_(-eps, eps, generator=generator)
    starts = []
    for i, e in enumerate(epsilons):
        generator = torch.Generator(device=x.device).manual_seed(seed)
        starts.append(torch.empty_like(x[i : i + 1]).uniform_(-float(e), float(e), generator=generator))
    return torch.cat(starts)


def quantize_in_ball(adv: Tensor, x: Tensor, epsilon: float | Tensor) -> Tensor:
    """Round ``adv`` to the 8-bit grid k/255, staying within ``epsilon`` of ``x`` (L-inf) and in [0, 1].

    Args:
        adv: (B, C, H, W) adversarial pixels in [0, 1].
        x: (B, C, H, W) clean pixels in [0, 1].
        epsilon: L-inf radius in pixel units: one for the batch, or a (B, 1, 1, 1) tensor.

    Returns:
        (B, C, H, W) tensor of values k/255 (same dtype as ``adv``); see the module docstring
        for the one case (eps < 1/510, off-grid x) where no grid point lies in the ball.
    """
    levels = torch.round(adv * 255)
    lo = torch.ceil((x - epsilon) * 255).clamp(0, 255)
    hi = torch.floor((x + epsilon) * 255).clamp(0, 255)
    # The bounds were computed in floating point: step inward wherever the grid value, converted
    # back to pixels the way L-inf is measured, would still exceed epsilon.
    lo = torch.where((x - lo / 255) > epsilon, lo + 1, lo)
    hi = torch.where((hi / 255 - x) > epsilon, hi - 1, hi)
    inside = torch.maximum(torch.minimum(levels, hi), lo)
    nearest = torch.round(x * 255)
    levels = torch.where(lo <= hi, inside, nearest)
    return levels / 255


def check_epsilon(epsilon: float) -> None:
    """``epsilon`` must be a finite number in (0, 1] (pixel units)."""
    if (
        isinstance(epsilon, bool)
        or not isinstance(epsilon, int | float)
        or not math.isfinite(epsilon)
        or not 0 < epsilon <= 1
    ):
        raise InvalidInput(f"epsilon must be a finite number in (0, 1] (pixel units), got {epsilon!r}")
