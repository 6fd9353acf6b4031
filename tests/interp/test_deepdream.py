"""DeepDream: a one-step oracle, octaves, reproducibility, cancellation, truncation, validation."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch import nn

from interp.errors import Cancelled, InvalidInput
from interp.progress import StepEvent
from interp.synthesis.deepdream import DeepDreamParams, deepdream, resolve
from tests.support.tiny_models import frozen, hook_count, images, random_lenet

FAST = DeepDreamParams(iterations=3, preview_every=0)


class CallCounter(nn.Module):
    """Identity that counts its forward calls."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return x


def image28(seed: int = 0) -> torch.Tensor:
    return images(1, 1, 28, seed=seed)


def test_resolve_defaults_follow_the_image_size():
    lenet = resolve(None, in_channels=1, input_size=28)
    assert (lenet.octaves, lenet.octave_scale, lenet.iterations, lenet.step_size, lenet.jitter) == (
        3,
        1.4,
        20,
        0.05,
        2,
    )
    assert (lenet.seed, lenet.preview_every) == (0, 3)
    imagenet = resolve(None, in_channels=3, input_size=224)
    assert (imagenet.octaves, imagenet.iterations, imagenet.step_size, imagenet.jitter) == (4, 10, 0.006, 32)
    assert imagenet.preview_every == 2


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        (DeepDreamParams(octaves=0), r"octaves must be an integer in 1\.\.10"),
        (DeepDreamParams(octaves=6), "at most 4 octaves fit"),
        (DeepDreamParams(octave_scale=1.0), r"octave_scale must be a finite number in \[1.01, 4.0\]"),
        (DeepDreamParams(iterations=1001), r"iterations must be an integer in 1\.\.1000"),
        (DeepDreamParams(step_size=0.0), r"step_size must be a finite number in \(0.0, 1.0\]"),
        (DeepDreamParams(step_size=float("inf")), r"step_size must be a finite number in \(0.0, 1.0\]"),
        (DeepDreamParams(jitter=-1), r"jitter must be an integer in 0\.\.256"),
        (DeepDreamParams(seed=-5), "seed must be an integer"),
    ],
)
def test_bad_params_name_the_valid_range(params, expected):
    with pytest.raises(InvalidInput, match=expected):
        deepdream(random_lenet(), image28(), {"relu2": 1.0}, params=params)


def test_bad_inputs():
    model = random_lenet()
    with pytest.raises(InvalidInput, match=r"one image.*\(2, 1, 28, 28\)"):
        deepdream(model, images(2, 1, 28), {"relu2": 1.0})
    with pytest.raises(InvalidInput, match=r"pixels must lie in \[0, 1\]"):
        deepdream(model, image28() * 3, {"relu2": 1.0})
    with pytest.raises(InvalidInput, match="between 1 and 16 layers"):
        deepdream(model, image28(), {})
    with pytest.raises(InvalidInput, match="unknown layer 'relu7'"):
        deepdream(model, image28(), {"relu7": 1.0})
    with pytest.raises(InvalidInput, match="must be finite"):
        deepdream(model, image28(), {"relu2": float("nan")})
    with pytest.raises(InvalidInput, match="non-zero"):
        deepdream(model, image28(), {"relu2": 0.0})


def test_one_step_matches_an_independent_implementation():
    model = random_lenet()
    x = image28()
    params = DeepDreamParams(octaves=1, iterations=1, jitter=0, step_size=0.03)
    result = deepdream(model, x, {"relu1": 0.5, "relu2": 2.0}, params=params)

    # Oracle: plain forward through the Sequential, no hooks, no truncation.
    z = x.clone().requires_grad_(True)
    h = model.relu1(model.bn1(model.conv1(model.normalize(z))))
    a2 = model.relu2(model.bn2(model.conv2(model.pool1(h))))
    objective = 0.5 * 0.5 * h.pow(2).sum() + 2.0 * 0.5 * a2.pow(2).sum()
    (g,) = torch.autograd.grad(objective, z)
    expected = (x + 0.03 / g.abs().mean() * g).clamp(0, 1)
    torch.testing.assert_close(result.image, expected, rtol=1e-5, atol=1e-6)

    assert result.norms_before["relu2"] == pytest.approx(float(a2.detach().norm()), rel=1e-5)
    with torch.no_grad():
        after = model.relu2(model.bn2(model.conv2(model.pool1(model.relu1(model.bn1(model.conv1(
            model.normalize(result.image))))))))  # fmt: skip
    assert result.norms_after["relu2"] == pytest.approx(float(after.norm()), rel=1e-5)


def test_octaves_run_smallest_first_and_end_at_the_input_size():
    events: list[StepEvent] = []
    params = DeepDreamParams(iterations=2, preview_every=1)
    result = deepdream(random_lenet(), image28(), {"relu2": 1.0}, params=params, on_step=events.append)
    assert [e.preview.shape[-1] for e in events] == [14, 14, 20, 20, 28, 28]
    assert [e.stage for e in events] == ["octave 1/3"] * 2 + ["octave 2/3"] * 2 + ["octave 3/3"] * 2
    assert [e.step for e in events] == list(range(1, 7)) and {e.total_steps for e in events} == {6}
    assert result.image.shape == (1, 1, 28, 28)
    assert 0.0 <= float(result.image.min()) and float(result.image.max()) <= 1.0


def test_dreaming_raises_the_activation_norm():
    events: list[StepEvent] = []
    params = DeepDreamParams(octaves=1, iterations=15, preview_every=0)
    result = deepdream(random_lenet(), image28(), {"relu2": 1.0}, params=params, on_step=events.append)
    assert result.norms_after["relu2"] > 1.5 * result.norms_before["relu2"]
    assert events[-1].objective > events[0].objective


def test_same_seed_same_dream_other_seed_differs():
    model = random_lenet()
    a = deepdream(model, image28(), {"relu2": 1.0}, params=DeepDreamParams(iterations=3, seed=1))
    b = deepdream(model, image28(), {"relu2": 1.0}, params=DeepDreamParams(iterations=3, seed=1))
    c = deepdream(model, image28(), {"relu2": 1.0}, params=DeepDreamParams(iterations=3, seed=2))
    assert torch.equal(a.image, b.image) and a.norms_after == b.norms_after
    assert not torch.equal(a.image, c.image)
    assert a.params.seed == 1


def test_layers_after_the_deepest_dream_layer_never_run():
    base = random_lenet()
    after = CallCounter()
    layers = []
    for name, module in base.named_children():
        layers.append((name, module))
        if name == "relu2":
            layers.append(("after", after))
    model = frozen(nn.Sequential(OrderedDict(layers)))
    deepdream(model, image28(), {"relu1": 1.0, "relu2": 1.0}, params=FAST)
    assert after.calls == 0


def test_should_stop_stops_within_one_step():
    events: list[StepEvent] = []
    with pytest.raises(Cancelled, match="after 4 of 9 steps"):
        deepdream(
            random_lenet(),
            image28(),
            {"relu2": 1.0},
            params=FAST,
            on_step=events.append,
            should_stop=lambda: len(events) >= 4,
        )
    assert len(events) == 4
    assert events[-1].stage == "octave 2/3"


def test_no_hook_survives_cancellation_or_a_failing_callback():
    model = random_lenet()
    with pytest.raises(Cancelled):
        deepdream(model, image28(), {"relu2": 1.0}, params=FAST, should_stop=lambda: True)
    assert hook_count(model) == 0

    def explode(_event: StepEvent) -> None:
        raise RuntimeError("callback failed")

    with pytest.raises(RuntimeError, match="callback failed"):
        deepdream(model, image28(), {"relu2": 1.0}, params=FAST, on_step=explode)
    assert hook_count(model) == 0


def test_rgb_image_and_input_untouched():
    torch.manual_seed(0)
    model = frozen(
        nn.Sequential(
            OrderedDict([("conv1", nn.Conv2d(3, 8, 3, padding=1)), ("relu1", nn.ReLU()), ("conv2", nn.Conv2d(8, 8, 3))])
        )
    )
    x = images(1, 3, 40)
    original = x.clone()
    result = deepdream(model, x, {"relu1": 1.0}, params=DeepDreamParams(iterations=2, jitter=4))
    assert result.params.octaves == 3 and result.image.shape == (1, 3, 40, 40)
    assert torch.equal(x, original)
