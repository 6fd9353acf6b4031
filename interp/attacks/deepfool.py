"""DeepFool (Moosavi-Dezfooli et al. 2016), L2 or L-inf, batched, judged on the 8-bit grid.

Restricted to the top ``candidates`` classes of the clean logits (foolbox 3's ``DeepFoolAttack``,
whose results it reproduces: same candidates, overshoot, steps and 1e-4 / 1e-8 stabilizers). One
forward pass and one backward call for all ``candidates - 1`` gradients per iteration (foolbox
runs ``candidates - 1`` forward and backward passes). The raw result is then rounded to the
8-bit grid and re-checked.

Thread safety: plain autograd on a private copy of the input.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from interp.attacks.minimal_params import GRID, MinimalAttackParams, resolve
from interp.attacks.steps import attack_goal
from interp.errors import Cancelled, InvalidInput


@dataclass(frozen=True)
class DeepFoolResult:
    """DeepFool's outcome for a batch (norms in pixel units, per image).

    Attributes:
        norm: "l2" or "linf".
        labels: (B,) the class judged against (true label or clean prediction).
        candidates: (B, c) the classes considered, the clean top-c (the first is the clean prediction).
        adversarial_raw: (B, C, H, W) float32, DeepFool's output (clipped to [0, 1], off-grid).
        success_raw: (B,) bool on ``adversarial_raw`` (what foolbox reports).
        l2_raw, linf_raw: (B,) norms of ``adversarial_raw - x``.
        adversarial: (B, C, H, W) on the 8-bit grid: nearest rounding, or where that loses the
            success, rounding away from x (``rounded_outward``).
        rounded_outward: (B,) bool.
        success: (B,) bool on ``adversarial``.
        l2, linf: (B,) norms of ``adversarial - x``.
        predictions: (B,) int64 on ``adversarial``.
        clean_success: (B,) bool: already misclassified clean (then nothing is perturbed).
        iterations: (B,) int64 DeepFool iterations that moved each image.
        params: the resolved parameters.
    """

    norm: str
    labels: Tensor
    candidates: Tensor
    adversarial_raw: Tensor
    success_raw: Tensor
    l2_raw: Tensor
    linf_raw: Tensor
    adversarial: Tensor
    rounded_outward: Tensor
    success: Tensor
    l2: Tensor
    linf: Tensor
    predictions: Tensor
    clean_success: Tensor
    iterations: Tensor
    params: MinimalAttackParams


# How the c - 1 candidate gradients of an iteration are computed (the results are the same):
# - for a few small images (at most _REPLICATE_ROWS image-candidate pairs of at most
#   _REPLICATE_NUMEL values each: one MNIST-sized image with 10 candidates), one forward and one
#   backward of the images replicated c - 1 times, as one batch: a small model's kernel calls cost
#   their overhead, not their arithmetic, so one call on c - 1 rows beats c - 1 calls on one row;
# - otherwise one forward and one backward batched over the c - 1 output cotangents
#   (``is_grads_batched``): on a batch of images, or on ImageNet-sized inputs, c - 1 forwards would
#   cost more than the calls they save.
_REPLICATE_NUMEL = 64 * 64 * 3
_REPLICATE_ROWS = 16


def _candidate_grads_replicated(model: nn.Module, current: Tensor, top: Tensor) -> Tensor:
    """(n, c - 1, *image) input gradients of z_k - z_0, k = top[:, 1:], 0 = top[:, 0]."""
    n, pairs = current.shape[0], top.shape[1] - 1
    rep = current.unsqueeze(1).expand(n, pairs, *current.shape[1:]).reshape(n * pairs, *current.shape[1:])
    rep = rep.detach().requires_grad_(True)
    out = model(rep)
    picked = out.gather(1, top[:, 1:].reshape(-1, 1)) - out.gather(1, top[:, :1].repeat_interleave(pairs, 0))
    (grad,) = torch.autograd.grad(picked.sum(), rep)
    return grad.reshape(n, pairs, *current.shape[1:])


def _candidate_grads_vmap(out: Tensor, current: Tensor, top: Tensor) -> Tensor:
    """As :func:`_candidate_grads_replicated`, from the existing forward ``out`` of ``current``.

    One backward batched over the c - 1 cotangents (each row picking z_k - z_0 of every image;
    images are independent, so the batch only stacks them).
    """
    n, pairs = current.shape[0], top.shape[1] - 1
    rows = torch.arange(n, device=current.device)
    cotangents = torch.zeros((pairs, *out.shape), dtype=out.dtype, device=out.device)
    ks = torch.arange(pairs, device=current.device)[:, None]
    cotangents[ks, rows, top[:, 1:].T] = 1.0
    cotangents[ks, rows, top[:, :1].T] = -1.0
    (batched,) = torch.autograd.grad(out, current, cotangents, is_grads_batched=True)
    return batched.transpose(0, 1)


def deepfool(
    model: nn.Module,
    x: Tensor,
    *,
    norm: str = "l2",
    labels: Tensor | None = None,
    params: MinimalAttackParams = MinimalAttackParams(),  # noqa: B008 - frozen
    should_stop: Callable[[], bool] | None = None,
    on_step: Callable[[int, int, int], None] | None = None,
) -> DeepFoolResult:
    """DeepFool (Moosavi-Dezfooli et al. 2016) over the top ``candidates`` classes, batched.

    Per iteration, for the candidates k = 1..c-1 of each image: ``f_k = z_k - z_0`` (logits,
    z_0 the clean prediction) and its input gradient ``w_k``; the closest linearized boundary
    ``l = argmin |f_k| / ||w_k||_q`` (q = 2 for L2, 1 for L-inf); the step ``r = (|f_l| + 1e-4)
    w_l / ||w_l||_2^2``-like (L2: ``(d + 1e-4) / ||w_l||_2 * w_l``, L-inf: ``(d + 1e-4) sign(w_l)``),
    accumulated as ``p``; the iterate ``clip(x + (1 + overshoot) p, 0, 1)``. An image stops moving
    once it is misclassified w.r.t. ``labels``; the loop ends when all are, or after ``steps``.
    This is foolbox 3.3.4's ``L2DeepFoolAttack`` / ``LinfDeepFoolAttack`` with ``loss="logits"``.

    Args:
        model: classifier on pixels in [0, 1]; not modified.
        x: (B, C, H, W) pixels in [0, 1].
        norm: "l2" or "linf".
        labels: (B,) true labels; None -> the clean predictions.
        params: steps (default 50), candidates (default 10, at most the classes), overshoot (0.02).
        should_stop: asked before each iteration; True raises :class:`Cancelled`.
        on_step: called with (iteration, steps, images still correct) after each iteration.

    Raises:
        InvalidInput: bad batch, norm, parameter or labels.
        Cancelled: ``should_stop`` returned True.
    """
    if norm not in ("l2", "linf"):
        raise InvalidInput(f"DeepFool norm must be 'l2' or 'linf', got {norm!r}")
    x0, logits, labels, _ = attack_goal(model, x, labels, None)
    batch = x0.shape[0]
    resolved = resolve(f"deepfool_{norm}", params, logits.shape[1])
    candidates = int(resolved.candidates or 2)
    classes = logits.argsort(dim=-1).flip(dims=(-1,))[:, :candidates]  # foolbox's order, ties included
    overshoot = float(resolved.overshoot or 0.0)
    steps = int(resolved.steps or 50)
    clean_success = logits.argmax(dim=1) != labels
    adv = x0.clone()
    p_total = torch.zeros_like(x0)
    iterations = torch.zeros(batch, dtype=torch.long)
    # Only the images still classified correctly are run: one that is fooled stops moving (as in
    # foolbox) and leaves the batch, so a batch costs what its slowest images need.
    active = torch.arange(batch, device=x0.device)
    for step in range(steps):
        if should_stop is not None and should_stop():
            raise Cancelled(f"deepfool cancelled after {step} of {steps} iterations")
        current = adv[active].detach().requires_grad_(True)
        out = model(current)
        keep = out.argmax(dim=1) == labels[active]
        if not bool(keep.any()):
            break
        if not bool(keep.all()):
            # Images fooled by the last step leave before the backward pass rather than after it:
            # a forward of the rest costs less than their share of the c - 1 gradients.
            active = active[keep]
            current = adv[active].detach().requires_grad_(True)
            out = model(current)
        rows = torch.arange(len(active), device=x0.device)
        top = classes[active]
        losses = out.gather(1, top[:, 1:]) - out.gather(1, top[:, :1])
        if x0[0].numel() <= _REPLICATE_NUMEL and len(active) * (candidates - 1) <= _REPLICATE_ROWS:
            grads = _candidate_grads_replicated(model, current.detach(), top)
        else:
            grads = _candidate_grads_vmap(out, current, top)
        losses = losses.detach()
        flat = grads.flatten(start_dim=2)
        if norm == "l2":
            distances = losses.abs() / (flat.square().sum(dim=-1).sqrt() + 1e-8)
        else:
            distances = losses.abs() / (flat.abs().sum(dim=-1) + 1e-8)
        best = distances.argmin(dim=1)
        distance = distances[rows, best] + 1e-4  # foolbox's numerical-stability margin
        grad = grads[rows, best]
        shape = (len(grad),) + (1,) * (x0.dim() - 1)
        if norm == "l2":
            scale = distance / (grad.flatten(start_dim=1).square().sum(dim=-1).sqrt() + 1e-8)
            p_step = scale.reshape(shape) * grad
        else:
            p_step = distance.reshape(shape) * grad.sign()
        p_total[active] = p_total[active] + p_step
        adv[active] = (x0[active] + (1.0 + overshoot) * p_total[active]).clamp(0.0, 1.0)
        iterations[active.cpu()] += 1
        if on_step is not None:
            on_step(step + 1, steps, len(active))
    adv = adv.detach()

    with torch.no_grad():
        success_raw = model(adv).argmax(dim=1) != labels
        nearest = torch.round(adv * GRID) / GRID
        nearest_ok = model(nearest).argmax(dim=1) != labels
        outward = torch.where(adv > x0, torch.ceil(adv * GRID), torch.floor(adv * GRID)) / GRID
        outward = torch.where(adv == x0, x0, outward)
        use_outward = success_raw & ~nearest_ok
        shape = (batch,) + (1,) * (x0.dim() - 1)
        quantized = torch.where(use_outward.reshape(shape), outward, nearest)
        predictions = model(quantized).argmax(dim=1)
    raw_delta = (adv - x0).flatten(start_dim=1)
    delta = (quantized - x0).flatten(start_dim=1)
    return DeepFoolResult(
        norm=norm,
        labels=labels,
        candidates=classes,
        adversarial_raw=adv,
        success_raw=success_raw,
        l2_raw=raw_delta.norm(dim=1),
        linf_raw=raw_delta.abs().amax(dim=1),
        adversarial=quantized,
        rounded_outward=use_outward,
        success=predictions != labels,
        l2=delta.norm(dim=1),
        linf=delta.abs().amax(dim=1),
        predictions=predictions,
        clean_success=clean_success,
        iterations=iterations,
        params=resolved,
    )
