"""Prometheus metrics over HTTP on a dedicated server: after a known mix of calls, /metrics shows
exactly those calls by method and status code, the latency histogram, the in-flight and heavy
gauges back at zero, and each model's load state (one READY, one UNAVAILABLE without weights).
"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator

import cv2
import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from protos import interp_pb2 as pb
from protos import interp_pb2_grpc
from server.app import create_server
from server.config import ServerConfig
from tests.conftest import skip_machine_specific
from tests.support.servers import test_config

TOKEN = (("authorization", "Bearer m3trics-token-0123"),)
IMAGE = pb.Image(encoded=cv2.imencode(".png", np.full((28, 28), 90, np.uint8))[1].tobytes())


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[tuple[object, grpc.Channel]]:
    config = test_config(
        models=("alexnet", "lenet"),
        random_weights=False,  # alexnet has no weights here: UNAVAILABLE
        hub_dir=tmp_path_factory.mktemp("empty-hub"),
        metrics_port=0,
        metrics_host="127.0.0.1",
        auth_tokens=("m3trics-token-0123",),
    )
    srv, port = create_server(config)
    srv.start()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield srv, channel
    srv.stop(None)


def scrape(srv) -> tuple[dict[tuple[str, tuple[tuple[str, str], ...]], float], str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{srv.metrics_port}/metrics", timeout=10) as reply:
        content_type = reply.headers["Content-Type"]
        text = reply.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples, content_type


def value(samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def test_metrics_count_what_happened(served) -> None:
    srv, channel = served
    stub = interp_pb2_grpc.InterpStub(channel)
    assert srv.metrics_port and srv.metrics_port > 0
    models = {m.name: m for m in stub.ListModels(pb.ListModelsRequest(), metadata=TOKEN, timeout=10).models}
    began = time.perf_counter()  # the 5 Classify calls below happen inside this span
    for _ in range(3):
        stub.Classify(pb.ClassifyRequest(model="lenet", image=IMAGE), metadata=TOKEN, timeout=10)
    failures = [
        (lambda: stub.Classify(pb.ClassifyRequest(model="lenet", image=pb.Image(encoded=b"junk")), metadata=TOKEN,
                               timeout=10), grpc.StatusCode.INVALID_ARGUMENT),
        (lambda: stub.Classify(pb.ClassifyRequest(model="alexnet", image=IMAGE), metadata=TOKEN, timeout=10),
         grpc.StatusCode.FAILED_PRECONDITION),
        (lambda: stub.DescribeModel(pb.DescribeModelRequest(model="nope"), metadata=TOKEN, timeout=10),
         grpc.StatusCode.NOT_FOUND),
        (lambda: stub.ListModels(pb.ListModelsRequest(), timeout=10), grpc.StatusCode.UNAUTHENTICATED),
    ]  # fmt: skip
    for failing, code in failures:
        with pytest.raises(grpc.RpcError) as info:
            failing()
        assert info.value.code() == code
    span = time.perf_counter() - began
    request = pb.VisualizeFilterRequest(
        model="lenet", layer="conv2", channels=[0], params=pb.VisualizeFilterParams(steps=2048)
    )
    stream = stub.VisualizeFilter(request, metadata=TOKEN, timeout=30)
    next(stream)
    stream.cancel()
    health = health_pb2_grpc.HealthStub(channel)
    for _ in range(5):
        health.Check(health_pb2.HealthCheckRequest(), timeout=5)

    deadline = time.monotonic() + 120  # only a hang takes this long
    while True:  # the cancelled stream is counted once its worker has stopped
        samples, content_type = scrape(srv)
        cancelled = value(samples, "interp_requests_total", method="VisualizeFilter", code="CANCELLED")
        if cancelled == 1 or time.monotonic() > deadline:
            break
        time.sleep(0.05)

    assert content_type.startswith("text/plain")
    counts = {
        ("ListModels", "OK"): 1,
        ("ListModels", "UNAUTHENTICATED"): 1,
        ("Classify", "OK"): 3,
        ("Classify", "INVALID_ARGUMENT"): 1,
        ("Classify", "FAILED_PRECONDITION"): 1,
        ("DescribeModel", "NOT_FOUND"): 1,
        ("VisualizeFilter", "CANCELLED"): 1,
    }
    recorded = {
        (dict(labels)["method"], dict(labels)["code"]): v
        for (name, labels), v in samples.items()
        if name == "interp_requests_total"
    }
    assert recorded == counts  # nothing else: health checks are not counted, nothing counted twice

    # latency histogram: one observation per finished call, cumulative buckets ending at +Inf
    assert value(samples, "interp_request_seconds_count", method="Classify") == 5
    # in seconds: the server's own durations fit inside the client's span around the calls
    assert 0 < value(samples, "interp_request_seconds_sum", method="Classify") <= span
    buckets = sorted(
        (float(dict(labels)["le"]), v)
        for (name, labels), v in samples.items()
        if name == "interp_request_seconds_bucket" and dict(labels)["method"] == "Classify"
    )
    assert buckets[-1] == (float("inf"), 5) and all(a[1] <= b[1] for a, b in zip(buckets, buckets[1:], strict=False))

    # gauges: nothing in flight, nothing running or queued
    for method in ("Classify", "VisualizeFilter", "ListModels"):
        assert value(samples, "interp_in_flight", method=method) == 0
    assert value(samples, "interp_heavy_running") == 0 and value(samples, "interp_heavy_queued") == 0

    # per-model load state, labelled with whether the weights are pretrained
    lenet_pretrained = str(models["lenet"].pretrained).lower()
    assert value(samples, "interp_model_ready", model="lenet", pretrained=lenet_pretrained) == 1
    assert value(samples, "interp_model_ready", model="alexnet", pretrained="false") == 0


def test_the_request_id_of_an_error_leads_to_its_log_line(served, caplog) -> None:
    """Structured logs: the id a client sees in an error message finds the server's log record."""
    import json
    import logging
    import re

    from server.app import JsonFormatter

    _, channel = served
    stub = interp_pb2_grpc.InterpStub(channel)
    with caplog.at_level(logging.INFO, logger="interp.server"), pytest.raises(grpc.RpcError) as info:
        stub.Classify(pb.ClassifyRequest(model="lenet", image=pb.Image(encoded=b"junk")), metadata=TOKEN, timeout=10)
    request_id = re.search(r"\(request id ([0-9a-f]{12})\)", info.value.details()).group(1)
    records = [r for r in caplog.records if request_id in r.getMessage()]
    assert len(records) == 1 and "Classify -> INVALID_ARGUMENT" in records[0].getMessage()
    entry = json.loads(JsonFormatter().format(records[0]))  # --log-format json: one object per line
    assert entry["level"] == "INFO" and entry["logger"] == "interp.server" and request_id in entry["message"]


def non_loopback_address() -> str | None:
    """An address of this machine other than loopback (the default route's source), if any."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: nothing is sent, the kernel picks a source
            address = probe.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


def test_metrics_listen_on_loopback_only_by_default() -> None:
    """The default --metrics-host is 127.0.0.1: the machine's other addresses do not answer."""
    import urllib.error

    address = non_loopback_address()
    if address is None:
        skip_machine_specific("this machine has no non-loopback IPv4 address to probe from")
    srv, _port = create_server(test_config(models=("lenet",), metrics_port=0))
    try:
        assert ServerConfig().metrics_host == "127.0.0.1"
        with urllib.request.urlopen(f"http://127.0.0.1:{srv.metrics_port}/metrics", timeout=30) as reply:
            assert reply.status == 200
        with pytest.raises(urllib.error.URLError):
            urllib.request.urlopen(f"http://{address}:{srv.metrics_port}/metrics", timeout=30)
    finally:
        srv.stop(None)
