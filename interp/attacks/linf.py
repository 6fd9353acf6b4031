"""L-infinity adversarial examples: FGSM, BIM and PGD, untargeted or targeted.

- ``fgsm`` (Goodfellow et al. 2014): ``x' = clamp(x + eps * sign(grad_x CE(f(x), y)), 0, 1)``;
  targeted: ``x' = clamp(x - eps * sign(grad_x CE(f(x), t)), 0, 1)``.
- ``bim`` (Kurakin et al. 2016): ``steps`` such steps of size ``step_size``, each followed by a
  projection onto the eps-ball around x and [0, 1].
- ``pgd`` (Madry et al. 2017): BIM from a uniform random start in the eps-ball (seeded).

The loss is the mean cross-entropy on the logits (torchattacks' convention, which these match
bit for bit). Untargeted attacks push away from ``labels``, by default the model's own prediction
(no label leaking). Pixels are in [0, 1], so eps and step size are in pixel units.

8-bit quantization: the image a client receives is a PNG, so success is judged on the adversarial
image rounded to the 8-bit grid k/255. Plain rounding can leave the eps-ball (eps = 0.1 is
25.5/255, which rounds to 26/255), so each pixel is rounded to the nearest k/255 *inside* the
ball: ``k`` is clamped to ``[ceil(255 (x - eps)), floor(255 (x + eps))]``, with a final
check in float32 that ``|k/255 - x| <= eps`` exactly as the reported L-inf is computed. For an
input on the 8-bit grid (a decoded PNG) the ball always contains a grid point and the quantized
L-inf never exceeds eps. For an off-grid pixel whose ball holds no grid point (only possible for
eps < 1/510), the nearest grid value is used and the reported L-inf, always measured, shows it.

Thread safety: plain autograd on a private copy of the input, a private ``torch.Generator``;
no hooks, no module or global state is touched.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from interp.errors import Cancelled, InvalidInput
from interp.hooks import check_batch
from interp.predict import check_logits

METHODS = ("fgsm", "bim", "pgd")
MAX_STEPS = 1000
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


@dataclass(frozen=True)
class AttackParams:
    """Parameters of the iterative attacks (FGSM reads none of them).

    Attributes:
        step_size: bim/pgd step alpha in pixel units, (0, 1]; None -> eps / 10.
        steps: bim/pgd iterations, 1..1000.
        random_start: pgd/bim uniform start in the eps-ball; None -> True for pgd, False for bim.
        seed: seed of the random start (a private generator; the global RNG is untouched).
    """

    step_size: float | None = None
    steps: int = 10
    random_start: bool | None = None
    seed: int = 0


@dataclass(frozen=True)
class AttackResult:
    """An attack's outcome for a batch.

    Attributes:
        method: fgsm | bim | pgd.
        epsilon: L-inf radius in pixel units.
        targeted: True when ``labels`` are the target classes.
        labels: (B,) int64: the class attacked away from (untargeted) or towards (targeted).
        adversarial: (B, C, H, W) float32 on the 8-bit grid (k/255), within eps of x and in [0, 1].
        adversarial_raw: (B, C, H, W) float32 before quantization.
        predictions: (B,) int64 argmax on ``adversarial``.
        probabilities: (B, K) float32 softmax on ``adversarial``.
        success: (B,) bool on ``adversarial``: prediction != label (untargeted) or == target (targeted).
        linf: (B,) max |adversarial - x| per image.
        l2: (B,) Euclidean norm of ``adversarial - x`` per image (pixel units).
        params: the parameters actually used; fgsm reports steps=1, step_size=eps, random_start=False.
    """

    method: str
    epsilon: float
    targeted: bool
    labels: Tensor
    adversarial: Tensor
    adversarial_raw: Tensor
    predictions: Tensor
    probabilities: Tensor
    success: Tensor
    linf: Tensor
    l2: Tensor
    params: AttackParams


def resolve_params(method: str, epsilon: float, params: AttackParams = AttackParams()) -> AttackParams:  # noqa: B008
    """Validate ``params`` for ``method`` and fill in the defaults that depend on it.

    Raises:
        InvalidInput: unknown method, epsilon outside (0, 1], or a parameter out of range.
    """
    if method not in METHODS:
        raise InvalidInput(f"unknown attack method {method!r}; valid methods: {', '.join(METHODS)}")
    _check_epsilon(epsilon)
    if not isinstance(params, AttackParams):
        raise InvalidInput(f"params must be an AttackParams, got {type(params).__name__}")
    step = params.step_size
    if step is not None and (
        isinstance(step, bool)
        or not isinstance(step, int | float)
        or not math.isfinite(step)
        or not 0 < step <= 1
    ):
        raise InvalidInput(f"step_size must be a finite number in (0, 1] (pixel units), got {step!r}")
    steps = params.steps
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_STEPS:
        raise InvalidInput(f"steps must be an integer in 1..{MAX_STEPS}, got {steps!r}")
    if params.random_start is not None and not isinstance(params.random_start, bool):
        raise InvalidInput(f"random_start must be true, false or unset, got {params.random_start!r}")
    seed = params.seed
    if isinstance(seed, bool) or not isinstance(seed, int) or not INT64_MIN <= seed <= INT64_MAX:
        raise InvalidInput(f"seed must be an integer in {INT64_MIN}..{INT64_MAX}, got {seed!r}")
    if method == "fgsm":
        if params.random_start:
            raise InvalidInput("fgsm has no random start; use pgd (or bim with random_start)")
        return AttackParams(step_size=float(epsilon), steps=1, random_start=False, seed=seed)
    return AttackParams(
        step_size=float(epsilon) / 10 if step is None else float(step),
        steps=steps,
        random_start=(method == "pgd") if params.random_start is None else params.random_start,
        seed=seed,
    )


def attack(
    model: nn.Module,
    x: Tensor,
    *,
    method: str,
    epsilon: float,
    labels: Tensor | None = None,
    target: Tensor | None = None,
    params: AttackParams = AttackParams(),  # noqa: B008 - frozen, so a shared default is safe
    should_stop: Callable[[], bool] | None = None,
    per_image: bool = False,
) -> AttackResult:
    """Adversarial examples for the batch ``x`` within an L-inf ball of radius ``epsilon``.

    Args:
        model: classifier, (B, C, H, W) pixels in [0, 1] -> (B, K) logits; not modified.
        x: (B, C, H, W) batch of pixels in [0, 1]; not modified.
        method: fgsm | bim | pgd.
        epsilon: L-inf radius in pixel units, in (0, 1].
        labels: untargeted: (B,) classes to move away from; None -> the model's predictions on x.
        target: (B,) classes to move towards (targeted attack); excludes ``labels``.
        params: see :class:`AttackParams`.
        should_stop: asked before each step; returning True raises :class:`interp.errors.Cancelled`.
        per_image: attack each image of the batch as it would be alone: the random start of
            image i is drawn from its own generator seeded with ``seed`` (what a batch of one
            draws) and the loss is summed over the batch (each image's gradient its own,
            unscaled). False (default): one draw for the whole batch and the mean loss, as
            torchattacks does (equal to it bit for bit).

    Returns:
        :class:`AttackResult`, judged on the 8-bit quantized adversarial image.

    Raises:
        InvalidInput: bad batch, method, epsilon, parameter, labels or target (out of 0..K-1).
        Cancelled: ``should_stop`` returned True.
    """
    resolved = resolve_params(method, epsilon, params)
    check_batch(x)
    if labels is not None and target is not None:
        raise InvalidInput("pass labels (untargeted) or target (targeted), not both")
    batch = x.shape[0]
    x = x.detach().clone()
    with torch.no_grad():
        logits = model(x)
    check_logits(logits, batch)
    classes = logits.shape[1]
    targeted = target is not None
    goal = target if targeted else labels
    if goal is None:
        goal = logits.argmax(dim=1)
    else:
        _check_classes("target" if targeted else "labels", goal, batch, classes)
    goal = goal.to(device=x.device, dtype=torch.long)

    eps = float(epsilon)
    step_size = float(resolved.step_size or 0.0)  # resolve_params always sets it
    adv = x.clone()
    if resolved.random_start:
        if per_image:
            starts = [
                torch.empty_like(adv[i : i + 1]).uniform_(
                    -eps, eps, generator=torch.Generator(device=x.device).manual_seed(resolved.seed)
                )
                for i in range(batch)
            ]
            noise = torch.cat(starts)
        else:
            generator = torch.Generator(device=x.device).manual_seed(resolved.seed)
            noise = torch.empty_like(adv).uniform_(-eps, eps, generator=generator)
        adv = (adv + noise).clamp(0.0, 1.0)
    for _ in range(resolved.steps):
        if should_stop is not None and should_stop():
            raise Cancelled(f"{method} cancelled")
        adv.requires_grad_(True)
        loss = F.cross_entropy(model(adv), goal, reduction="sum" if per_image else "mean")
        if targeted:
            loss = -loss
        (grad,) = torch.autograd.grad(loss, adv)
        adv = adv.detach() + step_size * grad.sign()
        if method == "fgsm":
            adv = adv.clamp(0.0, 1.0)
        else:
            delta = (adv - x).clamp(-eps, eps)
            adv = (x + delta).clamp(0.0, 1.0)
    adv = adv.detach()

    quantized = quantize_in_ball(adv, x, eps)
    with torch.no_grad():
        adv_logits = model(quantized)
    predictions = adv_logits.argmax(dim=1)
    success = predictions == goal if targeted else predictions != goal
    delta = (quantized - x).reshape(batch, -1)
    return AttackResult(
        method=method,
        epsilon=eps,
        targeted=targeted,
        labels=goal,
        adversarial=quantized.float(),
        adversarial_raw=adv.float(),
        predictions=predictions,
        probabilities=torch.softmax(adv_logits.float(), dim=1),
        success=success,
        linf=delta.abs().amax(dim=1).float(),
        l2=delta.norm(dim=1).float(),
        params=resolved,
    )


def quantize_in_ball(adv: Tensor, x: Tensor, epsilon: float) -> Tensor:
    """Round ``adv`` to the 8-bit grid k/255, staying within ``epsilon`` of ``x`` (L-inf) and in [0, 1].

    Args:
        adv: (B, C, H, W) adversarial pixels in [0, 1].
        x: (B, C, H, W) clean pixels in [0, 1].
        epsilon: L-inf radius in pixel units.

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


def _check_epsilon(epsilon: float) -> None:
    if (
        isinstance(epsilon, bool)
        or not isinstance(epsilon, int | float)
        or not math.isfinite(epsilon)
        or not 0 < epsilon <= 1
    ):
        raise InvalidInput(f"epsilon must be a finite number in (0, 1] (pixel units), got {epsilon!r}")


def _check_classes(name: str, classes: Tensor, batch: int, count: int) -> None:
    if not isinstance(classes, Tensor):
        raise InvalidInput(f"{name} must be a ({batch},) integer tensor, got {type(classes).__name__}")
    if (
        classes.shape != (batch,)
        or classes.is_floating_point()
        or classes.is_complex()
        or classes.dtype == torch.bool
    ):
        raise InvalidInput(
            f"{name} must be a ({batch},) integer tensor (one class per image), "
            f"got {classes.dtype} {tuple(classes.shape)}"
        )
    bad = [int(c) for c in classes if not 0 <= int(c) < count]
    if bad:
        raise InvalidInput(f"{name} classes must be in 0..{count - 1}, got {bad}")
