"""FGSM/BIM/PGD against an independent derivation and torchattacks (exact), plus the eps-ball."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchattacks
from hypothesis import given, settings
from hypothesis import strategies as st

from interp.attacks.linf import AttackParams, attack, resolve_params
from interp.attacks.steps import quantize_in_ball
from interp.errors import Cancelled, InvalidInput
from tests.support.tiny_models import images, random_lenet, tiny_net


def predictions(model, x):
    with torch.no_grad():
        return model(x).argmax(dim=1)


def fgsm_oracle(model, x, y, eps, targeted=False):
    """clamp(x +/- eps * sign(grad_x CE(f(x), y))), written out independently."""
    xr = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(model(xr), y), xr)
    step = -eps * grad.sign() if targeted else eps * grad.sign()
    return (x + step).clamp(0, 1)


@pytest.mark.parametrize("eps", [0.01, 0.1, 0.3])
def test_fgsm_equals_independent_derivation_and_torchattacks(eps):
    model, x = random_lenet(), images(8, 1, 28)
    result = attack(model, x, method="fgsm", epsilon=eps)
    y = predictions(model, x)
    assert torch.equal(result.labels, y)  # default: the model's own prediction
    assert torch.equal(result.adversarial_raw, fgsm_oracle(model, x, y, eps))
    assert torch.equal(result.adversarial_raw, torchattacks.FGSM(model, eps=eps)(x, y))


def test_fgsm_targeted_equals_derivation_and_torchattacks():
    model, x = random_lenet(), images(6, 1, 28)
    target = torch.tensor([0, 1, 2, 3, 4, 5])
    result = attack(model, x, method="fgsm", epsilon=0.05, target=target)
    assert result.targeted and torch.equal(result.labels, target)
    assert torch.equal(result.adversarial_raw, fgsm_oracle(model, x, target, 0.05, targeted=True))
    oracle = torchattacks.FGSM(model, eps=0.05)
    oracle.set_mode_targeted_by_label(quiet=True)
    assert torch.equal(result.adversarial_raw, oracle(x, target))


def test_fgsm_with_given_labels():
    model, x = tiny_net(), images(4, 3, 8)
    labels = torch.tensor([4, 3, 2, 1])
    result = attack(model, x, method="fgsm", epsilon=0.1, labels=labels)
    assert torch.equal(result.adversarial_raw, fgsm_oracle(model, x, labels, 0.1))


@pytest.mark.parametrize("targeted", [False, True])
def test_pgd_matches_torchattacks_with_the_same_seed(targeted):
    model, x = random_lenet(), images(4, 1, 28)
    target = torch.tensor([3, 3, 7, 7]) if targeted else None
    params = AttackParams(step_size=0.01, steps=5, seed=123)
    result = attack(model, x, method="pgd", epsilon=0.05, target=target, params=params)
    oracle = torchattacks.PGD(model, eps=0.05, alpha=0.01, steps=5, random_start=True)
    labels = target if targeted else predictions(model, x)
    if targeted:
        oracle.set_mode_targeted_by_label(quiet=True)
    with torch.random.fork_rng():
        torch.manual_seed(123)  # torchattacks draws its start from the global RNG
        expected = oracle(x, labels)
    assert torch.equal(result.adversarial_raw, expected)


def test_bim_is_pgd_without_random_start():
    model, x = random_lenet(), images(4, 1, 28)
    result = attack(model, x, method="bim", epsilon=0.03, params=AttackParams(steps=4))
    assert result.params.random_start is False and result.params.step_size == pytest.approx(0.003)
    oracle = torchattacks.PGD(model, eps=0.03, alpha=0.03 / 10, steps=4, random_start=False)
    assert torch.equal(result.adversarial_raw, oracle(x, predictions(model, x)))


@pytest.mark.parametrize("method", ["fgsm", "bim", "pgd"])
@pytest.mark.parametrize("eps", [1 / 255, 0.03, 0.1, 0.2, 0.5])
def test_adversarial_stays_in_eps_ball_and_unit_range(method, eps):
    model, x = random_lenet(), images(4, 1, 28, seed=3)
    result = attack(model, x, method=method, epsilon=eps, params=AttackParams(steps=3, step_size=eps / 2))
    # Before quantization x + eps - x can exceed eps by a float32 rounding (torchattacks alike).
    assert (result.adversarial_raw - x).abs().max() <= eps + 1e-6
    assert (result.adversarial - x).abs().max() <= eps  # exactly, after quantization
    for adv in (result.adversarial_raw, result.adversarial):
        assert adv.min() >= 0 and adv.max() <= 1
    levels = result.adversarial * 255
    assert torch.equal(levels, levels.round())  # on the 8-bit grid
    assert torch.equal(result.linf, (result.adversarial - x).abs().flatten(1).amax(dim=1))
    assert torch.allclose(result.l2, (result.adversarial - x).flatten(1).norm(dim=1))


def test_success_is_judged_on_the_quantized_image():
    model, x = random_lenet(), images(16, 1, 28)
    result = attack(model, x, method="pgd", epsilon=0.1)
    pred = predictions(model, result.adversarial)
    assert torch.equal(result.predictions, pred)
    assert torch.equal(result.success, pred != predictions(model, x))
    assert result.success.any()  # a random LeNet is easy to fool at eps = 0.1
    with torch.no_grad():
        assert torch.allclose(result.probabilities, torch.softmax(model(result.adversarial), dim=1))


def test_quantization_never_rounds_out_of_the_ball():
    x = torch.full((1, 1, 2, 2), 100 / 255)
    adv = x + 0.1  # 25.5 levels: naive rounding gives 26/255 > 0.1
    assert (torch.round(adv * 255) / 255 - x).abs().max() > 0.1
    q = quantize_in_ball(adv, x, 0.1)
    assert torch.equal(q * 255, torch.full_like(q, 125.0))
    assert (q - x).abs().max() <= 0.1
    # Near the bounds the grid is clamped to [0, 1].
    edge = torch.tensor([0.0, 1.0]).view(1, 1, 1, 2)
    assert torch.equal(quantize_in_ball(edge + torch.tensor([-0.05, 0.05]).view(1, 1, 1, 2), edge, 0.1), edge)


def test_quantization_of_off_grid_pixels():
    x = torch.tensor([0.5001]).view(1, 1, 1, 1)  # 127.5255 levels
    assert torch.equal(quantize_in_ball(x + 0.01, x, 0.01) * 255, torch.tensor([130.0]).view(1, 1, 1, 1))
    # A ball too small to hold a grid point: the nearest level, reported honestly by linf.
    tiny = quantize_in_ball(x, x, 1e-4)
    assert torch.equal(tiny * 255, torch.tensor([128.0]).view(1, 1, 1, 1))


def test_pgd_is_seeded_and_leaves_global_rng_alone():
    model, x = random_lenet(), images(4, 1, 28)
    state = torch.get_rng_state()
    a = attack(model, x, method="pgd", epsilon=0.05, params=AttackParams(steps=2, seed=1))
    b = attack(model, x, method="pgd", epsilon=0.05, params=AttackParams(steps=2, seed=1))
    c = attack(model, x, method="pgd", epsilon=0.05, params=AttackParams(steps=2, seed=2))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a.adversarial_raw, b.adversarial_raw)
    assert not torch.equal(a.adversarial_raw, c.adversarial_raw)


@pytest.mark.parametrize("method", ["fgsm", "bim", "pgd"])
@pytest.mark.parametrize("targeted", [False, True])
def test_per_image_batch_equals_each_image_alone(method, targeted):
    model, x = random_lenet(), images(5, 1, 28, seed=4)
    target = torch.tensor([1, 3, 3, 7, 9]) if targeted else None
    params = AttackParams(steps=3, seed=11) if method != "fgsm" else AttackParams()
    batch = attack(model, x, method=method, epsilon=0.05, target=target, params=params, per_image=True)
    for i in range(x.shape[0]):
        alone = attack(
            model,
            x[i : i + 1],
            method=method,
            epsilon=0.05,
            params=params,
            target=None if target is None else target[i : i + 1],
        )
        torch.testing.assert_close(batch.adversarial[i : i + 1], alone.adversarial, rtol=0, atol=1e-6)
        assert bool(batch.success[i]) == bool(alone.success[0])
    if method == "pgd":  # without per_image one draw covers the batch: image 1 starts elsewhere
        shared = attack(model, x, method=method, epsilon=0.05, target=target, params=params)
        assert not torch.equal(shared.adversarial_raw[1:], batch.adversarial_raw[1:])


def test_resolved_parameters():
    assert resolve_params("fgsm", 0.1) == AttackParams(step_size=0.1, steps=1, random_start=False, seed=0)
    assert resolve_params("pgd", 0.1) == AttackParams(step_size=pytest.approx(0.01), steps=10, random_start=True)
    assert resolve_params("bim", 0.2, AttackParams(step_size=0.05, steps=3)).random_start is False
    assert resolve_params("bim", 0.2, AttackParams(random_start=True)).random_start is True


def test_inputs_and_model_untouched():
    model, x = random_lenet(), images(2, 1, 28)
    before = x.clone()
    attack(model, x, method="pgd", epsilon=0.1, params=AttackParams(steps=2))
    assert torch.equal(x, before) and not x.requires_grad
    assert not model.training and not any(p.requires_grad for p in model.parameters())


def test_should_stop_cancels():
    with pytest.raises(Cancelled):
        attack(random_lenet(), images(1, 1, 28), method="pgd", epsilon=0.1, should_stop=lambda: True)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "cw"}, "valid methods: fgsm, bim, pgd"),
        ({"epsilon": 0.0}, r"epsilon must be a finite number in \(0, 1\]"),
        ({"epsilon": -0.1}, r"\(0, 1\]"),
        ({"epsilon": 1.5}, r"\(0, 1\]"),
        ({"epsilon": float("nan")}, r"\(0, 1\]"),
        ({"epsilon": float("inf")}, r"\(0, 1\]"),
        ({"params": AttackParams(steps=0)}, r"steps must be an integer in 1\.\.1000"),
        ({"params": AttackParams(steps=1001)}, r"1\.\.1000"),
        ({"params": AttackParams(step_size=0.0)}, r"step_size must be a finite number in \(0, 1\]"),
        ({"params": AttackParams(step_size=float("nan"))}, r"\(0, 1\]"),
        ({"target": torch.tensor([10])}, r"target classes must be in 0\.\.9, got \[10\]"),
        ({"labels": torch.tensor([-1])}, r"labels classes must be in 0\.\.9"),
        ({"labels": torch.tensor([1, 2])}, r"\(1,\) integer tensor"),
        ({"labels": torch.tensor([1]), "target": torch.tensor([2])}, "not both"),
        ({"method": "fgsm", "params": AttackParams(random_start=True)}, "fgsm has no random start"),
    ],
)
def test_bad_parameters_name_the_valid_range(kwargs, message):
    call = {"method": "pgd", "epsilon": 0.1} | kwargs
    with pytest.raises(InvalidInput, match=message):
        attack(random_lenet(), images(1, 1, 28), **call)


@settings(max_examples=200, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    eps=st.floats(1 / 255, 1.0),
    on_grid=st.booleans(),
)
def test_quantization_stays_in_ball_for_any_input(seed, eps, on_grid):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(1, 3, 8, 8, generator=g)
    if on_grid:
        x = torch.round(x * 255) / 255
    adv = (x + (torch.rand(x.shape, generator=g) * 2 - 1) * eps).clamp(0, 1)
    q = quantize_in_ball(adv, x, eps)
    assert (q - x).abs().max() <= eps
    assert q.min() >= 0 and q.max() <= 1
    assert torch.equal(q * 255, (q * 255).round())
    assert (q - adv).abs().max() <= 1 / 255 + 1e-6  # never further than one level from the attack
