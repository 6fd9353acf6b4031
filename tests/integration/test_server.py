"""The real server over loopback, driven with the raw generated stubs."""

from __future__ import annotations

import hashlib
from pathlib import Path

import grpc
import pytest
import torch
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from models.registry import get_spec
from protos import interp_pb2 as pb
from protos import interp_pb2_grpc
from server.app import create_server
from tests.support.servers import test_config


def test_health_reports_serving(channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "interp.v1.Interp"):
        reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_health_follows_the_models() -> None:
    """SERVING while at least one model is READY; each model has its own health name. A server
    whose every model is UNAVAILABLE (no weights, no download, no --random-weights) is NOT_SERVING:
    an orchestrator must not call it healthy."""
    serving, not_serving = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
    for models, overall in ((("lenet", "alexnet"), serving), (("alexnet",), not_serving)):
        srv, port = create_server(test_config(models=models, random_weights=False))
        srv.start()
        try:
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                health = health_pb2_grpc.HealthStub(channel)

                def status(service: str, health=health) -> int:  # noqa: ANN001 - bound per server
                    return health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status

                assert status("") == status("interp.v1.Interp") == overall, models
                assert status("interp.v1.Interp/alexnet") == not_serving
                if "lenet" in models:
                    assert status("interp.v1.Interp/lenet") == serving
                with pytest.raises(grpc.RpcError) as unknown:
                    status("interp.v1.Interp/vgg16")  # not served here
                assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
        finally:
            srv.stop(None)


def test_reflection_lists_the_service(channel) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    replies = list(
        stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5)
    )
    names = {s.name for s in replies[0].list_services_response.service}
    assert "interp.v1.Interp" in names and "grpc.health.v1.Health" in names


def test_list_models_random_weights_are_reported(stub) -> None:
    models = {m.name: m for m in stub.ListModels(pb.ListModelsRequest(), timeout=10).models}
    assert {"vgg16", "alexnet", "lenet"} <= set(models)
    for name in ("vgg16", "alexnet"):
        m = models[name]
        assert m.status == pb.ModelInfo.READY and m.pretrained is False and m.weights.source == "random"
        assert len(m.weights.sha256) == 64
    assert list(models["vgg16"].input_shape) == [3, 224, 224] and models["vgg16"].num_classes == 1000
    lenet = models["lenet"]
    assert lenet.status == pb.ModelInfo.READY and lenet.pretrained is True and lenet.weights.source == "bundled"


def test_describe_vgg16_catalogue(stub) -> None:
    reply = stub.DescribeModel(pb.DescribeModelRequest(model="vgg16"), timeout=10)
    layers = {layer.name: layer for layer in reply.layers}
    conv3_1 = next(layer for layer in reply.layers if "conv3_1" in layer.aliases)
    assert conv3_1.name == "features.10"
    assert list(conv3_1.output_shape) == [256, 56, 56]
    assert conv3_1.receptive_field.size > 1 and conv3_1.receptive_field.jump == 4
    assert len(reply.labels) == 1000 and reply.labels[281] == "tabby"
    assert "relu5_3" in layers["features.29"].aliases and reply.default_gradcam_layer == "features.29"


def test_classify_lenet_on_a_real_test_image(stub, sneaker_png) -> None:
    request = pb.ClassifyRequest(model="lenet", image=pb.Image(encoded=sneaker_png), top_k=3, include_input=True)
    reply = stub.Classify(request, timeout=10)
    assert [p.label for p in reply.predictions][0] == "Sneaker"
    assert len(reply.predictions) == 3 and reply.predictions[0].probability > 0.5
    assert list(reply.input.tensor.shape) == [1, 28, 28] and reply.input.png.startswith(b"\x89PNG")
    assert reply.stamp.pretrained and len(reply.stamp.weights_sha256) == 64 and reply.stamp.request_id


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        (pb.ClassifyRequest(model="resnet50", image=pb.Image(encoded=b"x")), grpc.StatusCode.NOT_FOUND),
        (pb.ClassifyRequest(model="lenet"), grpc.StatusCode.INVALID_ARGUMENT),
        (pb.ClassifyRequest(model="lenet", image=pb.Image(encoded=b"garbage")), grpc.StatusCode.INVALID_ARGUMENT),
        (pb.ClassifyRequest(model="lenet", image=pb.Image(encoded=b"")), grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
def test_error_table(stub, request_, code) -> None:
    with pytest.raises(grpc.RpcError) as info:
        stub.Classify(request_, timeout=10)
    assert info.value.code() == code
    assert "request id" in info.value.details()


def test_unknown_model_names_the_valid_ones(stub) -> None:
    with pytest.raises(grpc.RpcError) as info:
        stub.DescribeModel(pb.DescribeModelRequest(model="resnet50"), timeout=5)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert "vgg16" in info.value.details() and "lenet" in info.value.details()


def test_top_k_above_the_class_count_returns_every_class(stub, sneaker_png) -> None:
    # Documented in the contract: "above the class count: every class".
    image = pb.Image(encoded=sneaker_png)
    reply = stub.Classify(pb.ClassifyRequest(model="lenet", image=image, top_k=20), timeout=5)
    assert len(reply.predictions) == 10
    assert sorted(p.index for p in reply.predictions) == list(range(10))
    with pytest.raises(grpc.RpcError) as info:
        stub.Classify(pb.ClassifyRequest(model="lenet", image=image, top_k=0), timeout=5)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "top_k" in info.value.details()


def test_server_info(stub) -> None:
    info = stub.GetServerInfo(pb.GetServerInfoRequest(), timeout=5)
    assert info.api_version == "interp.v1" and info.device == "cpu"
    assert info.limits.max_steps > 0 and info.libraries["torch"].startswith("2.14")
    assert {"vgg16", "alexnet", "lenet"} <= set(info.models)


def _serve(tmp_path: Path, **overrides):
    config = test_config(hub_dir=tmp_path / "empty-hub", **overrides)
    srv, port = create_server(config)
    srv.start()
    return srv, grpc.insecure_channel(f"127.0.0.1:{port}")


def test_without_weights_imagenet_models_are_unavailable_and_others_serve(tmp_path, sneaker_png, cat_png) -> None:
    srv, ch = _serve(tmp_path, random_weights=False, models=("alexnet", "lenet"))
    try:
        stub = interp_pb2_grpc.InterpStub(ch)
        models = {m.name: m for m in stub.ListModels(pb.ListModelsRequest(), timeout=10).models}
        alexnet = models["alexnet"]
        assert alexnet.status == pb.ModelInfo.UNAVAILABLE
        for hint in ("--weights", "--weights-dir", "--random-weights", "alexnet-owt-7be5be79.pth"):
            assert hint in alexnet.reason
        with pytest.raises(grpc.RpcError) as info:
            stub.Classify(pb.ClassifyRequest(model="alexnet", image=pb.Image(encoded=cat_png)), timeout=10)
        assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "--random-weights" in info.value.details()
        reply = stub.Classify(pb.ClassifyRequest(model="lenet", image=pb.Image(encoded=sneaker_png)), timeout=10)
        assert reply.predictions[0].label == "Sneaker"
        # the catalogue stays browsable while the weights are missing
        assert stub.DescribeModel(pb.DescribeModelRequest(model="alexnet"), timeout=10).layers
    finally:
        ch.close()
        srv.stop(None)


def test_explicit_weights_file_loads_through_the_real_path(tmp_path, cat_png) -> None:
    torch.manual_seed(7)
    state = get_spec("vgg16").build().state_dict()
    path = tmp_path / "my-finetuned-vgg16.pth"
    torch.save(state, path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    srv, ch = _serve(tmp_path, random_weights=False, models=("vgg16",), weights={"vgg16": path})
    try:
        stub = interp_pb2_grpc.InterpStub(ch)
        (vgg,) = stub.ListModels(pb.ListModelsRequest(), timeout=10).models
        assert vgg.status == pb.ModelInfo.READY and vgg.weights.source == "file"
        assert vgg.weights.sha256 == digest and vgg.weights.path == str(path)
        reply = stub.Classify(pb.ClassifyRequest(model="vgg16", image=pb.Image(encoded=cat_png)), timeout=30)
        assert reply.stamp.weights_sha256 == digest and len(reply.predictions) == 5
    finally:
        ch.close()
        srv.stop(None)


def test_server_caps_are_named_before_the_methods_wider_ranges(stub, sneaker_png) -> None:
    request = pb.DeepDreamRequest(
        model="lenet",
        image=pb.Image(encoded=sneaker_png),
        layers=[pb.LayerWeight(layer="relu2")],
        params=pb.DeepDreamParams(octaves=9),  # DeepDream itself allows 10; this server caps at 8
    )
    with pytest.raises(grpc.RpcError) as info:
        list(stub.DeepDream(request, timeout=10))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "octaves must be in 1..8" in info.value.details()


def test_a_model_default_above_an_operator_cap_is_explained(tmp_path) -> None:
    from server.config import Limits

    srv, ch = _serve(tmp_path, models=("lenet",), limits=Limits(max_steps=100))
    try:
        stub = interp_pb2_grpc.InterpStub(ch)
        with pytest.raises(grpc.RpcError) as info:
            list(
                stub.VisualizeFilter(pb.VisualizeFilterRequest(model="lenet", layer="conv2", channels=[0]), timeout=10)
            )
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "default steps (512)" in info.value.details() and "at most 100" in info.value.details()
        events = list(
            stub.VisualizeFilter(
                pb.VisualizeFilterRequest(
                    model="lenet", layer="conv2", channels=[0], params=pb.VisualizeFilterParams(steps=5)
                ),
                timeout=30,
            )
        )
        assert events[-1].WhichOneof("event") == "result"
    finally:
        ch.close()
        srv.stop(None)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--models", "lenet,foo"], "interp-server: unknown model 'foo'; available models: "),
        (["--device", "cuda:0"], "no CUDA device torch can use; try cpu"),
        (["--device", "banana"], "interp-server: --device 'banana': "),
        (["--model", "lenet=torchscript:/nowhere/x.pt"], "--model lenet: the name of a built-in model"),
    ],
)
def test_models_and_devices_the_server_cannot_serve_are_one_line_refusals(argv, message) -> None:
    """create_server stops with the reason before it loads anything (they were tracebacks)."""
    from server.app import create_server
    from server.config import load_config

    if "cuda:0" in argv and torch.cuda.is_available():
        argv = ["--device", f"cuda:{torch.cuda.device_count()}"]
        message = "CUDA device(s)"
    with pytest.raises(SystemExit) as info:
        create_server(load_config(["--port", "0", *argv], environ={}))
    assert message in str(info.value)


def test_a_folder_option_that_names_no_folder_is_warned_about(caplog, tmp_path) -> None:
    missing = tmp_path / "nowhere"
    with caplog.at_level("WARNING", logger="interp.server"):
        srv, _port = create_server(test_config(models=("lenet",), weights_dir=missing, data_dir=missing))
    srv.stop(None)
    said = [r.getMessage() for r in caplog.records]
    assert f"--weights-dir {missing} is not a directory: nothing will be found there" in said
    assert f"--data-dir {missing} is not a directory: nothing will be found there" in said
