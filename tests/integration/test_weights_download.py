"""`interp-server`'s weights downloads against a mirror on 127.0.0.1 (never the network).

The server is configured with the flags a user types (``load_config``) and serves over gRPC:
a model whose weights download is LOADING ("downloading, N %") while the LeNets answer, then READY
and pretrained; an unreachable mirror makes it UNAVAILABLE with every way to provide the weights,
fast, with the documented network bounds passed down; ``--no-download`` opens no connection;
vgg16/alexnet against a mirror without their files are UNAVAILABLE after one attempt each.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import cv2
import grpc
import numpy as np
import pytest

from client.results import ModelInfo
from protos import interp_pb2 as pb
from protos import interp_pb2_grpc as pb_grpc
from server.app import Server, create_server
from server.config import load_config
from tests.support.weights_mirror import (
    TINY,
    ConnectSpy,
    closed_port_url,
    mirror_serving,
    register_tiny,
    tiny_file_bytes,
)

DATA = tiny_file_bytes(seed=0)
VGG16_FILE, ALEXNET_FILE = "vgg16-397923af.pth", "alexnet-owt-7be5be79.pth"

SERVING, NOT_SERVING = 1, 2  # grpc.health.v1 HealthCheckResponse.ServingStatus


@pytest.fixture(scope="module")
def lenet_image() -> pb.Image:
    yy, xx = np.mgrid[:28, :28]
    ok, png = cv2.imencode(".png", (255 * np.exp(-((yy - 14) ** 2 + (xx - 14) ** 2) / 60.0)).astype(np.uint8))
    assert ok
    return pb.Image(encoded=png.tobytes())


@contextmanager
def serving(argv: Sequence[str], environ: dict[str, str] | None = None) -> Iterator[tuple[Server, pb_grpc.InterpStub]]:
    config = load_config(["--host", "127.0.0.1", "--port", "0", *argv], environ=environ or {})
    server, port = create_server(config)
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield server, pb_grpc.InterpStub(channel)
    finally:
        server.hub.close()
        server.stop(None)
        server.hub.wait(30)


def models_of(stub: pb_grpc.InterpStub) -> dict[str, ModelInfo]:
    """ListModels through the client's own conversion (which must name the new LOADING status)."""
    return {m.name: ModelInfo.from_proto(m) for m in stub.ListModels(pb.ListModelsRequest(), timeout=30).models}


def wait_for(stub: pb_grpc.InterpStub, name: str, status: str, timeout: float = 60) -> ModelInfo:
    deadline = time.monotonic() + timeout
    while (model := models_of(stub)[name]).status != status and time.monotonic() < deadline:
        time.sleep(0.05)
    assert model.status == status, (model.status, model.reason)
    return model


def ready_gauge(server: Server, pretrained: str) -> float | None:
    return server.metrics.registry.get_sample_value("interp_model_ready", {"model": TINY, "pretrained": pretrained})


def health_of(server: Server, service: str) -> int:
    """What the server's health service answers for ``service`` (its servicer, as Check reads it)."""
    from grpc_health.v1 import health_pb2

    class Context:
        def set_code(self, code: grpc.StatusCode) -> None:
            raise AssertionError(f"health has no {service!r}: {code}")

    return server.health.Check(health_pb2.HealthCheckRequest(service=service), Context()).status


def lenets_answer(stub: pb_grpc.InterpStub, image: pb.Image) -> None:
    for name in ("lenet", "lenet-classic"):
        reply = stub.Classify(pb.ClassifyRequest(model=name, image=image), timeout=60)
        assert len(reply.predictions) == 5


def test_a_download_is_loading_while_the_lenets_serve_then_ready(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lenet_image: pb.Image
) -> None:
    spec = register_tiny(monkeypatch, DATA)
    name = spec.weights.canonical_name
    with mirror_serving({f"/{name}": DATA}) as mirror:
        mirror.pause_at = len(DATA) // 2
        argv = ["--models", f"lenet,lenet-classic,{TINY}", "--hub-dir", str(tmp_path / "hub")]
        with serving(argv, {"INTERP_WEIGHTS_URL_BASE": mirror.url}) as (server, stub):
            assert mirror.paused.wait(30)
            loading = wait_for(stub, TINY, "LOADING")
            assert ready_gauge(server, "false") == 0
            assert health_of(server, f"interp.v1.Interp/{TINY}") == NOT_SERVING
            assert health_of(server, "interp.v1.Interp/lenet") == SERVING
            assert health_of(server, "") == SERVING  # the LeNets serve
            assert re.match(r"downloading, \d+ % \(", loading.reason), loading.reason
            assert not loading.ready
            lenets_answer(stub, lenet_image)  # the others serve meanwhile
            described = stub.DescribeModel(pb.DescribeModelRequest(model=TINY), timeout=30)  # any status
            assert described.model.status == pb.ModelInfo.LOADING and len(described.layers) == 4
            with pytest.raises(grpc.RpcError) as refused:
                stub.Classify(pb.ClassifyRequest(model=TINY, image=lenet_image), timeout=30)
            assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert f"model {TINY} is loading: downloading," in (refused.value.details() or "")
            mirror.resume.set()
            ready = wait_for(stub, TINY, "READY")
            deadline = time.monotonic() + 10  # the listener runs just after the status turns READY
            while ready_gauge(server, "true") != 1 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert ready_gauge(server, "true") == 1  # the metric follows the background load
            assert ready_gauge(server, "false") is None  # one series a model: no stale 0 left to alert on
            while health_of(server, f"interp.v1.Interp/{TINY}") != SERVING and time.monotonic() < deadline:
                time.sleep(0.02)
            assert health_of(server, f"interp.v1.Interp/{TINY}") == SERVING  # set by the hub's listeners too
    assert (ready.pretrained, ready.weights.source, ready.reason) == (True, "download", "")
    assert ready.weights.path == str(tmp_path / "hub" / name) and (tmp_path / "hub" / name).read_bytes() == DATA


def test_an_unreachable_mirror_is_unavailable_fast_while_the_lenets_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lenet_image: pb.Image
) -> None:
    register_tiny(monkeypatch, DATA)
    spy = ConnectSpy().install(monkeypatch)
    argv = ["--models", f"lenet,lenet-classic,{TINY}", "--hub-dir", str(tmp_path / "hub")]
    with serving([*argv, "--weights-url-base", closed_port_url()]) as (_server, stub):
        lenets_answer(stub, lenet_image)
        model = wait_for(stub, TINY, "UNAVAILABLE")
    assert "cannot connect to 127.0.0.1" in model.reason and "connect timeout 5 s" in model.reason
    for way in ("--weights tiny-weights=PATH", "--weights-dir", "--hub-dir", "--weights-url-base", "--random-weights"):
        assert way in model.reason, way
    # The server's defaults reach the socket and the name lookup: seconds, not the OS's minutes.
    assert spy.connect_timeouts == [5.0] and spy.lookup_bounds == [5.0]


@pytest.mark.parametrize(
    ("argv", "environ"),
    [(["--no-download"], {}), ([], {"INTERP_DOWNLOAD_WEIGHTS": "0"}), (["--download-weights", "0"], {})],
)
def test_no_download_never_opens_a_connection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, argv: list[str], environ: dict[str, str]
) -> None:
    spec = register_tiny(monkeypatch, DATA)
    with mirror_serving({f"/{spec.weights.canonical_name}": DATA}) as mirror:
        flags = ["--models", f"lenet,{TINY}", "--hub-dir", str(tmp_path / "hub"), "--weights-url-base", mirror.url]
        with serving([*flags, *argv], environ) as (_server, stub):
            model = models_of(stub)[TINY]
    assert model.status == "UNAVAILABLE" and "downloads are off (--no-download" in model.reason
    assert mirror.connections == 0 and not mirror.requests


def test_vgg16_and_alexnet_against_a_mirror_without_their_files(tmp_path: Path) -> None:
    with mirror_serving({}) as mirror:
        argv = ["--models", "vgg16,alexnet", "--hub-dir", str(tmp_path / "hub"), "--weights-url-base", mirror.url + "/"]
        with serving(argv) as (_server, stub):
            models = {name: wait_for(stub, name, "UNAVAILABLE") for name in ("vgg16", "alexnet")}
    assert dict(mirror.requests) == {f"/{VGG16_FILE}": 1, f"/{ALEXNET_FILE}": 1}
    for name, file in (("vgg16", VGG16_FILE), ("alexnet", ALEXNET_FILE)):
        reason = models[name].reason
        assert f"{mirror.url}/{file}: HTTP 404" in reason and f"--weights {name}=PATH" in reason
        assert "download.pytorch.org" not in reason  # the mirror replaced the published URL
    assert not [p.name for p in (tmp_path / "hub").iterdir() if not p.name.endswith(".lock")]


def test_the_server_downloads_by_default() -> None:
    config = load_config([], environ={})
    assert config.download_weights is True and config.weights_url_base == "" and not config.weights_sha256
    pinned = load_config(["--weights-sha256", f"vgg16={'A' * 64}"], environ={"INTERP_WEIGHTS_SHA256": "x=1"})
    assert pinned.weights_sha256 == {"vgg16": "a" * 64}  # the flag wins over the variable, lower-cased
    assert load_config([], environ={"INTERP_WEIGHTS_SHA256": f"alexnet={'b' * 64}"}).weights_sha256 == {
        "alexnet": "b" * 64
    }
    for bad in (["--weights-sha256", "vgg16=abc"], ["--weights-url-base", "ftp://mirror/"]):
        with pytest.raises(SystemExit):
            load_config(bad, environ={})
