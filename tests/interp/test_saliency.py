"""Saliency methods against independent derivations and captum called directly."""

from __future__ import annotations

import copy

import pytest
import torch
from captum.attr import LayerAttribution, LayerGradCam, NoiseTunnel, Saliency

from interp.attribution.saliency import METHODS, SaliencyParams, default_gradcam_layer, saliency
from interp.errors import InvalidInput
from tests.support.tiny_models import hook_count, images, random_lenet, tiny_net

FAST = SaliencyParams(samples=8, steps=16, batch_size=4)


def autograd_gradient(model, x, target):
    """Oracle: d logit[i, target[i]] / d x by plain autograd, one image at a time."""
    grads = []
    for i in range(x.shape[0]):
        xi = x[i : i + 1].clone().requires_grad_(True)
        (g,) = torch.autograd.grad(model(xi)[0, int(target[i])], xi)
        grads.append(g)
    return torch.cat(grads)


@pytest.mark.parametrize("method", METHODS)
def test_shapes_and_non_negative_maps(method):
    model, x = tiny_net(), images(3, 3, 8)
    result = saliency(model, x, method=method, params=FAST)
    assert result.map.shape == (3, 8, 8) and result.map.dtype == torch.float32
    assert (result.map >= 0).all()
    assert not result.map.requires_grad and not result.attribution.requires_grad
    expected_attr = (3, 1, 2, 2) if method == "grad_cam" else (3, 3, 8, 8)
    assert result.attribution.shape == expected_attr
    assert result.target.dtype == torch.int64 and result.target.shape == (3,)


def test_gradient_equals_autograd_derivation():
    model, x = tiny_net(), images(4, 3, 8)
    target = torch.tensor([0, 1, 2, 4])
    result = saliency(model, x, target, method="gradient")
    grad = autograd_gradient(model, x, target)
    torch.testing.assert_close(result.attribution, grad, rtol=0, atol=1e-7)
    torch.testing.assert_close(result.map, grad.abs().amax(dim=1), rtol=0, atol=1e-7)
    assert torch.equal(result.target, target)


def test_gradient_on_lenet_default_target_is_prediction():
    model, x = random_lenet(), images(3, 1, 28)
    result = saliency(model, x, method="gradient")
    with torch.no_grad():
        logits = model(x)
    assert torch.equal(result.target, logits.argmax(dim=1))
    torch.testing.assert_close(result.probabilities, torch.softmax(logits, dim=1))
    grad = autograd_gradient(model, x, result.target)
    torch.testing.assert_close(result.map, grad.abs().amax(dim=1), rtol=1e-5, atol=1e-8)


def test_gradient_x_input_is_input_times_gradient():
    model, x = tiny_net(), images(2, 3, 8)
    target = torch.tensor([3, 1])
    result = saliency(model, x, target, method="gradient_x_input")
    torch.testing.assert_close(result.attribution, x * autograd_gradient(model, x, target), rtol=0, atol=1e-7)


def test_grad_cam_equals_captum_layer_grad_cam():
    model, x = random_lenet(), images(3, 1, 28)
    target = torch.tensor([1, 5, 9])
    result = saliency(model, x, target, method="grad_cam", params=SaliencyParams(layer="conv1"))
    cam = LayerGradCam(model, model.conv1).attribute(x.clone(), target=target, relu_attributions=True)
    assert torch.equal(result.attribution, cam)
    upsampled = LayerAttribution.interpolate(cam, (28, 28), interpolate_mode="bilinear")
    assert torch.equal(result.map, upsampled[:, 0])
    assert result.params.layer == "conv1"


def test_grad_cam_default_layer_is_the_last_convs_rectified_maps():
    model = random_lenet()  # conv2, bn2, relu2
    assert default_gradcam_layer(model) == "relu2"
    result = saliency(model, images(1, 1, 28), method="grad_cam")
    assert result.params.layer == "relu2" and result.attribution.shape == (1, 1, 10, 10)
    # no ReLU right after the last conv (a sigmoid; a pool first): the conv itself
    for after in (torch.nn.Sigmoid(), torch.nn.MaxPool2d(2)):
        assert default_gradcam_layer(torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), after, torch.nn.ReLU())) == "0"

    class SharedReLU(torch.nn.Module):  # one ReLU module, applied after the conv and after the linear layer
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.relu, self.fc = torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Linear(4 * 26 * 26, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.relu(self.fc(self.relu(self.conv(x)).flatten(1)))

    shared = SharedReLU()
    assert default_gradcam_layer(shared) == "relu"  # registration order alone
    assert default_gradcam_layer(shared, images(1, 1, 28)) == "conv"  # its last output is not the conv's maps
    assert saliency(shared, images(1, 1, 28), method="grad_cam").params.layer == "conv"


def test_grad_cam_rejects_layer_without_spatial_output():
    with pytest.raises(InvalidInput, match=r"\(B, C, h, w\) output; 'fc1'"):
        saliency(random_lenet(), images(1, 1, 28), method="grad_cam", params=SaliencyParams(layer="fc1"))
    with pytest.raises(InvalidInput, match="valid layers: .*conv2"):
        saliency(random_lenet(), images(1, 1, 28), method="grad_cam", params=SaliencyParams(layer="conv7"))


def guided_relu_model(model):
    """Oracle for guided backprop: every ReLU replaced by a function with the guided gradient."""

    class GuidedReLU(torch.autograd.Function):
        @staticmethod
        def forward(ctx, inp):
            ctx.save_for_backward(inp)
            return inp.clamp_min(0)

        @staticmethod
        def backward(ctx, grad_out):
            (inp,) = ctx.saved_tensors
            return grad_out.clamp_min(0) * (inp > 0)

    class Guided(torch.nn.Module):
        def forward(self, inp):
            return GuidedReLU.apply(inp)

    guided = copy.deepcopy(model)
    for name, module in list(guided.named_children()):
        if isinstance(module, torch.nn.ReLU):
            setattr(guided, name, Guided())
    return guided


@pytest.mark.parametrize("inplace", [False, True])
def test_guided_backprop_equals_guided_relu_derivation(inplace):
    model, x = tiny_net(inplace=inplace), images(3, 3, 8)
    target = torch.tensor([0, 2, 4])
    result = saliency(model, x, target, method="guided_backprop")
    expected = autograd_gradient(guided_relu_model(model), x, target)
    torch.testing.assert_close(result.attribution, expected, rtol=0, atol=1e-7)
    # The shared module is untouched: in-place flags kept, no hooks left behind.
    assert model.relu1.inplace is inplace and model.relu2.inplace is inplace
    assert hook_count(model) == 0


def test_smoothgrad_is_captum_noise_tunnel_with_relative_noise():
    model, x = random_lenet(), images(1, 1, 28)
    params = SaliencyParams(samples=10, noise_level=0.2, seed=7, batch_size=4)
    result = saliency(model, x, method="smoothgrad", params=params)
    target = int(result.target[0])
    # captum as shipped, drawing from the global RNG seeded the same way.
    with torch.random.fork_rng():
        torch.manual_seed(7)
        expected = NoiseTunnel(Saliency(model)).attribute(
            x.clone().requires_grad_(True),
            nt_type="smoothgrad",
            nt_samples=10,
            nt_samples_batch_size=4,
            stdevs=0.2 * float(x.max() - x.min()),
            target=target,
            abs=False,
        )
    torch.testing.assert_close(result.attribution, expected, rtol=0, atol=0)


def test_smoothgrad_seeded_and_leaves_global_rng_alone():
    model, x = random_lenet(), images(2, 1, 28)
    state = torch.get_rng_state()
    a = saliency(model, x, method="smoothgrad", params=FAST)
    b = saliency(model, x, method="smoothgrad", params=FAST)
    c = saliency(model, x, method="smoothgrad", params=SaliencyParams(samples=8, batch_size=4, seed=1))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a.map, b.map)
    assert not torch.allclose(a.map, c.map)


def test_smoothgrad_of_a_batch_equals_images_one_by_one():
    model, x = random_lenet(), images(3, 1, 28)
    batch = saliency(model, x, method="smoothgrad", params=FAST)
    singles = torch.cat([saliency(model, x[i : i + 1], method="smoothgrad", params=FAST).map for i in range(3)])
    torch.testing.assert_close(batch.map, singles, rtol=0, atol=0)


def test_smoothgrad_without_noise_is_gradient():
    model, x = random_lenet(), images(2, 1, 28)
    smooth = saliency(model, x, method="smoothgrad", params=SaliencyParams(samples=3, noise_level=0.0))
    plain = saliency(model, x, method="gradient")
    torch.testing.assert_close(smooth.map, plain.map, rtol=1e-5, atol=1e-8)


def test_integrated_gradients_completeness():
    model, x = tiny_net(), images(3, 3, 8)
    target = torch.tensor([0, 1, 2])
    result = saliency(model, x, target, method="integrated_gradients", params=SaliencyParams(steps=200))
    with torch.no_grad():
        gain = model(x).gather(1, target[:, None])[:, 0] - model(torch.zeros_like(x)).gather(1, target[:, None])[:, 0]
    total = result.attribution.sum(dim=(1, 2, 3))
    torch.testing.assert_close(total, gain, rtol=0.02, atol=1e-3)


def test_integrated_gradients_batch_size_does_not_change_result():
    model, x = tiny_net(), images(2, 3, 8)
    a = saliency(model, x, method="integrated_gradients", params=SaliencyParams(steps=20, batch_size=3))
    b = saliency(model, x, method="integrated_gradients", params=SaliencyParams(steps=20, batch_size=20))
    torch.testing.assert_close(a.attribution, b.attribution, rtol=1e-5, atol=1e-7)


def test_inputs_are_not_modified():
    model, x = tiny_net(), images(2, 3, 8)
    before = x.clone()
    for method in METHODS:
        saliency(model, x, method=method, params=FAST)
    assert torch.equal(x, before) and not x.requires_grad


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "deeplift"}, "valid methods: gradient, gradient_x_input, smoothgrad"),
        ({"method": "gradient", "target": torch.tensor([5])}, r"target classes must be in 0\.\.4, got \[5\]"),
        ({"method": "smoothgrad", "target": torch.tensor([-1])}, r"0\.\.4"),
        ({"method": "gradient", "target": torch.tensor([0, 1])}, r"\(1,\) integer tensor"),
        ({"method": "gradient", "target": torch.tensor([0.0])}, r"\(1,\) integer tensor"),
        (
            {"method": "smoothgrad", "params": SaliencyParams(samples=0)},
            r"samples must be an integer in 1\.\.1000",
        ),
        ({"method": "smoothgrad", "params": SaliencyParams(noise_level=float("nan"))}, r"\[0, 1.0\]"),
        ({"method": "smoothgrad", "params": SaliencyParams(noise_level=-0.1)}, r"\[0, 1.0\]"),
        ({"method": "integrated_gradients", "params": SaliencyParams(steps=1001)}, r"1\.\.1000"),
        (
            {"method": "integrated_gradients", "params": SaliencyParams(batch_size=0)},
            r"batch_size .* 1\.\.1024",
        ),
        ({"method": "smoothgrad", "params": SaliencyParams(seed=2**63)}, "seed must be an integer"),
    ],
)
def test_bad_parameters_name_the_valid_range(kwargs, message):
    with pytest.raises(InvalidInput, match=message):
        saliency(tiny_net(), images(1, 3, 8), **kwargs)


# -- a unit's guided-backprop projection (TopActivations' projections) ------------------------


def test_unit_guided_backprop_is_per_image_and_leaves_no_hook() -> None:
    from interp.attribution.unit_projection import unit_guided_backprop

    model = random_lenet(3)
    x = images(3, 1, 28, seed=4)
    channels, ys, xs = torch.tensor([0, 2, 5]), torch.tensor([3, 0, 4]), torch.tensor([1, 4, 2])
    together = unit_guided_backprop(model, x, "relu2", channels, ys, xs)
    assert together.shape == x.shape and hook_count(model) == 0
    for i in range(3):  # the batch only stacks independent images
        alone = unit_guided_backprop(model, x[i : i + 1], "relu2", channels[i : i + 1], ys[i : i + 1], xs[i : i + 1])
        torch.testing.assert_close(together[i : i + 1], alone, rtol=1e-5, atol=1e-7)
    with pytest.raises(InvalidInput, match="channels must have shape"):
        unit_guided_backprop(model, x, "relu2", channels[:2], ys, xs)
    with pytest.raises(InvalidInput, match="unknown layer"):
        unit_guided_backprop(model, x, "nope", channels, ys, xs)
    assert hook_count(model) == 0
