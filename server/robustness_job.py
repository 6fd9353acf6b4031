"""Robustness over a dataset as an offline job: :func:`interp.attacks.robustness.robustness` in
image blocks, locally or on Ray actors.

Every image's attacks depend only on the image, its label and the parameters (the seed is
applied per block of ``batch_size`` images, the same blocks as in-process), so the blocks are
independent tasks: ``engine="ray"`` hands them to a pool of actors that each hold the model
(``num_gpus=1`` each on a GPU device, one CPU and one torch thread otherwise) and
:func:`merge` puts the per-image results back together on the driver. The merged result equals
the in-process one: per-image minimal eps and clean correctness are concatenated, the counts
summed and the accuracies recomputed from the counts in float32, as ``robustness`` computes them.
``engine="local"`` is ``robustness`` itself, in this process.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from interp.attacks.robustness import AttackDatasetParams, Curve, RobustnessResult, resolve_dataset_params, robustness
from interp.errors import Cancelled
from interp.progress import StepEvent

DEFAULT_ACTORS = 2


@dataclass(frozen=True)
class RobustnessProgress:
    """Images done of the images attacked, their rate and the estimated time left. The local
    engine runs one method over all images, then the next: there ``images_done`` counts the images
    of the method ``stage`` names ("pgd, method 2 of 2"), and the rate and ETA are over the whole job."""

    images_done: int
    total: int
    images_per_s: float
    eta_s: float
    stage: str = ""


def _count(accuracy: float, n: int) -> int:
    return round(accuracy * n)


def merge(parts: list[RobustnessResult]) -> RobustnessResult:
    """The result of the blocks' images in block order, as one ``robustness`` call computes it."""
    first = parts[0]
    clean = torch.cat([p.clean_correct for p in parts])
    total = len(clean)
    curves = []
    for i, curve in enumerate(first.curves):
        kept = [
            sum(_count(p.curves[i].accuracy[j], len(p.clean_correct)) for p in parts)
            for j in range(len(first.epsilons))
        ]
        accuracy = [float(torch.tensor(float(k), dtype=torch.float32) / total) for k in kept]
        curves.append(
            Curve(
                method=curve.method,
                accuracy=accuracy,
                levels=curve.levels,
                minimal=torch.cat([p.curves[i].minimal for p in parts]),
                runs=sum(p.curves[i].runs for p in parts),
                non_monotone=sum(p.curves[i].non_monotone for p in parts),
            )
        )
    return RobustnessResult(clean_correct=clean, epsilons=first.epsilons, norm=first.norm, curves=curves,
                            params=first.params)  # fmt: skip


class _RobustnessActor:
    """A Ray actor holding the model; attacks blocks of images."""

    def __init__(self, module: Any, threads: int) -> None:
        torch.set_num_threads(threads)
        self.module = module

    def run(self, start: int, x: torch.Tensor, labels: torch.Tensor | None, kwargs: dict[str, Any]) -> tuple[int, Any]:
        return start, robustness(self.module, x, labels, **kwargs)


def run_robustness(
    module: nn.Module,
    x: torch.Tensor,
    labels: torch.Tensor | None,
    *,
    methods: list[str],
    epsilons: list[float],
    params: AttackDatasetParams,
    engine: str = "local",
    actors: int = DEFAULT_ACTORS,
    ray_address: str | None = None,
    on_progress: Callable[[RobustnessProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> RobustnessResult:
    """``robustness(module, x, labels, ...)`` on ``engine``; the same result on both."""
    kwargs: dict[str, Any] = {"methods": methods, "epsilons": epsilons, "params": params}
    if engine == "local":
        started = time.perf_counter()

        def step(event: StepEvent) -> None:  # one a batch of one method (stage: "pgd 300/1000")
            if on_progress is None:
                return
            method, _, count = event.stage.partition(" ")
            done = int(count.split("/")[0]) if count else 0
            passes = len(x) * len(methods)  # image-method pairs: what the rate and the ETA are over
            finished = round(passes * event.step / max(event.total_steps, 1))
            elapsed = time.perf_counter() - started
            rate = finished / elapsed if elapsed > 0 else 0.0
            which = f"{method}, method {methods.index(method) + 1} of {len(methods)}" if method in methods else ""
            eta = (passes - finished) / rate if rate > 0 else 0.0
            on_progress(RobustnessProgress(done, len(x), rate, eta, which))

        return robustness(module, x, labels, should_stop=should_stop, on_step=step, **kwargs)
    if engine != "ray":
        raise ValueError(f"unknown engine {engine!r}; valid: local, ray")
    try:
        import ray
        from ray.util import ActorPool
    except ImportError:
        raise RuntimeError("--engine ray needs the ray extra: pip install 'cnn-interp[ray]'") from None
    with torch.no_grad():
        classes = module(x[:1]).shape[1]
    batch = int(resolve_dataset_params(params, methods, classes).batch_size or 100)
    blocks = [(s, x[s : s + batch], None if labels is None else labels[s : s + batch]) for s in range(0, len(x), batch)]
    if not ray.is_initialized():
        ray.init(address=ray_address, ignore_reinit_error=True, log_to_driver=False)
    gpu = next(module.parameters()).is_cuda
    remote = ray.remote(num_cpus=1, num_gpus=1 if gpu else 0)(_RobustnessActor)
    module_ref = ray.put(module)
    pool_actors: list[Any] = [remote.remote(module_ref, 1) for _ in range(max(1, min(actors, len(blocks))))]
    parts: dict[int, RobustnessResult] = {}
    started, done = time.perf_counter(), 0
    try:
        pool = ActorPool(pool_actors)
        tasks = pool.map_unordered(lambda actor, b: actor.run.remote(b[0], b[1], b[2], kwargs), blocks)
        for start, part in tasks:
            parts[start] = part
            done += len(part.clean_correct)
            if should_stop is not None and should_stop():
                raise Cancelled(f"robustness job stopped after {done} of {len(x)} images")
            if on_progress is not None:
                elapsed = time.perf_counter() - started
                rate = done / elapsed if elapsed > 0 else 0.0
                on_progress(RobustnessProgress(done, len(x), rate, (len(x) - done) / rate if rate > 0 else 0.0))
    finally:
        for actor in pool_actors:
            ray.kill(actor)
    return merge([parts[s] for s in sorted(parts)])
