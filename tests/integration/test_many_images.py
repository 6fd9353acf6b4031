"""Many images per call (Classify, Activations, Saliency, Attack) and lighter answers on demand.

Oracle: the same RPC called once per image. On the trained LeNet and real Fashion-MNIST test
images, a batch answer equals the per-image answers to 1e-5 (maps, logits, activations,
adversarial images), including images of another size and a class mix that leaves some
images clean-misclassified; an unreadable image gets its own error entry and the others are
unaffected; the cap is enforced; the SDK chunks lists and iterators; the CLI takes several files
and directories; include_input / include_pngs leave the echo and the PNGs out.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import cv2
import grpc
import numpy as np
import pytest

from client import InterpClient, errors
from client.results import AttackResult, ClassifyResult, SaliencyResult
from protos import interp_pb2 as pb
from protos import interp_pb2_grpc
from protos.codec import from_tensor
from server.app import create_server
from server.config import Limits
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
    with InterpClient(target, timeout=120) as c:
        yield c


@pytest.fixture(scope="module")
def batch(fashion_test_images) -> list[object]:
    """Six test images: four as 28-px arrays, a 56-px PNG (another size) and a float array."""
    images, labels = fashion_test_images
    picks = [int(np.flatnonzero(labels == c)[0]) for c in (7, 7, 6, 1, 9, 0)]
    out: list[object] = [images[i] for i in picks[:4]]
    out.append(_png(cv2.resize(images[picks[4]], (56, 56), interpolation=cv2.INTER_NEAREST)))
    out.append(images[picks[5]].astype(np.float32) / 255.0)
    return out


def _close(a: np.ndarray | None, b: np.ndarray | None) -> None:
    assert a is not None and b is not None
    assert a.shape == b.shape
    np.testing.assert_allclose(a, b, rtol=0, atol=TOL)


# -- batch answers equal per-image answers -----------------------------------------------------------


def test_classify_batch_equals_single_calls(client, batch) -> None:
    many = client.classify(batch, model="lenet", top_k=10)
    assert len(many) == len(batch)
    for image, result in zip(batch, many, strict=True):
        single = client.classify(image, model="lenet", top_k=10)
        assert isinstance(result, ClassifyResult)
        _close(result.logits, single.logits)
        assert [p.index for p in result.predictions] == [p.index for p in single.predictions]
        assert result.model == "lenet" and result.request_id  # the call's stamp on every item


def test_activations_batch_equals_single_calls(client, batch) -> None:
    layers = ["relu1", "pool2", "fc1"]
    many = client.activations(batch, model="lenet", layers=layers, top_k=4)
    for image, result in zip(batch, many, strict=True):
        single = client.activations(image, model="lenet", layers=layers, top_k=4)
        _close(result.input, single.input)
        for a, b in zip(result.layers, single.layers, strict=True):
            _close(a.activation, b.activation)
            _close(a.channel_mean, b.channel_mean)
            assert a.top_channels == b.top_channels and a.grid_png == b.grid_png


SALIENCY_CASES = [
    ("gradient", {}),
    ("gradient_x_input", {}),
    ("guided_backprop", {}),
    ("grad_cam", {}),
    ("smoothgrad", {"samples": 6, "batch_size": 4}),
    ("integrated_gradients", {"steps": 8}),
]


@pytest.mark.parametrize(("method", "params"), SALIENCY_CASES, ids=[c[0] for c in SALIENCY_CASES])
def test_saliency_batch_equals_single_calls(client, batch, method, params) -> None:
    many = client.saliency(batch, model="lenet", method=method, **params)
    for image, result in zip(batch, many, strict=True):
        single = client.saliency(image, model="lenet", method=method, **params)
        assert isinstance(result, SaliencyResult)
        assert result.target is not None and single.target is not None
        assert result.target.index == single.target.index
        assert abs(result.target.probability - single.target.probability) < TOL
        _close(result.map, single.map)
        _close(result.attribution, single.attribution)
        assert result.params == single.params


def test_saliency_batch_with_a_target_equals_single_calls(client, batch) -> None:
    many = client.saliency(batch, model="lenet", method="gradient", target="Bag")
    for image, result in zip(batch, many, strict=True):
        single = client.saliency(image, model="lenet", method="gradient", target="Bag")
        assert result.target.index == single.target.index == 8
        _close(result.map, single.map)


ATTACK_CASES = [
    ("fgsm", {}, {}),
    ("bim", {"steps": 4}, {}),
    ("pgd", {"steps": 4, "seed": 3}, {}),
    # label = sneaker: the sneakers are attacked, the other images are clean-misclassified
    ("pgd-label", {"steps": 3}, {"label": "Sneaker"}),
    ("bim-targeted", {"steps": 4}, {"target": "Bag"}),
]


@pytest.mark.parametrize(("case", "params", "extra"), ATTACK_CASES, ids=[c[0] for c in ATTACK_CASES])
def test_attack_batch_equals_single_calls(client, batch, case, params, extra) -> None:
    method = case.split("-")[0]
    epsilons = [0.02, 0.1]
    many = client.attack(batch, model="lenet", method=method, epsilon=epsilons, **extra, **params)
    clean = []
    for image, result in zip(batch, many, strict=True):
        single = client.attack(image, model="lenet", method=method, epsilon=epsilons, **extra, **params)
        assert isinstance(result, AttackResult)
        assert result.original.index == single.original.index
        assert result.clean_misclassified == single.clean_misclassified
        clean.append(result.clean_misclassified)
        assert result.params == single.params
        for a, b in zip(result.outcomes, single.outcomes, strict=True):
            _close(a.adversarial, b.adversarial)
            assert (a.success, a.prediction.index) == (b.success, b.prediction.index)
            assert abs(a.linf - b.linf) < TOL and abs(a.l2 - b.l2) < TOL
    if "label" in extra:
        assert any(clean) and not all(clean), clean  # both paths of the batch ran


# -- per-image errors ------------------------------------------------------------------------------


def test_an_unreadable_image_gets_its_own_error_and_the_others_answer(stub, batch) -> None:
    from client.images import image_message

    good = [image_message(image) for image in batch[:2]]
    nan = np.full((28, 28), np.nan, np.float32)
    request = pb.ClassifyRequest(
        model="lenet",
        images=[good[0], pb.Image(encoded=b"not an image at all"), image_message(np.zeros((28, 28))), good[1]],
    )
    request.images[2].pixels.data = nan.tobytes()  # NaN pixels: refused by the server, not the SDK
    reply = stub.Classify(request, timeout=30)
    assert len(reply.items) == 4
    assert [item.HasField("error") for item in reply.items] == [False, True, True, False]
    for position in (1, 2):
        error = reply.items[position].error
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0] and error.code_name == "INVALID_ARGUMENT"
        assert error.field == f"images[{position}]" and error.message
        assert not reply.items[position].predictions
    assert "cannot read" in reply.items[1].error.message and "NaN" in reply.items[2].error.message
    for position, image in ((0, good[0]), (3, good[1])):
        single = stub.Classify(pb.ClassifyRequest(model="lenet", image=image), timeout=30)
        np.testing.assert_allclose(from_tensor(reply.items[position].logits), from_tensor(single.logits), atol=TOL)
    assert reply.stamp.request_id and not reply.items[0].HasField("stamp")


def _mixed(fashion_test_images) -> list[pb.Image]:
    """Runs of raw arrays decoded together (uint8, then float32 with a bad one inside), a file
    and an array of another size between them: ten images, errors at positions 4 and 6."""
    from client.images import image_message

    images = fashion_test_images[0][:8]
    floats = [images[i].astype(np.float32) / 255.0 for i in (3, 4, 5)]
    out = [image_message(images[i]) for i in range(3)] + [image_message(f) for f in floats]
    out[4].pixels.data = np.where(floats[1] > 0.5, 1.5, floats[1]).astype(np.float32).tobytes()  # out of range
    out += [pb.Image(encoded=b"not an image"), pb.Image(encoded=_png(images[6]))]
    out += [image_message(cv2.resize(images[7], (30, 30))), image_message(images[0])]
    return out


def _check_mixed(stub, images: list[pb.Image], reply: pb.ClassifyResponse) -> None:
    assert [item.HasField("error") for item in reply.items] == [i in (4, 6) for i in range(len(images))]
    assert reply.items[4].error.field == "images[4]" and "[0, 1]" in reply.items[4].error.message
    assert reply.items[6].error.field == "images[6]" and "cannot read" in reply.items[6].error.message
    for position, image in enumerate(images):
        if position not in (4, 6):
            single = stub.Classify(pb.ClassifyRequest(model="lenet", image=image), timeout=30)
            np.testing.assert_allclose(from_tensor(reply.items[position].logits), from_tensor(single.logits), atol=TOL)


def test_arrays_decoded_together_answer_as_alone_with_errors_in_place(stub, fashion_test_images) -> None:
    images = _mixed(fashion_test_images)
    _check_mixed(stub, images, stub.Classify(pb.ClassifyRequest(model="lenet", images=images), timeout=30))


def test_runs_cut_at_the_batch_chunk_answer_as_alone(fashion_test_images) -> None:
    # 4 LeNet inputs per forward: the runs are cut where a chunk fills, as image by image
    limits = Limits(max_batch_pixels=4 * 28 * 28)
    srv, port = create_server(test_config(models=("lenet",), limits=limits))
    srv.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = interp_pb2_grpc.InterpStub(channel)
            images = _mixed(fashion_test_images)
            _check_mixed(stub, images, stub.Classify(pb.ClassifyRequest(model="lenet", images=images), timeout=30))
    finally:
        srv.stop(None)


@pytest.mark.parametrize(
    "request_of",
    [
        lambda images: ("Classify", pb.ClassifyRequest(model="lenet", images=images)),
        lambda images: ("Saliency", pb.SaliencyRequest(model="lenet", images=images, method="gradient")),
        lambda images: ("Activations", pb.ActivationsRequest(model="lenet", images=images, layers=["conv1"])),
        lambda images: ("Attack", pb.AttackRequest(model="lenet", images=images, method="fgsm", epsilons=[0.1])),
    ],
    ids=["classify", "saliency", "activations", "attack"],
)
def test_a_run_of_arrays_that_all_fail_leaves_nothing_to_compute(stub, request_of) -> None:
    from client.images import image_message

    images = [image_message(np.zeros((28, 28), np.float32)) for _ in range(3)]
    for image in images:
        image.pixels.data = np.full((28, 28), 2.0, np.float32).tobytes()
    rpc, request = request_of(images)
    reply = getattr(stub, rpc)(request, timeout=30)
    assert [item.error.field for item in reply.items] == ["images[0]", "images[1]", "images[2]"]
    assert all("[0, 1]" in item.error.message for item in reply.items)


def test_sdk_puts_the_typed_error_in_the_list(client, batch) -> None:
    results = client.saliency([batch[0], b"garbage bytes", batch[1]], model="lenet", include_pngs=False)
    assert isinstance(results[0], SaliencyResult) and isinstance(results[2], SaliencyResult)
    error = results[1]
    assert isinstance(error, errors.InvalidArgument)
    assert error.field == "images[1]" and error.request_id == results[0].request_id


def test_an_image_the_sdk_cannot_send_fails_alone(capped, batch, tmp_path) -> None:
    nan = np.full((28, 28, 1), np.nan, np.float32)
    missing = tmp_path / "missing.png"
    with InterpClient(capped, timeout=60) as c:  # 3 images a call: the bad ones fall in two calls
        bad = np.zeros((5, 28, 28))
        results = c.classify([missing, batch[0], nan, batch[1], bad, missing, missing], model="lenet")  # 3rd call: none
        alone = c.classify(batch[1], model="lenet")
    kinds = [type(r).__name__ for r in results]
    assert kinds == ["InvalidArgument", "ClassifyResult", "InvalidArgument", "ClassifyResult"] + ["InvalidArgument"] * 3
    assert [r.field for r in results if isinstance(r, errors.InterpError)] == [f"images[{i}]" for i in (0, 2, 4, 5, 6)]
    assert "missing.png" in results[0].message and "NaN" in results[2].message
    assert "channels last" in results[4].message
    _close(results[3].logits, alone.logits)


def test_sdk_keeps_each_call_within_the_message_cap(batch) -> None:
    srv, port = create_server(test_config(models=("lenet",), limits=Limits(max_message_bytes=100_000)))
    srv.start()
    try:
        colour = np.repeat(batch[0][:, :, None], 3, axis=2).astype(np.float32) / 255
        fits = cv2.resize(colour, (80, 80))  # 76,800 bytes as float32: one a call
        over = cv2.resize(colour, (200, 200))  # 480,000 bytes: over the cap alone
        with InterpClient(f"127.0.0.1:{port}", timeout=60) as c:
            results = c.classify([fits, over, fits, batch[1]], model="lenet")
            with pytest.raises(errors.ResourceExhausted, match="over the server's message cap.*encoded files"):
                c.classify(over, model="lenet")
            assert c.classify(batch[1], model="lenet").top.index == results[3].top.index  # still serving
    finally:
        srv.stop(None)
    assert isinstance(results[1], errors.InvalidArgument) and results[1].field == "images[1]"
    assert "480,0" in results[1].message and "encoded file" in results[1].message
    assert results[0].request_id != results[2].request_id  # two calls: the two 80-px images do not fit one
    assert results[2].request_id == results[3].request_id  # the small one joins the last call
    _close(results[0].logits, results[2].logits)


def test_a_request_error_still_fails_the_whole_call(client, batch) -> None:
    with pytest.raises(errors.InvalidArgument, match="unknown class label"):
        client.saliency(batch[:2], model="lenet", target="no such class")
    with pytest.raises(errors.NotFound):
        client.classify(batch[:2], model="no-such-model")


def test_image_and_images_together_are_refused(stub, batch) -> None:
    from client.images import image_message

    first = image_message(batch[0])
    with pytest.raises(grpc.RpcError) as info:
        stub.Classify(pb.ClassifyRequest(model="lenet", image=first, images=[first]), timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not both" in info.value.details()


# -- the cap and the SDK's chunks ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def capped() -> Iterator[str]:
    srv, port = create_server(test_config(models=("lenet",), limits=Limits(max_images_per_call=3)))
    srv.start()
    yield f"127.0.0.1:{port}"
    srv.stop(None)


def test_over_the_cap_is_refused_naming_it(capped, batch) -> None:
    from client.images import image_message

    with grpc.insecure_channel(capped) as channel:
        stub = interp_pb2_grpc.InterpStub(channel)
        assert stub.GetServerInfo(pb.GetServerInfoRequest(), timeout=10).limits.max_images_per_call == 3
        request = pb.AttackRequest(
            model="lenet", method="fgsm", epsilons=[0.1], images=[image_message(b) for b in batch[:4]]
        )
        with pytest.raises(grpc.RpcError) as info:
            stub.Attack(request, timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "number of images must be in 1..3 (this server's max_images_per_call), got 4" in info.value.details()


def test_sdk_sends_lists_and_iterators_in_chunks_of_the_cap(capped, batch) -> None:
    taken: list[int] = []

    def lazily() -> Iterator[object]:
        for i in range(7):
            taken.append(i)
            yield batch[i % len(batch)]

    with InterpClient(capped, timeout=60) as c:
        results = c.classify(lazily(), model="lenet")
        from_list = c.classify([batch[i % len(batch)] for i in range(7)], model="lenet")
        from_array = c.classify(np.stack(batch[:4])[..., None], model="lenet")  # (N, H, W, 1): four images
    assert taken == list(range(7)) and len(results) == 7 and len(from_array) == 4
    # 7 images at 3 per call: three calls of 3, 3 and 1 images, each with its own request id
    ids = [r.request_id for r in results]
    assert len(set(ids[0:3])) == len(set(ids[3:6])) == 1 and len(set(ids)) == 3
    for a, b in zip(results, from_list, strict=True):
        _close(a.logits, b.logits)


def test_sdk_renumbers_errors_over_its_chunks(capped, batch) -> None:
    with InterpClient(capped, timeout=60) as c:
        results = c.classify([batch[0]] * 4 + [b"garbage"], model="lenet")
    assert isinstance(results[4], errors.InvalidArgument) and results[4].field == "images[4]"


# -- lighter answers ---------------------------------------------------------------------------------


def test_classify_echoes_the_input_only_when_asked(stub, client, batch) -> None:
    from client.images import image_message

    image = image_message(batch[0])
    plain = stub.Classify(pb.ClassifyRequest(model="lenet", image=image), timeout=30)
    echoed = stub.Classify(pb.ClassifyRequest(model="lenet", image=image, include_input=True), timeout=30)
    assert not plain.HasField("input") and echoed.input.png.startswith(b"\x89PNG")
    assert from_tensor(echoed.input.tensor).shape == (1, 28, 28)
    assert plain.ByteSize() < 400 < echoed.ByteSize()
    result = client.classify(batch[0], model="lenet")
    assert result.input is None and result.input_png == b""
    assert client.classify(batch[0], model="lenet", include_input=True).input.shape == (28, 28, 1)


def test_saliency_without_pngs_or_echo(client, batch) -> None:
    full = client.saliency(batch[0], model="lenet")
    numbers = client.saliency(batch[0], model="lenet", include_pngs=False)
    bare = client.saliency(batch[0], model="lenet", include_pngs=False, include_input=False)
    assert full.heatmap_png and full.overlay_png and full.input_png
    assert numbers.heatmap_png == numbers.overlay_png == numbers.input_png == b""
    _close(numbers.input, full.input)
    _close(numbers.map, full.map)
    assert bare.input is None and bare.map is not None


def test_attack_and_activations_without_pngs(client, batch) -> None:
    result = client.attack(batch[0], model="lenet", epsilon=[0.05, 0.1], include_pngs=False, include_input=False)
    assert result.input is None and result.input_png == b""
    assert all(o.adversarial_png == o.perturbation_png == b"" and o.adversarial is not None for o in result.outcomes)
    acts = client.activations(batch[0], model="lenet", layers=["relu1"], include_pngs=False)
    assert acts.layers[0].grid_png == b"" and acts.input_png == b"" and acts.input is not None


@pytest.mark.parametrize("method", ["pgd", "deepfool_linf"])
def test_minimal_attack_without_pngs_or_echo_finds_the_same_image(client, batch, method) -> None:
    """Many images without PNGs (an evaluation script's call): the same search results, no PNG bytes."""
    kwargs = {"model": "lenet", "method": method, "steps": 5}
    full = client.minimal_attack(batch[:2], **kwargs)
    bare = client.minimal_attack(batch[:2], include_pngs=False, include_input=False, **kwargs)
    numbers = client.minimal_attack(batch[0], include_pngs=False, **kwargs)
    for f, b in zip(full, bare, strict=True):
        assert f.adversarial_png and f.perturbation_png and f.input_png
        assert b.adversarial_png == b.perturbation_png == b.input_png == b"" and b.input is None
        assert (b.found, b.level, b.linf, b.prediction.index) == (f.found, f.level, f.linf, f.prediction.index)
        np.testing.assert_array_equal(b.adversarial, f.adversarial)
    assert numbers.input_png == b"" and numbers.input is not None
    _close(numbers.input, full[0].input)


# -- CLI ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory, fashion_test_images) -> Path:
    images, labels = fashion_test_images
    folder = tmp_path_factory.mktemp("many")
    for name, label in (("a_sneaker", 7), ("b_shirt", 6), ("c_bag", 8)):
        cv2.imwrite(str(folder / f"{name}.png"), images[int(np.flatnonzero(labels == label)[0])])
    (folder / "notes.txt").write_text("not an image")  # not an image suffix: not taken
    return folder


def _interp(target: str, *args: str) -> subprocess.CompletedProcess:
    require(INTERP.exists(), f"console script not installed at {INTERP} (pip install -e .)")
    return subprocess.run([str(INTERP), "--server", target, *args], capture_output=True, text=True, timeout=300)


def test_cli_classifies_a_directory_and_files(target, image_dir, tmp_path) -> None:
    done = _interp(target, "classify", "lenet", str(image_dir), "--top-k", "1", "--json")
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)["results"]
    assert [Path(r["image"]).name for r in results] == ["a_sneaker.png", "b_shirt.png", "c_bag.png"]
    assert [r["predictions"][0]["label"] for r in results] == ["Sneaker", "Shirt", "Bag"]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    out = tmp_path / "sal"
    done = _interp(target, "saliency", "lenet", str(image_dir / "a_sneaker.png"), str(broken), "-o", str(out), "--npy")
    assert done.returncode == 13, done.stderr  # 10 + INVALID_ARGUMENT: the broken image's status
    assert f"== {broken}\nerror: INVALID_ARGUMENT" in done.stdout and "2 images, 1 failed" in done.stdout
    assert {p.name for p in (out / "a_sneaker").iterdir()} == {"overlay.png", "heatmap.png", "input.png", "map.npy"}
