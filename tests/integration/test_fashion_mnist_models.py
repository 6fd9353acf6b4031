"""Every RPC on every served Fashion-MNIST model (``lenet`` and ``lenet-classic``) through the SDK and the CLI.

The models come from the registry (every spec whose ``training_dataset`` is Fashion-MNIST), so a
third one is picked up without editing this file. Both serve their committed, trained checkpoints.
Small step counts keep this quick; the point is that every method, its model-dependent defaults
(Grad-CAM layer, DFI layers, class-name sets) and the layer catalogue work on each of them.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from client import InterpClient
from models.registry import get_spec, list_models
from tests.conftest import require

MODELS = [name for name in list_models() if get_spec(name).training_dataset == "fashion-mnist"]
# The activation after conv2 of each model: ReLU for the modern LeNet, sigmoid for the lecture's.
ACT2 = {"lenet": "relu2", "lenet-classic": "sig2"}
INTERP = Path(sys.executable).with_name("interp")
ROOT = Path(__file__).resolve().parents[2]
SALIENCY_METHODS = ["gradient", "gradient_x_input", "smoothgrad", "integrated_gradients", "guided_backprop", "grad_cam"]


def test_both_lenets_are_covered() -> None:
    assert {"lenet", "lenet-classic"} <= set(MODELS) and set(MODELS) <= set(ACT2)


@pytest.fixture(scope="module")
def client(target) -> Iterator[InterpClient]:
    with InterpClient(target, timeout=300) as c:
        yield c


@pytest.fixture(scope="module")
def boot(fashion_test_images) -> np.ndarray:
    """A real Fashion-MNIST test image of an ankle boot (class 9), uint8 28x28."""
    images, labels = fashion_test_images
    return images[int(np.flatnonzero(labels == 9)[0])]


@pytest.mark.parametrize("model", MODELS)
def test_listed_ready_and_pretrained_from_the_bundle(client, model) -> None:
    info = {m.name: m for m in client.list_models()}[model]
    assert info.pretrained is True and info.input_shape == (1, 28, 28) and info.num_classes == 10
    assert model in client.server_info().models


@pytest.mark.parametrize("model", MODELS)
def test_describe_and_classify(client, boot, model) -> None:
    d = client.describe_model(model)
    assert d.layers[0].name == "normalize" and d.layers[-1].output_shape == (10,)
    assert d.default_gradcam_layer == {"lenet": "relu2", "lenet-classic": "conv2"}[model]
    assert d.labels[9] == "Ankle boot"
    r = client.classify(boot, model=model, top_k=3)
    assert r.predictions[0].label == "Ankle boot" and r.predictions[0].probability > 0.5


@pytest.mark.parametrize("model", MODELS)
def test_activations_and_kernels(client, boot, model) -> None:
    act2 = ACT2[model]
    r = client.activations(boot, model=model, layers=["conv1", act2, "fc2"], top_k=3)
    assert r[act2].activation.shape == (16, 10, 10) and r["fc2"].activation.shape == (84,)
    if act2.startswith("sig"):  # a sigmoid's output lies strictly inside (0, 1)
        assert 0.0 < float(r[act2].activation.min()) and float(r[act2].activation.max()) < 1.0
    else:
        assert float(r[act2].activation.min()) == 0.0  # some ReLU units are off
    k = client.kernels(model, "conv2")
    assert k.weights.shape == (16, 6, 5, 5) and k.bias.shape == (16,) and not k.rgb


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("method", SALIENCY_METHODS)
def test_saliency(client, boot, model, method) -> None:
    params = {"smoothgrad": {"samples": 4}, "integrated_gradients": {"steps": 8}}.get(method, {})
    r = client.saliency(boot, model=model, method=method, target="Ankle boot", **params)
    assert r.map.shape == (28, 28) and np.isfinite(r.map).all() and r.map.min() >= 0
    # Grad-CAM's map is ReLU'd and may be all 0 (lenet, this boot: every channel weighs in negatively).
    assert r.map.max() > 0 or method == "grad_cam"
    assert r.target.index == 9 and r.overlay_png.startswith(b"\x89PNG")


def test_guided_backprop_is_the_gradient_without_relus(client, boot) -> None:
    """captum's GuidedBackprop only rewrites ReLU backward passes: on the sigmoid LeNet it is the gradient."""
    guided = client.saliency(boot, model="lenet-classic", method="guided_backprop", target=9)
    gradient = client.saliency(boot, model="lenet-classic", method="gradient", target=9)
    np.testing.assert_allclose(guided.map, gradient.map, rtol=1e-5, atol=1e-8)
    on_relu = client.saliency(boot, model="lenet", method="guided_backprop", target=9)
    assert not np.allclose(on_relu.map, client.saliency(boot, model="lenet", method="gradient", target=9).map)


@pytest.mark.parametrize("model", MODELS)
def test_attack(client, boot, model) -> None:
    r = client.attack(boot, model=model, method="pgd", epsilon=[0.02, 0.2], steps=5, seed=1)
    assert r.original.label == "Ankle boot" and len(r.outcomes) == 2
    for outcome in r.outcomes:
        assert np.abs(outcome.adversarial - r.input).max() <= outcome.epsilon + 1e-6
    assert r.outcomes[-1].prediction.label != "Ankle boot"  # eps 0.2 breaks either LeNet


@pytest.mark.parametrize("model", MODELS)
def test_visualize_filter_raises_the_activation(client, model) -> None:
    act2 = ACT2[model]
    r = client.visualize_filter(model, act2, [0, 5], steps=30, seed=0)
    assert r.images.shape == (2, 28, 28, 1) and r.params["parameterization"] == "pixel"
    grey = client.activations(np.full((28, 28), 128, np.uint8), model=model, layers=act2)
    assert all(r.activations[i] > grey[act2].channel_mean[c] for i, c in enumerate((0, 5)))


@pytest.mark.parametrize("model", MODELS)
def test_dream_and_interpolate_with_class_names(client, boot, model) -> None:
    dream = client.dream(boot, model=model, layers={ACT2[model]: 1.0}, octaves=1, iterations=3)
    assert dream.image.shape == (28, 28, 1) and dream.gains[0].norm_after > dream.gains[0].norm_before
    r = client.interpolate(
        boot, model=model, positive="Sneaker", negative="Ankle boot", alphas=[0, 1],
        iterations=5, warm_iterations=3, set_size=8,
    )  # fmt: skip
    assert [a.alpha for a in r.results] == [0, 1] and all(a.image.shape == (28, 28, 1) for a in r.results)
    assert r.layers == get_spec(model).default_dfi_layers and r.params["set_size"] == 8


# The lecture slide's output shapes for a (1, 1, 28, 28) input, in its order (Dive into Deep Learning).
SLIDE = [
    ("conv1", "(6, 28, 28)"), ("sig1", "(6, 28, 28)"), ("pool1", "(6, 14, 14)"),
    ("conv2", "(16, 10, 10)"), ("sig2", "(16, 10, 10)"), ("pool2", "(16, 5, 5)"),
    ("flatten", "(400,)"), ("fc1", "(120,)"), ("sig3", "(120,)"), ("fc2", "(84,)"), ("sig4", "(84,)"),
    ("fc3", "(10,)"),
]  # fmt: skip


def test_cli_layers_lenet_classic_prints_the_slide(target) -> None:
    require(INTERP.exists(), f"console script not installed at {INTERP} (pip install -e .)")
    done = subprocess.run(
        [str(INTERP), "--server", target, "layers", "lenet-classic"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:4] == ["NAME", "ALIASES", "TYPE", "OUTPUT"])
    rows = []
    for line in lines[header + 1 :]:
        if not line.strip() or line.split()[0].endswith(":"):  # the table ends; "preprocessing: ..." follows
            break
        rows.append(line)
    assert rows[0].split()[0] == "normalize" and "(1, 28, 28)" in rows[0]
    shown = [(row.split()[0], row[row.index("(") : row.index(")") + 1]) for row in rows[1:]]
    assert shown == SLIDE
