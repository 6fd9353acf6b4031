"""The index pass as a Ray Data pipeline, for datasets one machine cannot index fast enough.

image ids (in-memory blocks of one batch each) -> ``map_batches`` with a pool of actors, each holding the
model and reading its own images (the dataset's files must be readable at the same path on every
node) -> per block, the block's top-k candidates and features (:func:`interp.dataset.index.index_batch`)
-> merged on the driver by :class:`interp.dataset.index.IndexAccumulator`, in whatever order the
blocks arrive: the merge is order-independent (ties by image id), so the index equals the local
engine's. Only the driver writes the index.

Needs the ``ray`` extra (``pip install 'cnn-interp[ray]'``). ``address``: None starts or joins a
local Ray instance; ``"auto"`` joins the cluster this machine is part of; ``"ray://HOST:10001"`` a
remote one through Ray Client.
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from interp.dataset.index import IndexAccumulator, IndexProgress, LayerIndex, index_batch
from interp.errors import Cancelled
from models.dataset_registry import Dataset, IdxDataset
from models.registry import Preprocessing
from server.stores.datasets import fast_path, preprocess_ids

DEFAULT_ACTORS = 2


class _IndexActor:
    """One Ray actor: the model, the dataset handle, and the per-block index computation."""

    def __init__(self, module: Any, dataset: Dataset, spec: Preprocessing, layers: Sequence[str], k: int) -> None:
        import ray

        torch.set_num_threads(1)
        if isinstance(module, ray.ObjectRef):  # the model travels once through the object store
            module = ray.get(module)
        self.module, self.dataset, self.spec, self.layers, self.k = module, dataset, spec, list(layers), k

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ids = [int(i) for i in batch["data"]]
        counters = {"skipped": 0}
        x: torch.Tensor | None
        if isinstance(self.dataset, IdxDataset) and fast_path(self.spec):
            raw = torch.from_numpy(self.dataset.arrays()[0][np.asarray(ids)])
            kept, x = ids, raw.to(torch.float32).div_(255.0).unsqueeze(1)
        else:
            kept, images = preprocess_ids(self.dataset, self.spec, ids, counters)
            x = torch.stack(images) if images else None
        outcome = None
        if kept and x is not None:
            outcome = index_batch(self.module, x, torch.tensor(kept, dtype=torch.int64), self.layers, self.k)
        payload = pickle.dumps((outcome, counters["skipped"], len(ids)))
        return {"payload": np.array([payload], dtype=object)}


def build_index_ray(
    module: nn.Module,
    dataset: Dataset,
    spec: Preprocessing,
    layers: Sequence[str],
    k: int,
    batch_size: int,
    *,
    address: str | None = None,
    actors: int = DEFAULT_ACTORS,
    counters: dict[str, int] | None = None,
    on_batch: Callable[[IndexProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[dict[str, LayerIndex], torch.Tensor]:
    """Same result as :func:`interp.dataset.index.build_index` over the same dataset, computed by Ray."""
    try:
        import ray
    except ImportError:
        raise RuntimeError("--engine ray needs the ray extra: pip install 'cnn-interp[ray]'") from None
    if not ray.is_initialized():
        ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
    counters = counters if counters is not None else {}
    counters.setdefault("skipped", 0)
    size = dataset.size
    acc = IndexAccumulator(layers, k, size)
    module_ref: Any = ray.put(module.cpu())
    # Ids as in-memory blocks, one per batch: no read task competes with the actors for CPUs
    # (with ray.data.range on a 2-CPU node, 2 actors holding both CPUs starve the read forever).
    blocks = [np.arange(lo, min(size, lo + batch_size), dtype=np.int64) for lo in range(0, size, batch_size)]
    pipeline = ray.data.from_numpy(blocks).map_batches(
        _IndexActor,
        fn_constructor_args=(module_ref, dataset, spec, list(layers), k),
        batch_size=batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=1,
    )
    start, done = time.perf_counter(), 0
    for row in pipeline.iter_rows():
        if should_stop is not None and should_stop():
            raise Cancelled("index build cancelled")
        outcome, skipped, count = pickle.loads(row["payload"])
        counters["skipped"] += skipped
        done += count
        if outcome is not None:
            acc.add(outcome)
        if on_batch is not None:
            elapsed = time.perf_counter() - start
            on_batch(IndexProgress(done, size, done / elapsed if elapsed > 0 else 0.0, elapsed))
    return acc.result(), acc.present
