"""models.datasets: idx parsing against an independent writer, search order, errors, the real files."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from models import datasets
from models.datasets import DatasetError, DatasetNotFound, class_names, load_dataset, read_idx
from models.lenet import FASHION_MNIST_CLASSES, FASHION_MNIST_MEAN, FASHION_MNIST_STD, MNIST_CLASSES
from tests.conftest import require_fashion_mnist

SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
_TYPE_CODES = {
    np.dtype("u1"): 0x08,
    np.dtype("i1"): 0x09,
    np.dtype("i2"): 0x0B,
    np.dtype("i4"): 0x0C,
    np.dtype("f4"): 0x0D,
    np.dtype("f8"): 0x0E,
}


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode an array in idx format with struct, independently of the reader under test."""
    code = _TYPE_CODES[array.dtype]
    header = struct.pack(">BBBB", 0, 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, array: np.ndarray, *, gz: bool = True) -> Path:
    data = idx_bytes(array)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def write_split(directory: Path, prefix: str, images: np.ndarray, labels: np.ndarray, *, gz: bool = True) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    ext = ".gz" if gz else ""
    write_idx(directory / f"{prefix}-images-idx3-ubyte{ext}", images, gz=gz)
    write_idx(directory / f"{prefix}-labels-idx1-ubyte{ext}", labels, gz=gz)


def synthetic(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n, dtype=np.uint8)


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test here may reach the network: the download fallback fails as it would offline."""

    def offline(info: object, root: Path) -> None:
        raise OSError("network unreachable (test)")

    monkeypatch.setattr(datasets, "_download", offline)
    monkeypatch.delenv(datasets.DATA_DIR_ENV, raising=False)


# ---- idx parsing -------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["u1", "i1", "i2", "i4", "f4", "f8"])
@pytest.mark.parametrize("gz", [True, False])
def test_read_idx_round_trips_every_type(tmp_path: Path, dtype: str, gz: bool) -> None:
    rng = np.random.default_rng(1)
    array = (rng.standard_normal((3, 4, 5)) * 100).astype(dtype)
    got = read_idx(write_idx(tmp_path / "a.idx", array, gz=gz))
    assert got.dtype == np.dtype(dtype) and got.dtype.isnative
    np.testing.assert_array_equal(got, array)


def test_read_idx_one_dimensional_labels(tmp_path: Path) -> None:
    labels = np.array([9, 0, 0, 3], dtype=np.uint8)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "l.gz", labels)), labels)


def test_truncated_payload_is_named(tmp_path: Path) -> None:
    data = idx_bytes(np.zeros((10, 28, 28), np.uint8))[:-100]
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(data))
    with pytest.raises(DatasetError, match=r"truncated.*7740 bytes.*needs 7840") as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_trailing_bytes_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "x"
    path.write_bytes(idx_bytes(np.zeros(4, np.uint8)) + b"\0")
    with pytest.raises(DatasetError, match="trailing bytes"):
        read_idx(path)


def test_truncated_gzip_stream_is_a_dataset_error(tmp_path: Path) -> None:
    blob = gzip.compress(idx_bytes(synthetic(50)[0]))
    path = tmp_path / "cut.gz"
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DatasetError, match="gzip") as info:
        read_idx(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    "header",
    [b"\x01\x00\x08\x01", b"\x00\x00\x07\x01", b"PK\x03\x04"],
    ids=["nonzero-lead", "unknown-type", "zip-file"],
)
def test_bad_magic_is_refused(tmp_path: Path, header: bytes) -> None:
    path = tmp_path / "bad"
    path.write_bytes(header + struct.pack(">I", 1) + b"\0")
    with pytest.raises(DatasetError, match=f"magic number 0x{header.hex()}"):
        read_idx(path)


def test_too_short_and_truncated_header(tmp_path: Path) -> None:
    (tmp_path / "short").write_bytes(b"\0\0")
    with pytest.raises(DatasetError, match="too short"):
        read_idx(tmp_path / "short")
    (tmp_path / "hdr").write_bytes(b"\0\0\x08\x03" + struct.pack(">I", 5))
    with pytest.raises(DatasetError, match="truncated header"):
        read_idx(tmp_path / "hdr")


# ---- load_dataset --------------------------------------------------------------------------------


def test_load_dataset_from_data_dir(tmp_path: Path) -> None:
    images, labels = synthetic(7)
    write_split(tmp_path, "t10k", images, labels)
    got_images, got_labels = load_dataset("fashion-mnist", "test", tmp_path)
    assert got_images.dtype == np.uint8 and got_images.shape == (7, 28, 28)
    assert got_labels.dtype == np.int64 and got_labels.shape == (7,)
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)
    got_images[0, 0, 0] = 1  # the caller owns a writable copy


def test_load_dataset_accepts_uncompressed_and_torchvision_layout(tmp_path: Path) -> None:
    images, labels = synthetic(5)
    write_split(tmp_path / "MNIST" / "raw", "train", images, labels, gz=False)
    got_images, _ = load_dataset("mnist", "train", tmp_path)
    np.testing.assert_array_equal(got_images, images)


def test_env_var_and_explicit_dir_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_dir, arg_dir = tmp_path / "env", tmp_path / "arg"
    write_split(env_dir, "t10k", *synthetic(3, seed=1))
    write_split(arg_dir, "t10k", *synthetic(4, seed=2))
    monkeypatch.setenv(datasets.DATA_DIR_ENV, str(env_dir))
    assert len(load_dataset("fashion-mnist", "test")[0]) == 3
    assert len(load_dataset("fashion-mnist", "test", arg_dir)[0]) == 4


def test_split_selects_the_right_files(tmp_path: Path) -> None:
    write_split(tmp_path, "train", *synthetic(6, seed=1))
    write_split(tmp_path, "t10k", *synthetic(2, seed=2))
    assert len(load_dataset("fashion-mnist", "train", tmp_path)[0]) == 6
    assert len(load_dataset("fashion-mnist", "test", tmp_path)[0]) == 2


def test_mismatched_counts_are_refused(tmp_path: Path) -> None:
    images, labels = synthetic(5)
    write_split(tmp_path, "t10k", images, labels[:4])
    with pytest.raises(DatasetError, match="5 images but .* 4 labels"):
        load_dataset("fashion-mnist", "test", tmp_path)


def test_wrong_image_shape_and_label_range_are_refused(tmp_path: Path) -> None:
    write_split(tmp_path / "a", "t10k", np.zeros((2, 27, 28), np.uint8), np.zeros(2, np.uint8))
    with pytest.raises(DatasetError, match=r"\(N, 28, 28\).*\(2, 27, 28\)"):
        load_dataset("fashion-mnist", "test", tmp_path / "a")
    write_split(tmp_path / "b", "t10k", np.zeros((2, 28, 28), np.uint8), np.array([3, 10], np.uint8))
    with pytest.raises(DatasetError, match=r"label 10 out of range \[0, 10\)"):
        load_dataset("fashion-mnist", "test", tmp_path / "b")


def test_corrupt_real_named_file_surfaces_through_load_dataset(tmp_path: Path) -> None:
    images, labels = synthetic(20)
    write_split(tmp_path, "train", images, labels)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-30])
    with pytest.raises(DatasetError, match="train-images-idx3-ubyte.gz"):
        load_dataset("fashion-mnist", "train", tmp_path)


def test_not_found_says_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFound) as info:
        load_dataset("fashion-mnist", "train", tmp_path, download=False)
    message = str(info.value)
    assert "apt-get install dataset-fashion-mnist" in message
    assert "--data-dir" in message and datasets.DATA_DIR_ENV in message
    assert str(tmp_path) in message and "train-images-idx3-ubyte.gz" in message
    assert isinstance(info.value, FileNotFoundError)


def test_failed_download_is_reported(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFound, match=r"torchvision download into .* failed \(OSError: network unreachable"):
        load_dataset("mnist", "test", tmp_path / "empty")


def test_successful_download_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    images, labels = synthetic(3)
    calls: list[Path] = []

    def fake_download(info: datasets._DatasetInfo, root: Path) -> None:
        calls.append(root)
        write_split(root / info.torchvision_class / "raw", "t10k", images, labels)

    monkeypatch.setattr(datasets, "_download", fake_download)
    got_images, _ = load_dataset("fashion-mnist", "test", tmp_path)
    assert calls == [tmp_path]
    np.testing.assert_array_equal(got_images, images)


def test_unknown_name_or_split_lists_choices() -> None:
    with pytest.raises(ValueError, match="fashion-mnist.*mnist"):
        load_dataset("cifar10", "train")
    with pytest.raises(ValueError, match="test.*train"):
        load_dataset("fashion-mnist", "validation")


def test_class_names() -> None:
    assert class_names("fashion-mnist") == FASHION_MNIST_CLASSES
    assert class_names("fashion-mnist")[9] == "Ankle boot"
    assert class_names("mnist") == MNIST_CLASSES
    with pytest.raises(ValueError, match="unknown dataset"):
        class_names("emnist")


# ---- the real files ------------------------------------------------------------------------------


def test_real_fashion_mnist_splits() -> None:
    require_fashion_mnist("train")
    require_fashion_mnist("t10k")
    train_x, train_y = load_dataset("fashion-mnist", "train", download=False)
    test_x, test_y = load_dataset("fashion-mnist", "test", download=False)
    assert train_x.shape == (60000, 28, 28) and train_y.shape == (60000,)
    assert test_x.shape == (10000, 28, 28) and test_y.shape == (10000,)
    # Fashion-MNIST is balanced: 6000 / 1000 images per class.
    np.testing.assert_array_equal(np.bincount(train_y, minlength=10), np.full(10, 6000))
    np.testing.assert_array_equal(np.bincount(test_y, minlength=10), np.full(10, 1000))
    # The normalization constants inside the served model are this data's statistics.
    pixels = train_x.astype(np.float64) / 255.0
    assert pixels.mean() == pytest.approx(FASHION_MNIST_MEAN, abs=5e-4)
    assert pixels.std() == pytest.approx(FASHION_MNIST_STD, abs=5e-4)
    # Light object on a dark background: the border is mostly black.
    assert np.median(train_x[:, 0, :]) == 0
