"""Micro-batching through the server: concurrent calls do share batches and answer as serial calls
do (to 1e-5) on the trained LeNet, whose BatchNorm layers run in eval mode; a cancelled batched
call frees its place. (The per-image equality of one batched computation is
test_many_images.py's: a micro-batch runs the same computation as a many-image call.)

Whether calls met in a batch is read from the batcher's own counters, never from timing.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import cv2
import grpc
import numpy as np
import pytest
import torch

from protos import interp_pb2 as pb
from protos import interp_pb2_grpc
from server.app import create_server
from server.config import Limits
from tests.support.servers import test_config

N = 8
TOL = 1e-5


@pytest.fixture(scope="module")
def batching() -> Iterator[tuple[object, str]]:
    # Calls meet in a batch because the test holds the first one's forward until the batcher
    # reports the others queued (its counters), not because they arrive within a delay.
    limits = Limits(max_concurrent_heavy=2, max_queued_heavy=8, default_deadline_s=120.0, batch_max_size=N)
    srv, port = create_server(test_config(models=("lenet",), limits=limits, worker_threads=N + 2))
    srv.start()
    yield srv, f"127.0.0.1:{port}"
    srv.stop(None)


@pytest.fixture(scope="module")
def images(fashion_test_images) -> list[bytes]:
    return [cv2.imencode(".png", image)[1].tobytes() for image in fashion_test_images[0][:N]]


def _lenet(srv) -> torch.nn.Module:
    module = srv.servicer.hub.get("lenet").require_ready()
    norms = [m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert norms and not any(m.training for m in norms)  # the case the batching must get right
    return module


def _concurrently(calls: list) -> list:
    results: list = [None] * len(calls)
    start = threading.Barrier(len(calls))

    def run(i: int) -> None:
        start.wait()
        results[i] = calls[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return results


def _tensor(message: pb.Tensor) -> np.ndarray:
    from protos.codec import from_tensor

    return from_tensor(message)


def _future(stub, rpc: str, image: bytes):  # noqa: ANN001, ANN202
    if rpc == "Classify":
        return stub.Classify.future(pb.ClassifyRequest(model="lenet", image=pb.Image(encoded=image)), timeout=120)
    request = pb.SaliencyRequest(model="lenet", image=pb.Image(encoded=image), method="gradient")
    return stub.Saliency.future(request, timeout=120)


class _Release:
    def __init__(self) -> None:
        self.hold, self.reached = threading.Event(), threading.Event()

    def entered(self) -> None:
        assert self.reached.wait(120), "the first call's forward never started"


@contextmanager
def _held_first_batch(srv) -> Iterator[_Release]:  # noqa: ANN001
    """The first forward of the served LeNet waits inside a pre-hook until the block is left."""
    gate = _Release()

    def block(*_: object) -> None:
        if not gate.hold.is_set():
            gate.reached.set()
            gate.hold.wait(120)

    handle = _lenet(srv).get_submodule("conv1").register_forward_pre_hook(block)
    try:
        yield gate
    finally:
        gate.hold.set()
        handle.remove()


def _until(condition) -> None:  # noqa: ANN001
    """Wait for a batcher counter (polled; the bound only guards against a hang)."""
    tick = threading.Event()
    for _ in range(12000):
        if condition():
            return
        tick.wait(0.01)
    raise AssertionError("the calls never queued")


@pytest.mark.parametrize("rpc", ["Classify", "Saliency"])
def test_concurrent_calls_share_batches_and_answer_as_serial_ones(batching, images, rpc) -> None:
    srv, target = batching
    batcher = srv.servicer.batcher
    with grpc.insecure_channel(target) as channel:
        stub = interp_pb2_grpc.InterpStub(channel)

        def call(image: bytes):  # noqa: ANN202
            return _future(stub, rpc, image).result()

        before = batcher.stats.batches
        serial = [call(image) for image in images]
        assert batcher.stats.batches - before == N  # one at a time: batches of one, no waiting
        before_calls, before_batches = batcher.stats.calls, batcher.stats.batches
        with _held_first_batch(srv) as release:
            futures = [_future(stub, rpc, images[0])]
            release.entered()  # the first call computes alone, held in its forward
            futures += [_future(stub, rpc, image) for image in images[1:]]
            _until(lambda: batcher.pending() == N - 1)  # every other call queued behind it
        together = [f.result() for f in futures]
        batches = batcher.stats.batches - before_batches
        assert batcher.stats.calls - before_calls == N and batches == 2  # the N - 1 others shared one batch
        assert batcher.stats.sizes[-2:] == [1, N - 1]
    for alone, batched in zip(serial, together, strict=True):
        if rpc == "Classify":
            np.testing.assert_allclose(_tensor(batched.logits), _tensor(alone.logits), rtol=0, atol=TOL)
            assert [p.index for p in batched.predictions] == [p.index for p in alone.predictions]
        else:
            assert batched.target.index == alone.target.index
            np.testing.assert_allclose(_tensor(batched.attribution), _tensor(alone.attribution), rtol=0, atol=TOL)
            np.testing.assert_allclose(_tensor(batched.map), _tensor(alone.map), rtol=0, atol=TOL)
    assert batcher.pending() == 0 and srv.servicer.gate.running == 0


def test_other_saliency_methods_and_other_parameters_are_not_mixed(batching, images) -> None:
    srv, target = batching
    batcher = srv.servicer.batcher
    with grpc.insecure_channel(target) as channel:
        stub = interp_pb2_grpc.InterpStub(channel)
        requests = [
            pb.SaliencyRequest(model="lenet", image=pb.Image(encoded=images[0]), method="gradient"),
            pb.SaliencyRequest(model="lenet", image=pb.Image(encoded=images[1]), method="gradient_x_input"),
            pb.SaliencyRequest(
                model="lenet", image=pb.Image(encoded=images[2]), method="gradient", target=pb.Target(index=3)
            ),
            pb.SaliencyRequest(
                model="lenet",
                image=pb.Image(encoded=images[3]),
                method="smoothgrad",
                params=pb.SaliencyParams(samples=4),
            ),
        ]
        before = batcher.stats.batches
        replies = _concurrently([lambda r=r: stub.Saliency(r, timeout=120) for r in requests])
    assert [r.method for r in replies] == ["gradient", "gradient_x_input", "gradient", "smoothgrad"]
    assert replies[2].target.index == 3
    assert batcher.stats.batches - before == 3  # three keys, one batch each; smoothgrad computes alone


def test_a_cancelled_queued_call_leaves_and_the_others_are_answered(batching, images) -> None:
    srv, target = batching
    servicer = srv.servicer
    batcher = servicer.batcher
    hold = threading.Event()
    entered = threading.Event()
    module = _lenet(srv)
    conv1 = module.get_submodule("conv1")

    def block(*_: object) -> None:  # the first batch's forward waits for the test
        if not hold.is_set():
            entered.set()
            hold.wait(120)

    handle = conv1.register_forward_pre_hook(block)
    try:
        with grpc.insecure_channel(target) as channel:
            stub = interp_pb2_grpc.InterpStub(channel)
            request = pb.ClassifyRequest(model="lenet", image=pb.Image(encoded=images[0]))
            first = stub.Classify.future(request, timeout=120)
            assert entered.wait(120)
            queued = stub.Classify.future(pb.ClassifyRequest(model="lenet", image=pb.Image(encoded=images[1])))
            kept = stub.Classify.future(pb.ClassifyRequest(model="lenet", image=pb.Image(encoded=images[2])))
            key = (("Classify", "lenet"), (5, False))  # (top_k, include_input)
            deadline = threading.Event()
            for _ in range(12000):
                if batcher.pending(key) == 2:
                    break
                deadline.wait(0.01)
            assert batcher.pending(key) == 2
            queued.cancel()
            for _ in range(12000):
                if batcher.pending(key) == 1:
                    break
                deadline.wait(0.01)
            assert batcher.pending(key) == 1  # the cancelled call left the queue while the batch computed
            hold.set()
            assert first.result().predictions and kept.result().predictions
            with pytest.raises(grpc.FutureCancelledError):
                queued.result()
    finally:
        hold.set()
        handle.remove()
    assert batcher.pending() == 0 and not batcher.computing(key)
