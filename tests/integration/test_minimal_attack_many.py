"""MinimalAttack over many images in one call (``images``), as Attack does.

Oracle: the same RPC called once per image. On the trained LeNet and real Fashion-MNIST test
images (a class mix, one of them sent as a 56-px PNG), each answer of a many-image call equals
that image's single-image answer (levels, runs, violations, DeepFool's iterations and raw norms,
the 8-bit adversarial image); the images are searched as one batch (one call of the interp
search per request, spied); an unreadable image gets its own error and the others are answered;
the cap is enforced and the SDK chunks by it; the CLI takes several files.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import grpc
import numpy as np
import pytest

from client import InterpClient, errors
from client.images import image_message
from client.results import MinimalAttackResult
from protos import interp_pb2 as pb
from protos import interp_pb2_grpc
from server.app import create_server
from server.config import Limits
from server.handlers import attacks
from tests.conftest import require
from tests.support.servers import test_config

TOL = 1e-5
INTERP = Path(sys.executable).parent / "interp"


def _png(array: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", array)
    assert ok
    return buf.tobytes()


@pytest.fixture(scope="module")
def client(target) -> Iterator[InterpClient]:
    with InterpClient(target, timeout=300) as c:
        yield c


@pytest.fixture(scope="module")
def batch(fashion_test_images) -> list[object]:
    """Five test images: four 28-px arrays (sneaker, sneaker, shirt, trouser) and a 56-px PNG (boot)."""
    images, labels = fashion_test_images
    picks = [int(np.flatnonzero(labels == c)[0]) for c in (7, 7, 6, 1, 9)]
    out: list[object] = [images[i] for i in picks[:4]]
    out.append(_png(cv2.resize(images[picks[4]], (56, 56), interpolation=cv2.INTER_NEAREST)))
    return out


def _same(a: MinimalAttackResult, b: MinimalAttackResult) -> None:
    """A many-image answer ``a`` equals the single-image answer ``b``."""
    assert isinstance(a, MinimalAttackResult) and isinstance(b, MinimalAttackResult)
    for name in ("method", "targeted", "found", "clean_misclassified", "level", "runs", "monotone", "violations",
                 "success", "success_raw", "rounded_outward", "iterations", "params"):  # fmt: skip
        assert getattr(a, name) == getattr(b, name), name
    for name in ("original", "label", "prediction"):
        assert getattr(a, name).index == getattr(b, name).index, name
        assert abs(getattr(a, name).probability - getattr(b, name).probability) < TOL, name
    for name in ("epsilon", "linf", "l2", "linf_raw", "l2_raw"):
        assert abs(getattr(a, name) - getattr(b, name)) < TOL, name
    for name in ("adversarial", "input"):
        x, y = getattr(a, name), getattr(b, name)
        assert x is not None and y is not None and x.shape == y.shape
        np.testing.assert_allclose(x, y, rtol=0, atol=TOL)
    assert a.input_png == b.input_png and a.adversarial_png == b.adversarial_png


CASES = [
    ("fgsm", {}, {}),
    ("deepfool_l2", {}, {}),
    ("deepfool_linf", {"steps": 20}, {}),
    # label = sneaker: the sneakers are searched, the other images are clean-misclassified (level 0)
    ("pgd", {"steps": 3, "seed": 1}, {"label": "Sneaker"}),
    ("bim", {"steps": 3}, {"target": "Bag"}),
]


@pytest.mark.parametrize(
    ("method", "params", "extra"), CASES, ids=["fgsm", "deepfool_l2", "deepfool_linf", "pgd-label", "bim-target"]
)
def test_each_answer_equals_the_single_image_call(client, batch, method, params, extra) -> None:
    many = client.minimal_attack(batch, model="lenet", method=method, **extra, **params)
    assert isinstance(many, list) and len(many) == len(batch)
    for image, result in zip(batch, many, strict=True):
        _same(result, client.minimal_attack(image, model="lenet", method=method, **extra, **params))
    assert len({r.request_id for r in many}) == 1 and many[0].model == "lenet"  # the call's stamp on each
    if "label" in extra:
        clean = [r.clean_misclassified for r in many]
        assert any(clean) and not all(clean), clean  # both kinds of image in one batch
    if method.startswith("deepfool"):
        assert all(r.found and r.iterations >= 1 for r in many)


@pytest.fixture()
def spied(monkeypatch) -> dict[str, list[int]]:
    """The batch sizes each interp search of the MinimalAttack handler was called with."""
    calls: dict[str, list[int]] = {"minimal_epsilon": [], "deepfool": []}

    def spy(name: str) -> Callable[..., Any]:
        real = getattr(attacks, name)

        def wrapper(model: Any, x: Any, **kwargs: Any) -> Any:
            calls[name].append(int(x.shape[0]))
            return real(model, x, **kwargs)

        return wrapper

    for name in calls:
        monkeypatch.setattr(attacks, name, spy(name))
    return calls


@pytest.mark.parametrize(("method", "searched"), [("fgsm", "minimal_epsilon"), ("deepfool_l2", "deepfool")])
def test_the_images_are_searched_as_one_batch(client, batch, spied, method, searched) -> None:
    results = client.minimal_attack(batch + [b"not an image"], model="lenet", method=method)
    assert isinstance(results[-1], errors.InvalidArgument)
    assert spied[searched] == [len(batch)]  # one search over the images that decoded
    assert all(not sizes for name, sizes in spied.items() if name != searched)
    client.minimal_attack(batch[0], model="lenet", method=method)
    assert spied[searched] == [len(batch), 1]


def test_an_unreadable_image_gets_its_own_error_and_the_others_answer(stub, client, batch) -> None:
    good = [image_message(image) for image in batch[:2]]
    request = pb.MinimalAttackRequest(
        model="lenet", method="fgsm", images=[good[0], pb.Image(encoded=b"not an image at all"), good[1]]
    )
    reply = stub.MinimalAttack(request, timeout=120)
    assert [item.HasField("error") for item in reply.items] == [False, True, False]
    error = reply.items[1].error
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0] and error.code_name == "INVALID_ARGUMENT"
    assert error.field == "images[1]" and "cannot read" in error.message
    assert not reply.items[1].HasField("adversarial") and not reply.items[1].method
    assert reply.stamp.request_id and not reply.items[0].HasField("stamp")
    for position, image in ((0, good[0]), (2, good[1])):
        single = stub.MinimalAttack(pb.MinimalAttackRequest(model="lenet", method="fgsm", image=image), timeout=120)
        assert reply.items[position].level == single.level and reply.items[position].runs == single.runs
        assert reply.items[position].adversarial == single.adversarial
    # the SDK keeps the item's typed error in the list, numbered over the images given
    results = client.minimal_attack([batch[0], b"garbage", batch[1]], model="lenet", method="fgsm")
    assert isinstance(results[0], MinimalAttackResult) and isinstance(results[2], MinimalAttackResult)
    assert isinstance(results[1], errors.InvalidArgument) and results[1].field == "images[1]"
    assert results[1].request_id == results[0].request_id


def test_request_errors_still_fail_the_whole_call(stub, client, batch) -> None:
    with pytest.raises(errors.InvalidArgument, match="untargeted"):
        client.minimal_attack(batch[:2], model="lenet", method="deepfool_l2", target="Bag")
    first = image_message(batch[0])
    with pytest.raises(grpc.RpcError) as info:
        stub.MinimalAttack(pb.MinimalAttackRequest(model="lenet", method="fgsm", image=first, images=[first]))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "not both" in info.value.details()


@pytest.fixture(scope="module")
def capped() -> Iterator[str]:
    srv, port = create_server(test_config(models=("lenet",), limits=Limits(max_images_per_call=2)))
    srv.start()
    yield f"127.0.0.1:{port}"
    srv.stop(None)


def test_the_cap_is_enforced_and_the_sdk_chunks_by_it(capped, batch) -> None:
    with grpc.insecure_channel(capped) as channel:
        stub = interp_pb2_grpc.InterpStub(channel)
        request = pb.MinimalAttackRequest(model="lenet", method="fgsm", images=[image_message(b) for b in batch[:3]])
        with pytest.raises(grpc.RpcError) as info:
            stub.MinimalAttack(request, timeout=60)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "number of images must be in 1..2 (this server's max_images_per_call), got 3" in info.value.details()
    with InterpClient(capped, timeout=120) as c:
        results = c.minimal_attack(batch[:3] + [b"garbage"], model="lenet", method="fgsm")
        alone = [c.minimal_attack(image, model="lenet", method="fgsm") for image in batch[:3]]
    # 4 images at 2 per call: two calls, each with its own request id; the error numbered over all
    ids = [r.request_id for r in results]
    assert ids[0] == ids[1] != ids[2] == ids[3]
    assert isinstance(results[3], errors.InvalidArgument) and results[3].field == "images[3]"
    for a, b in zip(results[:3], alone, strict=True):
        _same(a, b)


def test_cli_attacks_several_files(target, batch, tmp_path) -> None:
    require(INTERP.exists(), f"console script not installed at {INTERP} (pip install -e .)")
    files = [tmp_path / "a.png", tmp_path / "b.png"]
    for path, image in zip(files, batch[:2], strict=True):
        path.write_bytes(_png(image))
    out = tmp_path / "out"
    command = [str(INTERP), "--server", target, "--json", "minimal-attack", "lenet", *map(str, files)]
    done = subprocess.run([*command, "--method", "fgsm", "-o", str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert [r["image"] for r in document["results"]] == [str(f) for f in files]
    assert all(r["level"] >= 1 and r["found"] for r in document["results"])
    for stem in ("a", "b"):
        assert (out / stem / "adversarial.png").exists() and (out / stem / "perturbation.png").exists()
