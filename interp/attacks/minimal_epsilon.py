"""Minimal adversarial perturbations: "the closest image on which the net fails".

Two searches, both judged on the 8-bit grid a saved image really has:

- ``minimal_epsilon`` (FGSM / BIM / PGD): per image, the smallest L-inf radius ``k/255`` at
  which the attack (same method, steps, step-size rule and seed as
  :func:`interp.adversarial.attack` on that image alone) succeeds on the quantized image. On the
  grid the search over the integer ``k`` is exact: the result is a ``k*`` where the attack was
  run and succeeded, and ``k* - 1`` where it was run and failed (``k* = 0``: the clean image is
  already misclassified with respect to the given label). Success need not be monotone in ``k``
  (PGD's random start and step size scale with eps), so it is checked, not assumed: a scan at
  k = 1, 2, 4, ..., 128 and ``k_max`` is run first, a failure above a success there is reported
  (``monotone=False``), and the bisection runs below the smallest success found. The number of
  attack runs per image is reported.
- ``deepfool`` (Moosavi-Dezfooli et al. 2016), L2 or L-inf, batched, restricted to the top
  ``candidates`` classes of the clean logits (foolbox 3's ``DeepFoolAttack``, whose results it
  reproduces: same candidates, overshoot, steps and 1e-4 / 1e-8 stabilizers). One forward pass and
  one backward call for all ``candidates - 1`` gradients per iteration (foolbox runs
  ``candidates - 1`` forward and backward passes). The raw result is then rounded to the 8-bit grid and re-checked.

Each image of a batch is attacked as it would be alone: the PGD random start is drawn per image
from a generator seeded with ``seed`` (what ``attack`` draws for a batch of one), and the loss
is summed over the batch (each image's gradient is its own, unscaled).

Thread safety: plain autograd on private copies of the input and private generators.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from interp.adversarial import METHODS as LINF_METHODS
from interp.adversarial import AttackParams, _check_classes, quantize_in_ball, resolve_params
from interp.errors import Cancelled, InvalidInput
from interp.hooks import check_batch
from interp.predict import check_logits
from interp.progress import StepEvent

DEEPFOOL_METHODS = ("deepfool_l2", "deepfool_linf")
METHODS = (*LINF_METHODS, *DEEPFOOL_METHODS)
GRID = 255  # 8-bit levels: eps = k / 255
MAX_DEEPFOOL_STEPS = 1000


@dataclass(frozen=True)
class MinimalAttackParams:
    """Parameters of a minimal-perturbation search (each method reads its own; see ``applies``).

    Attributes:
        step_size: bim/pgd step in pixel units; None -> eps / 10 at each eps tried.
        steps: bim/pgd iterations (default 10) or DeepFool iterations (default 50).
        random_start: bim/pgd random start; None -> True for pgd, False for bim.
        seed: seed of the random start (per image, as ``attack`` on that image alone).
        max_epsilon: fgsm/bim/pgd: the largest eps searched, in (0, 1]; k_max = floor(255 max_epsilon).
        candidates: DeepFool: the top classes considered, 2..classes (default 10, capped at classes).
        overshoot: DeepFool: the step is scaled by 1 + overshoot (default 0.02).
    """

    step_size: float | None = None
    steps: int | None = None
    random_start: bool | None = None
    seed: int = 0
    max_epsilon: float | None = None
    candidates: int | None = None
    overshoot: float | None = None


def applies(method: str) -> tuple[str, ...]:
    """The ``MinimalAttackParams`` fields ``method`` reads."""
    if method in DEEPFOOL_METHODS:
        return ("steps", "candidates", "overshoot")
    return {
        "fgsm": ("max_epsilon",),
        "bim": ("step_size", "steps", "random_start", "seed", "max_epsilon"),
        "pgd": ("step_size", "steps", "random_start", "seed", "max_epsilon"),
    }.get(method, ())


def resolve(method: str, params: MinimalAttackParams, classes: int) -> MinimalAttackParams:
    """Validate ``params`` for ``method`` and fill in the defaults.

    Raises:
        InvalidInput: unknown method, or a parameter out of range for it.
    """
    if method not in METHODS:
        raise InvalidInput(f"unknown minimal-attack method {method!r}; valid methods: {', '.join(METHODS)}")
    if method in DEEPFOOL_METHODS:
        steps = 50 if params.steps is None else params.steps
        if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_DEEPFOOL_STEPS:
            raise InvalidInput(f"steps must be an integer in 1..{MAX_DEEPFOOL_STEPS}, got {steps!r}")
        candidates = min(10, classes) if params.candidates is None else params.candidates
        if isinstance(candidates, bool) or not isinstance(candidates, int) or not 2 <= candidates <= classes:
            raise InvalidInput(
                f"candidates must be an integer in 2..{classes} (the model's classes), got {candidates!r}"
            )
        overshoot = 0.02 if params.overshoot is None else params.overshoot
        if (
            not isinstance(overshoot, int | float)
            or isinstance(overshoot, bool)
            or not (math.isfinite(overshoot) and 0 <= overshoot <= 1)
        ):
            raise InvalidInput(f"overshoot must be a finite number in [0, 1], got {overshoot!r}")
        return MinimalAttackParams(steps=steps, candidates=candidates, overshoot=float(overshoot))
    max_epsilon = 1.0 if params.max_epsilon is None else params.max_epsilon
    if (
        isinstance(max_epsilon, bool)
        or not isinstance(max_epsilon, int | float)
        or not math.isfinite(max_epsilon)
        or not 1 / GRID <= max_epsilon <= 1
    ):
        raise InvalidInput(f"max_epsilon must be a number in [1/255, 1] (pixel units), got {max_epsilon!r}")
    inner = resolve_params(
        method,
        max_epsilon,
        AttackParams(
            step_size=params.step_size,
            steps=10 if params.steps is None else params.steps,
            random_start=params.random_start,
            seed=params.seed,
        ),
    )
    return MinimalAttackParams(
        step_size=params.step_size if method != "fgsm" else None,  # None: eps / 10 at each eps
        steps=inner.steps,
        random_start=inner.random_start,
        seed=inner.seed,
        max_epsilon=float(max_epsilon),
    )


def attack_params(params: MinimalAttackParams) -> AttackParams:
    """The :class:`AttackParams` that :func:`interp.adversarial.attack` takes for the same run."""
    return AttackParams(
        step_size=params.step_size, steps=params.steps or 10, random_start=params.random_start, seed=params.seed
    )


# -- one attack run per image, each at its own eps ------------------------------------------------


def attack_at(
    model: nn.Module,
    x: Tensor,
    goal: Tensor,
    levels: Tensor,
    *,
    method: str,
    targeted: bool,
    params: MinimalAttackParams,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[Tensor, Tensor]:
    """FGSM / BIM / PGD on each image at its own radius ``levels[i] / 255``, each as if alone.

    Args:
        model: classifier on pixels in [0, 1].
        x: (B, C, H, W) pixels in [0, 1].
        goal: (B,) labels to move away from (untargeted) or target classes (targeted).
        levels: (B,) int64 radii in 8-bit levels, 1..255.
        method: fgsm | bim | pgd.
        targeted: whether ``goal`` holds targets.
        params: resolved :class:`MinimalAttackParams`.
        should_stop: asked before each step; True raises :class:`Cancelled`.

    Returns:
        ``(adversarial, success)``: (B, C, H, W) on the 8-bit grid within each radius, and (B,) bool
        judged on it. Equal to :func:`interp.adversarial.attack` on each image alone at
        ``epsilon = levels[i] / 255`` with :func:`attack_params` (the tests check it).
    """
    batch = x.shape[0]
    shape = (batch,) + (1,) * (x.dim() - 1)
    eps_values = [int(k) / GRID for k in levels.tolist()]
    eps = torch.tensor(eps_values, dtype=x.dtype, device=x.device).reshape(shape)
    steps = 1 if method == "fgsm" else int(params.steps or 10)
    if method == "fgsm":
        step_values = eps_values
    elif params.step_size is None:
        step_values = [e / 10 for e in eps_values]
    else:
        step_values = [float(params.step_size)] * batch
    step = torch.tensor(step_values, dtype=x.dtype, device=x.device).reshape(shape)
    adv = x.clone()
    if method != "fgsm" and params.random_start:
        starts = []
        for i, e in enumerate(eps_values):
            generator = torch.Generator(device=x.device).manual_seed(params.seed)
            starts.append(torch.empty_like(x[i : i + 1]).uniform_(-e, e, generator=generator))
        adv = (adv + torch.cat(starts)).clamp(0.0, 1.0)
    for _ in range(steps):
        if should_stop is not None and should_stop():
            raise Cancelled(f"{method} cancelled")
        adv.requires_grad_(True)
        loss = F.cross_entropy(model(adv), goal, reduction="sum")
        if targeted:
            loss = -loss
        (grad,) = torch.autograd.grad(loss, adv)
        adv = adv.detach() + step * grad.sign()
        if method == "fgsm":
            adv = adv.clamp(0.0, 1.0)
        else:
            adv = (x + torch.maximum(torch.minimum(adv - x, eps), -eps)).clamp(0.0, 1.0)
    adv = adv.detach()
    quantized = torch.cat([quantize_in_ball(adv[i : i + 1], x[i : i + 1], e) for i, e in enumerate(eps_values)])
    with torch.no_grad():
        predictions = model(quantized).argmax(dim=1)
    success = predictions == goal if targeted else predictions != goal
    return quantized, success


# -- minimal eps by scan + bisection -----------------------------------------------------------


@dataclass(frozen=True)
class MinimalEpsilonResult:
    """Per-image minimal L-inf radius on the 8-bit grid.

    Attributes:
        labels: (B,) the class attacked away from (untargeted) or towards (targeted).
        clean_success: (B,) bool: the clean image already counts as a success (untargeted with a
            true label the model gets wrong); then ``levels`` is 0.
        found: (B,) bool: a successful radius was found up to ``k_max``.
        levels: (B,) int64 k*: success at k*/255, failure at (k* - 1)/255; -1 where not found.
        monotone: (B,) bool: no evaluated radius failed above one that succeeded.
        violations: per image, the evaluated levels that failed above the smallest success.
        runs: (B,) int64 attack runs spent per image.
        adversarial: (B, C, H, W) the quantized adversarial image at k* (the clean image where
            k* = 0 or not found).
        predictions: (B,) int64 prediction on ``adversarial``.
        k_max: the largest level searched.
        evaluated: per image, {level: success} for every run (the curve reads it).
    """

    labels: Tensor
    clean_success: Tensor
    found: Tensor
    levels: Tensor
    monotone: Tensor
    violations: list[list[int]]
    runs: Tensor
    adversarial: Tensor
    predictions: Tensor
    k_max: int
    evaluated: list[dict[int, bool]]


def scan_levels(k_max: int, extra: tuple[int, ...] = ()) -> list[int]:
    """The levels every image is tried at before bisecting: 1, 2, 4, ..., k_max and ``extra``."""
    levels = {k_max, *(k for k in extra if 1 <= k <= k_max)}
    k = 1
    while k < k_max:
        levels.add(k)
        k *= 2
    return sorted(levels)


def minimal_epsilon(
    model: nn.Module,
    x: Tensor,
    *,
    method: str,
    labels: Tensor | None = None,
    target: Tensor | None = None,
    params: MinimalAttackParams = MinimalAttackParams(),  # noqa: B008 - frozen
    extra_levels: tuple[int, ...] = (),
    should_stop: Callable[[], bool] | None = None,
    on_run: Callable[[int, int], None] | None = None,
) -> MinimalEpsilonResult:
    """The smallest eps = k/255 at which ``method`` succeeds, per image (see the module docstring).

    Args:
        model: classifier on pixels in [0, 1]; not modified.
        x: (B, C, H, W) pixels in [0, 1].
        method: fgsm | bim | pgd.
        labels: untargeted: (B,) true labels; None -> the model's predictions on x.
        target: (B,) target classes (targeted search); excludes ``labels``.
        params: :class:`MinimalAttackParams` (resolved here).
        extra_levels: levels tried in the scan besides the powers of two (the dataset curve's).
        should_stop: asked before each attack step; True raises :class:`Cancelled`.
        on_run: called with (runs done, runs planned at most) after each batched run.

    Raises:
        InvalidInput: bad batch, method, parameter, labels or target.
        Cancelled: ``should_stop`` returned True.
    """
    if method not in LINF_METHODS:
        raise InvalidInput(f"minimal epsilon searches {', '.join(LINF_METHODS)}; got {method!r}")
    check_batch(x)
    if labels is not None and target is not None:
        raise InvalidInput("pass labels (untargeted) or target (targeted), not both")
    x = x.detach().clone()
    batch = x.shape[0]
    with torch.no_grad():
        logits = model(x)
    check_logits(logits, batch)
    resolved = resolve(method, params, logits.shape[1])
    targeted = target is not None
    goal = target if targeted else labels
    if goal is None:
        goal = logits.argmax(dim=1)
    else:
        _check_classes("target" if targeted else "labels", goal, batch, logits.shape[1])
    goal = goal.to(device=x.device, dtype=torch.long)
    clean_pred = logits.argmax(dim=1)
    clean_success = (clean_pred == goal) if targeted else (clean_pred != goal)
    k_max = int(math.floor(float(resolved.max_epsilon or 1.0) * GRID + 1e-9))

    evaluated: list[dict[int, bool]] = [{} for _ in range(batch)]
    adversarial: list[dict[int, Tensor]] = [{} for _ in range(batch)]
    runs = [0] * batch
    scan = scan_levels(k_max, extra_levels)
    active = [i for i in range(batch) if not bool(clean_success[i])]
    planned = len(scan) + max(1, math.ceil(math.log2(k_max + 1)))
    done_runs = 0

    def run(pairs: list[tuple[int, int]]) -> None:
        nonlocal done_runs
        if not pairs:
            return
        index = torch.tensor([i for i, _ in pairs], device=x.device)
        levels = torch.tensor([k for _, k in pairs])
        adv, success = attack_at(
            model,
            x[index],
            goal[index],
            levels,
            method=method,
            targeted=targeted,
            params=resolved,
            should_stop=should_stop,
        )
        for j, (i, k) in enumerate(pairs):
            evaluated[i][k] = bool(success[j])
            adversarial[i][k] = adv[j]
            runs[i] += 1
        done_runs += 1
        if on_run is not None:
            on_run(done_runs, planned)

    # The scan: every active image at every scan level, in one batch per level.
    for k in scan:
        run([(i, k) for i in active])
    # Bisection below the smallest success, above the largest failure under it.
    brackets: dict[int, tuple[int, int]] = {}
    for i in active:
        successes = [k for k, ok in evaluated[i].items() if ok]
        if successes:
            hi = min(successes)
            lo = max((k for k, ok in evaluated[i].items() if not ok and k < hi), default=0)
            brackets[i] = (lo, hi)
    while True:
        pairs = [(i, (lo + hi) // 2) for i, (lo, hi) in brackets.items() if hi - lo > 1]
        if not pairs:
            break
        run(pairs)
        for i, k in pairs:
            lo, hi = brackets[i]
            brackets[i] = (lo, k) if evaluated[i][k] else (k, hi)

    found = torch.zeros(batch, dtype=torch.bool)
    levels_out = torch.full((batch,), -1, dtype=torch.long)
    monotone = torch.ones(batch, dtype=torch.bool)
    violations: list[list[int]] = [[] for _ in range(batch)]
    adv_out = x.clone()
    for i in range(batch):
        if bool(clean_success[i]):
            found[i], levels_out[i] = True, 0
            continue
        if i not in brackets:
            continue
        k_star = brackets[i][1]
        found[i], levels_out[i] = True, k_star
        adv_out[i] = adversarial[i][k_star]
        violations[i] = sorted(k for k, ok in evaluated[i].items() if not ok and k > k_star)
        monotone[i] = not violations[i]
    with torch.no_grad():
        predictions = model(adv_out).argmax(dim=1)
    return MinimalEpsilonResult(
        labels=goal,
        clean_success=clean_success.cpu(),
        found=found,
        levels=levels_out,
        monotone=monotone,
        violations=violations,
        runs=torch.tensor(runs, dtype=torch.long),
        adversarial=adv_out,
        predictions=predictions,
        k_max=k_max,
        evaluated=evaluated,
    )


# -- DeepFool -------------------------------------------------------------------------------------


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
    check_batch(x)
    x0 = x.detach().clone()
    batch = x0.shape[0]
    with torch.no_grad():
        logits = model(x0)
    check_logits(logits, batch)
    resolved = resolve(f"deepfool_{norm}", params, logits.shape[1])
    candidates = int(resolved.candidates or 2)
    if labels is None:
        labels = logits.argmax(dim=1)
    else:
        _check_classes("labels", labels, batch, logits.shape[1])
    labels = labels.to(device=x0.device, dtype=torch.long)
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


# -- robustness over a dataset ----------------------------------------------------------------


@dataclass(frozen=True)
class AttackDatasetParams:
    """Parameters of a robustness curve over a dataset (see :class:`MinimalAttackParams`).

    Attributes:
        step_size, steps, random_start, seed: the L-inf attacks', as in :class:`MinimalAttackParams`.
        candidates, overshoot: DeepFool's.
        batch_size: images attacked together (default 100).
    """

    step_size: float | None = None
    steps: int | None = None
    random_start: bool | None = None
    seed: int = 0
    candidates: int | None = None
    overshoot: float | None = None
    batch_size: int | None = None


L_INF_CURVE_METHODS = (*LINF_METHODS, "deepfool_linf")
MAX_BATCH = 10_000


@dataclass(frozen=True)
class Curve:
    """One method's robustness over the images.

    Attributes:
        method: fgsm | bim | pgd | deepfool_linf | deepfool_l2.
        accuracy: per epsilon, the share of images correct clean and not broken within it.
        levels: L-inf attacks: the 8-bit radius ``floor(255 eps)`` used per epsilon; DeepFool: [].
        minimal: (N,) float32 minimal perturbation per image (k*/255, or DeepFool's 8-bit norm);
            0 for a clean error, +inf where nothing was found.
        runs: attack runs (fgsm/bim/pgd: per image, summed; DeepFool: iterations, summed).
        non_monotone: images where a radius above k* failed.
    """

    method: str
    accuracy: list[float]
    levels: list[int]
    minimal: Tensor
    runs: int
    non_monotone: int

    @property
    def not_found(self) -> int:
        return int(torch.isinf(self.minimal).sum())

    def median_minimal(self, clean_correct: Tensor) -> float:
        """Median of ``minimal`` over the clean-correct images (lower median; +inf if most were not broken)."""
        values = self.minimal[clean_correct]
        return float(values.sort().values[(len(values) - 1) // 2]) if len(values) else float("nan")


@dataclass(frozen=True)
class RobustnessResult:
    clean_correct: Tensor  # (N,) bool
    epsilons: list[float]
    norm: str
    curves: list[Curve]
    params: AttackDatasetParams


def resolve_dataset_params(params: AttackDatasetParams, methods: list[str], classes: int) -> AttackDatasetParams:
    """Validate for every method asked for; fill in the defaults that do not depend on it."""
    if not methods:
        raise InvalidInput(f"at least one method is required: {', '.join(METHODS)}")
    for method in methods:
        if method not in METHODS:
            raise InvalidInput(f"unknown method {method!r}; valid methods: {', '.join(METHODS)}")
        resolve(method, _minimal_params(params, method), classes)
    if len(set(methods)) != len(methods):
        raise InvalidInput(f"a method is named twice: {methods}")
    if "deepfool_l2" in methods and len(methods) > 1:
        raise InvalidInput("deepfool_l2 measures L2 distances: ask for it alone (the other methods are L-inf)")
    batch = 100 if params.batch_size is None else params.batch_size
    if isinstance(batch, bool) or not isinstance(batch, int) or not 1 <= batch <= MAX_BATCH:
        raise InvalidInput(f"batch_size must be an integer in 1..{MAX_BATCH}, got {batch!r}")
    return AttackDatasetParams(
        step_size=params.step_size,
        steps=params.steps,
        random_start=params.random_start,
        seed=params.seed,
        candidates=params.candidates,
        overshoot=params.overshoot,
        batch_size=batch,
    )


def _minimal_params(params: AttackDatasetParams, method: str) -> MinimalAttackParams:
    if method in DEEPFOOL_METHODS:
        return MinimalAttackParams(steps=params.steps, candidates=params.candidates, overshoot=params.overshoot)
    return MinimalAttackParams(
        step_size=params.step_size, steps=params.steps, random_start=params.random_start, seed=params.seed
    )


def robustness(
    model: nn.Module,
    x: Tensor,
    labels: Tensor | None,
    *,
    methods: list[str],
    epsilons: list[float],
    params: AttackDatasetParams = AttackDatasetParams(),  # noqa: B008 - frozen
    should_stop: Callable[[], bool] | None = None,
    on_step: Callable[[StepEvent], None] | None = None,
) -> RobustnessResult:
    """Accuracy at each epsilon and the per-image minimal perturbation, per method, batched.

    L-inf attacks: each image's minimal ``k*`` is searched as in :func:`minimal_epsilon`, with the
    curve's radii ``floor(255 eps)`` added to the scan, so the accuracy at eps is read from runs
    at exactly that radius (``floor(255 eps) = 0``: no perturbation fits, the clean accuracy).
    Where success is monotone this equals the share of clean-correct images with
    ``k*/255 > eps``. DeepFool: an image is broken at eps when its 8-bit perturbation succeeds
    with a norm (L-inf or L2) at most eps.

    Args:
        model: classifier on pixels in [0, 1]; not modified.
        x: (N, C, H, W) pixels in [0, 1].
        labels: (N,) true labels; None -> the model's predictions (every image then counts as
            correct clean).
        methods: fgsm | bim | pgd | deepfool_linf, or deepfool_l2 alone.
        epsilons: curve points in pixel units (L2 for deepfool_l2), each in [0, 1] (L2: >= 0).
        params: :class:`AttackDatasetParams`.
        should_stop: asked before each attack step; True raises :class:`Cancelled`.
        on_step: one :class:`StepEvent` per batch and method (objective: the batch's accuracy at the
            largest epsilon).

    Raises:
        InvalidInput: bad batch, method, epsilon, parameter or labels.
        Cancelled: ``should_stop`` returned True; nothing partial is returned.
    """
    check_batch(x)
    with torch.no_grad():
        probe = model(x[:1])
    check_logits(probe, 1)
    classes = probe.shape[1]
    resolved = resolve_dataset_params(params, list(methods), classes)
    norm = "l2" if methods == ["deepfool_l2"] else "linf"
    if not epsilons:
        raise InvalidInput("at least one epsilon is required")
    for eps in epsilons:
        if isinstance(eps, bool) or not isinstance(eps, int | float) or not math.isfinite(eps) or eps < 0:
            raise InvalidInput(f"epsilons must be finite numbers >= 0, got {eps!r}")
        if norm == "linf" and eps > 1:
            raise InvalidInput(f"L-inf epsilons are pixel units in [0, 1], got {eps!r}")
    count = x.shape[0]
    if labels is not None:
        _check_classes("labels", labels, count, classes)
    batch = int(resolved.batch_size or 100)
    chunks = [(start, min(start + batch, count)) for start in range(0, count, batch)]
    total = len(chunks) * len(methods)
    started = time.perf_counter()
    step = 0
    clean_correct = torch.zeros(count, dtype=torch.bool)
    with torch.no_grad():
        for start, end in chunks:
            predictions = model(x[start:end]).argmax(dim=1).cpu()
            if labels is not None:
                clean_correct[start:end] = predictions == labels[start:end].cpu()
            else:
                clean_correct[start:end] = True
    curve_levels = [int(math.floor(eps * GRID + 1e-9)) for eps in epsilons]
    curves = []
    for method in methods:
        minimal = torch.full((count,), math.inf)
        broken = torch.zeros((count, len(epsilons)), dtype=torch.bool)
        runs, non_monotone = 0, 0
        for start, end in chunks:
            xb = x[start:end]
            yb = None if labels is None else labels[start:end].to(x.device)
            if method in DEEPFOOL_METHODS:
                result = deepfool(
                    model,
                    xb,
                    norm=method.removeprefix("deepfool_"),
                    labels=yb,
                    params=_minimal_params(resolved, method),
                    should_stop=should_stop,
                )
                size = (result.l2 if method == "deepfool_l2" else result.linf).cpu()
                ok = result.success.cpu()
                minimal[start:end] = torch.where(ok, size, torch.full_like(size, math.inf))
                minimal[start:end][result.clean_success.cpu()] = 0.0
                for j, eps in enumerate(epsilons):
                    broken[start:end, j] = ok & (size <= eps)
                runs += int(result.iterations.sum())
            else:
                found = minimal_epsilon(
                    model,
                    xb,
                    method=method,
                    labels=yb,
                    params=_minimal_params(resolved, method),
                    extra_levels=tuple(k for k in curve_levels if k >= 1),
                    should_stop=should_stop,
                )
                k_star = found.levels.float() / GRID
                minimal[start:end] = torch.where(found.found, k_star, torch.full_like(k_star, math.inf))
                for i in range(end - start):
                    for j, k in enumerate(curve_levels):
                        broken[start + i, j] = bool(found.clean_success[i]) or (
                            k >= 1 and found.evaluated[i].get(k, False)
                        )
                runs += int(found.runs.sum())
                non_monotone += int((~found.monotone).sum())
            step += 1
            if on_step is not None:
                done = clean_correct[start:end] & ~broken[start:end, -1]
                on_step(
                    StepEvent(
                        step=step,
                        total_steps=total,
                        objective=float(done.float().mean()),
                        elapsed_s=time.perf_counter() - started,
                        stage=f"{method} {end}/{count}",
                    )
                )
        accuracy = [float((clean_correct & ~broken[:, j]).float().mean()) for j in range(len(epsilons))]
        curves.append(
            Curve(
                method=method,
                accuracy=accuracy,
                levels=curve_levels if norm == "linf" and method not in DEEPFOOL_METHODS else [],
                minimal=minimal,
                runs=runs,
                non_monotone=non_monotone,
            )
        )
    return RobustnessResult(
        clean_correct=clean_correct, epsilons=[float(e) for e in epsilons], norm=norm, curves=curves, params=resolved
    )


def curve_png(result: RobustnessResult, title: str = "") -> bytes:
    """Accuracy vs epsilon, one line per method, as PNG bytes (matplotlib, no global state)."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 4), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for curve in result.curves:
        axes.plot(result.epsilons, curve.accuracy, marker="o", label=curve.method)
    axes.axhline(float(result.clean_correct.float().mean()), color="grey", linestyle=":", label="clean")
    axes.set_xlabel(f"epsilon ({'L2' if result.norm == 'l2' else 'L-inf'}, pixel units)")
    axes.set_ylabel("accuracy")
    axes.set_ylim(0, 1)
    axes.grid(True, alpha=0.3)
    axes.legend()
    if title:
        axes.set_title(title)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
