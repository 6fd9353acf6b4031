"""Filter visualization: reproducibility, cancellation, truncation, validation, objective oracles."""

from __future__ import annotations

import gc
from collections import OrderedDict
from dataclasses import replace

import pytest
import torch
from torch import Tensor, nn

from interp.errors import Cancelled, InvalidInput
from interp.progress import StepEvent
from interp.synthesis.feature_vis import visualize_filter
from interp.synthesis.feature_vis_params import FeatureVisParams, resolve
from tests.support.tiny_models import frozen, hook_count, random_lenet

FAST = FeatureVisParams(steps=6, preview_every=0, restarts=1)


class CallCounter(nn.Module):
    """Identity that counts its forward calls."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x: Tensor) -> Tensor:
        self.calls += 1
        return x


def counted_lenet() -> tuple[nn.Sequential, CallCounter, CallCounter]:
    """Random LeNet with counters just before conv2 and just after relu2."""
    base = random_lenet()
    children = list(base.named_children())
    before, after = CallCounter(), CallCounter()
    layers: list[tuple[str, nn.Module]] = []
    for name, module in children:
        if name == "conv2":
            layers.append(("before", before))
        layers.append((name, module))
        if name == "relu2":
            layers.append(("after", after))
    return frozen(nn.Sequential(OrderedDict(layers))), before, after


def rgb_net() -> nn.Sequential:
    """A small torchvision-like RGB conv stack for ~32 px inputs."""
    torch.manual_seed(1)
    return frozen(
        nn.Sequential(
            OrderedDict(
                [
                    ("conv1", nn.Conv2d(3, 8, 3, padding=1)),
                    ("relu1", nn.ReLU()),
                    ("pool1", nn.MaxPool2d(2)),
                    ("conv2", nn.Conv2d(8, 12, 3, padding=1)),
                    ("relu2", nn.ReLU()),
                    ("pool2", nn.AdaptiveAvgPool2d(2)),
                    ("flatten", nn.Flatten()),
                    ("fc", nn.Linear(48, 4)),
                ]
            )
        )
    )


def run_lenet(params: FeatureVisParams = FAST, channels=(0, 3, 5), layer: str = "relu2", **kw):
    return visualize_filter(random_lenet(), layer, channels, in_channels=1, params=params, **kw)


def test_resolve_defaults_follow_the_model():
    lenet = resolve(None, in_channels=1, input_size=28, dense=False)
    assert (lenet.steps, lenet.image_size, lenet.learning_rate, lenet.parameterization) == (512, 28, 0.2, "pixel")
    assert (lenet.objective, lenet.seed, lenet.transforms, lenet.preview_every, lenet.restarts) == (
        "channel",
        0,
        True,
        32,
        2,
    )
    imagenet = resolve(None, in_channels=3, input_size=224, dense=False)
    assert (imagenet.steps, imagenet.image_size, imagenet.learning_rate) == (512, 128, 0.05)
    assert (imagenet.parameterization, imagenet.preview_every, imagenet.restarts) == ("fourier", 32, 1)
    # An explicit choice wins, and the learning rate default follows the parameterization.
    chosen = resolve(FeatureVisParams(parameterization="pixel", steps=10), in_channels=3, input_size=224, dense=False)
    assert (chosen.learning_rate, chosen.steps, chosen.preview_every) == (0.2, 10, 1)
    assert resolve(chosen, in_channels=3, input_size=224) == chosen  # idempotent: the server resolves first


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("steps", 0, "1..4096"),
        ("steps", 5000, "1..4096"),
        ("image_size", 8, "16..512"),
        ("image_size", 1024, "16..512"),
        ("learning_rate", 0.0, "(0, 10.0]"),
        ("learning_rate", float("nan"), "(0, 10.0]"),
        ("seed", -1, "0..9223372036854775807"),
        ("preview_every", -1, "0..4096"),
        ("objective", "max", "('channel', 'neuron')"),
        ("parameterization", "cppn", "('fourier', 'pixel')"),
        ("restarts", 0, "1..16"),
        ("preset", "pretty", "('none', 'naturalness')"),
        ("l2_decay", 1.0, "[0, 1.0)"),
        ("l2_decay", -0.1, "[0.0, 1.0]"),
        ("blur_every", -1, "0..4096"),
        ("blur_sigma", 17.0, "[0.0, 16.0]"),
        ("blur_sigma_end", float("inf"), "[0.0, 16.0]"),
        ("jitter", 8, "0..7"),
        ("scale_range", 0.6, "[0.0, 0.5]"),
        ("rotate_degrees", 90.0, "[0.0, 45.0]"),
        ("tv_weight", 0.5, "[0.0, 0.1]"),
        ("clip_norm_percentile", 100.0, "[0, 100.0)"),
        ("clip_contribution_percentile", -1.0, "[0.0, 100.0]"),
        ("start_from_mean", 1, "bool"),
    ],
)
def test_bad_params_name_the_valid_range(field, value, expected):
    with pytest.raises(InvalidInput, match=field) as info:
        run_lenet(FeatureVisParams(**{field: value}))
    assert expected in str(info.value)


def test_bad_channels_and_layer():
    with pytest.raises(InvalidInput, match=r"\[16\].*16 channels: valid \[0, 15\]"):
        run_lenet(channels=(0, 16))
    with pytest.raises(InvalidInput, match="between 1 and"):
        run_lenet(channels=())
    with pytest.raises(InvalidInput, match="unknown layer 'relu9'"):
        run_lenet(layer="relu9")


def test_same_seed_same_images_other_seed_differs():
    a = run_lenet(FeatureVisParams(steps=6, seed=3))
    b = run_lenet(FeatureVisParams(steps=6, seed=3))
    c = run_lenet(FeatureVisParams(steps=6, seed=4))
    assert torch.equal(a.images, b.images) and torch.equal(a.activations, b.activations)
    assert not torch.allclose(a.images, c.images)


def test_result_shapes_range_and_resolved_params():
    result = run_lenet(FeatureVisParams(steps=4, image_size=32))
    assert result.images.shape == (3, 1, 32, 32) and result.images.dtype == torch.float32
    assert 0.0 <= float(result.images.min()) and float(result.images.max()) <= 1.0
    assert result.activations.shape == (3,)
    expected = resolve(FeatureVisParams(steps=4, image_size=32), in_channels=1, input_size=28, dense=False)
    assert result.params == expected


@pytest.mark.parametrize("objective", ["channel", "neuron"])
def test_reported_activation_matches_an_independent_forward(objective):
    model = random_lenet()
    channels = [1, 4, 4, 9]
    result = visualize_filter(
        model, "conv2", channels, in_channels=1, params=FeatureVisParams(steps=5, objective=objective)
    )
    with torch.no_grad():
        a = model.conv2(model.pool1(model.relu1(model.bn1(model.conv1(model.normalize(result.images))))))
    picked = a[torch.arange(4), torch.tensor(channels)]  # (4, 10, 10)
    expected = picked.mean((1, 2)) if objective == "channel" else picked[:, 5, 5]
    torch.testing.assert_close(result.activations, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("parameterization", ["pixel", "fourier"])
def test_objective_increases(parameterization):
    events: list[StepEvent] = []
    params = FeatureVisParams(steps=40, transforms=False, parameterization=parameterization, preview_every=0)
    result = run_lenet(params, channels=(2, 7), layer="conv2", on_step=events.append)
    assert [e.step for e in events] == list(range(1, 41)) and all(e.total_steps == 40 for e in events)
    assert events[-1].objective > events[0].objective + 0.25
    assert float(result.activations.mean()) >= events[-1].objective - 1e-4


def dead_channel_net(inplace: bool) -> nn.Sequential:
    """Channel 0 fires only where a 3x3 patch sums above 8.5, i.e. is almost white."""
    conv = nn.Conv2d(1, 2, 3)
    with torch.no_grad():
        conv.weight.fill_(1.0)
        conv.bias.copy_(torch.tensor([-8.5, 0.0]))
    return frozen(nn.Sequential(OrderedDict([("conv", conv), ("relu", nn.ReLU(inplace=inplace))])))


def test_dead_relu_channel_is_revived_through_its_pre_activation():
    # At the random start (mean pixel 0.5) channel 0 is 0 everywhere: no gradient after the ReLU.
    params = FeatureVisParams(steps=60, transforms=False)
    revived = visualize_filter(dead_channel_net(inplace=False), "relu", [0], in_channels=1, params=params)
    assert float(revived.activations[0]) > 0.0
    # Control: an in-place ReLU destroys its input, so no surrogate is possible and it stays dead.
    dead = visualize_filter(dead_channel_net(inplace=True), "relu", [0], in_channels=1, params=params)
    assert float(dead.activations[0]) == 0.0


def test_saturated_sigmoid_channel_climbs_without_a_redirect():
    # The lecture LeNet's case: sigmoid(conv) starts near 0 (pre-activation about -4) but, unlike a dead
    # ReLU, still has a gradient: Adam's normalized steps carry it across without the ReLU redirect.
    conv = dead_channel_net(inplace=False).conv
    net = frozen(nn.Sequential(OrderedDict([("conv", conv), ("sig", nn.Sigmoid())])))
    params = FeatureVisParams(steps=60, transforms=False)
    start = visualize_filter(net, "sig", [0], in_channels=1, params=replace(params, steps=1))
    result = visualize_filter(net, "sig", [0], in_channels=1, params=params)
    assert float(start.activations[0]) < 0.1 and float(result.activations[0]) > 0.5


def test_rgb_fourier_images_are_valid_and_reproducible():
    model = rgb_net()
    params = FeatureVisParams(steps=5, image_size=32)
    a = visualize_filter(model, "relu2", [0, 11], in_channels=3, params=params, input_size=32)
    b = visualize_filter(model, "relu2", [0, 11], in_channels=3, params=params, input_size=32)
    assert a.params.parameterization == "fourier"
    assert a.images.shape == (2, 3, 32, 32) and torch.equal(a.images, b.images)
    assert 0.0 <= float(a.images.min()) and float(a.images.max()) <= 1.0
    # Decorrelated colour: the three channels differ (a per-channel sigmoid of one field would not).
    assert not torch.allclose(a.images[:, 0], a.images[:, 1])


def test_layers_after_the_objective_never_run():
    model, before, after = counted_lenet()
    visualize_filter(model, "relu2", [0, 1], in_channels=1, params=FeatureVisParams(steps=7))
    assert after.calls == 0
    assert before.calls == 7 + 2  # the steps, one probe for the channel count, one final measurement


def test_should_stop_stops_within_one_step():
    events: list[StepEvent] = []
    with pytest.raises(Cancelled, match="after 3 of 50 steps"):
        run_lenet(FeatureVisParams(steps=50), on_step=events.append, should_stop=lambda: len(events) >= 3)
    assert len(events) == 3


def test_cancelled_run_leaves_no_tensors_alive_and_no_hooks():
    model = random_lenet()
    marker = (7, 1, 23, 23)  # the optimized leaf's shape: unique in this process
    with pytest.raises(Cancelled) as info:
        visualize_filter(
            model,
            "relu2",
            range(7),
            in_channels=1,
            params=FeatureVisParams(steps=50, image_size=23, restarts=1),
            should_stop=iter([False, False, True]).__next__,
        )
    gc.collect()
    alive = [o for o in gc.get_objects() if type(o) is Tensor and o.requires_grad and tuple(o.shape) == marker]
    assert alive == [], "the cancelled loop's parameter outlived the exception"
    assert info.value.__context__ is None and info.value.__cause__ is None
    assert hook_count(model) == 0


def test_no_hook_survives_a_failing_callback():
    model = random_lenet()

    def explode(_event: StepEvent) -> None:
        raise RuntimeError("callback failed")

    with pytest.raises(RuntimeError, match="callback failed"):
        visualize_filter(model, "relu2", [0], in_channels=1, params=FAST, on_step=explode)
    assert hook_count(model) == 0


def test_module_is_left_untouched():
    model = random_lenet()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    visualize_filter(model, "relu2", [0], in_channels=1, params=FAST)
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


def test_previews_come_every_n_steps_low_resolution():
    events: list[StepEvent] = []
    run_lenet(FeatureVisParams(steps=6, preview_every=2), on_step=events.append)
    with_preview = [e.step for e in events if e.preview is not None]
    assert with_preview == [2, 4, 6]
    preview = events[1].preview
    assert preview.shape == (3, 1, 28, 28) and not preview.requires_grad
    assert 0.0 <= float(preview.min()) and float(preview.max()) <= 1.0

    events.clear()
    model = rgb_net()
    params = FeatureVisParams(steps=2, image_size=128, preview_every=1)
    visualize_filter(model, "conv1", [0], in_channels=3, params=params, on_step=events.append)
    assert events[0].preview.shape == (1, 3, 64, 64)


def test_transform_stack_is_scaled_to_the_image_size():
    from interp.synthesis.transforms import TransformSpec

    full = TransformSpec.for_size(128)
    assert (full.pad, full.jitter, full.scale, full.angle_deg, full.jitter_after) == (12, 8, 0.1, 10.0, 4)
    assert (TransformSpec.for_size(224).pad, TransformSpec.for_size(224).jitter) == (21, 14)
    small = TransformSpec.for_size(28)
    assert (small.pad, small.jitter, small.scale, small.angle_deg, small.jitter_after) == (3, 2, 0.0, 0.0, 1)


def test_restarts_keep_the_best_start_per_channel():
    params = FeatureVisParams(steps=8, transforms=False, preview_every=0)
    single = run_lenet(replace(params, restarts=1), channels=(0, 3, 5, 9))
    best_of_3 = run_lenet(replace(params, restarts=3), channels=(0, 3, 5, 9))
    assert best_of_3.images.shape == single.images.shape == (4, 1, 28, 28)
    # Restart 0 is the single run, so the best of three is never worse, channel by channel ...
    assert torch.all(best_of_3.activations >= single.activations - 1e-6)
    # ... and where restart 0 won, it is the very same image.
    same = torch.isclose(best_of_3.activations, single.activations)
    assert torch.equal(best_of_3.images[same], single.images[same])
    assert not torch.all(same)


def test_image_size_that_does_not_fit_a_linear_layer_is_invalid_input():
    with pytest.raises(InvalidInput, match="image_size 32 does not fit the model up to layer 'fc1'"):
        run_lenet(FeatureVisParams(steps=2, image_size=32), channels=(0,), layer="fc1")
    # The model's own size works for linear layers (channels are units there).
    result = run_lenet(FeatureVisParams(steps=2), channels=(0, 119), layer="fc1")
    assert result.activations.shape == (2,)


def test_preset_default_follows_the_layer_kind_and_every_regularizer_is_echoed():
    none = resolve(None, in_channels=1, input_size=28, dense=False)
    assert (none.preset, none.l2_decay, none.blur_every, none.jitter, none.scale_range) == ("none", 0.0, 0, 2, 0.0)
    natural = resolve(None, in_channels=1, input_size=28, dense=True)
    assert (natural.preset, natural.parameterization, natural.learning_rate) == ("naturalness", "fourier", 0.15)
    assert (natural.l2_decay, natural.blur_every, natural.blur_sigma, natural.blur_sigma_end) == (0.02, 4, 1.0, 0.5)
    assert (natural.jitter, natural.scale_range, natural.rotate_degrees) == (2, 0.1, 10.0)
    assert (natural.tv_weight, natural.clip_norm_percentile, natural.clip_contribution_percentile) == (0.0, 0.0, 0.0)
    assert natural.start_from_mean is False
    rgb = resolve(None, in_channels=3, input_size=224, dense=True)
    assert (rgb.preset, rgb.learning_rate, rgb.l2_decay, rgb.jitter, rgb.blur_sigma_end) == (
        "naturalness",
        0.05,
        0.0001,
        8,
        0.0,
    )
    # An explicit regularizer wins over the preset; the layer kind decides only the default preset.
    chosen = resolve(FeatureVisParams(preset="naturalness", l2_decay=0.0), in_channels=1, input_size=28, dense=False)
    assert (chosen.preset, chosen.l2_decay, chosen.blur_every) == ("naturalness", 0.0, 4)
    pixels = resolve(FeatureVisParams(parameterization="pixel"), in_channels=1, input_size=28, dense=True)
    assert (pixels.parameterization, pixels.learning_rate) == ("pixel", 0.4)
    # Unknown layer kind: what the preset decides stays open, everything else is resolved.
    early = resolve(None, in_channels=1, input_size=28)
    assert (early.preset, early.l2_decay, early.learning_rate, early.parameterization) == (None, None, None, None)
    assert early.steps == 512
    assert resolve(early, in_channels=1, input_size=28, dense=True) == natural


def test_params_dataclass_and_proto_message_have_the_same_fields():
    from dataclasses import fields

    from protos import interp_pb2 as pb

    assert {f.name for f in fields(FeatureVisParams)} == set(pb.VisualizeFilterParams.DESCRIPTOR.fields_by_name)


def test_visualize_filter_picks_the_preset_by_layer_kind():
    fc = run_lenet(FeatureVisParams(steps=4, restarts=1), channels=(0, 9), layer="fc3")
    conv = run_lenet(FeatureVisParams(steps=4, restarts=1), channels=(0,), layer="conv2")
    assert fc.params.preset == "naturalness" and fc.params.l2_decay == 0.02
    assert conv.params.preset == "none" and conv.params.l2_decay == 0.0
    assert fc.images.shape == (2, 1, 28, 28)
    relu4 = run_lenet(FeatureVisParams(steps=2, restarts=1), channels=(5,), layer="relu4")
    assert (relu4.params.preset, relu4.params.parameterization) == ("naturalness", "fourier")


def test_gaussian_blur_matches_scipy():
    from scipy.ndimage import gaussian_filter

    from interp.synthesis.regularizers import gaussian_blur

    x = torch.rand(2, 3, 20, 17, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for sigma in (1.0, 2.0):
        expected = gaussian_filter(x.numpy(), sigma=(0, 0, sigma, sigma), mode="mirror", truncate=3.0)
        torch.testing.assert_close(gaussian_blur(x, sigma), torch.from_numpy(expected))
    assert torch.equal(gaussian_blur(x, 0.0), x)


@pytest.mark.parametrize(("kind", "channels"), [("pixel", 1), ("pixel", 3), ("fourier", 3), ("fourier", 1)])
def test_write_back_inverts_the_parameterization(kind, channels):
    from interp.synthesis.parameterization import parameterize

    gen = torch.Generator().manual_seed(0)
    image = parameterize(kind, 2, 1, channels, 18, gen, torch.device("cpu"), torch.float64)
    target = torch.rand(2, channels, 18, 18, generator=gen, dtype=torch.float64) * 0.98 + 0.01
    image.set_images(target)
    torch.testing.assert_close(image.images(), target)


def _regularizers(**kw):
    from interp.synthesis.regularizers import Regularizers

    off = dict(l2_decay=0.0, blur_every=0, tv_weight=0.0, clip_norm_percentile=0.0, clip_contribution_percentile=0.0)
    p = resolve(FeatureVisParams(**{**off, **kw}, steps=10), in_channels=1, input_size=28, dense=False)
    return Regularizers(p, torch.full((1, 1, 1, 1), 0.25, dtype=torch.float64))


def test_each_regularizer_does_what_its_docstring_says():
    x = torch.rand(1, 1, 10, 10, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    torch.testing.assert_close(_regularizers(l2_decay=0.1)(x, 0, None), 0.25 + 0.9 * (x - 0.25))
    # Blur every 2nd step, width 2 -> 0 linearly over 10 steps: step index 1 blurs with 2 - 2/9 px.
    from interp.synthesis.regularizers import gaussian_blur

    blur = _regularizers(blur_every=2, blur_sigma=2.0, blur_sigma_end=0.0)
    assert not blur.active(0) and blur.active(1) and not blur.active(9)  # the last width is 0
    torch.testing.assert_close(blur(x, 1, None), gaussian_blur(x, 2.0 - 2.0 / 9).clamp(0, 1))
    # Norm clipping: the half of the pixels closest to the reference are set to it.
    clipped = _regularizers(clip_norm_percentile=50.0)(x, 0, None)
    moved = (clipped != x).flatten()
    assert int(moved.sum()) == 50 and bool(torch.all(clipped.flatten()[moved] == 0.25))
    assert float((x.flatten()[moved] - 0.25).abs().max()) <= float((x.flatten()[~moved] - 0.25).abs().min())
    # Contribution clipping ranks by |(x - r) * grad|: with the gradient zero on the left half,
    # exactly the left half goes.
    grad = torch.ones_like(x)
    grad[..., :5] = 0.0
    by_contribution = _regularizers(clip_contribution_percentile=50.0)(x, 0, grad)
    assert bool(torch.all(by_contribution[..., :5] == 0.25)) and torch.equal(by_contribution[..., 5:], x[..., 5:])
    # Total variation: a step against the sign of the neighbour differences flattens an edge.
    edge = torch.zeros(1, 1, 4, 4, dtype=torch.float64)
    edge[..., 2:] = 1.0
    tv = _regularizers(tv_weight=0.1)(edge, 0, None)
    assert torch.equal(tv[..., 1], torch.full((1, 1, 4), 0.1, dtype=torch.float64))
    assert torch.equal(tv[..., 2], torch.full((1, 1, 4), 0.9, dtype=torch.float64))


def test_size_preserving_transforms_keep_the_side_and_are_identity_when_off():
    from interp.synthesis.feature_vis_params import transform_spec
    from interp.synthesis.transforms import TransformSpec, random_transform

    p = resolve(FeatureVisParams(preset="naturalness"), in_channels=1, input_size=28, dense=True)
    spec = transform_spec(p, keep_size=True, background=0.0)
    x = torch.rand(3, 1, 28, 28)
    gen = torch.Generator().manual_seed(0)
    assert all(random_transform(x, spec, gen).shape == x.shape for _ in range(20))
    identity = transform_spec(
        replace(p, jitter=0, scale_range=0.0, rotate_degrees=0.0), keep_size=True, background=0.0
    )
    torch.testing.assert_close(random_transform(x, identity, gen), x)
    # The historical stack at the default sizes is exactly Lucid's, scaled (preset "none").
    for size in range(16, 513):
        none = resolve(FeatureVisParams(image_size=size), in_channels=3, input_size=224, dense=False)
        assert transform_spec(none, keep_size=False, background=0.5) == TransformSpec.for_size(size)
    wider = resolve(FeatureVisParams(jitter=6, image_size=128), in_channels=3, input_size=224, dense=False)
    spec = transform_spec(wider, keep_size=False, background=0.5)
    assert (spec.pad, spec.jitter, spec.jitter_after) == (9, 6, 3)


def test_start_from_mean_needs_the_mean_image_and_starts_there():
    params = FeatureVisParams(steps=3, start_from_mean=True, preview_every=1, restarts=1)
    with pytest.raises(InvalidInput, match="mean_image"):
        run_lenet(params, layer="fc3")
    with pytest.raises(InvalidInput, match=r"shape \(1, 28, 28\)"):
        run_lenet(params, layer="fc3", mean_image=torch.zeros(1, 27, 27))
    mean = torch.zeros(1, 28, 28)
    mean[:, 6:22, 8:20] = 0.6
    events: list[StepEvent] = []
    result = run_lenet(params, channels=(0, 1), layer="fc3", mean_image=mean, on_step=events.append)
    first = events[0].preview  # the images the first step saw: the mean plus logit noise N(0, 0.1)
    assert float((first - mean).abs().max()) < 0.15
    assert result.params.start_from_mean is True


def test_naturalness_images_are_smoother_than_the_plain_ascent():
    # Total variation of the result: the blur, decay and robustness must show in the image.
    def tv(images: Tensor) -> float:
        return float(
            (images[..., 1:, :] - images[..., :-1, :]).abs().mean() + (images[..., 1:] - images[..., :-1]).abs().mean()
        )

    base = FeatureVisParams(steps=60, restarts=1, preview_every=0)
    plain = run_lenet(replace(base, preset="none"), channels=(0, 1, 2), layer="fc3")
    natural = run_lenet(replace(base, preset="naturalness"), channels=(0, 1, 2), layer="fc3")
    assert tv(natural.images) < 0.6 * tv(plain.images)
