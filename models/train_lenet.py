"""Train a served LeNet on the full Fashion-MNIST (or MNIST) and write the checkpoint the registry serves.

Usage: ``interp-train [--arch modern|classic]`` or ``python -m models.train_lenet [--epochs N] [--out DIR] ...``;
``--help`` lists the options, whose defaults live in :class:`TrainConfig` and, where they depend on the
architecture, in :data:`ARCHITECTURES` (both in :mod:`models.lenet_training`, with the training loop;
this module runs it and writes the checkpoint, its metadata and the command line).

Two architectures (``--arch``), one recipe:

- ``modern`` (default, served as ``lenet``): :func:`models.lenet.build_lenet`, ReLU, max-pool, batch norm;
  40 epochs with crop + flip.
- ``classic`` (served as ``lenet-classic``): :func:`models.lenet.build_lenet_classic`, the lecture's
  sigmoid / average-pool network; 20 epochs, flip only (88.16 % test accuracy with seed 0; the README
  has the figures and times).

Recipe (docs/methods.md, "The served LeNet-5", gives its sources and measured accuracy): the topology of
:func:`models.lenet.build_lenet` (batch norm after each conv), Adam with a one-cycle learning rate
stepped per batch, batch 128, and augmentation on whole batches with tensor ops: a random crop of the
image zero-padded by 2 px (0 is the black background) and a horizontal flip with probability 1/2
(clothes are left-right symmetric; for MNIST digits pass ``--no-flip``). The test split is used once,
after training: no choice is made by looking at it.

Reproducible: the model's initialisation comes from ``torch.manual_seed(seed)`` (inside
``torch.random.fork_rng``, so callers' global RNG is left alone), shuffling and augmentation draw from
their own ``torch.Generator`` seeded with ``seed``, and deterministic algorithms are enforced. The same
seed, thread count and torch build give the same bytes, hence the same sha256.

Output in ``--out`` (default: ``models/weights`` next to this file), a contract with the registry:
``<prefix>-<first 8 hex of sha256>.pt``, a plain state_dict of CPU tensors
(``torch.load(weights_only=True)``), and ``<prefix>.json`` describing it (see :func:`metadata_keys`),
where the prefix is ``lenet5_<dataset>`` for ``modern`` and ``lenet5_classic_<dataset>`` for ``classic``
(:func:`file_prefix`). Writing a new checkpoint removes the previous ``<prefix>-*.pt`` there: exactly one
is served per architecture and dataset.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import hashlib
import importlib.metadata
import io
import json
import math
import os
import sys
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from models.datasets import DATASET_NAMES, DatasetError, DatasetNotFound, class_names, load_dataset
from models.lenet_training import (
    ARCHITECTURES,
    NORMALIZATION,
    Architecture,
    TrainConfig,
    accuracy,
    augment,
    file_prefix,
    fit,
    to_pixels,
)

# The recipe's names, served from here too: train_lenet is the module users and the entry point know.
__all__ = [
    "ARCHITECTURES",
    "DEFAULT_OUT_DIR",
    "Architecture",
    "TrainConfig",
    "TrainResult",
    "accuracy",
    "augment",
    "config_from_args",
    "file_prefix",
    "main",
    "metadata_keys",
    "retrain_command",
    "save_checkpoint",
    "to_pixels",
    "train",
]

DEFAULT_OUT_DIR = Path(__file__).resolve().parent / "weights"


_METADATA_KEYS = (
    "file",
    "sha256",
    "architecture",
    "dataset",
    "classes",
    "normalization",
    "input_shape",
    "epochs",
    "seed",
    "hyperparameters",
    "augmentation",
    "num_train",
    "num_test",
    "test_accuracy",
    "train_accuracy",
    "wall_time_s",
    "train_time_s",
    "conditions",
    "torch_version",
    "created",
)


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train` wrote and measured. Accuracies are fractions in [0, 1], times in seconds."""

    checkpoint: Path
    metadata_path: Path
    metadata: dict[str, Any]


def metadata_keys() -> tuple[str, ...]:
    """The keys of the metadata JSON, in the order written."""
    return _METADATA_KEYS


def retrain_command(config: TrainConfig) -> str:
    """The ``interp-train`` command line that reproduces ``config`` (same bytes given the same torch build)."""
    parts = [
        "interp-train",
        f"--arch {config.arch}",
        f"--dataset {config.dataset}",
        f"--epochs {config.epochs}",
        f"--batch-size {config.batch_size}",
        f"--lr {config.max_lr:g}",
        f"--weight-decay {config.weight_decay:g}",
        f"--crop-padding {config.crop_padding}",
        *([] if config.hflip else ["--no-flip"]),
        f"--seed {config.seed}",
        f"--threads {config.threads}",
        *([f"--limit-train {config.limit_train}"] if config.limit_train else []),
        *([f"--limit-test {config.limit_test}"] if config.limit_test else []),
    ]
    return " ".join(parts)


def train(
    config: TrainConfig,
    *,
    data_dir: Path | None = None,
    out_dir: Path = DEFAULT_OUT_DIR,
    progress: bool = True,
    download: bool = True,
) -> TrainResult:
    """Train the LeNet ``config.arch`` names, evaluate it on the test split, write checkpoint + metadata.

    Args:
        config: Hyper-parameters and seed.
        data_dir: Directory of the idx files (None: see :func:`models.datasets.load_dataset`).
        out_dir: Where the checkpoint and its metadata go (created if missing).
        progress: Show a tqdm bar per epoch with running loss and accuracy.
        download: Allow torchvision's download when the files are nowhere.

    Returns:
        Paths written and the metadata dict (also written as JSON).

    Raises:
        DatasetNotFound, DatasetError: From loading the data.
    """
    start = time.perf_counter()
    load_before = os.getloadavg()
    train_images, train_labels = load_dataset(config.dataset, "train", data_dir, download=download)
    test_images, test_labels = load_dataset(config.dataset, "test", data_dir, download=download)
    train_x, train_y = (
        torch.from_numpy(train_images[: config.limit_train]),
        torch.from_numpy(train_labels[: config.limit_train]),
    )
    test_x, test_y = (
        torch.from_numpy(test_images[: config.limit_test]),
        torch.from_numpy(test_labels[: config.limit_test]),
    )
    mean, std = NORMALIZATION[config.dataset]
    classes = class_names(config.dataset)

    threads_before = torch.get_num_threads()
    deterministic_before = torch.are_deterministic_algorithms_enabled()
    # (a module property torch's stubs do not declare, hence getattr/setattr)
    fill_before = getattr(torch.utils.deterministic, "fill_uninitialized_memory")  # noqa: B009
    torch.set_num_threads(config.threads)
    torch.use_deterministic_algorithms(True)
    # Deterministic mode also fills every torch.empty with NaN, a debugging aid for kernels that
    # read memory they did not write (none here): ~60 fills per step, 5 % of the step, no effect
    # on any value computed.
    setattr(torch.utils.deterministic, "fill_uninitialized_memory", False)  # noqa: B010
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            model = ARCHITECTURES[config.arch].build(len(classes), mean, std)
        train_start, train_cpu_start = time.perf_counter(), time.process_time()
        last_loss, last_acc = fit(model, train_x, train_y, config, progress)
        train_time = time.perf_counter() - train_start
        # CPU seconds of this process: with 1 thread, what the training costs on a free core when
        # other jobs share the machine (wall time then mostly measures the wait for a core).
        train_cpu_time = time.process_time() - train_cpu_start
        test_acc = accuracy(model, test_x, test_y, config.eval_batch_size)
        train_acc = accuracy(model, train_x, train_y, config.eval_batch_size)
    finally:
        torch.set_num_threads(threads_before)
        torch.use_deterministic_algorithms(deterministic_before)
        setattr(torch.utils.deterministic, "fill_uninitialized_memory", fill_before)  # noqa: B010
    wall_time = time.perf_counter() - start

    layout = ARCHITECTURES[config.arch].channels_last
    metadata: dict[str, Any] = {
        "architecture": ARCHITECTURES[config.arch].record,
        "dataset": config.dataset,
        "classes": list(classes),
        "normalization": {"mean": [mean], "std": [std]},
        "input_shape": [1, 28, 28],
        "epochs": config.epochs,
        "seed": config.seed,
        "hyperparameters": {
            "batch_size": config.batch_size,
            "optimizer": "Adam",
            "weight_decay": config.weight_decay,
            "max_lr": config.max_lr,
            "schedule": "OneCycleLR, stepped per batch, cosine annealing, Adam beta1 cycled 0.95-0.85",
            "pct_start": config.pct_start,
            "div_factor": config.div_factor,
            "final_div_factor": config.final_div_factor,
            "loss": "cross_entropy",
            "steps": config.epochs * math.ceil(len(train_x) / config.batch_size),
        },
        "augmentation": {
            "random_crop": {"padding": config.crop_padding, "fill": 0.0} if config.crop_padding else None,
            "horizontal_flip": {"p": 0.5} if config.hflip else None,
        },
        "num_train": len(train_x),
        "num_test": len(test_x),
        # Fractions in [0, 1]. train_accuracy: the final model in eval mode on the un-augmented
        # training images; last_epoch_*: running values over the last epoch's augmented batches.
        "test_accuracy": round(test_acc, 6),
        "train_accuracy": round(train_acc, 6),
        "last_epoch_loss": round(last_loss, 6),
        "last_epoch_accuracy_augmented": round(last_acc, 6),
        "wall_time_s": round(wall_time, 3),  # data loading + training + both evaluations
        "train_time_s": round(train_time, 3),
        "train_cpu_time_s": round(train_cpu_time, 3),
        "conditions": {
            "threads": config.threads,
            "cpu_count": os.cpu_count(),
            "load_average_1min_at_start": round(load_before[0], 2),
            "load_average_1min_at_end": round(os.getloadavg()[0], 2),
            "deterministic_algorithms": True,
            # Modules trained channels last (see Architecture.channels_last); [] = NCHW throughout.
            "channels_last": list(layout[0]) if layout else [],
        },
        "limit_train": config.limit_train,
        "limit_test": config.limit_test,
        "command": retrain_command(config),
        "torch_version": torch.__version__,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    checkpoint, metadata_path, metadata = save_checkpoint(
        model, metadata, out_dir, file_prefix(config.dataset, config.arch)
    )
    return TrainResult(checkpoint, metadata_path, metadata)


def save_checkpoint(
    model: nn.Module, metadata: dict[str, Any], out_dir: Path, prefix: str
) -> tuple[Path, Path, dict[str, Any]]:
    """Write ``<prefix>-<sha8>.pt`` and ``<prefix>.json``; then remove older ``<prefix>-*.pt``.

    The bytes depend only on the tensors (same weights, same file, same sha256); the sha256 is
    computed from the file on disk after writing. The JSON is written after the checkpoint and
    before old checkpoints are removed, so at every moment it names a file that exists.

    Args:
        model: Its state_dict is saved as CPU tensors.
        metadata: Everything but ``file`` and ``sha256``, which are added here.
        out_dir: Target directory (created if missing).
        prefix: e.g. ``lenet5_fashion_mnist``.

    Returns:
        (checkpoint path, metadata path, the full metadata as written).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    state = OrderedDict((k, v.detach().cpu().clone().contiguous()) for k, v in model.state_dict().items())
    # Serialise in memory: torch.save names the zip's inner folder after the file it writes to, so
    # saving straight to a (unique) temporary file would put that name into the bytes and the hash.
    buffer = io.BytesIO()
    torch.save(state, buffer)
    tmp = out_dir / f".{prefix}.{os.getpid()}.tmp"
    tmp.write_bytes(buffer.getvalue())
    sha256 = hashlib.sha256(tmp.read_bytes()).hexdigest()
    checkpoint = out_dir / f"{prefix}-{sha256[:8]}.pt"
    os.replace(tmp, checkpoint)

    full = {"file": checkpoint.name, "sha256": sha256, **metadata}
    ordered = {k: full[k] for k in _METADATA_KEYS} | {
        k: v for k, v in full.items() if k not in _METADATA_KEYS
    }
    metadata_path = out_dir / f"{prefix}.json"
    tmp_json = out_dir / f".{prefix}.{os.getpid()}.json.tmp"
    tmp_json.write_text(json.dumps(ordered, indent=2) + "\n")
    os.replace(tmp_json, metadata_path)

    for old in out_dir.glob(f"{prefix}-*.pt"):
        if old != checkpoint:
            old.unlink()
    return checkpoint, metadata_path, ordered


def _per_arch_default(field: str) -> str:
    """e.g. "40 (modern), 20 (classic)": the help text of an option whose default depends on --arch."""
    return ", ".join(f"{getattr(TrainConfig.for_arch(name), field)} ({name})" for name in ARCHITECTURES)


def _parser() -> argparse.ArgumentParser:
    d = TrainConfig()
    p = argparse.ArgumentParser(
        prog="interp-train",
        description="Train a served LeNet on Fashion-MNIST (or MNIST); write its checkpoint + metadata.",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {importlib.metadata.version('cnn-interp')}")
    p.add_argument(
        "--arch",
        choices=tuple(ARCHITECTURES),
        default=d.arch,
        help="modern: ReLU/max-pool/batch norm, served as lenet; classic: the lecture's sigmoid/avg-pool "
        "LeNet, served as lenet-classic (default: %(default)s)",
    )
    p.add_argument("--dataset", choices=DATASET_NAMES, default=d.dataset, help="default: %(default)s")
    p.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="directory with the idx .gz files (default: $INTERP_DATA_DIR, else the system dataset dir)",
    )
    p.add_argument(
        "--no-download",
        action="store_true",
        help="never try torchvision's download when the files are missing",
    )
    # None: the architecture's default, filled in by config_from_args.
    p.add_argument("--epochs", type=int, default=None, help=f"default: {_per_arch_default('epochs')}")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="default: %(default)s")
    p.add_argument(
        "--lr", type=float, default=d.max_lr, help="peak one-cycle learning rate (default: %(default)s)"
    )
    p.add_argument("--weight-decay", type=float, default=d.weight_decay, help="default: %(default)s")
    p.add_argument(
        "--crop-padding",
        type=int,
        default=None,
        help=f"zero padding (px) for the random crop, 0 disables it (default: {_per_arch_default('crop_padding')})",
    )
    p.add_argument(
        "--no-flip", action="store_true", help="no random horizontal flip (use it for MNIST digits)"
    )
    p.add_argument("--seed", type=int, default=d.seed, help="default: %(default)s")
    p.add_argument(
        "--out", type=Path, default=DEFAULT_OUT_DIR, help="output directory (default: %(default)s)"
    )
    p.add_argument(
        "--limit-train", type=int, default=None, help="use the first N training images (smoke tests)"
    )
    p.add_argument(
        "--limit-test", type=int, default=None, help="evaluate on the first N test images (smoke tests)"
    )
    p.add_argument("--threads", type=int, default=d.threads, help="torch threads (default: %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The :class:`TrainConfig` that parsed command-line options describe.

    Raises:
        ValueError: An option is out of range (the message names it and the value).
    """
    given = {
        "dataset": args.dataset,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "max_lr": args.lr,
        "weight_decay": args.weight_decay,
        "crop_padding": args.crop_padding,
        "hflip": not args.no_flip,
        "seed": args.seed,
        "threads": args.threads,
        "limit_train": args.limit_train,
        "limit_test": args.limit_test,
    }
    per_arch = ("epochs", "crop_padding")  # None there means "the architecture's default"
    return TrainConfig.for_arch(
        args.arch, **{k: v for k, v in given.items() if not (k in per_arch and v is None)}
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point (``interp-train``). Returns the process exit code."""
    args = _parser().parse_args(argv)
    try:
        config = config_from_args(args)
    except ValueError as err:
        print(f"interp-train: error: {err}", file=sys.stderr)
        return 2
    print(f"interp-train: {json.dumps(dataclasses.asdict(config))}", flush=True)
    try:
        result = train(
            config,
            data_dir=args.data_dir,
            out_dir=args.out,
            progress=not args.no_progress,
            download=not args.no_download,
        )
    except (DatasetNotFound, DatasetError) as err:
        print(f"interp-train: error: {err}", file=sys.stderr)
        return 2
    m = result.metadata
    n_test = m["num_test"]
    print(
        f"test accuracy {100 * m['test_accuracy']:.2f} % ({round(m['test_accuracy'] * n_test)}/{n_test}) "
        f"on the {m['dataset']} test split; train accuracy {100 * m['train_accuracy']:.2f} %\n"
        f"wall time {m['wall_time_s']:.1f} s (training {m['train_time_s']:.1f} s, "
        f"{m['train_cpu_time_s']:.1f} CPU s, {m['epochs']} epochs, "
        f"{config.threads} threads, load average {m['conditions']['load_average_1min_at_start']} at start)\n"
        f"wrote {result.checkpoint} (sha256 {m['sha256']})\nwrote {result.metadata_path}",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
