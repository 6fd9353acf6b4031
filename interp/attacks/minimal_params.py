"""Parameters of the minimal-perturbation searches (the MinimalAttack and AttackDataset RPCs).

One dataclass for both families: the L-inf attacks (fgsm, bim, pgd: the smallest radius on the
8-bit grid, :mod:`interp.attacks.minimal_epsilon`) and DeepFool (L2 or L-inf,
:mod:`interp.attacks.deepfool`); each method reads its own fields (:func:`applies`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from interp.attacks.linf import AttackParams, resolve_params
from interp.attacks.steps import LINF_METHODS
from interp.errors import InvalidInput

DEEPFOOL_METHODS = ("deepfool_l2", "deepfool_linf")
METHODS = (*LINF_METHODS, *DEEPFOOL_METHODS)
GRID = 255  # 8-bit levels: eps = k / 255
MAX_DEEPFOOL_STEPS = 1000


@dataclass(frozen=True, kw_only=True)
class SearchParams:
    """The parameters every minimal-perturbation search shares (MinimalAttack and AttackDataset).

    Attributes:
        step_size: bim/pgd step in pixel units; None -> eps / 10 at each eps tried.
        steps: bim/pgd iterations (default 10) or DeepFool iterations (default 50).
        random_start: bim/pgd random start; None -> True for pgd, False for bim.
        seed: seed of the random start (per image, as ``attack`` on that image alone).
        candidates: DeepFool: the top classes considered, 2..classes (default 10, capped at classes).
        overshoot: DeepFool: the step is scaled by 1 + overshoot (default 0.02).
    """

    step_size: float | None = None
    steps: int | None = None
    random_start: bool | None = None
    seed: int = 0
    candidates: int | None = None
    overshoot: float | None = None


@dataclass(frozen=True, kw_only=True)
class MinimalAttackParams(SearchParams):
    """Parameters of a minimal-perturbation search (each method reads its own; see ``applies``):
    those of :class:`SearchParams`, and

    Attributes:
        max_epsilon: fgsm/bim/pgd: the largest eps searched, in (0, 1]; k_max = floor(255 max_epsilon).
    """

    max_epsilon: float | None = None


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
            raise InvalidInput(f"steps must be an integer in 1..{MAX_DEEPFOOL_STEPS}, got {steps!r}", param="steps")
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
            raise InvalidInput(f"overshoot must be a finite number in [0, 1], got {overshoot!r}", param="overshoot")
        return MinimalAttackParams(steps=steps, candidates=candidates, overshoot=float(overshoot))
    max_epsilon = 1.0 if params.max_epsilon is None else params.max_epsilon
    if (
        isinstance(max_epsilon, bool)
        or not isinstance(max_epsilon, int | float)
        or not math.isfinite(max_epsilon)
        or not 1 / GRID <= max_epsilon <= 1
    ):
        raise InvalidInput(
            f"max_epsilon must be a number in [1/255, 1] (pixel units), got {max_epsilon!r}", param="max_epsilon"
        )
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
    """The :class:`AttackParams` that :func:`interp.attacks.linf.attack` takes for the same run."""
    return AttackParams(
        step_size=params.step_size, steps=params.steps or 10, random_start=params.random_start, seed=params.seed
    )
