"""The training sets of the models trained in this repo, read once per server and kept in memory.

They give ``VisualizeFilter``'s ``start_from_mean`` its start image and ``InterpolateFeatures``
its class-name attribute sets.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from models.datasets import load_dataset
from models.loaded import LoadedModel


class TrainingSets:
    """``(images uint8, labels)`` of a dataset's ``train`` split, loaded on first use."""

    def __init__(self, data_dir: Path | None = None) -> None:
        self._data_dir = data_dir  # None: INTERP_DATA_DIR, else the system's directory
        self._sets: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._lock = threading.Lock()

    def get(self, dataset: str) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            if dataset not in self._sets:
                self._sets[dataset] = load_dataset(dataset, "train", self._data_dir, download=False)
            return self._sets[dataset]

    def mean_image(self, model: LoadedModel, size: int) -> torch.Tensor:
        """The start image of ``start_from_mean``: (C, size, size) in [0, 1].

        A model trained in-repo: the mean of its training set's images (read once). Others
        (ImageNet models): their normalization's mean colour, the mean of ImageNet's pixels.
        """
        dataset = model.spec.training_dataset
        if dataset is None:
            mean = torch.tensor(model.spec.preprocessing.mean, dtype=torch.float32)
            return mean.view(-1, 1, 1).expand(len(mean), size, size).clone()
        images = self.get(dataset)[0]
        mean = torch.from_numpy(images.mean(axis=0, dtype=np.float64).astype(np.float32) / 255.0)
        mean = mean[None, None] if mean.dim() == 2 else mean.permute(2, 0, 1)[None]
        if mean.shape[-1] != size:
            mean = F.interpolate(mean, size=(size, size), mode="bilinear", align_corners=False)
        return mean[0]

    def class_images(self, dataset: str, index: int, set_size: int, seed: int) -> torch.Tensor:
        """``set_size`` images of class ``index`` drawn (seeded) from ``dataset``: (N, 1, H, W) in [0, 1]."""
        images, labels = self.get(dataset)
        candidates = np.flatnonzero(labels == index)
        rng = np.random.default_rng(seed)
        chosen = rng.choice(candidates, size=min(set_size, len(candidates)), replace=False)
        return torch.from_numpy(images[np.sort(chosen)].astype(np.float32) / 255.0).unsqueeze(1)
