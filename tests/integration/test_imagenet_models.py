"""Every method RPC on vgg16 and alexnet (seeded random weights) through the SDK and the CLI.

Small step counts and sizes keep this quick; the point is that the RGB / 224-px paths (Fourier
parameterization, centre crop, default Grad-CAM and DFI layers, aliases) work end to end.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from client import InterpClient

MODELS = ("vgg16", "alexnet")
LAYER = {"vgg16": "conv3_1", "alexnet": "conv2"}
RELU = {"vgg16": "relu4_1", "alexnet": "relu3"}
INTERP = Path(sys.executable).with_name("interp")


@pytest.fixture(scope="module")
def client(target) -> Iterator[InterpClient]:
    with InterpClient(target, timeout=300) as c:
        yield c


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("method", ["gradient", "smoothgrad", "integrated_gradients", "guided_backprop", "grad_cam"])
def test_saliency(client, cat_png, model, method) -> None:
    params = {"smoothgrad": {"samples": 2, "batch_size": 2}, "integrated_gradients": {"steps": 2, "batch_size": 2}}
    r = client.saliency(cat_png, model=model, method=method, **params.get(method, {}))
    assert r.map.shape == (224, 224) and np.isfinite(r.map).all() and r.map.min() >= 0
    assert r.input.shape == (224, 224, 3) and r.pretrained is False
    assert r.overlay_png.startswith(b"\x89PNG") and r.target is not None


@pytest.mark.parametrize("model", MODELS)
def test_attack_sweep_and_target(client, cat_png, model) -> None:
    r = client.attack(cat_png, model=model, method="bim", epsilon=[0.01, 0.03], target="tabby", steps=2)
    assert r.targeted and r.target.label == "tabby" and len(r.outcomes) == 2
    clean = r.input
    for outcome in r.outcomes:
        assert np.abs(outcome.adversarial - clean).max() <= outcome.epsilon + 1e-6
        assert np.allclose(outcome.adversarial * 255, np.round(outcome.adversarial * 255), atol=1e-3)


@pytest.mark.parametrize("model", MODELS)
def test_visualize_filter_rgb(client, model) -> None:
    events = []
    r = client.visualize_filter(
        model, LAYER[model], [0, 3], steps=4, image_size=48, progress=events.append, every_step=True
    )
    assert r.images.shape == (2, 48, 48, 3) and 0 <= r.images.min() and r.images.max() <= 1
    assert r.params["parameterization"] == "fourier" and r.params["steps"] == 4
    assert [e.step for e in events] == [1, 2, 3, 4]


@pytest.mark.parametrize("model", MODELS)
def test_dream_and_interpolate(client, cat_png, model) -> None:
    stream = client.iter_dream(cat_png, model=model, layers={RELU[model]: 1.0}, octaves=1, iterations=2)
    items = list(stream)
    assert items[-1].image.shape == (224, 224, 3) and len(items) == 3  # two progress events, then the result
    flipped = cv2.imencode(".png", cv2.flip(cv2.imdecode(np.frombuffer(cat_png, np.uint8), cv2.IMREAD_COLOR), 1))[1]
    r = client.interpolate(
        cat_png, model=model, target=flipped.tobytes(), alphas=[0, 1], iterations=2, warm_iterations=1
    )
    assert [a.alpha for a in r.results] == [0, 1] and r.results[1].image.shape == (224, 224, 3)


def test_cli_saliency_and_visualize_on_alexnet(target, tmp_path, cat_png) -> None:
    image = tmp_path / "cat.png"
    image.write_bytes(cat_png)
    common = [str(INTERP), "--server", target, "--no-progress"]
    done = subprocess.run(
        [*common, "saliency", "alexnet", str(image), "--method", "grad_cam", "-o", str(tmp_path / "s.png")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "grad_cam saliency" in done.stdout and (tmp_path / "s.png").exists()
    done = subprocess.run(
        [
            *common,
            "visualize",
            "alexnet",
            "conv1",
            "--channel",
            "1",
            "--steps",
            "3",
            "--size",
            "32",
            "--frames",
            str(tmp_path / "frames"),
            "-o",
            str(tmp_path / "v.png"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "v.png").exists()
