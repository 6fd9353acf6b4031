"""Reading a dataset's images as a model's inputs: by id, in batches, the first N.

One reading for every dataset-level view (the index pass, AttackDataset, the crops and
thumbnails): each image is preprocessed exactly as a request image would be
(:mod:`server.imaging`); an image that cannot be read or converted is skipped and counted.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from models.dataset_registry import Dataset, IdxDataset
from models.registry import Preprocessing
from server.imaging import _to_unit_float, preprocess


def fast_path(spec: Preprocessing) -> bool:
    """28x28 grayscale without resizing: an idx image's preprocessing is exactly ``uint8 / 255``."""
    return spec.channels == 1 and not spec.resize_shorter and spec.input_size == 28


def iter_batches(
    dataset: Dataset, spec: Preprocessing, batch_size: int, device: str = "cpu", counters: dict[str, int] | None = None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(ids, x) batches of the preprocessed dataset in id order; unreadable images are skipped and counted."""
    counters = counters if counters is not None else {}
    counters.setdefault("skipped", 0)
    size = dataset.size
    fast = isinstance(dataset, IdxDataset) and fast_path(spec)
    for start in range(0, size, batch_size):
        stop = min(size, start + batch_size)
        if fast:
            raw = torch.from_numpy(dataset.batch(start, stop))  # type: ignore[attr-defined]
            x = raw.to(torch.float32).div_(255.0).unsqueeze(1)
            yield torch.arange(start, stop, dtype=torch.int64), x.to(device)
            continue
        ids, images = preprocess_ids(dataset, spec, range(start, stop), counters)
        if ids:
            yield torch.tensor(ids, dtype=torch.int64), torch.stack(images).to(device)


def load_first(dataset: Dataset, spec: Preprocessing, limit: int) -> tuple[list[int], torch.Tensor, int]:
    """The first ``limit`` images (ids 0..limit-1) preprocessed as the model's input, in one tensor.

    Returns ``(ids kept, x (N, C, H, W) float32 in [0, 1], skipped)``; unreadable or unconvertible
    images are skipped and counted (the same reading as the index pass, :func:`iter_batches`).
    """
    stop = min(limit, dataset.size)
    if isinstance(dataset, IdxDataset) and fast_path(spec):
        raw = torch.from_numpy(dataset.batch(0, stop))
        return list(range(stop)), raw.to(torch.float32).div_(255.0).unsqueeze(1), 0
    counters = {"skipped": 0}
    ids, images = preprocess_ids(dataset, spec, range(stop), counters)
    c, side = spec.channels, spec.input_size
    x = torch.stack(images) if images else torch.empty((0, c, side, side))
    return ids, x, counters["skipped"]


def preprocess_ids(
    dataset: Dataset, spec: Preprocessing, ids: Sequence[int], counters: dict[str, int] | None = None
) -> tuple[list[int], list[torch.Tensor]]:
    """Read and preprocess images by id exactly as a request image would be (server.imaging)."""
    kept, images = [], []
    for i, array in zip(ids, dataset.read(list(ids)), strict=True):
        try:
            if array is None:
                raise ValueError("unreadable")
            images.append(torch.from_numpy(preprocess(_to_unit_float(array), spec)))
            kept.append(int(i))
        except Exception:  # noqa: BLE001 - an unreadable or unconvertible file is skipped and counted, never fatal
            if counters is not None:
                counters["skipped"] = counters.get("skipped", 0) + 1
    return kept, images
