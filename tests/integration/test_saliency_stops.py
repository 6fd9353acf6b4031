"""Unary Saliency stops between captum passes when cancelled or past its deadline, and a call whose
deadline passes while it waits for a heavy slot gets DEADLINE_EXCEEDED and leaves the queue.

A dedicated LeNet server with ONE heavy slot and a 3 s default deadline. Passes are counted by a
forward pre-hook on the served LeNet's conv1 (one per SmoothGrad sample with batch_size 1); the
hook also slows each pass or holds it until the test lets it go. Counts, not timings, are asserted.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import cv2
import grpc
import numpy as np
import pytest

from protos import interp_pb2 as pb
from protos import interp_pb2_grpc
from server.app import create_server
from server.config import Limits
from tests.support.servers import test_config

DEFAULT_DEADLINE_S = 3.0
SAMPLES = 256
WAIT_S = 120.0
IMAGE = pb.Image(
    encoded=cv2.imencode(".png", np.random.default_rng(0).integers(0, 255, (28, 28), np.uint8))[1].tobytes()
)


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[object, str]]:
    limits = Limits(max_concurrent_heavy=1, max_queued_heavy=2, default_deadline_s=DEFAULT_DEADLINE_S)
    srv, port = create_server(test_config(models=("lenet",), limits=limits))
    srv.start()
    yield srv, f"127.0.0.1:{port}"
    srv.stop(None)


@pytest.fixture(scope="module")
def stub(served) -> Iterator[interp_pb2_grpc.InterpStub]:
    with grpc.insecure_channel(served[1]) as channel:
        yield interp_pb2_grpc.InterpStub(channel)


def smoothgrad() -> pb.SaliencyRequest:
    params = pb.SaliencyParams(samples=SAMPLES, batch_size=1)
    return pb.SaliencyRequest(model="lenet", image=IMAGE, method="smoothgrad", params=params)


class Passes:
    """Forward passes through conv1; each waits for ``go`` (set: run on) and then ``pause`` seconds."""

    def __init__(self) -> None:
        self.count = 0
        self.go = threading.Event()
        self.go.set()
        self.pause = 0.0

    def __call__(self, *_: object) -> None:
        self.count += 1
        self.go.wait(WAIT_S)
        if self.pause:
            threading.Event().wait(self.pause)


@contextmanager
def passes(srv) -> Iterator[Passes]:
    counter = Passes()
    conv1 = srv.servicer.hub.get("lenet").require_ready().get_submodule("conv1")
    handle = conv1.register_forward_pre_hook(counter)
    try:
        yield counter
    finally:
        counter.go.set()
        handle.remove()


def wait_for(condition) -> None:  # noqa: ANN001
    tick = threading.Event()
    for _ in range(int(WAIT_S / 0.01)):
        if condition():
            return
        tick.wait(0.01)
    pytest.fail("condition not reached: a hang")


def test_a_cancelled_saliency_stops_between_passes(served, stub) -> None:
    srv, _ = served
    with passes(srv) as counter:
        call = stub.Saliency.future(smoothgrad())
        wait_for(lambda: counter.count >= 3)
        call.cancel()
        wait_for(lambda: srv.servicer.gate.running == 0)
        done = counter.count
    print(f"\ncancelled SmoothGrad stopped after {done} of {SAMPLES + 1} passes")
    assert done < SAMPLES  # stopped early: not every sample ran


def test_the_server_deadline_stops_a_saliency_between_passes(served, stub) -> None:
    srv, _ = served
    with passes(srv) as counter:
        counter.pause = 0.05  # 256 passes would take 13 s, past the 3 s default deadline
        with pytest.raises(grpc.RpcError) as info:
            stub.Saliency(smoothgrad())  # no client deadline: the server's applies
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        wait_for(lambda: srv.servicer.gate.running == 0)
        done = counter.count
    assert done < SAMPLES


def test_a_deadline_that_passes_in_the_queue_is_deadline_exceeded(served, stub) -> None:
    srv, _ = served
    gate = srv.servicer.gate
    with passes(srv) as counter:
        counter.go.clear()  # the first call holds the only heavy slot in its first pass
        holder = stub.Saliency.future(smoothgrad())
        wait_for(lambda: counter.count >= 1 and gate.running == 1)
        with pytest.raises(grpc.RpcError) as info:
            stub.Saliency(smoothgrad())  # queued behind it until the server's deadline
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert gate.waiting == 0 and counter.count == 1  # it left the queue and never computed
        counter.go.set()
        with pytest.raises(grpc.RpcError):
            holder.result()  # the holder's own deadline passed meanwhile: it stops at its next pass
    wait_for(lambda: gate.running == 0)
