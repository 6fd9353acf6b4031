"""The naturalness preset's class images of the trained LeNet, judged by an independently trained
CNN on three feature-vis seeds, and a control: the same preset without its L2 decay must be
recognized less often (summed over the seeds), so the bar measures what the decay buys.

The judge (another architecture and seed, benchmarks/eval_naturalness.py) is trained here on the
Fashion-MNIST training split for two epochs on one thread, as in test_naturalness_judge.py.
"""

from __future__ import annotations

from dataclasses import replace
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
from models.lenet import build_lenet
from tests.conftest import require

WEIGHTS = sorted((Path(__file__).resolve().parents[2] / "models" / "weights").glob("lenet5_fashion_mnist-*.pt"))
SEEDS = (0, 1, 2)
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def setting():
    """(LeNet, judge, test-set p99 logits), on one thread like the benchmark."""
    require(WEIGHTS, "no trained LeNet checkpoint in models/weights")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        try:
            train_images, train_labels = load_dataset("fashion-mnist", "train", download=False)
            test_images, test_labels = load_dataset("fashion-mnist", "test", download=False)
        except DatasetNotFound as err:
            require(False, f"Fashion-MNIST absent: {err}")
        lenet = build_lenet()
        lenet.load_state_dict(torch.load(WEIGHTS[-1], map_location="cpu", weights_only=True))
        lenet.eval().requires_grad_(False)
        test_x, test_y = to_tensor(test_images), torch.from_numpy(test_labels.astype(np.int64))
        judge = train_judge(to_tensor(train_images), torch.from_numpy(train_labels.astype(np.int64)), seed=1, epochs=2)
        assert accuracy(judge, test_x, test_y) >= JUDGE_BAR
        yield lenet, judge, logit_percentiles(lenet, test_x, test_y)
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def recognized(setting) -> dict[str, list[int]]:
    lenet, judge, p99 = setting
    preset = FeatureVisParams()
    out: dict[str, list[int]] = {"naturalness": [], "no L2 decay": []}
    control = replace(preset, preset="naturalness", l2_decay=0.0)
    for seed in SEEDS:
        for name, params in (("naturalness", replace(preset, seed=seed)), ("no L2 decay", replace(control, seed=seed))):
            result = class_images(lenet, params, mean_image=None)
            verdict = judge_images(result.images, lenet, judge)
            out[name].append(verdict.recognized)
            if name == "naturalness":
                assert result.params.preset == "naturalness" and (result.params.l2_decay or 0.0) > 0
                assert bool(torch.all(verdict.lenet_logit > p99)), (seed, verdict.lenet_logit.tolist(), p99.tolist())
                assert torch.equal(verdict.lenet_top1, torch.arange(10))
    print("\njudge recognized, per seed:", out)
    return out


@pytest.mark.parametrize("seed", SEEDS)
def test_judge_recognizes_the_preset_on_every_seed(recognized, seed):
    assert recognized["naturalness"][SEEDS.index(seed)] >= 7, recognized


def test_without_the_l2_decay_the_judge_recognizes_fewer(recognized):
    assert sum(recognized["no L2 decay"]) < sum(recognized["naturalness"]), recognized
