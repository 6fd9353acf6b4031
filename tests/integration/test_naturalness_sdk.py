"""The naturalness preset and its regularizer parameters through the SDK and the real server."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from client import InterpClient, errors


@pytest.fixture(scope="module")
def client(target) -> Iterator[InterpClient]:
    with InterpClient(target, timeout=120) as c:
        yield c


def test_class_logits_default_to_naturalness_and_every_regularizer_is_echoed(client):
    r = client.visualize_filter("lenet", "fc3", [0, 7], steps=8, preview_every=0)
    assert r.images.shape == (2, 28, 28, 1)
    assert r.params["preset"] == "naturalness" and r.params["parameterization"] == "fourier"
    assert r.params["learning_rate"] == pytest.approx(0.15)
    assert r.params["l2_decay"] == pytest.approx(0.02) and r.params["blur_every"] == 4
    assert r.params["blur_sigma"] == pytest.approx(1.0) and r.params["blur_sigma_end"] == pytest.approx(0.5)
    assert (r.params["jitter"], r.params["scale_range"], r.params["rotate_degrees"]) == pytest.approx((2, 0.1, 10.0))
    conv = client.visualize_filter("lenet", "conv2", [0], steps=4, preview_every=0)
    assert conv.params["preset"] == "none" and conv.params["learning_rate"] == pytest.approx(0.2)
    assert conv.params["parameterization"] == "pixel"


def test_explicit_regularizers_win_and_reach_the_method(client):
    r = client.visualize_filter(
        "lenet", "relu4", [3], steps=8, preview_every=0, preset="naturalness", l2_decay=0.0, tv_weight=0.01,
        clip_norm_percentile=20.0,
    )  # fmt: skip
    assert r.params["preset"] == "naturalness" and r.params["l2_decay"] == 0.0
    assert r.params["tv_weight"] == pytest.approx(0.01) and r.params["clip_norm_percentile"] == pytest.approx(20.0)
    plain = client.visualize_filter("lenet", "fc3", [0], steps=8, preview_every=0, preset="none")
    assert plain.params["preset"] == "none" and plain.params["blur_every"] == 0


def test_bad_preset_values_are_invalid_arguments(client):
    with pytest.raises(errors.InvalidArgument, match="preset must be one of"):
        client.visualize_filter("lenet", "fc3", [0], steps=2, preset="pretty")
    with pytest.raises(errors.InvalidArgument, match="l2_decay"):
        client.visualize_filter("lenet", "fc3", [0], steps=2, l2_decay=1.5)


def test_start_from_mean_starts_from_the_training_set_mean(client):
    from models.datasets import load_dataset

    images = load_dataset("fashion-mnist", "train", download=False)[0]
    mean = images.mean(axis=0) / 255.0
    # With no steps to speak of, the image is still (about) the mean image it started from.
    r = client.visualize_filter("lenet", "fc3", [0], steps=1, start_from_mean=True, transforms=False)
    assert r.params["start_from_mean"] is True and r.params["preset"] == "naturalness"
    assert float(np.abs(r.images[0, ..., 0] - mean).mean()) < 0.05
