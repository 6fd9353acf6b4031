"""What the method table promises over the wire: structured errors, unknown fields refused,
results that chain into other calls, forgiving names, queued streams that say so, streams that
stop when left, echoes of only the parameters that applied."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from client import InterpClient, errors
from client.results import ProgressEvent
from protos import interp_pb2 as pb
from server.app import create_server
from server.config import Limits
from tests.support.servers import test_config


@pytest.fixture(scope="module")
def client(target) -> Iterator[InterpClient]:
    with InterpClient(target, timeout=120) as c:
        yield c


@pytest.fixture(scope="module")
def shirt() -> np.ndarray:
    from models.datasets import load_dataset

    images, labels = load_dataset("fashion-mnist", "test", download=False)
    return images[int(np.flatnonzero(labels == 6)[0])]


def _details(error: grpc.RpcError) -> tuple[str | None, list[tuple[str, str]]]:
    status = rpc_status.from_call(error)
    assert status is not None, "no google.rpc.Status details on the error"
    request_id, violations = None, []
    for detail in status.details:
        if detail.Is(error_details_pb2.RequestInfo.DESCRIPTOR):
            info = error_details_pb2.RequestInfo()
            detail.Unpack(info)
            request_id = info.request_id
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            violations += [(v.field, v.description) for v in bad.field_violations]
    return request_id, violations


# -- structured errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "code", "field"),
    [
        (
            lambda s, img: s.Saliency(
                pb.SaliencyRequest(model="lenet", image=img, method="smoothgrad", params=pb.SaliencyParams(samples=0))
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "params.samples",
        ),
        (lambda s, img: s.Classify(pb.ClassifyRequest(model="resnet", image=img)), grpc.StatusCode.NOT_FOUND, "model"),
        (
            lambda s, img: s.Activations(pb.ActivationsRequest(model="lenet", image=img, layers=["conv1", "conv9"])),
            grpc.StatusCode.INVALID_ARGUMENT,
            "layers[1]",
        ),
        (
            lambda s, img: s.Attack(pb.AttackRequest(model="lenet", image=img, method="pgd", epsilons=[0.1, 2.0])),
            grpc.StatusCode.INVALID_ARGUMENT,
            "epsilons[1]",
        ),
        (
            lambda s, img: s.Saliency(
                pb.SaliencyRequest(model="lenet", image=img, method="gradient", params=pb.SaliencyParams(samples=3))
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "params.samples",
        ),
    ],
    ids=["cap", "unknown-model", "unknown-layer", "epsilon-range", "param-not-used-by-method"],
)
def test_raw_stub_errors_carry_field_violations_and_request_info(stub, shirt, call, code, field) -> None:
    image = pb.Image(pixels=pb.Tensor(dtype=pb.Tensor.UINT8, shape=[28, 28], data=shirt.tobytes()))
    with pytest.raises(grpc.RpcError) as info:
        call(stub, image)
    error = info.value
    assert error.code() == code
    request_id, violations = _details(error)
    assert request_id and len(request_id) == 12 and request_id in error.details()
    assert violations and violations[0][0] == field, violations
    assert violations[0][1] in error.details()


def test_sdk_errors_expose_field_violations_and_request_id(client, shirt) -> None:
    with pytest.raises(errors.InvalidArgument) as info:
        client.saliency(shirt, model="lenet", method="smoothgrad", samples=10**6)
    error = info.value
    assert error.field == "params.samples" and error.field_violations[0].field == "params.samples"
    assert error.request_id and error.request_id in error.message
    with pytest.raises(errors.NotFound) as missing:
        client.classify(shirt, model="lenett")
    assert missing.value.field == "model" and "did you mean 'lenet'" in missing.value.message


LR, OBJECTIVE = "params.learning_rate", "params.objective"


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda c, img: c.saliency(img, model="lenet", method="smoothgrad", noise_level=-1.0), "params.noise_level"),
        (lambda c, img: c.attack(img, model="lenet", method="pgd", epsilon=0.1, step_size=-1), "params.step_size"),
        (lambda c, img: c.dream(img, model="lenet", layers=["relu2"], octave_scale=0), "params.octave_scale"),
        (lambda c, img: c.visualize_filter(model="lenet", layer="conv1", channels=[0], learning_rate=-1), LR),
        (lambda c, img: c.visualize_filter(model="lenet", layer="conv1", channels=[0], objective="max"), OBJECTIVE),
        (lambda c, img: c.minimal_attack(img, model="lenet", max_epsilon=0), "params.max_epsilon"),
        (lambda c, img: c.saliency(img, model="lenet", method="grad_cam", layer="conv9"), "params.layer"),
        (lambda c, img: c.saliency(img, model="lenet", method="grad_cam", layer="fc1"), "params.layer"),
        (lambda c, img: c.kernels("lenet", "relu1"), "layer"),
        (lambda c, img: c.classify(np.zeros((7000, 7000), np.uint8), model="lenet"), "image"),
    ],
    ids=[
        "noise-level",
        "step-size",
        "octave-scale",
        "learning-rate",
        "objective",
        "max-epsilon",
        "gradcam-unknown-layer",
        "gradcam-linear-layer",
        "kernels-of-a-relu",
        "image-too-large",
    ],
)
def test_a_range_error_of_the_method_names_its_field(client, shirt, call, field) -> None:
    """Values the method itself refuses (not the table's checks) still name the request field."""
    with pytest.raises(errors.InvalidArgument) as info:
        call(client, shirt)
    assert info.value.field == field, info.value.message


def test_an_undecodable_image_among_several_is_named(client, shirt) -> None:
    answers = client.classify([shirt, b"\x89PNG\r\n\x1a\n-truncated"], model="lenet")
    assert not isinstance(answers[0], errors.InterpError)
    error = answers[1]
    assert isinstance(error, errors.InvalidArgument)
    assert error.field == "images[1]" and "images[1]: cannot" in error.message


def test_a_request_without_a_model_says_the_model_is_required(client, shirt) -> None:
    with pytest.raises(errors.InvalidArgument) as info:  # a required field left out (NOT_FOUND: a name not served)
        client.classify(shirt, model="")
    assert info.value.field == "model" and "model is required" in info.value.message


def test_a_field_the_server_does_not_know_is_refused_not_dropped(channel, shirt) -> None:
    params = pb.SaliencyParams(samples=3).SerializeToString() + bytes([0x98, 0x06, 5])  # field 99 = 5
    request = pb.SaliencyRequest(model="lenet", method="smoothgrad", image=pb.Image(encoded=b"x")).SerializeToString()
    request += bytes([0x2A, len(params)]) + params  # field 5 (params), length-delimited
    call = channel.unary_unary("/interp.v1.Interp/Saliency", request_serializer=None, response_deserializer=None)
    with pytest.raises(grpc.RpcError) as info:
        call(request, timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "99" in info.value.details() and "does not know" in info.value.details()
    _, violations = _details(info.value)
    assert violations[0][0] == "params.#99"


# -- results chain into other calls ------------------------------------------------------------------


def test_every_result_image_goes_back_in_as_an_input(client, shirt) -> None:
    dream = client.dream(shirt, model="lenet", layers="conv2", octaves=1, iterations=2)
    assert dream.image.shape == (28, 28, 1)
    assert client.classify(dream.image, model="lenet").predictions

    vis = client.visualize_filter("lenet", "conv2", [0, 1], steps=2, restarts=1)
    assert vis.images.shape == (2, 28, 28, 1)
    assert client.activations(vis.images[1], model="lenet", layers="relu2").layers[0].channel_mean is not None

    attack = client.attack(shirt, model="lenet", method="fgsm", epsilon=0.1)
    adversarial = attack.outcomes[0].adversarial
    saliency = client.saliency(adversarial, model="lenet", method="gradient")
    # The adversarial image is 8-bit quantized, so it survives the trip exactly.
    np.testing.assert_allclose(saliency.input, adversarial, atol=1e-6)

    interp = client.interpolate(
        shirt, model="lenet", target=attack.input, alphas=[1.0], iterations=2, warm_iterations=1
    )
    assert client.classify(interp.results[0].image, model="lenet").top.label


# -- names ---------------------------------------------------------------------------------------


def test_names_are_forgiving_and_suggest(client, shirt) -> None:
    assert client.classify(shirt, model="LeNet").model == "lenet"
    assert client.activations(shirt, model="lenet", layers="CONV1").layers[0].layer == "conv1"
    with pytest.raises(errors.InvalidArgument) as info:
        client.activations(shirt, model="lenet", layers="cnov1")
    assert "did you mean 'conv1'" in info.value.message
    with pytest.raises(errors.InvalidArgument) as label:
        client.saliency(shirt, model="lenet", target="Sneakr")
    assert "did you mean 'Sneaker'" in label.value.message and label.value.field == "target.label"
    with pytest.raises(errors.InvalidArgument) as part:
        client.saliency(shirt, model="lenet", target="boot")  # a part of one name
    assert "did you mean 'Ankle boot'" in part.value.message
    labels = client.labels("vgg16")
    assert len(labels) == 1000 and labels[281] == "tabby"


def test_echo_only_the_parameters_the_method_used(client, shirt) -> None:
    assert set(client.saliency(shirt, model="lenet").params) == {"clip_percentile", "colormap"}
    smooth = client.saliency(shirt, model="lenet", method="smoothgrad", samples=4)
    assert set(smooth.params) == {"samples", "noise_level", "seed", "batch_size", "clip_percentile", "colormap"}
    assert client.attack(shirt, model="lenet", method="fgsm", epsilon=0.05).params == {}
    assert set(client.attack(shirt, model="lenet", method="pgd", epsilon=0.05, steps=2).params) == {
        "steps",
        "random_start",
        "seed",
    }
    towards = client.interpolate(shirt, model="lenet", target=shirt, alphas=[1.0], iterations=1, warm_iterations=1)
    assert "seed" not in towards.params and "set_size" not in towards.params  # only for class-name sets
    assert {"iterations", "tv_weight"} <= set(towards.params)


# -- streams: left streams stop, queued streams say so ----------------------------------------------------


def _wait_for(condition, what: str, polls: int = 600) -> None:
    """Poll a condition on server state (no wall-clock bound in the assertion: a count of polls)."""
    event = threading.Event()
    for _ in range(polls):
        if condition():
            return
        event.wait(0.05)
    raise AssertionError(f"never saw: {what}")


@pytest.fixture(scope="module")
def one_slot() -> Iterator[InterpClient]:
    limits = Limits(max_concurrent_heavy=1, max_queued_heavy=2, default_deadline_s=300.0)
    srv, port = create_server(test_config(models=("lenet",), limits=limits))
    srv.start()
    with InterpClient(f"127.0.0.1:{port}", timeout=60) as c:
        yield c
    srv.stop(grace=None)


def test_a_queued_stream_says_so_and_leaving_a_with_block_frees_the_slot(one_slot) -> None:
    long_run = {"steps": 2000, "restarts": 1, "preview_every": 0}
    with one_slot.iter_visualize_filter("lenet", "conv2", [0], **long_run) as first:
        assert isinstance(next(first), ProgressEvent)  # computing: it holds the only slot
        _wait_for(lambda: one_slot.server_info().running_heavy == 1, "the first stream running")
        with one_slot.iter_visualize_filter("lenet", "conv2", [1], steps=3, restarts=1, every_step=True) as second:
            event = next(second)
            assert isinstance(event, ProgressEvent) and event.queued and event.queued_position == 1
            assert event.stage == "queued" and event.step == 0
            info = one_slot.server_info()
            assert (info.running_heavy, info.queued_heavy) == (1, 1)
            first.close()  # leaving the first: the server stops it and the queued call runs
            rest = list(second)
        assert rest[-1].channels == (1,)
        assert [e.step for e in rest if isinstance(e, ProgressEvent) and not e.queued][-3:] == [1, 2, 3]
    _wait_for(lambda: one_slot.server_info().running_heavy == 0, "the slot freed")

    # A for loop broken inside a with block cancels too.
    with one_slot.iter_visualize_filter("lenet", "conv2", [0], **long_run) as stream:
        for _event in stream:
            break
    _wait_for(lambda: one_slot.server_info().running_heavy == 0, "the slot freed after break")
    assert one_slot.server_info().queued_heavy == 0


def test_cli_channel_lists_and_layer_aliases(target, tmp_path) -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "client.cli", "--server", target, "--no-progress", "visualize", "vgg16", "conv3_1",
         "--channel", "0,2", "--channel", "5", "--steps", "1", "--size", "32", "-o", str(tmp_path / "v.png")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "conv3_1 (features.10)" in done.stdout
    assert [line.split()[0] for line in done.stdout.splitlines()[2:5]] == ["0", "2", "5"]
    labels = subprocess.run(
        [sys.executable, "-m", "client.cli", "--server", target, "labels", "lenet"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert labels.returncode == 0 and "9  Ankle boot" in labels.stdout


def test_oversized_activations_request_is_refused_before_work(client, shirt) -> None:
    # 600 repeats of one VGG16 layer once took the server to 24 GB: names are deduplicated,
    # counted against max_layers, and the answer budgeted before any forward pass.
    reply = client.activations(shirt, model="lenet", layers=["conv1"] * 3, include_tensors=False)
    assert [layer.requested for layer in reply.layers] == ["conv1"]
    with pytest.raises(errors.InvalidArgument) as info:
        client.activations(shirt, model="vgg16", layers=["conv1_1"] * 600)
    assert "max_layers" in info.value.message and info.value.field == "layers"
    with pytest.raises(errors.ResourceExhausted) as budget:
        client.activations(shirt, model="vgg16", layers=[f"features.{i}" for i in range(31)])
    assert "max_message_bytes" in budget.value.message
