"""The truncated forward: walking a plain Sequential tree gives what hooks on a full pass record.

``run_until`` / ``reduce_until`` call the modules of a plain ``nn.Sequential`` tree in turn up to
the deepest requested layer and fall back to hooks otherwise. The oracle here is independent of
both: a full forward pass with ``capture(stop=False)`` recording every requested layer.
"""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch import nn

from interp.hooks import capture, reduce_until, run_until
from tests.support.tiny_models import Explode, frozen, hook_count, images, random_lenet


def nested_net() -> nn.Sequential:
    """Blocks of blocks, with an armed-able module at the end (never reached by a truncated pass)."""
    torch.manual_seed(0)
    block1 = nn.Sequential(OrderedDict([("conv", nn.Conv2d(3, 4, 3, padding=1)), ("relu", nn.ReLU())]))
    block2 = nn.Sequential(
        OrderedDict([("pool", nn.MaxPool2d(2)), ("inner", nn.Sequential(nn.Conv2d(4, 5, 3), nn.ReLU()))])
    )
    return frozen(
        nn.Sequential(
            OrderedDict(
                [
                    ("block1", block1),
                    ("block2", block2),
                    ("flatten", nn.Flatten()),
                    ("fc", nn.Linear(5 * 2 * 2, 3)),
                    ("explode", Explode()),
                ]
            )
        )
    )


def full_pass(model: nn.Module, x: torch.Tensor, layers: list[str]) -> dict[str, torch.Tensor]:
    with capture(model, layers, stop=False) as store, torch.no_grad():
        model(x)
    return dict(store)


LAYER_SETS = [
    ["block1.conv"],
    ["block1"],
    ["block2.inner.0", "block1.relu"],
    ["block2", "block2.inner.1", "block2.pool"],
    ["fc", "block1.conv"],
]


@pytest.mark.parametrize("layers", LAYER_SETS, ids=lambda ls: "+".join(ls))
def test_walk_equals_a_full_pass_and_stops_after_the_deepest_layer(layers):
    model = nested_net()
    x = images(2, 3, 8)
    expected = full_pass(model, x, layers)
    model.explode.armed = True  # the walk must never reach it
    got = run_until(model, x, layers)
    assert set(got) == set(layers)
    for name in layers:
        assert torch.equal(got[name], expected[name]), name
    assert hook_count(model) == 0


def test_walk_on_lenet_matches_and_keeps_gradients():
    model = random_lenet()
    names = [n for n, _ in model.named_children()]
    x = images(3, 1, 28).requires_grad_(True)
    expected = full_pass(model, x.detach(), names)
    got = run_until(model, x, names)
    for name in names:
        assert torch.equal(got[name].detach(), expected[name]), name
    got["relu2"].sum().backward()  # the graph is the plain forward's
    reference = x.detach().clone().requires_grad_(True)
    model[: names.index("relu2") + 1](reference).sum().backward()
    assert torch.allclose(x.grad, reference.grad, atol=1e-6)


def test_reduce_until_gets_each_layers_input_as_in_a_hook():
    model = random_lenet()
    x = images(2, 1, 28)
    seen: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def reduce(name, output, inputs):
        seen[name] = (output, inputs[0])
        return output.amax()

    names = [n for n, _ in model.named_children()]
    before_conv1 = names[names.index("conv1") - 1]
    with torch.no_grad():
        out = reduce_until(model, x, ["conv1", "pool1"], reduce)
        expected = full_pass(model, x, [before_conv1, "conv1", "relu1", "pool1"])
    assert torch.equal(out["pool1"], expected["pool1"].amax())
    assert torch.equal(seen["pool1"][1], expected["relu1"])
    assert torch.equal(seen["conv1"][1], expected[before_conv1])


class Doubling(nn.Sequential):
    """A Sequential subclass whose forward is not its children in turn: the walk must not apply."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) * 2


def test_a_container_that_is_not_plain_falls_back_to_hooks():
    torch.manual_seed(0)
    model = frozen(
        nn.Sequential(OrderedDict([("body", Doubling(nn.Conv2d(3, 4, 3), nn.ReLU())), ("fc", nn.Flatten())]))
    )
    x = images(1, 3, 6)
    got = run_until(model, x, ["body", "body.1"])
    expected = full_pass(model, x, ["body", "body.1"])
    assert torch.equal(got["body"], expected["body"]) and torch.equal(got["body.1"], expected["body.1"])
    assert torch.equal(got["body"], 2 * got["body.1"])


def test_hooks_on_the_model_itself_still_fire():
    model = random_lenet()
    calls = []
    handle = model.register_forward_pre_hook(lambda module, inputs: calls.append(1))
    try:
        run_until(model, images(1, 1, 28), ["conv1"])
    finally:
        handle.remove()
    assert calls == [1]  # the pass went through model(x), not around it
