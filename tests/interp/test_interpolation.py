"""Deep feature interpolation: feature/attribute oracles, reconstruction, warm starts, cancellation."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch import Tensor, nn

from interp.errors import Cancelled, InvalidInput
from interp.progress import StepEvent
from interp.synthesis.feature_interpolation import (
    InterpolateFeaturesParams,
    attribute_vector,
    features,
    interpolate_features,
    resolve,
    total_variation,
)
from tests.support.tiny_models import frozen, hook_count, images, random_lenet

LAYERS = ["relu1", "relu2"]
FAST = InterpolateFeaturesParams(iterations=15, warm_iterations=5, preview_every=0)


class CallCounter(nn.Module):
    """Identity that counts its forward calls."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x: Tensor) -> Tensor:
        self.calls += 1
        return x


def tiny_conv(counter: CallCounter | None = None) -> nn.Sequential:
    """(B, 1, 12, 12): conv 1->4, relu, conv 4->6 stride 2, relu, [counter], flatten, fc."""
    torch.manual_seed(3)
    layers = [
        ("conv1", nn.Conv2d(1, 4, 3, padding=1)),
        ("relu1", nn.ReLU()),
        ("conv2", nn.Conv2d(4, 6, 3, stride=2, padding=1)),
        ("relu2", nn.ReLU()),
    ]
    if counter is not None:
        layers.append(("after", counter))
    layers += [("flatten", nn.Flatten()), ("fc", nn.Linear(6 * 6 * 6, 3))]
    return frozen(nn.Sequential(OrderedDict(layers)))


def oracle_phi(model: nn.Sequential, x: Tensor) -> Tensor:
    """relu1 and relu2 of LeNet by calling its modules directly."""
    h1 = model.relu1(model.bn1(model.conv1(model.normalize(x))))
    h2 = model.relu2(model.bn2(model.conv2(model.pool1(h1))))
    return torch.cat([h1.flatten(1), h2.flatten(1)], dim=1)


def test_resolve_defaults_and_ranges():
    p = resolve(None, num_alphas=5)
    assert (p.iterations, p.warm_iterations, p.tv_weight, p.tv_beta) == (200, 100, 1e-2, 2.0)
    assert (p.seed, p.set_size, p.normalize_attribute, p.preview_every) == (0, 100, False, 37)
    for params, expected in [
        (InterpolateFeaturesParams(iterations=0), r"iterations must be an integer in 1\.\.2000"),
        (InterpolateFeaturesParams(warm_iterations=2001), r"warm_iterations must be an integer in 1\.\.2000"),
        (InterpolateFeaturesParams(tv_weight=-1.0), r"tv_weight must be a finite number in \[0.0, 1000.0\]"),
        (InterpolateFeaturesParams(tv_beta=0.5), r"tv_beta must be a finite number in \[1.0, 4.0\]"),
        (InterpolateFeaturesParams(set_size=0), r"set_size must be an integer in 1\.\.1000"),
        (InterpolateFeaturesParams(seed=-1), r"seed must be an integer in 0\.\."),
    ]:
        with pytest.raises(InvalidInput, match=expected):
            resolve(params)


def test_features_match_an_independent_forward():
    model = random_lenet()
    x = images(3, 1, 28)
    phi = features(model, x, LAYERS)
    assert phi.shape == (3, 6 * 28 * 28 + 16 * 10 * 10) == (3, 6304)
    with torch.no_grad():
        torch.testing.assert_close(phi, oracle_phi(model, x))


def test_attribute_vector_is_the_difference_of_set_means_for_any_batch_size():
    model = random_lenet()
    positive, negative = images(7, 1, 28, seed=1), images(5, 1, 28, seed=2)
    with torch.no_grad():
        expected = oracle_phi(model, positive).mean(0) - oracle_phi(model, negative).mean(0)
    for batch_size in (1, 3, 64):
        w = attribute_vector(model, positive, negative, LAYERS, batch_size=batch_size)
        torch.testing.assert_close(w, expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(InvalidInput, match="channels"):
        attribute_vector(model, positive, images(2, 3, 28), LAYERS)


def test_total_variation_matches_a_hand_computed_value():
    z = torch.tensor([[[[0.0, 1.0], [0.5, 0.25]]]])
    # Squared differences: (0,0): dy .25 + dx 1; (0,1): dy .5625; (1,0): dx .0625 -> 1.875.
    assert float(total_variation(z, 2.0)) == pytest.approx(1.875)
    # beta = 1 sums the gradient magnitudes: sqrt(1.25) + 0.75 + 0.25.
    assert float(total_variation(z, 1.0)) == pytest.approx(1.25**0.5 + 0.75 + 0.25, rel=1e-4)


def test_alpha_zero_reconstructs_the_source():
    model = random_lenet()
    x = images(4, 1, 28)
    w = attribute_vector(model, images(6, 1, 28, seed=5), images(6, 1, 28, seed=6), LAYERS)
    (result,) = interpolate_features(model, x, LAYERS, direction=w, alphas=[0.0], params=FAST)
    assert result.alpha == 0.0 and result.images.shape == x.shape
    assert float(result.feature_error.max()) <= 0.05
    assert float((result.images - x).abs().mean()) < 0.05


def test_positive_alpha_moves_the_features_toward_the_target():
    model = random_lenet()
    x = images(3, 1, 28)
    w = attribute_vector(model, images(8, 1, 28, seed=7), x, LAYERS)
    results = interpolate_features(model, x, LAYERS, direction=w, alphas=[0.0, 1.0], params=FAST)
    with torch.no_grad():
        phi_x = oracle_phi(model, x)
        target = phi_x + w
        start_error = (phi_x - target).norm(dim=1) / target.norm(dim=1)
        reached = oracle_phi(model, results[1].images)
    assert torch.all(results[1].feature_error < 0.8 * start_error)
    torch.testing.assert_close(results[1].feature_error, (reached - target).norm(dim=1) / target.norm(dim=1))
    for r in results:
        assert 0.0 <= float(r.images.min()) and float(r.images.max()) <= 1.0


def test_target_image_mode_with_per_image_directions():
    model = tiny_conv()
    source, target = images(2, 1, 12, seed=1), images(2, 1, 12, seed=2)
    with torch.no_grad():
        phi_target = features(model, target, LAYERS)
        direction = phi_target - features(model, source, LAYERS)
        start_error = direction.norm(dim=1) / phi_target.norm(dim=1)
    params = InterpolateFeaturesParams(iterations=40, warm_iterations=40, tv_weight=0.0, preview_every=0)
    results = interpolate_features(model, source, LAYERS, direction=direction, alphas=[0.0, 1.0], params=params)
    assert torch.all(results[1].feature_error < 0.8 * start_error)
    before = (source - target).abs().mean()
    assert float((results[1].images - target).abs().mean()) < float(before)


def test_progress_counts_iterations_over_all_alphas():
    events: list[StepEvent] = []
    params = InterpolateFeaturesParams(iterations=6, warm_iterations=3, preview_every=4)
    model = random_lenet()
    x = images(2, 1, 28)
    w = torch.ones(6304)
    interpolate_features(model, x, LAYERS, direction=w, alphas=[0.5, 1.0, 2.0], params=params, on_step=events.append)
    steps = [e.step for e in events]
    assert steps == sorted(set(steps)) and steps[-1] == 12 and {e.total_steps for e in events} == {12}
    assert {e.stage for e in events} == {"alpha 0.5", "alpha 1", "alpha 2"}
    assert [e.stage for e in events if e.step in (6, 9, 12)] == ["alpha 0.5", "alpha 1", "alpha 2"]
    previews = [e for e in events if e.preview is not None]
    assert previews and all(e.step % 4 == 0 and e.preview.shape == (2, 1, 28, 28) for e in previews)


def test_deterministic():
    model = random_lenet()
    x = images(2, 1, 28)
    w = attribute_vector(model, images(4, 1, 28, seed=8), x, LAYERS)
    a = interpolate_features(model, x, LAYERS, direction=w, alphas=[1.0], params=FAST)
    b = interpolate_features(model, x, LAYERS, direction=w, alphas=[1.0], params=FAST)
    assert torch.equal(a[0].images, b[0].images)


def test_normalize_attribute_scales_by_the_mean_square():
    model = random_lenet()
    x = images(2, 1, 28)
    w = attribute_vector(model, images(4, 1, 28, seed=8), x, LAYERS)
    scaled = w / (w * w).mean()
    plain = interpolate_features(model, x, LAYERS, direction=scaled, alphas=[0.1], params=FAST)
    normalized = interpolate_features(
        model,
        x,
        LAYERS,
        direction=w * 7.0,  # any scale: normalization removes it (up to 1/7)
        alphas=[0.1 * 7.0],
        params=InterpolateFeaturesParams(iterations=15, warm_iterations=5, normalize_attribute=True),
    )
    torch.testing.assert_close(plain[0].images, normalized[0].images, rtol=1e-4, atol=1e-4)


def test_layers_after_the_deepest_feature_layer_never_run():
    counter = CallCounter()
    model = tiny_conv(counter)
    x = images(2, 1, 12)
    w = attribute_vector(model, images(3, 1, 12, seed=4), x, LAYERS)
    interpolate_features(model, x, LAYERS, direction=w, alphas=[0.0, 1.0], params=FAST)
    assert counter.calls == 0


def test_bad_inputs():
    model = random_lenet()
    x = images(2, 1, 28)
    w = torch.zeros(6304)
    with pytest.raises(InvalidInput, match=r"\(6304,\) or \(2, 6304\)"):
        interpolate_features(model, x, LAYERS, direction=torch.zeros(10), params=FAST)
    with pytest.raises(InvalidInput, match="NaN"):
        interpolate_features(model, x, LAYERS, direction=w * float("nan"), params=FAST)
    with pytest.raises(InvalidInput, match="between 1 and 32 alphas"):
        interpolate_features(model, x, LAYERS, direction=w, alphas=[], params=FAST)
    with pytest.raises(InvalidInput, match="finite"):
        interpolate_features(model, x, LAYERS, direction=w, alphas=[float("inf")], params=FAST)
    with pytest.raises(InvalidInput, match="unknown layer"):
        interpolate_features(model, x, ["relu1", "nope"], direction=w, params=FAST)
    with pytest.raises(InvalidInput, match="module paths"):
        interpolate_features(model, x, "relu1", direction=w, params=FAST)
    with pytest.raises(InvalidInput, match="pixels must lie"):
        interpolate_features(model, x + 2, LAYERS, direction=w, params=FAST)


def test_should_stop_stops_within_one_iteration_and_removes_hooks():
    model = random_lenet()
    x = images(2, 1, 28)
    events: list[StepEvent] = []
    with pytest.raises(Cancelled):
        interpolate_features(
            model,
            x,
            LAYERS,
            direction=torch.ones(6304),
            alphas=[0.0, 1.0],
            params=InterpolateFeaturesParams(iterations=50),
            on_step=events.append,
            should_stop=lambda: len(events) >= 5,
        )
    assert len(events) == 5
    assert hook_count(model) == 0

    def explode(_event: StepEvent) -> None:
        raise RuntimeError("callback failed")

    with pytest.raises(RuntimeError, match="callback failed"):
        interpolate_features(model, x, LAYERS, direction=torch.ones(6304), params=FAST, on_step=explode)
    assert hook_count(model) == 0
