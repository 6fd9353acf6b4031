"""Activations, kernels and predict against independent oracles (plain forward hooks, softmax)."""

from __future__ import annotations

import pytest
import torch

from interp.errors import InvalidInput
from interp.single_pass import activations, kernels, predict
from tests.support.tiny_models import images, random_lenet, tiny_net


def full_forward_outputs(model, x, layers):
    """Oracle: forward hooks on the full, untruncated model."""
    store, handles = {}, []
    for name in layers:
        module = model.get_submodule(name)
        handles.append(module.register_forward_hook(lambda _m, _i, out, name=name: store.__setitem__(name, out)))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return store


@pytest.mark.parametrize("layers", [["conv1"], ["relu2", "conv1", "fc1"], ["fc3"], ["pool2", "flatten"]])
def test_activations_equal_full_forward_hook_outputs(layers):
    model = random_lenet()
    x = images(3, 1, 28)
    expected = full_forward_outputs(model, x, layers)
    got = activations(model, x, layers)
    assert list(got) == layers
    for name in layers:
        assert got[name].layer == name
        assert got[name].tensor.dtype == torch.float32
        assert not got[name].tensor.requires_grad
        assert torch.equal(got[name].tensor, expected[name])


def test_one_truncated_forward_for_several_layers():
    model = random_lenet()
    order = [name for name, _ in model.named_children()]
    calls = dict.fromkeys(order, 0)
    handles = [
        model.get_submodule(name).register_forward_hook(lambda *_a, name=name: calls.__setitem__(name, calls[name] + 1))
        for name in order
    ]
    try:
        activations(model, images(2, 1, 28), ["pool1", "conv1", "relu2"])
    finally:
        for h in handles:
            h.remove()
    deepest = order.index("relu2")
    assert all(calls[name] == 1 for name in order[: deepest + 1]), calls  # one forward, not three
    assert all(calls[name] == 0 for name in order[deepest + 1 :]), calls  # stopped at relu2


def test_channel_statistics_and_top_k():
    model = random_lenet()
    x = images(4, 1, 28, seed=1)
    got = activations(model, x, ["conv2", "fc1"], top_k=5)
    conv = got["conv2"]
    assert torch.allclose(conv.channel_mean, conv.tensor.mean(dim=(2, 3)))
    assert torch.equal(conv.channel_max, conv.tensor.amax(dim=(2, 3)))
    order = torch.argsort(conv.channel_mean, dim=1, descending=True)[:, :5]
    assert torch.equal(conv.top_channels, order)
    fc = got["fc1"]  # (B, F): one value per "channel"
    assert fc.tensor.shape == (4, 120)
    assert torch.equal(fc.channel_mean, fc.tensor) and torch.equal(fc.channel_max, fc.tensor)
    assert fc.top_channels.shape == (4, 5)


def test_top_k_zero_gives_empty_ranking():
    got = activations(random_lenet(), images(2, 1, 28), ["conv1"])
    assert got["conv1"].top_channels.shape == (2, 0)
    assert got["conv1"].top_channels.dtype == torch.int64


def test_duplicate_layers_reported_once():
    got = activations(random_lenet(), images(1, 1, 28), ["conv1", "conv1"])
    assert list(got) == ["conv1"]


def test_top_k_out_of_range_names_valid_range():
    model = random_lenet()
    with pytest.raises(InvalidInput, match=r"0\.\.6.*'conv1'"):
        activations(model, images(1, 1, 28), ["conv1", "conv2"], top_k=7)
    with pytest.raises(InvalidInput, match=">= 0"):
        activations(model, images(1, 1, 28), ["conv1"], top_k=-1)
    activations(model, images(1, 1, 28), ["conv1", "conv2"], top_k=6)  # the bound itself is valid


def test_bad_layers_and_batch():
    model = random_lenet()
    with pytest.raises(InvalidInput, match="valid layers: .*conv1"):
        activations(model, images(1, 1, 28), ["conv9"])
    with pytest.raises(InvalidInput, match="sequence of module paths"):
        activations(model, images(1, 1, 28), "conv1")
    with pytest.raises(InvalidInput, match="at least one layer"):
        activations(model, images(1, 1, 28), [])
    with pytest.raises(InvalidInput, match=r"\[0, 1\]"):
        activations(model, images(1, 1, 28) * 2, ["conv1"])
    with pytest.raises(InvalidInput, match="NaN"):
        activations(model, torch.full((1, 1, 28, 28), float("nan")), ["conv1"])


def test_predict_is_softmax_of_logits():
    model = random_lenet()
    x = images(5, 1, 28)
    probs = predict(model, x)
    with torch.no_grad():
        expected = torch.softmax(model(x), dim=1)
    assert torch.allclose(probs, expected)
    assert torch.allclose(probs.sum(dim=1), torch.ones(5))


def test_kernels_are_copies_of_conv_weights():
    model = random_lenet()
    k = kernels(model, "conv2")
    assert torch.equal(k.weights, model.conv2.weight) and torch.equal(k.bias, model.conv2.bias)
    assert k.weights.shape == (16, 6, 5, 5) and not k.rgb
    k.weights.zero_()
    assert model.conv2.weight.abs().sum() > 0  # a copy, not a view of the model's parameter
    rgb = kernels(tiny_net(), "conv1")
    assert rgb.rgb and rgb.weights.shape == (4, 3, 3, 3)


def test_kernels_without_bias():
    model = tiny_net()
    model.conv2.bias = None
    assert kernels(model, "conv2").bias is None


def test_kernels_reject_non_conv_layer():
    with pytest.raises(InvalidInput, match=r"'fc1' is a Linear, not a Conv2d; conv layers: conv1, conv2"):
        kernels(random_lenet(), "fc1")
    with pytest.raises(InvalidInput, match="unknown layer"):
        kernels(random_lenet(), "nope")
