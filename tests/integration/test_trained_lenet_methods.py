"""The methods on the trained LeNet checkpoint (skipped until models/weights holds one)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torchattacks
from scipy.stats import spearmanr

from interp.attacks.linf import attack
from interp.attribution.saliency import saliency
from models.datasets import load_dataset
from models.lenet import build_lenet
from tests.conftest import require
from tests.support.tiny_models import frozen

WEIGHTS = sorted((Path(__file__).resolve().parents[2] / "models" / "weights").glob("lenet5_fashion*mnist*.pt"))
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def lenet():
    require(WEIGHTS, "no trained LeNet checkpoint in models/weights")
    model = build_lenet()
    model.load_state_dict(torch.load(WEIGHTS[-1], map_location="cpu", weights_only=True))
    return frozen(model)


@pytest.fixture(scope="module")
def test_images():
    images, labels = load_dataset("fashion-mnist", "test", download=False)
    return torch.from_numpy(images[:200].copy()).float().div(255).unsqueeze(1), torch.from_numpy(labels[:200].copy())


def test_clean_accuracy(lenet, test_images):
    x, y = test_images
    with torch.no_grad():
        assert (lenet(x).argmax(1) == y).float().mean() >= 0.85


def test_fgsm_equals_torchattacks_exactly_on_the_trained_model(lenet, test_images):
    x, y = test_images
    result = attack(lenet, x, method="fgsm", epsilon=0.1, labels=y)
    assert torch.equal(result.adversarial_raw, torchattacks.FGSM(lenet, eps=0.1)(x, y))
    assert (result.predictions == y).float().mean() <= 0.25  # the bar, on 200 images


def test_pgd_breaks_the_trained_model(lenet, test_images):
    x, y = test_images
    result = attack(lenet, x[:100], method="pgd", epsilon=0.1, labels=y[:100])
    assert (result.predictions == y[:100]).float().mean() <= 0.01
    assert (result.adversarial - x[:100]).abs().max() <= 0.1


def test_gradient_saliency_depends_on_the_weights(lenet, test_images):
    x, y = test_images
    with torch.random.fork_rng():
        torch.manual_seed(0)
        random_model = frozen(build_lenet())
    trained = saliency(lenet, x[:30], y[:30], method="gradient").map.flatten(1).numpy()
    rand = saliency(random_model, x[:30], y[:30], method="gradient").map.flatten(1).numpy()
    rho = np.mean([spearmanr(a, b).statistic for a, b in zip(trained, rand, strict=True)])
    assert rho < 0.3
