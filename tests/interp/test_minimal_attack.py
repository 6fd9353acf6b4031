"""Minimal adversarial perturbations: exact minimal eps on the 8-bit grid and DeepFool.

Oracles: ``interp.attacks.linf.attack`` run on each image alone (itself equal to torchattacks)
for the minimal eps and the batched runs, foolbox 3.3.4's DeepFool attacks for DeepFool.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from interp.attacks.deepfool import deepfool
from interp.attacks.linf import AttackParams, attack
from interp.attacks.minimal_epsilon import attack_at, minimal_epsilon, scan_levels
from interp.attacks.minimal_params import MinimalAttackParams, attack_params, resolve
from interp.errors import Cancelled, InvalidInput
from tests.conftest import require, require_fashion_mnist
from tests.support.tiny_models import frozen, images, random_lenet, tiny_net

WEIGHTS = sorted((Path(__file__).resolve().parents[2] / "models" / "weights").glob("lenet5_fashion*mnist*.pt"))


@pytest.fixture(scope="module")
def lenet():
    require(WEIGHTS, "no trained LeNet checkpoint in models/weights")
    from models.lenet import build_lenet

    model = build_lenet()
    model.load_state_dict(torch.load(WEIGHTS[-1], map_location="cpu", weights_only=True))
    return frozen(model)


@pytest.fixture(scope="module")
def test_set():
    from models.datasets import load_dataset

    require_fashion_mnist()
    x, y = load_dataset("fashion-mnist", "test", download=False)
    return torch.from_numpy(x[:50].copy()).float().div(255).unsqueeze(1), torch.from_numpy(y[:50].copy())


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Small batches on a shared machine: one thread is many times faster than an oversubscribed pool."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


SEARCH = MinimalAttackParams(steps=10, seed=3)


@pytest.fixture(scope="module")
def searches(lenet, test_set):
    x, y = test_set
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return {m: minimal_epsilon(lenet, x, method=m, labels=y, params=SEARCH) for m in ("fgsm", "pgd")}
    finally:
        torch.set_num_threads(threads)


def _alone(model, x, label, method, k, params):
    extra = {} if method == "fgsm" else {"params": attack_params(params)}
    return attack(model, x[None], method=method, epsilon=k / 255, labels=label[None], **extra)


@pytest.mark.parametrize("method", ["fgsm", "bim", "pgd"])
def test_batched_runs_equal_the_attack_on_each_image_alone(method):
    model, x = random_lenet(), images(6, 1, 28)
    labels = torch.tensor([0, 1, 2, 3, 4, 5])
    params = resolve(method, MinimalAttackParams(steps=3, seed=7), 10)
    levels = torch.tensor([1, 3, 8, 2, 30, 255])
    adv, success = attack_at(model, x, labels, levels, method=method, targeted=False, params=params)
    for i in range(6):
        alone = _alone(model, x[i], labels[i], method, int(levels[i]), params)
        assert torch.equal(adv[i], alone.adversarial[0])
        assert bool(success[i]) == bool(alone.success[0])


def test_scan_levels():
    assert scan_levels(255) == [1, 2, 4, 8, 16, 32, 64, 128, 255]
    assert scan_levels(25, extra=(3, 25, 40)) == [1, 2, 3, 4, 8, 16, 25]


@pytest.mark.parametrize("method", ["fgsm", "pgd"])
def test_minimal_eps_is_exact_on_the_trained_lenet(lenet, test_set, searches, method):
    x, y = test_set
    result = searches[method]
    resolved = resolve(method, SEARCH, 10)
    with torch.no_grad():
        clean = lenet(x).argmax(dim=1)
    assert torch.equal(result.clean_success, clean != y)
    assert result.found.all(), "every image falls within eps = 1"
    for i in range(len(x)):
        k = int(result.levels[i])
        if k == 0:  # misclassified clean: success without perturbation
            assert clean[i] != y[i] and torch.equal(result.adversarial[i], x[i])
            continue
        at_k = _alone(lenet, x[i], y[i], method, k, resolved)
        assert bool(at_k.success[0]) and torch.equal(result.adversarial[i], at_k.adversarial[0])
        if k > 1:
            assert not bool(_alone(lenet, x[i], y[i], method, k - 1, resolved).success[0])
        else:
            assert clean[i] == y[i]  # k - 1 = 0: the clean image, correctly classified
        # monotonicity is reported from what was evaluated, not assumed
        failures_above = sorted(j for j, ok in result.evaluated[i].items() if not ok and j > k)
        assert result.violations[i] == failures_above
        assert bool(result.monotone[i]) == (not failures_above)
        assert int(result.runs[i]) == len(result.evaluated[i])
        assert all(type(j) is int and 1 <= j <= 255 for j in result.evaluated[i])  # 8-bit levels, as run


def test_pgd_needs_no_larger_eps_than_fgsm(searches):
    medians = {m: float(r.levels[~r.clean_success].float().median()) for m, r in searches.items()}
    assert medians["pgd"] <= medians["fgsm"]


def test_minimal_eps_reports_non_monotone_success():
    # A model whose decision flips back: class 1 only for mean pixel shifts in a middle band.
    class Band(torch.nn.Module):
        def forward(self, x):
            m = (x - 0.5).mean(dim=(1, 2, 3))
            inside = ((m > 2 / 255) & (m < 6 / 255)) | (m > 100 / 255)
            z = torch.stack([x.sum(dim=(1, 2, 3)) * 0, x.sum(dim=(1, 2, 3)) * 0], dim=1)
            return z + torch.stack([(~inside).float(), inside.float()], dim=1) + 1e-3 * x.mean(dim=(1, 2, 3))[:, None]

    x = torch.full((1, 1, 4, 4), 0.5 - 0.5 / 255)  # grid point below 0.5
    x = torch.round(x * 255) / 255
    # FGSM moves every pixel by +k/255 (the gradient of the 1e-3 term): success at k=4 (the
    # band), failure at 8..64, success again from about k=101.
    model = Band()
    result = minimal_epsilon(model, x, method="fgsm", labels=torch.tensor([0]))
    assert bool(result.found[0])
    k = int(result.levels[0])
    assert 2 <= k <= 6
    assert not bool(result.monotone[0]) and result.violations[0]


def test_true_label_counts_a_clean_error_as_success():
    model, x = random_lenet(), images(4, 1, 28)
    with torch.no_grad():
        pred = model(x).argmax(dim=1)
    wrong = (pred + 1) % 10
    result = minimal_epsilon(model, x, method="fgsm", labels=wrong)
    assert result.clean_success.all() and (result.levels == 0).all() and (result.runs == 0).all()
    assert torch.equal(result.adversarial, x)


def test_minimal_eps_bad_input():
    model, x = tiny_net(), images(2, 3, 8)
    with pytest.raises(InvalidInput, match="labels classes must be in 0..4"):
        minimal_epsilon(model, x, method="pgd", labels=torch.tensor([0, 5]))
    with pytest.raises(InvalidInput, match="minimal epsilon searches"):
        minimal_epsilon(model, x, method="deepfool_l2")
    with pytest.raises(InvalidInput, match="max_epsilon"):
        minimal_epsilon(model, x, method="pgd", params=MinimalAttackParams(max_epsilon=0.001))
    with pytest.raises(InvalidInput, match="steps"):
        minimal_epsilon(model, x, method="pgd", params=MinimalAttackParams(steps=0))
    with pytest.raises(InvalidInput, match="not both"):
        minimal_epsilon(model, x, method="pgd", labels=torch.tensor([0, 1]), target=torch.tensor([1, 1]))


def test_minimal_eps_cancels():
    model, x = random_lenet(), images(2, 1, 28)
    calls = []

    def stop() -> bool:
        calls.append(1)
        return len(calls) > 3

    with pytest.raises(Cancelled):
        minimal_epsilon(model, x, method="pgd", params=MinimalAttackParams(steps=2), should_stop=stop)


def test_targeted_minimal_eps_reaches_the_target():
    model, x = random_lenet(), images(3, 1, 28)
    target = torch.tensor([2, 2, 2])
    result = minimal_epsilon(model, x, method="pgd", target=target, params=MinimalAttackParams(steps=5))
    params = resolve("pgd", MinimalAttackParams(steps=5), 10)
    for i in range(3):
        k = int(result.levels[i])
        if k > 0:
            alone = attack(
                model,
                x[i : i + 1],
                method="pgd",
                epsilon=k / 255,
                target=target[i : i + 1],
                params=attack_params(params),
            )
            assert alone.success[0] and alone.predictions[0] == 2


# -- DeepFool against foolbox -------------------------------------------------------------------


def _foolbox_deepfool(model, x, labels, norm, candidates=10, overshoot=0.02, steps=50):
    require(importlib.util.find_spec("foolbox"), "foolbox is the DeepFool oracle (dev extra)")
    import foolbox
    attack_cls = foolbox.attacks.L2DeepFoolAttack if norm == "l2" else foolbox.attacks.LinfDeepFoolAttack
    fmodel = foolbox.PyTorchModel(model, bounds=(0, 1))
    raw, _, success = attack_cls(steps=steps, candidates=candidates, overshoot=overshoot)(
        fmodel, x, labels, epsilons=None
    )
    return raw, success


def _rel(a, b):
    return ((a - b).abs() / b.abs().clamp_min(1e-12)).max().item()


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_deepfool_equals_foolbox_on_the_trained_lenet(lenet, test_set, norm):
    x, y = test_set[0][:20], test_set[1][:20]
    result = deepfool(lenet, x, norm=norm, labels=y)
    raw, success = _foolbox_deepfool(lenet, x, y, norm)
    delta = (raw - x).flatten(start_dim=1)
    assert torch.equal(result.success_raw, success)
    assert _rel(result.l2_raw, delta.norm(dim=1)) <= 1e-4
    assert _rel(result.linf_raw, delta.abs().amax(dim=1)) <= 1e-4
    assert result.success_raw.all()
    # One image at a time takes the other gradient path (the image replicated per candidate).
    alone = [deepfool(lenet, x[i : i + 1], norm=norm, labels=y[i : i + 1]) for i in range(len(x))]
    assert torch.equal(torch.cat([a.success_raw for a in alone]), success)
    assert _rel(torch.cat([a.l2_raw for a in alone]), delta.norm(dim=1)) <= 1e-4
    assert _rel(torch.cat([a.linf_raw for a in alone]), delta.abs().amax(dim=1)) <= 1e-4


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_deepfool_equals_foolbox_with_few_candidates_and_steps(norm):
    model, x = random_lenet(1), images(6, 1, 28, seed=2)
    with torch.no_grad():
        labels = model(x).argmax(dim=1)
    params = MinimalAttackParams(candidates=3, overshoot=0.05, steps=4)
    result = deepfool(model, x, norm=norm, params=params)
    raw, success = _foolbox_deepfool(model, x, labels, norm, candidates=3, overshoot=0.05, steps=4)
    assert torch.equal(result.success_raw, success)
    assert _rel(result.l2_raw, (raw - x).flatten(1).norm(dim=1)) <= 1e-4


def test_deepfool_quantized_result_is_rechecked(lenet, test_set):
    x, y = test_set[0][:20], test_set[1][:20]
    result = deepfool(lenet, x, norm="l2", labels=y)
    assert torch.equal(result.adversarial * 255, torch.round(result.adversarial * 255))
    with torch.no_grad():
        predictions = lenet(result.adversarial).argmax(dim=1)
    assert torch.equal(predictions, result.predictions)
    assert torch.equal(result.success, predictions != y)
    assert torch.allclose(result.l2, (result.adversarial - x).flatten(1).norm(dim=1))
    # clean errors are successes without perturbation
    clean_wrong = result.clean_success
    assert (result.l2_raw[clean_wrong] == 0).all() and (result.iterations[clean_wrong] == 0).all()


def test_deepfool_bad_input():
    model, x = tiny_net(), images(2, 3, 8)
    for candidates in (1, 6):
        with pytest.raises(InvalidInput, match="candidates must be an integer in 2..5"):
            deepfool(model, x, params=MinimalAttackParams(candidates=candidates))
    with pytest.raises(InvalidInput, match="norm"):
        deepfool(model, x, norm="l1")
    with pytest.raises(InvalidInput, match="labels"):
        deepfool(model, x, labels=torch.tensor([9, 0]))
    with pytest.raises(Cancelled):
        deepfool(model, x, should_stop=lambda: True)
    # candidates default to min(10, classes)
    assert resolve("deepfool_l2", MinimalAttackParams(), 5).candidates == 5
    assert AttackParams().steps == 10


# -- robustness over a dataset ------------------------------------------------------------------


def test_dataset_curve_agrees_with_the_per_image_minimal_eps(lenet, test_set, searches):
    from interp.attacks.robustness import AttackDatasetParams, curve_png, robustness

    x, y = test_set
    epsilons = [0.0, 0.01, 0.03, 0.05, 0.1]
    params = AttackDatasetParams(
        steps=SEARCH.steps, seed=SEARCH.seed, batch_size=20
    )  # batches differ from the search's
    result = robustness(lenet, x, y, methods=["pgd", "fgsm"], epsilons=epsilons, params=params)
    with torch.no_grad():
        correct = lenet(x).argmax(dim=1) == y
    assert torch.equal(result.clean_correct, correct)
    for curve in result.curves:
        search = searches[curve.method]  # run separately, per image, without the curve's radii
        assert torch.equal(curve.minimal, search.levels.float() / 255)
        assert curve.levels == [0, 2, 7, 12, 25]
        expected = [float((correct & (search.levels.float() / 255 > eps)).float().mean()) for eps in epsilons]
        if bool(search.monotone.all()) and curve.non_monotone == 0:
            assert curve.accuracy == expected
        else:  # each disagreement is an image whose success was seen to be non-monotone
            wrong = sum(abs(a - b) for a, b in zip(curve.accuracy, expected, strict=True)) * len(x)
            assert round(wrong) <= len(epsilons) * max(curve.non_monotone, int((~search.monotone).sum()))
        assert curve.accuracy[0] == float(correct.float().mean())
    assert curve_png(result).startswith(b"\x89PNG")


def test_dataset_deepfool_curve_reads_the_quantized_norms(lenet, test_set):
    from interp.attacks.robustness import AttackDatasetParams, robustness

    x, y = test_set[0][:20], test_set[1][:20]
    result = robustness(lenet, x, y, methods=["deepfool_l2"], epsilons=[0.1, 0.5, 1.0], params=AttackDatasetParams())
    single = deepfool(lenet, x, norm="l2", labels=y)
    expected = torch.where(single.success, single.l2, torch.full_like(single.l2, float("inf")))
    expected[single.clean_success] = 0.0
    assert result.norm == "l2" and torch.equal(result.curves[0].minimal, expected)
    for eps, accuracy in zip([0.1, 0.5, 1.0], result.curves[0].accuracy, strict=True):
        assert accuracy == float((result.clean_correct & (expected > eps)).float().mean())


def test_dataset_bad_input():
    from interp.attacks.robustness import AttackDatasetParams, robustness

    model, x = random_lenet(), images(4, 1, 28)
    with pytest.raises(InvalidInput, match="ask for it alone"):
        robustness(model, x, None, methods=["deepfool_l2", "pgd"], epsilons=[0.1])
    with pytest.raises(InvalidInput, match="unknown method"):
        robustness(model, x, None, methods=["cw"], epsilons=[0.1])
    with pytest.raises(InvalidInput, match=r"\[0, 1\]"):
        robustness(model, x, None, methods=["pgd"], epsilons=[1.5])
    with pytest.raises(InvalidInput, match="labels"):
        robustness(model, x, torch.tensor([0, 1, 2, 10]), methods=["fgsm"], epsilons=[0.1])
    with pytest.raises(InvalidInput, match="batch_size"):
        robustness(model, x, None, methods=["fgsm"], epsilons=[0.1], params=AttackDatasetParams(batch_size=0))
    with pytest.raises(Cancelled):
        robustness(model, x, None, methods=["pgd"], epsilons=[0.1], should_stop=lambda: True)


def test_minimal_eps_under_a_cap_no_eps_fools_reports_not_found(lenet, test_set):
    """Up to max_epsilon = 2/255 FGSM fools few images: the others are found=false, level -1, after
    trying exactly levels 1 and 2; without a cap the grid ends at 255."""
    x, y = test_set
    capped = MinimalAttackParams(max_epsilon=2 / 255)
    calls: list[tuple[int, int]] = []
    result = minimal_epsilon(
        lenet, x[:20], method="fgsm", labels=y[:20], params=capped, on_run=lambda *c: calls.append(c)
    )
    assert calls == [(1, 4), (2, 4)]  # planned: 2 scan levels + ceil(log2(2 + 1)) bisection steps
    assert result.k_max == 2
    clean = lenet(x[:20]).argmax(1) != y[:20]
    assert torch.equal(result.clean_success, clean)
    assert (~result.found).sum() >= 10
    # the documented types: bool flags, int64 levels and run counts; predictions are of the adversarial images
    assert result.found.dtype == result.monotone.dtype == result.clean_success.dtype == torch.bool
    assert result.levels.dtype == result.runs.dtype == result.predictions.dtype == torch.int64
    assert torch.equal(result.predictions, lenet(result.adversarial).argmax(1))
    assert torch.equal(result.labels, y[:20])  # the classes attacked away from
    for i in range(20):
        if clean[i]:
            assert bool(result.found[i]) and int(result.levels[i]) == 0
        elif not result.found[i]:
            assert int(result.levels[i]) == -1 and result.evaluated[i] == {1: False, 2: False}
            assert torch.equal(result.adversarial[i], x[i])
        else:
            assert int(result.levels[i]) in (1, 2) and result.evaluated[i][int(result.levels[i])]
    calls.clear()
    assert minimal_epsilon(lenet, x[:1], method="fgsm", labels=y[:1], on_run=lambda *c: calls.append(c)).k_max == 255
    assert calls == [(n, 9 + 8) for n in range(1, len(calls) + 1)]  # 9 scan levels + log2(256) steps
    calls.clear()
    one = MinimalAttackParams(max_epsilon=1 / 255)
    minimal_epsilon(lenet, x[:1], method="fgsm", labels=y[:1], params=one, on_run=lambda *c: calls.append(c))
    assert calls == [(1, 2)]
    with pytest.raises(InvalidInput, match=r"minimal epsilon searches fgsm, bim, pgd; got 'deepfool-l2'"):
        minimal_epsilon(lenet, x[:1], method="deepfool-l2", labels=y[:1])


def test_targeted_search_counts_an_image_already_at_the_target(lenet, test_set):
    """A target the model already predicts is reached at eps 0, without a search."""
    x, _ = test_set
    pred = lenet(x[:2]).argmax(1)
    result = minimal_epsilon(lenet, x[:2], method="fgsm", target=pred)
    assert bool(result.clean_success.all()) and bool(result.found.all())
    assert result.levels.tolist() == [0, 0] and result.runs.tolist() == [0, 0]
    assert torch.equal(result.predictions, pred) and torch.equal(result.labels, pred)  # the targets
