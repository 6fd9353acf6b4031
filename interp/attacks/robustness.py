"""Robustness curves over a dataset (the AttackDataset RPC): accuracy at each epsilon and each
image's minimal perturbation, per method, batched (:mod:`interp.attacks.minimal_epsilon` for
FGSM / BIM / PGD, :mod:`interp.attacks.deepfool` for DeepFool)."""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, fields, replace

import torch
from torch import Tensor, nn

from interp.attacks.deepfool import deepfool
from interp.attacks.minimal_epsilon import minimal_epsilon
from interp.attacks.minimal_params import (
    DEEPFOOL_METHODS,
    GRID,
    METHODS,
    MinimalAttackParams,
    SearchParams,
    resolve,
)
from interp.errors import InvalidInput
from interp.progress import StepEvent
from interp.validate import check_batch, check_classes, check_logits


@dataclass(frozen=True, kw_only=True)
class AttackDatasetParams(SearchParams):
    """Parameters of a robustness curve over a dataset: those of :class:`SearchParams`, and

    Attributes:
        batch_size: images attacked together (default 100).
    """

    batch_size: int | None = None


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
        resolve(method, _minimal_params(params), classes)
    if len(set(methods)) != len(methods):
        raise InvalidInput(f"a method is named twice: {methods}")
    if "deepfool_l2" in methods and len(methods) > 1:
        raise InvalidInput("deepfool_l2 measures L2 distances: ask for it alone (the other methods are L-inf)")
    batch = 100 if params.batch_size is None else params.batch_size
    if isinstance(batch, bool) or not isinstance(batch, int) or not 1 <= batch <= MAX_BATCH:
        raise InvalidInput(f"batch_size must be an integer in 1..{MAX_BATCH}, got {batch!r}", param="batch_size")
    return replace(params, batch_size=batch)


def _minimal_params(params: AttackDatasetParams) -> MinimalAttackParams:
    """The search parameters as MinimalAttack takes them (each method reads its own in ``resolve``)."""
    return MinimalAttackParams(**{f.name: getattr(params, f.name) for f in fields(SearchParams)})


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
            raise InvalidInput(f"epsilons must be finite numbers >= 0, got {eps!r}", param="epsilons")
        if norm == "linf" and eps > 1:
            raise InvalidInput(f"L-inf epsilons are pixel units in [0, 1], got {eps!r}")
    count = x.shape[0]
    if labels is not None:
        check_classes("labels", labels, count, classes)
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
                    params=_minimal_params(resolved),
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
                    params=_minimal_params(resolved),
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
