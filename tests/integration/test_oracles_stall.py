"""The stall watch over a real gRPC channel: a client that reads one event of a streamed call and
then stops reading (without cancelling) is cancelled by the server, which frees its slot, while
the transport's flow control (not a fake context) is what holds the server's generator.

The client's receive window is kept small (no BDP probing, small lookahead), so the server's
``yield`` blocks once a few events are in flight. The test waits on the server's own counters
(``stalls.cancelled``, ``gate.running``), never on a sleep.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import grpc
import pytest

from protos import interp_pb2 as pb
from protos import interp_pb2_grpc
from server.app import create_server
from server.config import Limits
from tests.support.servers import test_config

STEPS = 2048  # the server's default max_steps
SMALL_WINDOW = [("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", 1024)]


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[object, str]]:
    limits = Limits(max_concurrent_heavy=2, max_queued_heavy=8, stream_stall_s=1.0, default_deadline_s=600.0)
    srv, port = create_server(test_config(models=("lenet",), limits=limits))
    srv.start()
    yield srv, f"127.0.0.1:{port}"
    srv.stop(None)


def _until(condition, what: str, polls: int = 6000) -> None:
    """Wait for a server counter to reach a state (polled; the bound only guards against a hang)."""
    tick = threading.Event()
    for _ in range(polls):
        if condition():
            return
        tick.wait(0.01)
    raise AssertionError(f"never happened: {what}")


def test_a_client_that_stops_reading_a_real_stream_is_cancelled_and_frees_its_slot(server):
    srv, target = server
    servicer = srv.servicer
    before = servicer.stalls.cancelled
    request = pb.VisualizeFilterRequest(
        model="lenet",
        layer="conv2",
        channels=[0],
        params=pb.VisualizeFilterParams(steps=STEPS, restarts=1),
        every_step=True,
    )
    forwards = [0]
    module = servicer.hub.get("lenet").require_ready()
    handle = module.get_submodule("conv1").register_forward_hook(lambda *_: forwards.__setitem__(0, forwards[0] + 1))
    try:
        _silent_client(servicer, target, request, before)
    finally:
        handle.remove()
    # the work itself stopped early (a server that buffered the stream would have run every step)
    assert 0 < forwards[0] < STEPS, forwards[0]


def _silent_client(servicer, target: str, request: pb.VisualizeFilterRequest, before: int) -> None:
    with grpc.insecure_channel(target, options=SMALL_WINDOW) as channel:
        stub = interp_pb2_grpc.InterpStub(channel)
        stream = stub.VisualizeFilter(request, timeout=600)
        first = next(stream)  # one event, then this client reads no more and does not cancel
        assert first.WhichOneof("event") == "progress"
        assert servicer.gate.running == 1
        _until(lambda: servicer.stalls.cancelled > before, "the stall watch cancelled the silent stream")
        _until(lambda: servicer.gate.running == 0, "the cancelled call freed its slot")
        with pytest.raises(grpc.RpcError) as caught:
            for _ in stream:  # what was buffered, then the cancellation
                pass
        assert caught.value.code() == grpc.StatusCode.CANCELLED
        # the server is free: another call on the same channel is answered
        reply = stub.ListModels(pb.ListModelsRequest(), timeout=60)
        assert [m.name for m in reply.models] == ["lenet"]
