"""The `interp` console script as a subprocess against the real in-process server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import require

ROOT = Path(__file__).resolve().parents[2]
INTERP = Path(sys.executable).parent / "interp"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def interp(target):
    """interp(*args) -> CompletedProcess, with --server pointing at the shared real server."""
    require(INTERP.exists(), f"console script not installed at {INTERP} (pip install -e .)")

    def run(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(INTERP), "--server", target, *args],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=cwd or ROOT,
            env=env,
        )

    return run


@pytest.fixture(scope="module")
def image_png(tmp_path_factory) -> Path:
    """A 28x28 grayscale PNG written by the test."""
    path = tmp_path_factory.mktemp("img") / "blob.png"
    yy, xx = np.mgrid[:28, :28]
    cv2.imwrite(str(path), (255 * np.exp(-((yy - 14) ** 2 + (xx - 10) ** 2) / 40.0)).astype(np.uint8))
    return path


def test_models(interp):
    done = interp("models")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split()[:3] == ["NAME", "STATUS", "PRETRAINED"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert {"vgg16", "alexnet", "lenet"} <= set(rows)
    assert rows["vgg16"][1:3] == ["READY", "no"]
    assert "random" in rows["vgg16"]


def test_layers_vgg16_shows_conv3_1(interp):
    done = interp("layers", "vgg16")
    assert done.returncode == 0, done.stderr
    row = next(line for line in done.stdout.splitlines() if " conv3_1 " in f" {line} ")
    assert row.split()[0] == "features.10"
    assert "(256, 56, 56)" in row and "Conv2d" in row


def test_classify_lenet_table_and_json(interp, image_png):
    done = interp("classify", "lenet", str(image_png), "--top-k", "3")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["RANK", "CLASS", "LABEL", "PROBABILITY"]
    assert [line.split()[0] for line in lines[1:4]] == ["1", "2", "3"]
    assert lines[4].startswith("model lenet")

    done = interp("--json", "classify", "lenet", str(image_png), "--top-k", "3")
    assert done.returncode == 0 and done.stderr == ""
    doc = json.loads(done.stdout)
    probabilities = [p["probability"] for p in doc["predictions"]]
    assert len(probabilities) == 3 and probabilities == sorted(probabilities, reverse=True)
    assert doc["model"] == "lenet" and doc["logits"]["shape"] == [10]


def test_info_json(interp):
    done = interp("info", "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["api_version"] == "interp.v1" and doc["limits"]["max_steps"] > 0


def test_errors_have_a_code_a_message_and_a_distinct_status(interp, image_png):
    done = interp("classify", "resnet50", str(image_png))
    assert done.returncode == 15  # 10 + NOT_FOUND
    assert done.stderr.startswith("error: NOT_FOUND: ") and "Traceback" not in done.stderr
    done = interp("activations", "lenet", str(image_png), "--layer", "conv9", "-o", "unused")
    assert done.returncode == 13  # 10 + INVALID_ARGUMENT
    assert done.stderr.startswith("error: INVALID_ARGUMENT: ")
    done = subprocess.run([str(INTERP), "--server", "127.0.0.1:1", "--timeout", "5", "models"],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 24 and done.stderr.startswith("error: UNAVAILABLE: ")


def test_activations_and_kernels_write_pngs(interp, image_png, tmp_path: Path):
    done = interp("activations", "lenet", str(image_png), "--layer", "conv1", "--layer", "conv2",
                  "--top-k", "4", "--npy", "-o", str(tmp_path / "acts"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    for name in ("conv1.png", "conv2.png", "input.png"):
        assert (tmp_path / "acts" / name).read_bytes().startswith(PNG_SIGNATURE)
    assert np.load(tmp_path / "acts" / "conv1.npy").ndim == 3
    done = interp("activations", "lenet", str(image_png), "--layer", "relu2", "--layer", "fc1",
                  "-o", str(tmp_path / "a2"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "no grid image for fc1: not a layer of maps; --npy saves their values" in done.stdout  # not silently dropped
    assert not (tmp_path / "a2" / "fc1.png").exists()
    done = interp("kernels", "alexnet", "conv1", "-o", str(tmp_path / "k.png"))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "k.png").read_bytes().startswith(PNG_SIGNATURE)
    assert "(64, 3, 11, 11)" in done.stdout


def test_saliency_writes_overlay_and_heatmap(interp, image_png, tmp_path: Path):
    done = interp("saliency", "lenet", str(image_png), "--method", "gradient", "--target", "3",
                  "-o", str(tmp_path / "sal.png"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "sal.png").read_bytes().startswith(PNG_SIGNATURE)
    assert (tmp_path / "sal_heatmap.png").exists()
    assert "class 3" in done.stdout


def test_attack_prints_a_table(interp, image_png, tmp_path: Path):
    done = interp("attack", "lenet", str(image_png), "--method", "fgsm", "--eps", "0.05", "--eps", "0.2",
                  "-o", str(tmp_path / "adv"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "SUCCESS" in done.stdout and "LINF" in done.stdout
    assert (tmp_path / "adv" / "adversarial_eps0.2.png").exists()


def test_visualize_with_progress_and_frames(interp, tmp_path: Path):
    done = interp("visualize", "lenet", "conv2", "--channel", "0", "--channel", "1", "--steps", "8",
                  "--preview-every", "2", "--frames", str(tmp_path / "frames"),
                  "-o", str(tmp_path / "vis.png"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "vis.png").read_bytes().startswith(PNG_SIGNATURE)
    frames = sorted(p.name for p in (tmp_path / "frames").iterdir())
    assert frames and frames[0] == "frame_0001.png"
    assert "objective=" in done.stderr  # the tqdm bar


def test_dream(interp, image_png, tmp_path: Path):
    done = interp("dream", "lenet", str(image_png), "--layer", "conv2:1.0", "--octaves", "1",
                  "--iterations", "3", "-o", str(tmp_path / "dream.png"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "dream.png").read_bytes().startswith(PNG_SIGNATURE)


def test_interpolate_with_class_names(interp, image_png, tmp_path: Path):
    done = interp("interpolate", "lenet", str(image_png), "--positive", "ankle boot", "--negative", "sneaker",
                  "--alpha", "0", "--alpha", "1", "--iterations", "5", "--warm-iterations", "3",
                  "--set-size", "4", "-o", str(tmp_path / "dfi"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "dfi" / "alpha_1.png").exists()


def test_several_images_with_unreadable_files_answer_the_others(interp, image_png, tmp_path: Path):
    """A missing or empty file is a local error in its own section (not sent); an undecodable one
    gets the server's INVALID_ARGUMENT naming it; the others are answered; the first failure's
    status is the exit status."""
    empty, corrupt = tmp_path / "empty.png", tmp_path / "corrupt.png"
    empty.write_bytes(b"")
    corrupt.write_bytes(image_png.read_bytes()[:60])
    done = interp("classify", "lenet", str(image_png), str(empty), str(tmp_path / "missing.png"), str(corrupt))
    assert done.returncode == 1, done.stderr  # the first failure: the empty file, a local error
    sections = done.stdout.split("== ")[1:]
    assert [s.splitlines()[0] for s in sections] == [str(image_png), str(empty), str(tmp_path / "missing.png"),
                                                     str(corrupt)]  # fmt: skip
    assert "RANK" in sections[0]
    assert "error: IO: " in sections[1] and "is empty" in sections[1]
    assert "error: IO: " in sections[2] and "No such file" in sections[2]
    assert "error: INVALID_ARGUMENT: images[1]: cannot decode" in sections[3]  # the 2nd image sent
    assert "4 images, 3 failed" in done.stdout
    done = interp("classify", "lenet", str(empty))
    assert done.returncode == 1 and "is empty" in done.stderr  # one image: the same local error
    done = interp("classify", "lenet", str(tmp_path / "missing.png"), str(image_png))  # the first one fails
    assert done.returncode == 1, done.stderr
    assert "No such file" in done.stdout and "RANK" in done.stdout and "2 images, 1 failed" in done.stdout


def test_attack_with_a_label_says_the_clean_image_is_already_wrong(interp, image_png, tmp_path: Path):
    predicted = json.loads(interp("--json", "classify", "lenet", str(image_png)).stdout)["predictions"][0]["index"]
    other = (predicted + 1) % 10
    done = interp("attack", "lenet", str(image_png), "--method", "fgsm", "--eps", "0.1", "--label", str(other),
                  "-o", str(tmp_path / "adv"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f", label {other} " in done.stdout.splitlines()[0]
    assert "the clean image is already misclassified" in done.stdout


def test_a_timeout_that_is_not_positive_is_a_usage_error(interp):
    done = interp("--timeout", "-5", "models")
    assert done.returncode == 2 and "must be a positive number of seconds" in done.stderr


def test_dataset_images_take_a_class_by_name(interp):
    done = interp("--json", "dataset-images", "lenet", "fashion-mnist-test", "--label", "sneaker", "--limit", "3")
    assert done.returncode == 0, done.stderr
    images = json.loads(done.stdout)["images"]
    assert len(images) == 3 and {image["label_name"] for image in images} == {"Sneaker"}
    done = interp("dataset-images", "lenet", "fashion-mnist-test", "--label", "Sneakers")
    assert done.returncode == 2 and "its classes: T-shirt/top" in done.stderr
    done = interp("dataset-images", "lenet", "fashion-mnist-test", "--positions", "0")
    assert done.returncode == 0, done.stderr
    assert "request_id" not in done.stdout and "model lenet (pretrained" in done.stdout  # the stamp once


def test_activations_without_output_print_the_table_alone(interp, image_png):
    done = interp("activations", "lenet", str(image_png), "--layer", "relu2", "--layer", "fc1")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].split()[:2] == ["LAYER", "SHAPE"] and "wrote" not in done.stdout
    done = interp("activations", "lenet", str(image_png), "--layer", "relu2", "--npy")
    assert done.returncode == 2 and "--npy needs -o" in done.stderr
