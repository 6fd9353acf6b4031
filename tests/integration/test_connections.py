"""Server-level limits on connections and concurrent RPCs: a client that opens many calls, or one
that stops reading its stream, cannot hold the server.

Event-based: the server's own gauges and counters (its Prometheus registry) and a step counter (a
forward hook on the served LeNet's conv1). Waits time out only on a hang.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from protos import interp_pb2 as pb
from protos import interp_pb2_grpc
from server.app import create_server
from server.config import Limits
from tests.support.servers import test_config

WAIT_S = 120.0


def wait_until(condition: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout} s")
        time.sleep(0.02)


def sample(srv, name: str, **labels: str) -> float:
    return srv.metrics.registry.get_sample_value(name, labels) or 0.0


@pytest.fixture
def two_rpcs() -> Iterator[tuple[object, str]]:
    srv, port = create_server(test_config(models=("lenet",), limits=Limits(max_concurrent_rpcs=2)))
    srv.start()
    yield srv, f"127.0.0.1:{port}"
    srv.stop(None)


def _open_watch(stub, release: threading.Event, png: bytes) -> Iterator[pb.WatchResponse]:
    """A live Watch stream that sends one frame, then nothing until ``release`` is set."""

    def requests() -> Iterator[pb.WatchRequest]:
        yield pb.WatchRequest(model="lenet", layer="relu2", top_k=0, frame=pb.Image(encoded=png))
        release.wait(WAIT_S)

    return stub.Watch(requests(), timeout=WAIT_S)


def test_rpcs_beyond_the_concurrency_limit_are_refused_at_once(two_rpcs, sneaker_png) -> None:
    """Two live streams fill a limit of two; the third call is refused, and served once one ends."""
    srv, target = two_rpcs
    releases = [threading.Event(), threading.Event()]
    with grpc.insecure_channel(target) as channel:
        stub = interp_pb2_grpc.InterpStub(channel)
        streams = [_open_watch(stub, release, sneaker_png) for release in releases]
        for stream in streams:
            assert next(stream).sequence == 0  # both are in progress
        with pytest.raises(grpc.RpcError) as info:
            stub.ListModels(pb.ListModelsRequest(), timeout=WAIT_S)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        releases[0].set()
        assert list(streams[0]) == []  # the client closed its side: the stream ends

        def serves() -> bool:
            try:
                return bool(stub.ListModels(pb.ListModelsRequest(), timeout=WAIT_S).models)
            except grpc.RpcError as error:
                if error.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                    raise
                return False

        wait_until(serves, "a call served once a slot was freed")
        releases[1].set()
        assert list(streams[1]) == []


def test_unauthenticated_health_stays_small_and_answers_while_the_workers_are_busy(sneaker_png) -> None:
    """Health needs no token: at most HEALTH_WATCH_STREAMS Watch streams (the next is refused, naming
    Check), so watchers never take the whole --max-concurrent-rpcs; a Watch of a name the server
    does not report is NOT_FOUND (grpc's servicer kept every name asked for); and Check runs on
    health's own threads, so it answers while the only interp worker is busy with a live stream."""
    from server.app import HEALTH_WATCH_STREAMS

    limits = Limits(max_concurrent_rpcs=HEALTH_WATCH_STREAMS + 4)
    srv, port = create_server(test_config(models=("lenet",), worker_threads=1, limits=limits))
    srv.start()
    release = threading.Event()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            stub = interp_pb2_grpc.InterpStub(channel)
            ask = health_pb2.HealthCheckRequest()
            watches = [health.Watch(ask, timeout=WAIT_S) for _ in range(HEALTH_WATCH_STREAMS)]
            for watch in watches:
                assert next(watch).status == health_pb2.HealthCheckResponse.SERVING  # all open
            with pytest.raises(grpc.RpcError) as info:
                next(health.Watch(health_pb2.HealthCheckRequest(), timeout=WAIT_S))
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "Check" in info.value.details()
            with pytest.raises(grpc.RpcError) as unknown:
                next(health.Watch(health_pb2.HealthCheckRequest(service="x" * 100_000), timeout=WAIT_S))
            assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
            assert "x" * 1000 not in str(srv.health._send_response_callbacks)  # nothing kept of it
            stream = _open_watch(stub, release, sneaker_png)  # the one interp worker, busy until released
            assert next(stream).sequence == 0
            checked = health.Check(health_pb2.HealthCheckRequest(), timeout=10)
            assert checked.status == health_pb2.HealthCheckResponse.SERVING
            release.set()
            assert list(stream) == []
            assert stub.ListModels(pb.ListModelsRequest(), timeout=WAIT_S).models  # served beside 16 watchers
            for watch in watches:
                watch.cancel()
    finally:
        release.set()
        srv.stop(None)


def test_a_client_that_stops_reading_is_cut_when_its_connection_ages_out() -> None:
    """The client reads one event of a long stream, then nothing, with a 10-minute deadline. The
    connection's maximum age (1 s, plus 1 s grace) ends the call; the server's loop stops, short of
    its steps, and the heavy slot is free again. Without the age limit the stream would hold its
    worker and slot until the deadline (or the server's default deadline, 300 s here)."""
    limits = Limits(max_connection_age_s=1.0, max_connection_age_grace_s=1.0, default_deadline_s=300.0)
    srv, port = create_server(test_config(models=("lenet",), limits=limits))
    srv.start()
    conv1 = srv.servicer.hub.get("lenet").require_ready().get_submodule("conv1")
    steps = [0]
    handle = conv1.register_forward_hook(lambda *_a: steps.__setitem__(0, steps[0] + 1))
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.http2.bdp_probe", 0)])
        params = pb.VisualizeFilterParams(steps=2048, image_size=128, preview_every=1)
        request = pb.VisualizeFilterRequest(model="lenet", layer="conv2", channels=[0], params=params)
        stream = interp_pb2_grpc.InterpStub(channel).VisualizeFilter(request, timeout=600)
        assert next(stream).WhichOneof("event") == "progress"  # ... and never reads again
        wait_until(lambda: sample(srv, "interp_heavy_running") == 0 and srv.metrics.busy() == 0,
                   "the server let go of the stream")  # fmt: skip
        done = steps[0]
        assert done < 2048
        cut = sum(
            sample(srv, "interp_requests_total", method="VisualizeFilter", code=code)
            for code in ("CANCELLED", "UNAVAILABLE", "DEADLINE_EXCEEDED")
        )
        assert cut == 1 and sample(srv, "interp_requests_total", method="VisualizeFilter", code="OK") == 0
        with pytest.raises(grpc.RpcError):
            list(stream)  # the client sees its stream end in an error, not a result
        channel.close()
        print(f"\nclient stopped reading at step 1; the server stopped at step {done}/2048")
    finally:
        handle.remove()
        srv.stop(None)
