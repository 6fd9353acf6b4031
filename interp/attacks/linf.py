"""L-infinity adversarial examples: FGSM, BIM and PGD, untargeted or targeted (the Attack RPC).

- ``fgsm`` (Goodfellow et al. 2014): ``x' = clamp(x + eps * sign(grad_x CE(f(x), y)), 0, 1)``;
  targeted: ``x' = clamp(x - eps * sign(grad_x CE(f(x), t)), 0, 1)``.
- ``bim`` (Kurakin et al. 2016): ``steps`` such steps of size ``step_size``, each followed by a
  projection onto the eps-ball around x and [0, 1].
- ``pgd`` (Madry et al. 2017): BIM from a uniform random start in the eps-ball (seeded).

The loss is the mean cross-entropy on the logits (torchattacks' convention, which these match
bit for bit). Untargeted attacks push away from ``labels``, by default the model's own prediction
(no label leaking). Pixels are in [0, 1], so eps and step size are in pixel units. The steps are
:func:`interp.attacks.steps.linf_steps`, shared with the minimal-epsilon search; success is
judged on the image rounded into the ball on the 8-bit grid
(:func:`interp.attacks.steps.quantize_in_ball`).

Thread safety: plain autograd on a private copy of the input, a private ``torch.Generator``;
no hooks, no module or global state is touched.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from interp.attacks.steps import LINF_METHODS, attack_goal, check_epsilon, linf_steps
from interp.errors import InvalidInput
from interp.validate import INT64_MAX, INT64_MIN, check_int

METHODS = LINF_METHODS
MAX_STEPS = 1000


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
    check_epsilon(epsilon)
    if not isinstance(params, AttackParams):
        raise InvalidInput(f"params must be an AttackParams, got {type(params).__name__}")
    step = params.step_size
    if step is not None and (
        isinstance(step, bool) or not isinstance(step, int | float) or not math.isfinite(step) or not 0 < step <= 1
    ):
        raise InvalidInput(
            f"step_size must be a finite number in (0, 1] (pixel units), got {step!r}", param="step_size"
        )
    steps = check_int("steps", params.steps, 1, MAX_STEPS)
    if params.random_start is not None and not isinstance(params.random_start, bool):
        raise InvalidInput(
            f"random_start must be true, false or unset, got {params.random_start!r}", param="random_start"
        )
    seed = check_int("seed", params.seed, INT64_MIN, INT64_MAX)
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
    x, _, goal, targeted = attack_goal(model, x, labels, target)
    batch = x.shape[0]
    eps = float(epsilon)
    adv, quantized = linf_steps(
        model,
        x,
        goal,
        method=method,
        epsilons=[eps] * batch,
        step_sizes=[float(resolved.step_size or 0.0)] * batch,  # resolve_params always sets it
        steps=resolved.steps,
        targeted=targeted,
        random_start=bool(resolved.random_start),
        seed=resolved.seed,
        per_image=per_image,
        should_stop=should_stop,
    )
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
