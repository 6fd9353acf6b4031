"""Dataset-level job budgets (server/budgets.py): counts against independent figures, refusals named."""

from __future__ import annotations

import dataclasses

import pytest
import torchvision

from models.hub import ModelHub
from models.weights import WeightsOptions
from server import budgets
from server.config import Limits
from server.errors import Overloaded


@pytest.fixture(scope="module")
def hub() -> ModelHub:
    return ModelHub(["lenet", "alexnet", "vgg16"], WeightsOptions(random=True))


@pytest.mark.parametrize(
    ("name", "weights"),
    [
        ("alexnet", torchvision.models.AlexNet_Weights.IMAGENET1K_V1),
        ("vgg16", torchvision.models.VGG16_Weights.IMAGENET1K_V1),
    ],
)
def test_forward_macs_equal_torchvisions_published_operation_count(hub: ModelHub, name: str, weights) -> None:
    # torchvision's metadata gives GFLOPS counted as multiply-adds of conv and linear layers.
    assert budgets.forward_macs(hub.ready(name)) / 1e9 == pytest.approx(weights.meta["_ops"], rel=5e-3)


def test_forward_macs_of_lenet_by_hand(hub: ModelHub) -> None:
    # conv1 6x28x28 outputs of 1x5x5, conv2 16x10x10 of 6x5x5, fc 400x120, 120x84, 84x10
    by_hand = 6 * 28 * 28 * 25 + 16 * 10 * 10 * 150 + 400 * 120 + 120 * 84 + 84 * 10
    assert budgets.forward_macs(hub.ready("lenet")) == by_hand


def test_a_job_over_either_budget_is_refused_naming_it() -> None:
    limits = dataclasses.replace(Limits(), max_job_bytes=1000, max_job_macs=10**6)
    budgets.check(limits, "BuildIndex", budgets.JobCost(1000, 10**6, "sizes"), "use fewer images")
    bytes_refusal = r"BuildIndex: sizes would hold about 1,001 bytes, .* max_job_bytes=1,000 \(--max-job-mb\); use"
    with pytest.raises(Overloaded, match=bytes_refusal):
        budgets.check(limits, "BuildIndex", budgets.JobCost(1001, 1, "sizes"), "use fewer images")
    work_refusal = r"about 1,000,001 multiply-adds, .* max_job_macs=1,000,000 \(--max-job-gmacs\)"
    with pytest.raises(Overloaded, match=work_refusal):
        budgets.check(limits, "BuildIndex", budgets.JobCost(1, 10**6 + 1, "sizes"), "use fewer images")


def test_wide_pca_maps_are_cheap_and_huge_ones_are_not(hub: ModelHub) -> None:
    small = budgets.map_cost(6, 9216, "pca", 50, 500, 30.0)  # AlexNet flatten over a 6-image folder
    assert small.bytes < 10**6 and small.macs < 10**7
    vgg = budgets.map_cost(64, 25088, "tsne", 50, 750, 10.0)  # VGG16 flatten over 64 images
    budgets.check(Limits(), "Embedding", vgg, "")
    huge = budgets.map_cost(70_000, 25088, "tsne", 50, 750, 30.0)
    with pytest.raises(Overloaded, match="max_job_bytes"):
        budgets.check(dataclasses.replace(Limits(), max_job_bytes=4 * 10**9), "Embedding", huge, "")
