"""Per-image methods through the real server, held against oracles written in the test on the
served weights (loaded here from models/weights with torch.load): Grad-CAM written out from a
layer's activations and gradients on both LeNets; MinimalAttack on images no radius up to the cap
fools (FGSM and BIM written out here); BIM's minimal radius on the trained LeNet re-checked.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from client import InterpClient
from models.lenet import build_lenet, build_lenet_classic
from server.app import create_server
from tests.conftest import FASHION_MNIST_DIR, require, require_fashion_mnist
from tests.support.servers import test_config

ROOT = Path(__file__).resolve().parents[2]
CHECKPOINTS = {"lenet": ("lenet5_fashion_mnist-*.pt", build_lenet),
               "lenet-classic": ("lenet5_classic_fashion_mnist-*.pt", build_lenet_classic)}  # fmt: skip


def served_weights(name: str) -> nn.Sequential:
    pattern, build = CHECKPOINTS[name]
    found = sorted((ROOT / "models" / "weights").glob(pattern))
    require(found, f"no checkpoint {pattern} in models/weights")
    model = build()
    model.load_state_dict(torch.load(found[-1], map_location="cpu", weights_only=True))
    return model.eval()


def fashion_test(n: int) -> tuple[np.ndarray, np.ndarray]:
    """The first n test images (n, 28, 28) uint8 and labels, read from the idx files here."""
    require_fashion_mnist()
    with gzip.open(FASHION_MNIST_DIR / "t10k-images-idx3-ubyte.gz", "rb") as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)[:n]
    with gzip.open(FASHION_MNIST_DIR / "t10k-labels-idx1-ubyte.gz", "rb") as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)[:n].astype(np.int64)
    return images, labels


def unit(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image.astype(np.float32) / 255.0)[None, None]


@pytest.fixture(scope="module")
def client() -> Iterator[InterpClient]:
    srv, port = create_server(test_config(models=("lenet", "lenet-classic")))
    srv.start()
    try:
        with InterpClient(f"127.0.0.1:{port}", timeout=300) as c:
            yield c
    finally:
        srv.stop(grace=None)


# -- Grad-CAM -------------------------------------------------------------------------------------


def hand_grad_cam(model: nn.Sequential, x: torch.Tensor, layer: str, target: int) -> torch.Tensor:
    """(h, w) Grad-CAM: ReLU(sum_k alpha_k A_k), alpha_k the spatial mean of d logit_target / d A_k."""
    kept: dict[str, torch.Tensor] = {}

    def hook(_m: nn.Module, _i: object, out: torch.Tensor) -> None:
        out.retain_grad()
        kept["a"] = out

    handle = dict(model.named_modules())[layer].register_forward_hook(hook)
    try:
        logits = model(x.clone().requires_grad_(True))
    finally:
        handle.remove()
    logits[0, target].backward()
    grad = kept["a"].grad
    assert grad is not None
    a, g = kept["a"][0].detach(), grad[0]
    alpha = g.mean(dim=(1, 2))
    return torch.relu((alpha[:, None, None] * a).sum(0))


@pytest.mark.parametrize("model_name", ["lenet", "lenet-classic"])
def test_grad_cam_equals_one_written_out_from_activations_and_gradients(client, model_name):
    model = served_weights(model_name)
    images, labels = fashion_test(12)
    nonzero = 0
    for layer in ("conv1", "conv2"):
        for i in range(0, 12, 3):
            for target in (int(labels[i]), (int(labels[i]) + 3) % 10):
                r = client.saliency(images[i], model=model_name, method="grad_cam", layer=layer, target=target,
                                    include_pngs=False)  # fmt: skip
                cam = hand_grad_cam(model, unit(images[i]), layer, target)
                assert r.attribution.shape == (1, *cam.shape)
                atol = 1e-6 * float(cam.max() + 1)
                np.testing.assert_allclose(r.attribution[0], cam.numpy(), rtol=1e-4, atol=atol)
                up = nn.functional.interpolate(cam[None, None], size=(28, 28), mode="bilinear", align_corners=False)
                np.testing.assert_allclose(r.map, up[0, 0].clamp_min(0).numpy(), rtol=1e-4, atol=atol)
                nonzero += bool(cam.max() > 0)
    assert nonzero >= 8  # the oracle is not all zeros: a zero map would fail it


# -- MinimalAttack ---------------------------------------------------------------------------------


def hand_attack(model: nn.Module, x: torch.Tensor, label: int, eps: float, steps: int) -> torch.Tensor:
    """Untargeted L-inf attack: steps=1 FGSM (one step of eps); else BIM (steps of eps/10, no random start)."""
    alpha = eps if steps == 1 else eps / 10
    adv = x.clone()
    for _ in range(steps):
        adv.requires_grad_(True)
        loss = nn.functional.cross_entropy(model(adv), torch.tensor([label]))
        (grad,) = torch.autograd.grad(loss, adv)
        adv = adv.detach() + alpha * grad.sign()
        adv = torch.min(torch.max(adv, x - eps), x + eps).clamp(0, 1)
    return adv.detach()


def safe_at_every_level(model: nn.Module, x: torch.Tensor, label: int, levels: int, steps: int) -> bool:
    """No level k/255 (k = 1..levels) moves the label's probability below 0.9 (a wide margin)."""
    for k in range(1, levels + 1):
        adv = hand_attack(model, x, label, k / 255, steps)
        with torch.no_grad():
            p = torch.softmax(model(adv), dim=1)[0, label]
        if p < 0.9:
            return False
    return True


@pytest.mark.parametrize("method,steps", [("fgsm", 1), ("bim", 10)])
def test_minimal_attack_on_images_no_radius_up_to_the_cap_fools_reports_not_found(client, method, steps):
    model = served_weights("lenet").requires_grad_(False)
    images, labels = fashion_test(40)
    cap, levels = 0.01, 2  # floor(0.01 * 255) = 2: radii 1/255 and 2/255 are tried
    tried = 0
    for i in range(40):
        x, label = unit(images[i]), int(labels[i])
        with torch.no_grad():
            if int(model(x).argmax()) != label:
                continue
        if not safe_at_every_level(model, x, label, levels, steps):
            continue
        r = client.minimal_attack(images[i], model="lenet", method=method, label=label, max_epsilon=cap)
        assert not r.found and r.level == -1 and not r.success and not r.clean_misclassified, (i, r)
        assert r.epsilon == pytest.approx(levels / 255)  # the largest radius tried
        assert r.prediction.index == label
        tried += 1
        if tried == 4:
            break
    assert tried == 4


def test_bim_minimal_radius_on_the_trained_lenet_is_rechecked(client):
    model = served_weights("lenet").requires_grad_(False)
    images, labels = fashion_test(8)
    for i in range(8):
        label = int(labels[i])
        r = client.minimal_attack(images[i], model="lenet", method="bim", label=label)
        if r.clean_misclassified:
            continue
        assert r.found and 1 <= r.level <= 255 and r.epsilon == pytest.approx(r.level / 255)
        adv = torch.from_numpy(np.ascontiguousarray(r.adversarial.transpose(2, 0, 1)))[None]
        np.testing.assert_allclose(adv.numpy() * 255, np.round(adv.numpy() * 255), atol=1e-3)  # on the 8-bit grid
        assert float((adv - unit(images[i])).abs().max()) <= r.level / 255 + 1e-6
        with torch.no_grad():
            assert int(model(adv).argmax()) != label and r.prediction.index != label and r.success
        if r.monotone and r.level > 1:
            below = client.attack(images[i], model="lenet", method="bim", epsilon=(r.level - 1) / 255, label=label,
                                  include_pngs=False)  # fmt: skip
            assert not below.outcomes[0].success, (i, r.level)
