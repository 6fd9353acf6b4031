"""Fashion-MNIST and MNIST from their idx files (LeCun's format), read with numpy alone.

Where the files are looked for, first match wins:
1. ``data_dir`` passed by the caller (the trainer's ``--data-dir``);
2. the ``INTERP_DATA_DIR`` environment variable;
3. the dataset's system directory: ``/usr/share/datasets/fashion-mnist`` for Fashion-MNIST (Debian
   package ``dataset-fashion-mnist``), ``/usr/share/datasets/mnist`` for MNIST.
In each directory both the files themselves and torchvision's layout (``<dir>/FashionMNIST/raw``,
``<dir>/MNIST/raw``) are accepted, gzipped (``train-images-idx3-ubyte.gz``) or not. When none has
the files and ``download`` is true, torchvision's downloader is tried (into ``data_dir`` if given,
else the user cache directory); offline this fails, and :class:`DatasetNotFound` says how to
install the files.

Nothing is cached and importing this module has no side effects: each call reads the files
(about half a second for the 60k training split), so a long-lived caller keeps what it needs.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.lenet import FASHION_MNIST_CLASSES, MNIST_CLASSES

DATA_DIR_ENV = "INTERP_DATA_DIR"

# idx type codes (third magic byte) -> big-endian numpy dtype.
_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_SPLIT_PREFIX: dict[str, str] = {"train": "train", "test": "t10k"}


@dataclass(frozen=True)
class _DatasetInfo:
    classes: tuple[str, ...]
    system_dir: Path
    torchvision_class: str  # also the folder name of torchvision's layout: <root>/<class>/raw
    debian_package: str | None


_DATASETS: dict[str, _DatasetInfo] = {
    "fashion-mnist": _DatasetInfo(
        FASHION_MNIST_CLASSES,
        Path("/usr/share/datasets/fashion-mnist"),
        "FashionMNIST",
        "dataset-fashion-mnist",
    ),
    "mnist": _DatasetInfo(MNIST_CLASSES, Path("/usr/share/datasets/mnist"), "MNIST", None),
}
DATASET_NAMES: tuple[str, ...] = tuple(_DATASETS)


class DatasetError(ValueError):
    """A dataset file exists but is not a valid idx file of the expected kind (the message names it)."""


class DatasetNotFound(FileNotFoundError):
    """The dataset's files are in none of the searched places; the message lists them and how to fix it."""


def class_names(name: str) -> tuple[str, ...]:
    """The ten class names of ``name`` ("fashion-mnist" or "mnist"), in label order."""
    return _info(name).classes


def read_idx(path: Path | str) -> np.ndarray:
    """Read one idx file (optionally gzipped, detected from its content, not its name).

    Format: 2 zero bytes, a type code, the number of dimensions D, D big-endian uint32 sizes, then
    the values big-endian in C order.

    Args:
        path: The file.

    Returns:
        The array, in native byte order, with the shape the header declares.

    Raises:
        DatasetError: Bad magic number, unknown type code, truncated or over-long payload, or a
            corrupt gzip stream. The message names the file and what was expected.
        FileNotFoundError: ``path`` does not exist.
    """
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, gzip.BadGzipFile) as err:
            raise DatasetError(f"{path}: corrupt or truncated gzip stream ({err})") from err
    if len(raw) < 4:
        raise DatasetError(f"{path}: {len(raw)} bytes, too short for an idx header (4 bytes at least)")
    zero, type_code, ndim = int.from_bytes(raw[:2], "big"), raw[2], raw[3]
    if zero != 0 or type_code not in _IDX_DTYPES:
        raise DatasetError(
            f"{path}: bad idx magic number 0x{raw[:4].hex()}; expected 0x0000TTDD with type code TT in "
            f"{sorted(f'0x{c:02x}' for c in _IDX_DTYPES)} (0x08 = unsigned byte) and DD dimensions"
        )
    header_len = 4 + 4 * ndim
    if len(raw) < header_len:
        raise DatasetError(
            f"{path}: truncated header: {len(raw)} bytes, expected {header_len} for {ndim} dimensions"
        )
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = _IDX_DTYPES[type_code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    actual = len(raw) - header_len
    if actual != expected:
        kind = "truncated" if actual < expected else "trailing bytes"
        raise DatasetError(
            f"{path}: {kind}: payload is {actual} bytes, "
            f"header shape {shape} of {dtype.name} needs {expected}"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header_len).reshape(shape).astype(dtype.newbyteorder("="))


def load_dataset(
    name: str, split: str, data_dir: Path | str | None = None, *, download: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Load one split of Fashion-MNIST or MNIST (the dataset's own 60k train / 10k test split).

    Args:
        name: "fashion-mnist" or "mnist".
        split: "train" or "test".
        data_dir: Directory holding the idx files; None searches ``INTERP_DATA_DIR`` then the
            system directory (see the module docstring).
        download: When the files are nowhere, try torchvision's download (needs a network).

    Returns:
        ``(images, labels)``: images uint8 (N, 28, 28), 0 = black background; labels int64 (N,)
        in [0, 10).

    Raises:
        ValueError: Unknown ``name`` or ``split`` (the message lists the valid ones).
        DatasetNotFound: No files found and no download possible; the message says how to fix it.
        DatasetError: A file is corrupt, or images and labels do not match.
    """
    info = _info(name)
    if split not in _SPLIT_PREFIX:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(_SPLIT_PREFIX)}")
    searched = _search_dirs(info, data_dir)
    found = _find_files(searched, split)
    if found is None:
        tried_download = ""
        if download:
            target = Path(data_dir) if data_dir is not None else _cache_dir()
            try:
                _download(info, target)
            except Exception as err:  # any failure means "not available"; reported below
                tried_download = f"; torchvision download into {target} failed ({type(err).__name__}: {err})"
            else:
                searched = [*searched, target / info.torchvision_class / "raw"]
                found = _find_files(searched, split)
        if found is None:
            raise DatasetNotFound(_not_found_message(name, info, split, searched) + tried_download)
    images_path, labels_path = found
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DatasetError(
            f"{images_path}: expected uint8 images (N, 28, 28), got {images.dtype} {images.shape}"
        )
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise DatasetError(f"{labels_path}: expected uint8 labels (N,), got {labels.dtype} {labels.shape}")
    if len(images) != len(labels):
        raise DatasetError(
            f"{images_path} has {len(images)} images but {labels_path} has {len(labels)} labels"
        )
    if labels.size and int(labels.max()) >= len(info.classes):
        raise DatasetError(f"{labels_path}: label {int(labels.max())} out of range [0, {len(info.classes)})")
    return images, labels.astype(np.int64)


def _info(name: str) -> _DatasetInfo:
    if name not in _DATASETS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {list(_DATASETS)}")
    return _DATASETS[name]


def _search_dirs(info: _DatasetInfo, data_dir: Path | str | None) -> list[Path]:
    if data_dir is not None:
        roots = [Path(data_dir)]
    elif os.environ.get(DATA_DIR_ENV):
        roots = [Path(os.environ[DATA_DIR_ENV])]
    else:
        roots = [info.system_dir]
    return [d for root in roots for d in (root, root / info.torchvision_class / "raw")]


def _find_files(dirs: list[Path], split: str) -> tuple[Path, Path] | None:
    prefix = _SPLIT_PREFIX[split]
    for d in dirs:
        pair = []
        for stem in (f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"):
            hits = [d / (stem + ext) for ext in ("", ".gz") if (d / (stem + ext)).is_file()]
            if not hits:
                break
            pair.append(hits[0])
        else:
            return pair[0], pair[1]
    return None


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cnn-interp" / "datasets"


def _download(info: _DatasetInfo, root: Path) -> None:
    import torchvision.datasets  # deferred: only this fallback needs torchvision

    dataset_class = getattr(torchvision.datasets, info.torchvision_class)
    dataset_class(root=str(root), train=True, download=True)  # fetches both splits


def _not_found_message(name: str, info: _DatasetInfo, split: str, searched: list[Path]) -> str:
    prefix = _SPLIT_PREFIX[split]
    fixes = []
    if info.debian_package:
        fixes.append(
            f"install the Debian package (`apt-get install {info.debian_package}`; "
            f"its files go to {info.system_dir})"
        )
    fixes.append(
        f"pass --data-dir DIR or set {DATA_DIR_ENV}=DIR, where DIR holds {prefix}-images-idx3-ubyte.gz and "
        f"{prefix}-labels-idx1-ubyte.gz (gzipped or not)"
    )
    searched_list = ", ".join(str(d) for d in searched)
    return f"{name} {split} split not found; searched {searched_list}. To fix: " + ", or ".join(fixes)
