"""The activation index on disk: built once per (weights, dataset, preprocessing, layers, k), then queried.

An index lives under the index directory (``--index-dir``, ``INTERP_INDEX_DIR``; default
``$XDG_CACHE_HOME/cnn-interp/index``) in a folder named ``<base>-<key>``: ``base`` hashes the
model's weights SHA-256, the dataset's manifest hash and the model's preprocessing, ``key`` those
and the layers and k. It holds ``meta.json`` and ``index.npz`` (per layer: the top-k values,
image ids, y, x of every channel, and the per-image features as float32). The files are written
to a temporary folder and renamed into place at the end, so a cancelled or failed build leaves
nothing that could be served; a changed dataset or new weights give a new base, so a stale index
is never found. Two concurrent builds of one key in one server: the second waits and reuses.

The pass itself is :func:`interp.dataset.index.build_index` (the local engine) or, with
``engine="ray"``, :mod:`server.stores.ray` (same batches, same merge). The offline command
``interp-index MODEL DATASET`` calls :func:`build` here and writes the same files.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import resource
import shutil
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from interp.dataset.index import IndexProgress, LayerIndex, NothingIndexed, build_index
from interp.errors import Cancelled
from models.dataset_registry import Dataset, IdxDataset
from models.errors import shown
from models.loaded import LoadedModel
from models.registry import Preprocessing
from server.errors import FailedPrecondition
from server.stores.datasets import fast_path, iter_batches, preprocess_ids
from server.stores.ray import build_index_ray

FORMAT_VERSION = 1
DEFAULT_K = 64
BATCH_PIXELS = 64 * 256 * 256  # the default max_batch_pixels: 83 images at 224 px
MAX_BATCH = 2048


def default_batch(side: int) -> int:
    """Images per forward pass of an index build for inputs of ``side`` px: as many as
    ``BATCH_PIXELS`` allow, at most ``MAX_BATCH`` (LeNet: 2048, ImageNet models: 83). Larger
    batches spread the pass's fixed cost per batch (hooks, candidate selection) over more images;
    the index does not depend on the batch size."""
    return max(1, min(MAX_BATCH, BATCH_PIXELS // (side * side)))


class IndexUnavailable(FailedPrecondition):
    """No index for the query (build it first), or the index directory cannot be written."""


def default_index_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cnn-interp" / "index"


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def base_key(weights_sha256: str, manifest: str, preprocessing: Preprocessing) -> str:
    return _digest({"v": FORMAT_VERSION, "w": weights_sha256, "d": manifest, "p": dataclasses.asdict(preprocessing)})


def full_key(base: str, layers: Sequence[str], k: int) -> str:
    return _digest({"base": base, "layers": list(layers), "k": int(k)})


@dataclass
class StoredIndex:
    """A loaded index: its metadata and, per layer, the arrays."""

    folder: str
    meta: dict[str, Any]
    arrays: dict[str, np.ndarray]

    @property
    def k(self) -> int:
        return int(self.meta["k"])

    @property
    def layers(self) -> list[str]:
        return list(self.meta["layers"])

    def top(self, layer: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return tuple(self.arrays[f"{layer}|{part}"] for part in ("values", "ids", "ys", "xs"))  # type: ignore[return-value]

    def features(self, layer: str) -> np.ndarray:
        return self.arrays[f"{layer}|features"]

    @property
    def present(self) -> np.ndarray:
        return self.arrays["present"]


def rss_mb() -> float:
    """This process's resident set now, MB."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KB on Linux


def _build_peak(peak_before: float, sampled: float) -> float:
    """The resident set's peak during a build: the process's peak if the build raised it, else the
    largest resident set seen between batches (an earlier call's peak says nothing of this build)."""
    peak_after = peak_rss_mb()
    return peak_after if peak_after > peak_before else max(sampled, rss_mb())


def served_model(model: LoadedModel) -> dict[str, Any]:
    """The ``model_name``, ``weights_sha256`` and ``spec`` of :meth:`IndexStore.build` for a served model."""
    return {"model_name": model.spec.name, "weights_sha256": model.weights.sha256, "spec": model.spec.preprocessing}


class IndexStore:
    """Indexes under one directory: find, load (a few kept in memory), build with one builder per key."""

    def __init__(self, root: Path | None = None, cache_size: int = 4) -> None:
        self.root = Path(root) if root is not None else default_index_dir()
        self._lock = threading.Lock()
        self._building: dict[str, threading.Lock] = {}
        self._cache: OrderedDict[str, StoredIndex] = OrderedDict()
        self._cache_size = cache_size

    # -- lookup ------------------------------------------------------------------------------

    def candidates(self, base: str) -> list[Path]:
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.glob(f"{base[:16]}-*") if (p / "meta.json").is_file())

    def find(self, base: str, layer: str, k: int) -> StoredIndex | None:
        """A complete index of this base holding ``layer`` with at least ``k`` entries per channel."""
        for folder in self.candidates(base):
            try:
                meta = json.loads((folder / "meta.json").read_text())
            except (OSError, ValueError):
                continue
            if meta.get("base") == base and layer in meta.get("layers", ()) and int(meta.get("k", 0)) >= k:
                return self.load(folder)
        return None

    def load(self, folder: Path) -> StoredIndex:
        name = folder.name
        with self._lock:
            if name in self._cache:
                self._cache.move_to_end(name)
                return self._cache[name]
        meta = json.loads((folder / "meta.json").read_text())
        with np.load(folder / "index.npz") as data:
            arrays = {key: data[key] for key in data.files}
        stored = StoredIndex(name, meta, arrays)
        with self._lock:
            self._cache[name] = stored
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return stored

    # -- build -------------------------------------------------------------------------------

    def check_writable(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = self.root / f".probe-{uuid.uuid4().hex}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise IndexUnavailable(
                f"the server's index directory is not writable ({type(exc).__name__}: {exc.strerror or exc}); "
                "the operator sets --index-dir / INTERP_INDEX_DIR"
            ) from None

    def build(
        self,
        module: nn.Module,
        *,
        model_name: str,
        weights_sha256: str,
        spec: Preprocessing,
        dataset: Dataset,
        layers: Sequence[str],
        k: int,
        batch_size: int,
        device: str = "cpu",
        engine: str = "local",
        ray_address: str | None = None,
        on_progress: Callable[[IndexProgress], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> tuple[StoredIndex, bool, dict[str, float]]:
        """Build (or reuse) the index; returns it, whether it was reused, and the build's figures."""
        manifest = dataset.manifest()
        base = base_key(weights_sha256, manifest, spec)
        key = full_key(base, layers, k)
        folder = self.root / f"{base[:16]}-{key[:16]}"
        with self._lock:
            gate = self._building.setdefault(key, threading.Lock())
        while not gate.acquire(timeout=0.1):  # another request builds this key: wait, then reuse
            if should_stop is not None and should_stop():
                raise Cancelled("cancelled while waiting for a concurrent build of the same index")
        try:
            if (folder / "meta.json").is_file():
                return self.load(folder), True, {}
            covering = self.find(base, layers[0], k) if layers else None
            if covering is not None and set(layers) <= set(covering.layers):
                return covering, True, {}  # the same layers in another order, or fewer of them
            self.check_writable()
            counters: dict[str, int] = {"skipped": 0}
            rss_before, peak_before = rss_mb(), peak_rss_mb()
            sampled = [rss_before]  # the resident set after each batch: the build's own peak when the
            # process's lifetime peak (ru_maxrss) came from earlier work and did not move

            def on_batch(progress: IndexProgress) -> None:
                sampled[0] = max(sampled[0], rss_mb())
                if on_progress is not None:
                    on_progress(progress)

            started = time.perf_counter()
            size = dataset.size
            try:
                if engine == "ray":
                    index, present = build_index_ray(
                        module, dataset, spec, list(layers), k, batch_size, address=ray_address,
                        counters=counters, on_batch=on_batch, should_stop=should_stop,
                    )  # fmt: skip
                elif engine == "local":
                    index, present = build_index(
                        module,
                        iter_batches(dataset, spec, batch_size, device, counters),
                        list(layers),
                        k,
                        size,
                        on_batch=on_batch,
                        should_stop=should_stop,
                    )
                else:
                    raise ValueError(f"unknown engine {engine!r}; valid: local, ray")
            except NothingIndexed:
                raise NothingIndexed(
                    f"dataset {shown(dataset.name)}: no image could be indexed; {counters['skipped']} of its "
                    f"{size} files were skipped as unreadable or not convertible to {spec.channels} channel(s)"
                ) from None
            seconds = time.perf_counter() - started
            figures = {
                "seconds": seconds,
                "images_per_s": int(present.sum()) / seconds if seconds > 0 else 0.0,
                "peak_rss_growth_mb": max(0.0, _build_peak(peak_before, sampled[0]) - rss_before),
                "skipped": float(counters["skipped"]),
            }
            meta = {
                "format": FORMAT_VERSION,
                "base": base,
                "key": key,
                "model": model_name,
                "weights_sha256": weights_sha256,
                "dataset": dataset.name,
                "manifest": manifest,
                "preprocessing": dataclasses.asdict(spec),
                "layers": list(layers),
                "k": int(k),
                "size": size,
                "indexed": int(present.sum()),
                "shapes": {name: list(layer.shape) for name, layer in index.items()},
                "engine": engine,
                "created": time.time(),
                **figures,
            }
            self._write(folder, meta, index, present.numpy())
            return self.load(folder), False, figures
        finally:
            gate.release()

    def _write(self, folder: Path, meta: dict[str, Any], index: dict[str, LayerIndex], present: np.ndarray) -> None:
        tmp = self.root / f".tmp-{uuid.uuid4().hex}"
        tmp.mkdir(parents=True)
        try:
            arrays: dict[str, np.ndarray] = {"present": present}
            for name, layer in index.items():
                arrays[f"{name}|values"] = layer.top.values.numpy()
                arrays[f"{name}|ids"] = layer.top.ids.numpy()
                arrays[f"{name}|ys"] = layer.top.ys.numpy()
                arrays[f"{name}|xs"] = layer.top.xs.numpy()
                arrays[f"{name}|features"] = layer.features.numpy()
            np.savez(tmp / "index.npz", **arrays)  # type: ignore[arg-type]
            (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
            try:
                os.rename(tmp, folder)
            except OSError:
                if not (folder / "meta.json").is_file():  # another process won the race: keep theirs
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def images_by_id(dataset: Dataset, spec: Preprocessing, ids: Sequence[int]) -> list[torch.Tensor]:
    """Preprocessed (C, H, W) images by id, exactly as the pass saw them."""
    if not ids:
        return []
    if isinstance(dataset, IdxDataset) and fast_path(spec):
        raw = torch.from_numpy(dataset.arrays()[0][np.asarray(ids, dtype=np.int64)])
        return list(raw.to(torch.float32).div_(255.0).unsqueeze(1))
    kept, images = preprocess_ids(dataset, spec, ids)
    if kept != list(ids):
        missing = sorted(set(ids) - set(kept))
        raise IndexUnavailable(f"{dataset.name}: images {missing[:5]} can no longer be read; rebuild the index")
    return images
