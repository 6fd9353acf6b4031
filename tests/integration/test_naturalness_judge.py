"""Class visualizations of the trained LeNet that a second, independent CNN recognizes (issue 16).

A judge CNN of another architecture (strided convolutions, no pooling or batch norm) and seed is
trained here on the Fashion-MNIST training split for two epochs (1 thread, nothing cached), then
judges the ten ``fc3`` class images made with the default parameters, i.e. the ``naturalness``
preset. The plain ascent (``preset="none"``) is the control: the same judge must *not* recognize
it, which shows the bar measures the preset and not a lenient judge. The fuller figures (three
seeds, a sweep with each regularizer off in turn) come from benchmarks/eval_naturalness.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.eval_naturalness import (
    JUDGE_BAR,
    accuracy,
    class_images,
    judge_images,
    logit_percentiles,
    to_tensor,
    train_judge,
)
from interp.synthesis.feature_vis_params import FeatureVisParams
from models.datasets import DatasetNotFound, load_dataset
from models.lenet import FASHION_MNIST_CLASSES, build_lenet
from tests.conftest import require

WEIGHTS = sorted((Path(__file__).resolve().parents[2] / "models" / "weights").glob("lenet5_fashion*mnist*.pt"))
pytestmark = pytest.mark.slow


def _missing(reason: str) -> None:
    require(False, reason)


@pytest.fixture(scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def data(one_thread):
    try:
        train_images, train_labels = load_dataset("fashion-mnist", "train", download=False)
        test_images, test_labels = load_dataset("fashion-mnist", "test", download=False)
    except DatasetNotFound as err:
        _missing(f"Fashion-MNIST absent: {err}")
    return (
        to_tensor(train_images),
        torch.from_numpy(train_labels.astype(np.int64)),
        to_tensor(test_images),
        torch.from_numpy(test_labels.astype(np.int64)),
    )


@pytest.fixture(scope="module")
def lenet():
    if not WEIGHTS:
        _missing("no trained LeNet checkpoint in models/weights")
    model = build_lenet()
    model.load_state_dict(torch.load(WEIGHTS[-1], map_location="cpu", weights_only=True))
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


@pytest.fixture(scope="module")
def judge(data):
    train_x, train_y, test_x, test_y = data
    model = train_judge(train_x, train_y, seed=1, epochs=2)
    acc = accuracy(model, test_x, test_y)
    assert acc >= JUDGE_BAR, f"judge reached only {acc:.4f} on the test split"
    return model


def _report(verdict) -> str:
    return ", ".join(
        f"{FASHION_MNIST_CLASSES[c]}: p={float(verdict.judge_probability[c]):.2f} "
        f"(judge says {FASHION_MNIST_CLASSES[int(verdict.judge_top1[c])]})"
        for c in range(10)
    )


def test_judge_recognizes_the_default_class_images(lenet, judge, data):
    _, _, test_x, test_y = data
    result = class_images(lenet, FeatureVisParams(), mean_image=None)
    assert result.params.preset == "naturalness"  # the default for a fully connected layer
    verdict = judge_images(result.images, lenet, judge)
    print("\nnaturalness:", _report(verdict))
    assert verdict.recognized >= 7, _report(verdict)
    p99 = logit_percentiles(lenet, test_x, test_y)
    assert bool(torch.all(verdict.lenet_logit > p99)), (verdict.lenet_logit.tolist(), p99.tolist())
    assert torch.equal(verdict.lenet_top1, torch.arange(10))


def test_judge_does_not_recognize_the_plain_ascent(lenet, judge):
    result = class_images(lenet, FeatureVisParams(preset="none"), mean_image=None)
    verdict = judge_images(result.images, lenet, judge)
    print("\nnone:", _report(verdict))
    assert verdict.recognized <= 4, _report(verdict)
    assert torch.equal(verdict.lenet_top1, torch.arange(10))  # LeNet itself is fooled completely
