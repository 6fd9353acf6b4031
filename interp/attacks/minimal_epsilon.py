"""The smallest L-inf radius at which FGSM / BIM / PGD fools the net, per image.

``minimal_epsilon``: per image, the smallest L-inf radius ``k/255`` at which the attack (same
method, steps, step-size rule and seed as :func:`interp.attacks.linf.attack` on that image alone)
succeeds on the quantized image; judged on the 8-bit grid a saved image really has. On the grid
the search over the integer ``k`` is exact: the result is a ``k*`` where the attack was run and
succeeded, and ``k* - 1`` where it was run and failed (``k* = 0``: the clean image is already
misclassified with respect to the given label). Success need not be monotone in ``k`` (PGD's
random start and step size scale with eps), so it is checked, not assumed: a scan at
k = 1, 2, 4, ..., 128 and ``k_max`` is run first, a failure above a success there is reported
(``monotone=False``), and the bisection runs below the smallest success found. The number of
attack runs per image is reported.

Each image of a batch is attacked as it would be alone: the PGD random start is drawn per image
from a generator seeded with ``seed`` (what ``attack`` draws for a batch of one), and the loss
is summed over the batch (each image's gradient is its own, unscaled); the steps are
:func:`interp.attacks.steps.linf_steps`, the Attack RPC's.

Thread safety: plain autograd on private copies of the input and private generators.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from interp.attacks.minimal_params import GRID, MinimalAttackParams, resolve
from interp.attacks.steps import LINF_METHODS, attack_goal, linf_steps
from interp.errors import InvalidInput


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
        judged on it. Equal to :func:`interp.attacks.linf.attack` on each image alone at
        ``epsilon = levels[i] / 255`` with
        :func:`interp.attacks.minimal_params.attack_params` (the tests check it).
    """
    eps_values = [int(k) / GRID for k in levels.tolist()]
    if method == "fgsm":
        step_values = eps_values
    elif params.step_size is None:
        step_values = [e / 10 for e in eps_values]
    else:
        step_values = [float(params.step_size)] * len(eps_values)
    _, quantized = linf_steps(
        model,
        x,
        goal,
        method=method,
        epsilons=eps_values,
        step_sizes=step_values,
        steps=1 if method == "fgsm" else int(params.steps or 10),
        targeted=targeted,
        random_start=method != "fgsm" and bool(params.random_start),
        seed=params.seed,
        per_image=True,
        should_stop=should_stop,
    )
    with torch.no_grad():
        predictions = model(quantized).argmax(dim=1)
    success = predictions == goal if targeted else predictions != goal
    return quantized, success


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
    x, logits, goal, targeted = attack_goal(model, x, labels, target)
    batch = x.shape[0]
    resolved = resolve(method, params, logits.shape[1])
    clean_pred = logits.argmax(dim=1)
    clean_success = (clean_pred == goal) if targeted else (clean_pred != goal)
    k_max = int(math.floor(float(resolved.max_epsilon or 1.0) * GRID + 1e-9))

    evaluated: list[dict[int, bool]] = [{} for _ in range(batch)]
    # Per image, the adversarial image at its smallest successful level so far: k* is the smallest
    # success of the scan and the bisection (which only tries levels below it), so one is kept,
    # not one per level tried (17 images per image for a 255-level search).
    adversarial: list[tuple[int, Tensor] | None] = [None] * batch
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
            kept = adversarial[i]
            if bool(success[j]) and (kept is None or k < kept[0]):
                adversarial[i] = (k, adv[j].clone())  # not a view holding the whole batch
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
        kept = adversarial[i]
        if kept is None or kept[0] != k_star:  # not reachable: k* is a level that succeeded
            raise RuntimeError(f"minimal epsilon: no adversarial image kept at level {k_star}")
        adv_out[i] = kept[1]
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
