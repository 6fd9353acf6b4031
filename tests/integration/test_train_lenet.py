"""models.train_lenet end to end on small slices (seconds): checkpoint contract, metadata, reproducibility."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from models import datasets, lenet_training, train_lenet
from models.lenet import (
    FASHION_MNIST_CLASSES,
    MNIST_CLASSES,
    MNIST_MEAN,
    MNIST_STD,
    build_lenet,
    build_lenet_classic,
)
from models.lenet_training import augment
from models.train_lenet import main
from tests.conftest import require_fashion_mnist
from tests.models.test_datasets import synthetic, write_split

# The metadata contract with the registry, written out here rather than imported from the module.
REQUIRED_KEYS = {
    "file", "sha256", "dataset", "classes", "normalization", "input_shape", "epochs", "seed",
    "hyperparameters", "augmentation", "test_accuracy", "train_accuracy", "wall_time_s",
    "torch_version", "created",
}  # fmt: skip


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(info: object, root: Path) -> None:
        raise OSError("network unreachable (test)")

    monkeypatch.setattr(datasets, "_download", offline)
    monkeypatch.delenv(datasets.DATA_DIR_ENV, raising=False)


@pytest.fixture
def tiny_data(tmp_path: Path) -> Path:
    """A synthetic 300/100 idx dataset: runs everywhere, whether or not the real files are installed."""
    directory = tmp_path / "data"
    write_split(directory, "train", *synthetic(300, seed=1))
    write_split(directory, "t10k", *synthetic(100, seed=2))
    return directory


def run(*args: str | Path) -> int:
    return main([*map(str, args), "--no-progress"])


def only_checkpoint(out: Path, prefix: str = "lenet5_fashion_mnist") -> Path:
    files = sorted(out.glob(f"{prefix}-*.pt"))
    assert len(files) == 1, files
    return files[0]


def check_written(
    out: Path, *, prefix: str = "lenet5_fashion_mnist", classes=FASHION_MNIST_CLASSES, build=build_lenet
) -> dict:
    """The checkpoint/metadata contract: name, sha256 of the bytes on disk, strict weights-only load."""
    checkpoint = only_checkpoint(out, prefix)
    meta = json.loads((out / f"{prefix}.json").read_text())
    assert REQUIRED_KEYS <= meta.keys(), REQUIRED_KEYS - meta.keys()
    digest = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert meta["sha256"] == digest
    assert meta["file"] == checkpoint.name == f"{prefix}-{digest[:8]}.pt"
    assert meta["classes"] == list(classes)
    assert meta["input_shape"] == [1, 28, 28]
    assert set(meta["normalization"]) == {"mean", "std"}
    assert 0.0 <= meta["test_accuracy"] <= 1.0 and 0.0 <= meta["train_accuracy"] <= 1.0
    assert meta["wall_time_s"] > 0 and meta["torch_version"] == torch.__version__
    assert 0 < meta["train_cpu_time_s"] and meta["train_time_s"] <= meta["wall_time_s"]

    state = torch.load(checkpoint, weights_only=True, map_location="cpu")
    assert all(t.device.type == "cpu" for t in state.values())
    model = build(len(classes), meta["normalization"]["mean"][0], meta["normalization"]["std"][0])
    model.load_state_dict(state, strict=True)
    return meta


def test_smoke_on_synthetic_data(tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "weights"
    assert run("--data-dir", tiny_data, "--out", out, "--epochs", "1", "--seed", "3") == 0
    meta = check_written(out)
    assert meta["epochs"] == 1 and meta["seed"] == 3 and meta["num_train"] == 300 and meta["num_test"] == 100
    assert meta["hyperparameters"]["batch_size"] == train_lenet.TrainConfig().batch_size
    assert meta["augmentation"]["random_crop"]["padding"] == 2 and meta["augmentation"]["horizontal_flip"]
    printed = capsys.readouterr().out
    assert "test accuracy" in printed and "wall time" in printed and meta["file"] in printed


def test_smoke_on_a_slice_of_the_real_data(tmp_path: Path) -> None:
    require_fashion_mnist("train")
    require_fashion_mnist("t10k")
    assert run("--limit-train", "512", "--limit-test", "256", "--epochs", "1", "--out", tmp_path) == 0
    meta = check_written(tmp_path)
    assert meta["dataset"] == "fashion-mnist" and meta["num_train"] == 512 and meta["num_test"] == 256
    # Recompute the reported test accuracy independently from the written file.
    images, labels = datasets.load_dataset("fashion-mnist", "test", download=False)
    model = build_lenet()
    model.load_state_dict(torch.load(tmp_path / meta["file"], weights_only=True))
    model.eval()
    with torch.no_grad():
        logits = model(torch.from_numpy(images[:256]).float().div(255).unsqueeze(1))
    assert meta["test_accuracy"] == pytest.approx((logits.argmax(1).numpy() == labels[:256]).mean(), abs=1e-6)


@pytest.mark.parametrize(
    ("arch", "prefix"), [("modern", "lenet5_fashion_mnist"), ("classic", "lenet5_classic_fashion_mnist")]
)
def test_same_seed_same_bytes_other_seed_other_bytes(tiny_data: Path, tmp_path: Path, arch: str, prefix: str) -> None:
    for name, seed in (("a", 0), ("c", 1)):
        out = tmp_path / name
        assert run("--arch", arch, "--data-dir", tiny_data, "--out", out, "--epochs", "2", "--seed", seed) == 0
    # The same run again in another process (another pid, fresh torch state), as a user would.
    subprocess.run(
        [sys.executable, "-m", "models.train_lenet", "--arch", arch, "--data-dir", str(tiny_data),
         "--out", str(tmp_path / "b"), "--epochs", "2", "--seed", "0", "--no-progress", "--no-download"],
        check=True, capture_output=True, cwd=Path(train_lenet.__file__).resolve().parents[1],
    )  # fmt: skip
    files = [only_checkpoint(tmp_path / n, prefix) for n in "abc"]
    digests = [json.loads((tmp_path / n / f"{prefix}.json").read_text())["sha256"] for n in "abc"]
    assert digests[0] == digests[1] != digests[2]
    assert files[0].read_bytes() == files[1].read_bytes()  # byte-identical, not only the recorded hash


def test_new_checkpoint_replaces_the_old_one_only(tiny_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "weights"
    out.mkdir()
    (out / "lenet5_mnist-0badc0de.pt").write_bytes(b"another dataset's checkpoint stays")
    assert run("--data-dir", tiny_data, "--out", out, "--epochs", "1", "--seed", "0") == 0
    first = only_checkpoint(out)
    assert run("--data-dir", tiny_data, "--out", out, "--epochs", "1", "--seed", "1") == 0
    second = check_written(out)
    assert only_checkpoint(out).name == second["file"] != first.name
    assert (out / "lenet5_mnist-0badc0de.pt").exists()
    assert not list(out.glob(".*tmp"))


def test_mnist_uses_its_own_prefix_classes_and_statistics(tmp_path: Path) -> None:
    data = tmp_path / "mnist"
    write_split(data, "train", *synthetic(200, seed=3))
    write_split(data, "t10k", *synthetic(50, seed=4))
    assert run("--dataset", "mnist", "--data-dir", data, "--out", tmp_path / "w", "--epochs", "1", "--no-flip") == 0
    meta = check_written(tmp_path / "w", prefix="lenet5_mnist", classes=MNIST_CLASSES)
    assert meta["normalization"] == {"mean": [MNIST_MEAN], "std": [MNIST_STD]}
    assert meta["augmentation"]["horizontal_flip"] is None
    assert not list((tmp_path / "w").glob("lenet5_fashion_mnist*"))


def test_classic_architecture_writes_its_own_checkpoint_beside_lenet5(tiny_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "w"
    assert run("--data-dir", tiny_data, "--out", out, "--epochs", "1") == 0
    modern = only_checkpoint(out)
    assert run("--arch", "classic", "--data-dir", tiny_data, "--out", out, "--epochs", "1") == 0
    meta = check_written(out, prefix="lenet5_classic_fashion_mnist", build=build_lenet_classic)
    assert meta["architecture"] == "lenet5-classic" and meta["epochs"] == 1
    assert meta["augmentation"] == {"random_crop": None, "horizontal_flip": {"p": 0.5}}
    assert meta["command"].startswith("interp-train --arch classic ")
    assert only_checkpoint(out) == modern  # the other architecture's checkpoint stays
    state = torch.load(out / meta["file"], weights_only=True)
    assert not [k for k in state if k.startswith("bn")] and "conv2.weight" in state
    with pytest.raises(RuntimeError, match="Missing key"):
        build_lenet().load_state_dict(state)  # not loadable as the batch-norm LeNet


def test_architecture_defaults() -> None:
    modern, classic = train_lenet.TrainConfig.for_arch("modern"), train_lenet.TrainConfig.for_arch("classic")
    assert modern == train_lenet.TrainConfig()
    assert (classic.epochs, classic.crop_padding, classic.hflip) == (20, 0, True)
    # Everything else is the one recipe: Adam, one-cycle max lr 3e-3, batch 128, seed 0, 1 thread.
    assert dataclasses.replace(classic, arch="modern", epochs=modern.epochs, crop_padding=modern.crop_padding) == modern
    parse = train_lenet._parser().parse_args
    assert train_lenet.config_from_args(parse(["--arch", "classic"])) == classic
    assert train_lenet.config_from_args(parse(["--arch", "classic", "--epochs", "3", "--crop-padding", "1"])) == (
        dataclasses.replace(classic, epochs=3, crop_padding=1)
    )
    assert train_lenet.config_from_args(parse([])) == modern
    assert train_lenet.file_prefix("fashion-mnist", "classic") == "lenet5_classic_fashion_mnist"
    with pytest.raises(ValueError, match="arch must be one of"):
        train_lenet.TrainConfig(arch="lenet7")
    with pytest.raises(ValueError, match="unknown TrainConfig fields"):
        train_lenet.TrainConfig.for_arch("classic", epoch=3)


def test_missing_data_exits_with_instructions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("--data-dir", tmp_path / "nothing", "--out", tmp_path / "w", "--no-download") == 2
    err = capsys.readouterr().err
    assert "not found" in err and "--data-dir" in err
    assert not (tmp_path / "w").exists()


def test_invalid_option_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("--epochs", "0", "--out", tmp_path) == 2
    assert "epochs must be >= 1" in capsys.readouterr().err


def test_training_leaves_global_torch_state_alone(tiny_data: Path, tmp_path: Path) -> None:
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    rng_state = torch.get_rng_state()
    assert run("--data-dir", tiny_data, "--out", tmp_path, "--epochs", "1", "--threads", "1") == 0
    assert torch.get_num_threads() == threads
    assert torch.are_deterministic_algorithms_enabled() == deterministic
    assert torch.equal(torch.get_rng_state(), rng_state)


def test_training_leaves_global_torch_state_alone_classic(tiny_data: Path, tmp_path: Path) -> None:
    fill = torch.utils.deterministic.fill_uninitialized_memory
    assert run("--arch", "classic", "--data-dir", tiny_data, "--out", tmp_path, "--epochs", "1") == 0
    assert torch.utils.deterministic.fill_uninitialized_memory == fill


def test_training_layout_is_undone_even_when_training_raises() -> None:
    model = build_lenet_classic()
    layout = train_lenet.ARCHITECTURES["classic"].channels_last
    assert layout is not None
    with pytest.raises(RuntimeError, match="boom"), lenet_training._training_layout(model, layout):
        assert model.conv1.weight.is_contiguous(memory_format=torch.channels_last)
        x = torch.rand(4, 1, 28, 28, requires_grad=True)
        F.cross_entropy(model(x), torch.arange(4)).backward()
        raise RuntimeError("boom")
    assert all(p.is_contiguous() for p in model.parameters())
    assert not model.conv2._forward_pre_hooks


def test_training_layout_gives_the_nchw_gradients() -> None:
    """The layout changes only the kernels' summation order: gradients agree with plain NCHW to float precision."""
    torch.manual_seed(0)
    plain = build_lenet_classic()
    laid = build_lenet_classic()
    laid.load_state_dict(plain.state_dict())
    x, y = torch.rand(16, 1, 28, 28), torch.randint(0, 10, (16,))
    F.cross_entropy(plain(x), y).backward()
    with lenet_training._training_layout(laid, train_lenet.ARCHITECTURES["classic"].channels_last):
        F.cross_entropy(laid(x), y).backward()
    for (name, a), b in zip(plain.named_parameters(), laid.parameters(), strict=True):
        assert b.grad is not None and a.grad is not None
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_default_output_is_the_package_weights_dir() -> None:
    assert train_lenet.DEFAULT_OUT_DIR == Path(train_lenet.__file__).resolve().parent / "weights"
    assert train_lenet.file_prefix("fashion-mnist") == "lenet5_fashion_mnist"


# ---- augmentation ------------------------------------------------------------------------------


def test_augment_matches_a_per_sample_oracle() -> None:
    x = torch.rand(32, 2, 6, 9)
    got = augment(x, torch.Generator().manual_seed(5), crop_padding=2, hflip=True)
    # Replay the same draws, then crop and flip one sample at a time.
    g = torch.Generator().manual_seed(5)
    dy, dx = torch.randint(0, 5, (32,), generator=g), torch.randint(0, 5, (32,), generator=g)
    flip = torch.rand(32, generator=g) < 0.5
    padded = F.pad(x, (2, 2, 2, 2))
    for i in range(32):
        expected = padded[i, :, dy[i] : dy[i] + 6, dx[i] : dx[i] + 9]
        torch.testing.assert_close(got[i], expected.flip(-1) if flip[i] else expected, rtol=0, atol=0)
    assert 0 < int(flip.sum()) < 32 and len(set(zip(dy.tolist(), dx.tolist(), strict=True))) > 5


def test_augment_disabled_is_identity_and_padding_is_black() -> None:
    x = torch.rand(4, 1, 28, 28)
    assert torch.equal(augment(x, torch.Generator(), crop_padding=0, hflip=False), x)
    ones = augment(torch.ones(256, 1, 28, 28), torch.Generator().manual_seed(0), crop_padding=2, hflip=False)
    shifted = ones.sum(dim=(1, 2, 3)) < 28 * 28
    assert bool(shifted.any()) and float(ones.min()) == 0.0  # zeros come in from the padding only
    assert np.isin(ones.unique().numpy(), [0.0, 1.0]).all()


@pytest.mark.parametrize(
    "config",
    [
        train_lenet.TrainConfig(),
        train_lenet.TrainConfig(
            dataset="mnist",
            epochs=3,
            max_lr=1e-3,
            hflip=False,
            crop_padding=0,
            seed=7,
            threads=2,
            limit_train=512,
            limit_test=256,
            weight_decay=1e-4,
        ),
        train_lenet.TrainConfig.for_arch("classic"),
        train_lenet.TrainConfig.for_arch("classic", epochs=40, crop_padding=2),
    ],
)
def test_recorded_command_reproduces_the_config(config: train_lenet.TrainConfig) -> None:
    command = shlex.split(train_lenet.retrain_command(config))
    assert command[0] == "interp-train"
    assert train_lenet.config_from_args(train_lenet._parser().parse_args(command[1:])) == config
