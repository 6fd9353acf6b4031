"""The datasets a server can index: built-in Fashion-MNIST splits and operator image folders.

Requests name a dataset; no request field is ever a server path. Built in:
``fashion-mnist-train`` (60k), ``fashion-mnist-test`` (10k) and ``fashion-mnist-all`` (both, 70k:
the training images then the test images, so test image i is id 60000 + i), read from the idx
files (:mod:`models.datasets`). Operators add image folders with ``--dataset NAME=DIR``
(``INTERP_DATASETS=NAME=DIR,...``): every PNG/JPEG/BMP/WebP/TIFF file below DIR, in sorted path
order (that order is the image id); when the files sit in sub-folders, the first-level sub-folder
is the class label.

Every dataset has a manifest hash: the idx files' SHA-256, or, for a folder, a SHA-256 over each
file's relative path, size and modification time. An index is keyed by it, so editing a folder
makes its old index stale (never served).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from models.datasets import _find_files, _info, _search_dirs, class_names, load_dataset
from models.errors import shown

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
BUILT_IN: dict[str, tuple[str, tuple[str, ...]]] = {
    "fashion-mnist-train": ("fashion-mnist", ("train",)),
    "fashion-mnist-test": ("fashion-mnist", ("test",)),
    "fashion-mnist-all": ("fashion-mnist", ("train", "test")),
}


class UnknownDataset(KeyError):
    """Not a registered dataset; the message lists the registered ones."""


class Dataset:
    """One indexable dataset.

    Attributes:
        name: the name requests use.
        kind: "idx" (built in) or "folder".
        classes: class names, label order (empty when a folder has no class sub-folders).
    """

    def __init__(self, name: str, kind: str, classes: tuple[str, ...]) -> None:
        self.name = name
        self.kind = kind
        self.classes = classes

    @property
    def size(self) -> int:
        raise NotImplementedError

    def labels(self) -> np.ndarray:
        """(N,) int64 labels, -1 where unknown."""
        raise NotImplementedError

    def manifest(self) -> str:
        raise NotImplementedError

    def read(self, ids: Sequence[int]) -> list[np.ndarray | None]:
        """The images with these ids in their own dtype (H, W) or (H, W, C); None when unreadable."""
        raise NotImplementedError

    def native_shape(self) -> tuple[int, int, int] | None:
        """(C, H, W) of the images when they all share it (idx), or the first readable one's."""
        raise NotImplementedError


class IdxDataset(Dataset):
    """Built-in splits (one, or several one after the other), loaded on first use and kept (60k
    images are 47 MB)."""

    def __init__(self, name: str, family: str, splits: tuple[str, ...], data_dir: Path | None = None) -> None:
        super().__init__(name, "idx", class_names(family))
        self.family, self.splits, self.data_dir = family, splits, data_dir
        self._arrays: tuple[np.ndarray, np.ndarray] | None = None
        self._manifest: tuple[tuple[tuple[str, int, int], ...], str] | None = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, object]:
        # shipped to other processes (Ray workers) without the lock or the loaded arrays: each reads the files
        state = dict(self.__dict__)
        state.update(_lock=None, _arrays=None, _manifest=None)
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            if self._arrays is None:
                parts = [load_dataset(self.family, split, self.data_dir, download=False) for split in self.splits]
                if len(parts) == 1:
                    self._arrays = parts[0]
                else:
                    self._arrays = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
            return self._arrays

    @property
    def size(self) -> int:
        return int(self.arrays()[0].shape[0])

    def labels(self) -> np.ndarray:
        return self.arrays()[1]

    def manifest(self) -> str:
        found: list[Path] = []
        for split in self.splits:
            files = _find_files(_search_dirs(_info(self.family), self.data_dir), split)
            if files is None:
                load_dataset(self.family, split, self.data_dir, download=False)  # raises DatasetNotFound
                raise FileNotFoundError(f"{self.name}: idx files not found")
            found.extend(files)
        stats = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in found)
        with self._lock:
            if self._manifest is None or self._manifest[0] != stats:
                digest = hashlib.sha256()
                for path in found:
                    digest.update(hashlib.sha256(path.read_bytes()).digest())
                self._manifest = (stats, "idx:" + digest.hexdigest())
            return self._manifest[1]

    def read(self, ids: Sequence[int]) -> list[np.ndarray | None]:
        images = self.arrays()[0]
        return [images[int(i)] for i in ids]

    def batch(self, start: int, stop: int) -> np.ndarray:
        """Images start..stop-1 as one (B, 28, 28) uint8 array (the fast path of the pass)."""
        return self.arrays()[0][start:stop]

    def native_shape(self) -> tuple[int, int, int]:
        return (1, 28, 28)


class FolderDataset(Dataset):
    """Image files below a directory, sorted by relative path; class = first-level sub-folder."""

    def __init__(self, name: str, root: Path) -> None:
        if not root.is_dir():
            raise ValueError(f"dataset {name}: {root} is not a directory")
        self.root = root
        files = sorted(
            p.relative_to(root) for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        )
        self.files = files
        in_folders = bool(files) and all(len(p.parts) > 1 for p in files)
        classes = tuple(sorted({p.parts[0] for p in files})) if in_folders else ()
        super().__init__(name, "folder", classes)
        lookup = {c: i for i, c in enumerate(classes)}
        self._labels = np.array([lookup[p.parts[0]] if classes else -1 for p in files], dtype=np.int64)

    @property
    def size(self) -> int:
        return len(self.files)

    def labels(self) -> np.ndarray:
        return self._labels

    def manifest(self) -> str:
        digest = hashlib.sha256()
        for rel in self.files:
            path = self.root / rel
            try:
                st = path.stat()
                entry = [str(rel), st.st_size, st.st_mtime_ns]
            except OSError:
                entry = [str(rel), -1, -1]
            digest.update(json.dumps(entry).encode())
        return "folder:" + digest.hexdigest()

    def read(self, ids: Sequence[int]) -> list[np.ndarray | None]:
        import cv2  # deferred: only folder datasets decode files

        out: list[np.ndarray | None] = []
        for i in ids:
            try:
                data = np.fromfile(self.root / self.files[int(i)], dtype=np.uint8)
                array = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
            except (OSError, cv2.error):
                array = None
            if array is not None and array.ndim == 3:
                array = cv2.cvtColor(array, cv2.COLOR_BGRA2RGBA if array.shape[2] == 4 else cv2.COLOR_BGR2RGB)
            out.append(array)
        return out

    def native_shape(self) -> tuple[int, int, int] | None:
        for i in range(min(self.size, 16)):
            array = self.read([i])[0]
            if array is not None:
                c = 1 if array.ndim == 2 else int(array.shape[2])
                return (c, int(array.shape[0]), int(array.shape[1]))
        return None


class DatasetRegistry:
    """The built-in splits plus the operator's folders (``{name: directory}``)."""

    def __init__(self, folders: Mapping[str, Path] | None = None, data_dir: Path | None = None) -> None:
        self._datasets: dict[str, Dataset] = {
            name: IdxDataset(name, family, splits, data_dir) for name, (family, splits) in BUILT_IN.items()
        }
        for name, root in (folders or {}).items():
            if name in self._datasets:
                raise ValueError(f"dataset {name!r} is already registered (built in: {', '.join(BUILT_IN)})")
            self._datasets[name] = FolderDataset(name, Path(root))

    def names(self) -> list[str]:
        return list(self._datasets)

    def get(self, name: str) -> Dataset:
        try:
            return self._datasets[name]
        except KeyError:
            raise UnknownDataset(
                f"unknown dataset {shown(name)}; registered datasets: {', '.join(self._datasets)}"
            ) from None


__all__ = ["BUILT_IN", "Dataset", "DatasetRegistry", "FolderDataset", "IdxDataset", "UnknownDataset"]
