"""`make datasets`, the first step of `make serve` and `make test`: Fashion-MNIST present -> silent;
missing and not installable by this user -> one message naming the command, before anything runs.

(The install branch, apt-get as root, is exercised by hand on a fresh clone: see the merge report.)
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import require

ROOT = Path(__file__).resolve().parents[2]
FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
FIX = "sudo apt-get update && sudo apt-get install -y dataset-fashion-mnist"


@pytest.fixture(scope="module")
def make() -> str:
    path = shutil.which("make")
    require(path, "make is not installed")
    return str(path)


def run(make: str, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [make, "--no-print-directory", "-C", str(ROOT), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("suffix", [".gz", ""])
def test_present_dataset_is_silent(make: str, tmp_path: Path, suffix: str) -> None:
    for name in FILES:
        (tmp_path / (name + suffix)).write_bytes(b"")
    done = run(make, "-s", "datasets", f"FASHION_MNIST_DIR={tmp_path}", "INSTALL_DATASETS=no")
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_one_missing_file_counts_as_missing(make: str, tmp_path: Path) -> None:
    for name in FILES[:-1]:
        (tmp_path / (name + ".gz")).write_bytes(b"")
    done = run(make, "-s", "datasets", f"FASHION_MNIST_DIR={tmp_path}", "INSTALL_DATASETS=no")
    assert done.returncode != 0
    assert f"Fashion-MNIST is missing from {tmp_path}" in done.stderr
    assert FIX in done.stderr


@pytest.mark.parametrize("target", ["test", "serve"])
def test_missing_dataset_stops_make_before_the_venv_and_the_tests(make: str, tmp_path: Path, target: str) -> None:
    venv = tmp_path / "venv"
    absent = f"FASHION_MNIST_DIR={tmp_path / 'absent'}"
    done = run(make, target, absent, "INSTALL_DATASETS=no", f"VENV={venv}", "PYTHON=false")
    assert done.returncode != 0
    assert f"error: Fashion-MNIST is missing from {tmp_path / 'absent'}" in done.stderr
    assert FIX in done.stderr
    assert not venv.exists()
    assert "venv" not in done.stdout and "pytest" not in done.stdout
