"""Hooks never outlive a call, the shared module is never changed, and threads do not interfere."""

from __future__ import annotations

import random
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from torch import nn

from interp.attacks.linf import AttackParams, attack
from interp.attribution.saliency import METHODS, SaliencyParams, saliency
from interp.errors import InvalidInput
from interp.hooks import capture, run_until, structural_copy
from interp.single_pass import activations
from tests.support.tiny_models import Explode, frozen, hook_count, images, random_lenet

FAST = SaliencyParams(samples=6, steps=8, batch_size=4)


def exploding_net() -> nn.Sequential:
    """tiny_net with an Explode module between relu1 and pool1 (in-place ReLUs, like torchvision)."""
    torch.manual_seed(0)
    return frozen(
        nn.Sequential(
            OrderedDict(
                [
                    ("conv1", nn.Conv2d(3, 4, 3, padding=1)),
                    ("relu1", nn.ReLU(inplace=True)),
                    ("explode", Explode()),
                    ("pool1", nn.MaxPool2d(2)),
                    ("conv2", nn.Conv2d(4, 6, 3)),
                    ("relu2", nn.ReLU(inplace=True)),
                    ("flatten", nn.Flatten()),
                    ("fc", nn.Linear(24, 5)),
                ]
            )
        )
    )


CALLS = {
    "activations": lambda m, x: activations(m, x, ["conv1", "fc"]),
    **{
        f"saliency-{method}": (
            lambda m, x, method=method: saliency(
                m, x, method=method, params=SaliencyParams(layer="conv1", samples=4, steps=4)
            )
        )
        for method in METHODS
    },
    "attack-pgd": lambda m, x: attack(m, x, method="pgd", epsilon=0.1, params=AttackParams(steps=2)),
}


@pytest.mark.parametrize("call", list(CALLS))
def test_no_hook_survives_an_exception_mid_forward(call):
    model = exploding_net()
    user_hook = model.conv2.register_forward_hook(lambda *_: None)  # someone else's hook stays
    state = {k: v.clone() for k, v in model.state_dict().items()}
    model.explode.armed = True
    with pytest.raises(RuntimeError, match="boom"):
        CALLS[call](model, images(2, 3, 8))
    assert hook_count(model) == 1 and len(model.conv2._forward_hooks) == 1
    user_hook.remove()
    assert model.relu1.inplace and model.relu2.inplace
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    model.explode.armed = False
    CALLS[call](model, images(2, 3, 8))  # and the module still works
    assert hook_count(model) == 0


@pytest.mark.parametrize("method", ["grad_cam", "guided_backprop", "gradient"])
def test_no_hook_survives_invalid_target_found_mid_call(method):
    model = exploding_net()
    with pytest.raises(InvalidInput, match=r"0\.\.4"):
        saliency(model, images(1, 3, 8), torch.tensor([9]), method=method, params=SaliencyParams(layer="conv2"))
    assert hook_count(model) == 0


def test_capture_removes_hooks_when_the_block_raises():
    model = random_lenet()
    with pytest.raises(ValueError, match="inside"):
        with capture(model, ["conv1", "fc2"]):
            assert hook_count(model) == 2
            raise ValueError("inside")
    assert hook_count(model) == 0


def test_capture_hooks_ignore_other_threads():
    model = random_lenet()
    x = images(1, 1, 28)
    with torch.no_grad():
        expected = model(x)
    with capture(model, ["conv1"], stop=True) as store:
        out = {}
        worker = threading.Thread(target=lambda: out.setdefault("logits", model(x).detach()))
        worker.start()
        worker.join()
        # The other thread's forward ran to the end and left nothing in this capture's store.
        assert torch.equal(out["logits"], expected)
        assert store == {}
    assert run_until(model, x, ["conv1"])["conv1"].shape == (1, 6, 28, 28)


def test_structural_copy_shares_weights_not_hooks():
    model = exploding_net()
    view = structural_copy(model)
    assert view.conv1.weight is model.conv1.weight
    view.relu1.inplace = False
    view.conv1.register_forward_hook(lambda *_: None)
    assert model.relu1.inplace and hook_count(model) == 0
    x = images(2, 3, 8)
    with torch.no_grad():
        assert torch.equal(view(x), model(x))


def _jobs(model, x):
    jobs = {
        "activations": lambda: activations(model, x, ["conv1", "relu2", "fc3"], top_k=3),
        "fgsm": lambda: attack(model, x, method="fgsm", epsilon=0.05),
        "pgd": lambda: attack(model, x, method="pgd", epsilon=0.05, params=AttackParams(steps=3, seed=5)),
    }
    for method in METHODS:
        jobs[method] = lambda method=method: saliency(model, x, method=method, params=FAST)
    return jobs


def _tensors(result):
    if isinstance(result, dict):
        return [t for r in result.values() for t in _tensors(r)]
    return [v for v in vars(result).values() if isinstance(v, torch.Tensor)]


def test_concurrent_requests_on_a_shared_model_match_sequential():
    model = random_lenet()
    x = images(2, 1, 28)
    jobs = _jobs(model, x)
    sequential = {name: _tensors(job()) for name, job in jobs.items()}
    order = [name for name in jobs for _ in range(3)]
    random.Random(0).shuffle(order)
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [(name, pool.submit(jobs[name])) for name in order]
        results = [(name, _tensors(f.result())) for name, f in futures]
    for name, tensors in results:
        assert len(tensors) == len(sequential[name])
        for got, want in zip(tensors, sequential[name], strict=True):
            assert torch.equal(got, want), name
    assert hook_count(model) == 0
    assert not model.training and not any(p.requires_grad for p in model.parameters())
