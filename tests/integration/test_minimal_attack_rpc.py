"""MinimalAttack and AttackDataset through the raw stub, the SDK and the CLI (real in-process server)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import cv2
import grpc
import numpy as np
import pytest

from client import InterpClient, ProgressEvent, errors
from protos import interp_pb2 as pb
from tests.conftest import require

ROOT = Path(__file__).resolve().parents[2]
INTERP = Path(sys.executable).parent / "interp"


@pytest.fixture(scope="module")
def client(target) -> Iterator[InterpClient]:
    with InterpClient(target, timeout=300) as c:
        yield c


@pytest.fixture(scope="module")
def fashion() -> tuple[list[bytes], np.ndarray]:
    """The first 5 Fashion-MNIST test images as PNG bytes, and their labels."""
    from models.datasets import load_dataset

    images, labels = load_dataset("fashion-mnist", "test", download=False)
    pngs = []
    for image in images[:5]:
        ok, buf = cv2.imencode(".png", image)
        assert ok
        pngs.append(buf.tobytes())
    return pngs, labels[:5]


def test_minimal_pgd_eps_is_confirmed_by_attack(client, fashion):
    pngs, labels = fashion
    for png, label in zip(pngs[:3], labels[:3], strict=True):
        r = client.minimal_attack(png, model="lenet", method="pgd", label=int(label), steps=5, seed=2)
        assert r.params == {"steps": 5, "random_start": True, "seed": 2, "max_epsilon": 1.0}
        if r.clean_misclassified:
            assert r.level == 0 and r.success and r.linf == 0
            continue
        assert r.found and r.success and r.level >= 1 and r.runs >= 9
        assert r.epsilon == pytest.approx(r.level / 255) and r.linf <= r.epsilon + 1e-7
        at = client.attack(png, model="lenet", method="pgd", epsilon=r.level / 255, label=int(label), steps=5, seed=2)
        assert at.outcomes[0].success and at.outcomes[0].prediction.index == r.prediction.index
        assert np.array_equal(at.outcomes[0].adversarial, r.adversarial)
        if r.level > 1:
            below = client.attack(
                png, model="lenet", method="pgd", epsilon=(r.level - 1) / 255, label=int(label), steps=5, seed=2
            )
            assert not below.outcomes[0].success


def test_deepfool_through_the_sdk(client, fashion):
    pngs, labels = fashion
    r = client.minimal_attack(pngs[0], model="lenet", method="deepfool_l2", label=int(labels[0]))
    assert r.params == {"steps": 50, "candidates": 10, "overshoot": 0.02}
    assert r.found and r.success and r.success_raw and r.iterations >= 1
    assert r.prediction.index != labels[0] and 0 < r.l2 and r.l2_raw > 0
    assert r.adversarial is not None and np.array_equal(np.round(r.adversarial * 255), r.adversarial * 255)
    files = r.save(Path(__import__("tempfile").mkdtemp()))
    assert [f.name for f in files] == ["adversarial.png", "perturbation.png", "input.png"]


def test_attack_with_a_wrong_true_label_reports_the_clean_error(client, fashion):
    pngs, _ = fashion
    clean = client.classify(pngs[0], model="lenet").top.index
    wrong = (clean + 1) % 10
    r = client.attack(pngs[0], model="lenet", method="fgsm", epsilon=[0.05, 0.1], label=wrong)
    assert r.clean_misclassified and r.label.index == wrong
    assert all(o.success and o.linf == 0 and o.prediction.index == clean for o in r.outcomes)
    right = client.attack(pngs[0], model="lenet", method="fgsm", epsilon=0.1, label=clean)
    assert not right.clean_misclassified and right.label.index == clean


def test_attack_dataset_streams_progress_and_agrees_with_its_minimal_eps(client):
    events = []
    r = client.attack_dataset(
        "lenet",
        dataset="fashion-mnist-test",
        method=["fgsm", "pgd"],
        epsilons=[0.0, 0.02, 0.05],
        limit=20,
        steps=3,
        batch_size=10,
        progress=events.append,
    )
    assert [e.step for e in events if isinstance(e, ProgressEvent) and e.total_steps] == [1, 2, 3, 4]
    assert r.images == 20 and r.norm == "linf" and r.true_labels and r.curve_png.startswith(b"\x89PNG")
    assert [c.method for c in r.curves] == ["fgsm", "pgd"]
    for curve in r.curves:
        assert curve.levels == (0, 5, 12) and curve.minimal.shape == (20,)
        assert curve.accuracy[0] == pytest.approx(r.clean_accuracy)
        if curve.non_monotone == 0:
            for eps, accuracy in zip(r.epsilons, curve.accuracy, strict=True):
                assert accuracy == pytest.approx(float((curve.minimal > eps).mean()))


def _code(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        result = call()
        if hasattr(result, "__iter__") and not isinstance(result, pb.MinimalAttackResponse):
            list(result)
    return info.value.code(), info.value.details()


def _image(png: bytes) -> pb.Image:
    return pb.Image(encoded=png)


@pytest.mark.parametrize(
    ("request_fn", "needle"),
    [
        (
            lambda img: pb.AttackRequest(
                model="lenet", image=img, method="fgsm", epsilons=[0.1], label=pb.Target(index=10)
            ),
            "class index 10 out of range 0..9",
        ),  # fmt: skip
        (
            lambda img: pb.AttackRequest(
                model="lenet", image=img, method="fgsm", epsilons=[0.1], label=pb.Target(label="parrot")
            ),
            "unknown class label",
        ),  # fmt: skip
        (
            lambda img: pb.MinimalAttackRequest(
                model="lenet", image=img, method="deepfool_l2", params=pb.MinimalAttackParams(candidates=1)
            ),
            "candidates",
        ),  # fmt: skip
        (
            lambda img: pb.MinimalAttackRequest(
                model="lenet", image=img, method="deepfool_linf", params=pb.MinimalAttackParams(candidates=11)
            ),
            "2..10",
        ),  # fmt: skip
        (
            lambda img: pb.MinimalAttackRequest(model="lenet", image=img, method="pgd", target=pb.Target()),
            "needs a target class",
        ),  # fmt: skip
        (
            lambda img: pb.MinimalAttackRequest(
                model="lenet", image=img, method="deepfool_l2", target=pb.Target(index=1)
            ),
            "untargeted",
        ),  # fmt: skip
        (
            lambda img: pb.MinimalAttackRequest(
                model="lenet", image=img, method="fgsm", params=pb.MinimalAttackParams(candidates=3)
            ),
            "does not apply",
        ),  # fmt: skip
        (lambda img: pb.MinimalAttackRequest(model="lenet", image=img, method="cw"), "valid methods"),
    ],
)
def test_bad_single_image_requests(stub, fashion, request_fn, needle):
    request = request_fn(_image(fashion[0][0]))
    rpc = stub.Attack if isinstance(request, pb.AttackRequest) else stub.MinimalAttack
    code, details = _code(lambda: rpc(request))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and needle in details


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"epsilons": [0.01] * 17}, "max_epsilons"),
        ({"dataset": "cifar10-test"}, "registered datasets: fashion-mnist-train, fashion-mnist-test"),
        ({"model": "alexnet"}, "does not fit alexnet"),
        ({"limit": 100_000}, "max_dataset_images"),
        ({"methods": ["deepfool_l2", "pgd"]}, "ask for it alone"),
        ({"methods": []}, "method is required"),
        ({"epsilons": [1.5]}, "[0, 1]"),
    ],
)
def test_bad_dataset_requests(stub, overrides, needle):
    values = {"model": "lenet", "dataset": "fashion-mnist-test", "methods": ["fgsm"], "epsilons": [0.1], "limit": 4}
    values.update(overrides)
    code, details = _code(lambda: stub.AttackDataset(pb.AttackDatasetRequest(**values)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT, details
    assert needle in details


def test_sdk_maps_a_bad_label_to_a_typed_error(client, fashion):
    with pytest.raises(errors.InvalidArgument) as info:
        client.minimal_attack(fashion[0][0], model="lenet", label=12)
    assert info.value.field_violations[0].field == "label.index"


def test_cancelling_mid_curve_returns_no_result(stub):
    request = pb.AttackDatasetRequest(
        model="lenet",
        dataset="fashion-mnist-test",
        methods=["pgd"],
        epsilons=[0.05],
        limit=200,
        params=pb.AttackDatasetParams(batch_size=10, steps=20),
    )
    call = stub.AttackDataset(request)
    events = []
    for event in call:
        events.append(event)
        if event.HasField("progress") and event.progress.step >= 1:
            call.cancel()
            break
    assert all(not e.HasField("result") for e in events)
    with pytest.raises(grpc.RpcError) as info:
        list(call)
    assert info.value.code() == grpc.StatusCode.CANCELLED


# -- CLI ----------------------------------------------------------------------------------------


def _interp(target: str, *args: str) -> subprocess.CompletedProcess:
    require(INTERP.exists(), f"console script not installed at {INTERP} (pip install -e .)")
    return subprocess.run([str(INTERP), "--server", target, *args], capture_output=True, text=True, timeout=300,
                          cwd=ROOT)  # fmt: skip


def test_cli_minimal_attack_and_robustness(target, fashion, tmp_path):
    image = tmp_path / "item.png"
    image.write_bytes(fashion[0][0])
    done = _interp(target, "minimal-attack", "lenet", str(image), "--method", "fgsm", "-o", str(tmp_path / "min"))
    assert done.returncode == 0, done.stderr
    assert "minimal eps" in done.stdout and "failure at" in done.stdout
    assert (tmp_path / "min" / "adversarial.png").exists()
    done = _interp(target, "robustness", "lenet", "fashion-mnist-test", "--method", "fgsm", "--eps", "0.02,0.05",
                   "--limit", "10", "-o", str(tmp_path / "curve.png"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "EPS 0.05" in done.stdout and "fgsm" in done.stdout
    assert (tmp_path / "curve.png").read_bytes().startswith(b"\x89PNG")
