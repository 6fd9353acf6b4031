"""The atlas job: every missing unit's feature visualization (channels batched) and top-k entries.

The work is a list of channel batches (:func:`server.stores.atlas.channel_batches`); a batch is
computed when any of its units is missing from the store, and each of its units is written as
soon as the batch is done, so a killed job resumes with the batches it had not finished.

``engine="local"`` computes the batches one after the other in this process; ``engine="ray"``
hands them as tasks to a pool of Ray actors that each hold the model (``num_gpus=1`` each when
the job runs on a GPU device, one CPU otherwise) and merges the results on the driver, which
alone writes the store. Both run :func:`interp.synthesis.feature_vis.visualize_filter` on the
same batches with the same seed; with one torch thread per worker (``threads=1`` locally) the
images are identical.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from interp.errors import Cancelled
from interp.synthesis.feature_vis import visualize_filter
from interp.synthesis.feature_vis_params import FeatureVisParams
from server.stores.atlas import AtlasKey, AtlasStore, AtlasUnit, channel_batches
from server.stores.index import StoredIndex

DEFAULT_ACTORS = 2


@dataclass(frozen=True)
class AtlasProgress:
    """Units done of the units this run computes, their rate and the estimated time left."""

    units_done: int
    total: int
    units_per_s: float
    eta_s: float


@dataclass(frozen=True)
class AtlasLayerJob:
    """One layer's work: the model's input, the resolved parameters, the units and their batches."""

    layer: str
    units: list[int]
    batch: int
    params: FeatureVisParams
    in_channels: int
    input_size: int


def visualize_batch(
    module: nn.Module, job: AtlasLayerJob, channels: list[int]
) -> tuple[list[int], np.ndarray, list[float]]:
    """The images (N, C, S, S) and activations of one channel batch."""
    result = visualize_filter(
        module, job.layer, channels, in_channels=job.in_channels, input_size=job.input_size, params=job.params
    )
    return channels, result.images.detach().cpu().numpy(), [float(a) for a in result.activations]


class _AtlasActor:
    """A Ray actor holding the model; computes channel batches."""

    def __init__(self, module: Any, threads: int) -> None:
        torch.set_num_threads(threads)
        self.module = module

    def run(self, job: AtlasLayerJob, channels: list[int]) -> tuple[list[int], np.ndarray, list[float]]:
        return visualize_batch(self.module, job, channels)


def run_layer(
    store: AtlasStore,
    key: AtlasKey,
    job: AtlasLayerJob,
    module: nn.Module,
    index: StoredIndex,
    *,
    engine: str = "local",
    threads: int | None = None,
    actors: int = DEFAULT_ACTORS,
    ray_address: str | None = None,
    on_progress: Callable[[AtlasProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, int]:
    """Compute the missing units of ``job`` into ``store`` under ``key``; returns computed/reused counts."""
    stored = store.stored_units(key)
    todo = [b for b in channel_batches(job.units, job.batch) if not set(b) <= stored]
    reused = sum(1 for u in job.units if u in stored)
    total = sum(len(b) for b in todo)
    values, ids, ys, xs = index.top(job.layer)
    counts = {"computed": 0, "reused": reused}
    started = time.perf_counter()

    def merge(channels: list[int], images: np.ndarray, activations: list[float]) -> None:
        for i, c in enumerate(channels):
            unit = AtlasUnit(c, images[i], activations[i], list(channels), values[c, : key.k], ids[c, : key.k],
                             ys[c, : key.k], xs[c, : key.k])  # fmt: skip
            store.write(key, unit)
        counts["computed"] += len(channels)
        if on_progress is not None:
            elapsed = time.perf_counter() - started
            rate = counts["computed"] / elapsed if elapsed > 0 else 0.0
            left = (total - counts["computed"]) / rate if rate > 0 else 0.0
            on_progress(AtlasProgress(counts["computed"], total, rate, left))

    def check_stop() -> None:
        if should_stop is not None and should_stop():
            raise Cancelled(f"atlas job stopped after {counts['computed']} of {total} units")

    if engine == "local":
        previous = torch.get_num_threads()
        if threads is not None:
            torch.set_num_threads(threads)
        try:
            for channels in todo:
                check_stop()
                merge(*visualize_batch(module, job, channels))
        finally:
            torch.set_num_threads(previous)
    elif engine == "ray":
        _run_ray(module, job, todo, merge, check_stop, threads or 1, actors, ray_address)
    else:
        raise ValueError(f"unknown engine {engine!r}; valid: local, ray")
    return counts


def _run_ray(
    module: nn.Module,
    job: AtlasLayerJob,
    todo: Sequence[list[int]],
    merge: Callable[[list[int], np.ndarray, list[float]], None],
    check_stop: Callable[[], None],
    threads: int,
    actors: int,
    address: str | None,
) -> None:
    try:
        import ray
        from ray.util import ActorPool
    except ImportError:
        raise RuntimeError("--engine ray needs the ray extra: pip install 'cnn-interp[ray]'") from None
    if not todo:
        return
    if not ray.is_initialized():
        ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
    gpu = next(module.parameters()).is_cuda
    remote = ray.remote(num_cpus=1, num_gpus=1 if gpu else 0)(_AtlasActor)
    module_ref = ray.put(module)
    pool_actors: list[Any] = [remote.remote(module_ref, threads) for _ in range(max(1, min(actors, len(todo))))]
    try:
        pool = ActorPool(pool_actors)
        for outcome in pool.map_unordered(lambda actor, channels: actor.run.remote(job, channels), list(todo)):
            merge(*outcome)
            check_stop()
    finally:
        for actor in pool_actors:
            ray.kill(actor)
