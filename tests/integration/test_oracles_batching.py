"""Concurrent Classify calls that the server computes as one batch answer softmax(model(x)) with x
preprocessed here, independently of the server (cv2 decode, BT.601 luma, INTER_AREA resize to
LeNet's 28 x 28), and the model being the served checkpoint loaded here: a preprocessing or
batching bug shared by the single-image path cannot hide behind a comparison with it.

The batch is made by the server's own signals, not by timing: the first call's forward is held in
a pre-hook until the batcher reports every other call queued behind it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import cv2
import grpc
import numpy as np
import pytest
import torch

from protos import interp_pb2 as pb
from protos import interp_pb2_grpc
from server.app import create_server
from server.config import Limits
from tests.conftest import require, require_fashion_mnist
from tests.support.servers import test_config

ROOT = Path(__file__).resolve().parents[2]
N = 6


def _served_lenet() -> torch.nn.Module:
    from models.lenet import build_lenet

    found = sorted((ROOT / "models" / "weights").glob("lenet5_fashion_mnist-*.pt"))
    require(found, "no trained LeNet checkpoint in models/weights")
    model = build_lenet()
    model.load_state_dict(torch.load(found[-1], map_location="cpu", weights_only=True))
    return model.eval().requires_grad_(False)


@pytest.fixture(scope="module")
def pngs() -> list[bytes]:
    """N colour PNGs, 42 wide and 56 high, made from Fashion-MNIST test images tinted per channel."""
    from models.datasets import load_dataset

    require_fashion_mnist()
    images, _ = load_dataset("fashion-mnist", "test", download=False)
    out = []
    for i in range(N):
        big = cv2.resize(images[i], (42, 56), interpolation=cv2.INTER_LINEAR).astype(np.float32)
        bgr = np.stack([big * 0.3, big * 0.9, np.clip(big * 1.2 + 20, 0, 255)], axis=2).astype(np.uint8)
        out.append(cv2.imencode(".png", bgr)[1].tobytes())
    return out


def independent_input(png: bytes) -> torch.Tensor:
    decoded = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    assert decoded is not None
    bgr = decoded.astype(np.float32) / 255.0
    luma = 0.114 * bgr[..., 0] + 0.587 * bgr[..., 1] + 0.299 * bgr[..., 2]
    small = cv2.resize(luma, (28, 28), interpolation=cv2.INTER_AREA)
    return torch.from_numpy(np.clip(small, 0, 1))[None, None]


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[object, str]]:
    limits = Limits(max_concurrent_heavy=2, max_queued_heavy=16, default_deadline_s=120.0, batch_max_size=N)
    srv, port = create_server(test_config(models=("lenet",), limits=limits, worker_threads=N + 2))
    srv.start()
    yield srv, f"127.0.0.1:{port}"
    srv.stop(None)


def _until(condition, what: str) -> None:
    """Wait for a server counter to reach a state (polled; the bound only guards against a hang)."""
    tick = threading.Event()
    for _ in range(60_000):
        if condition():
            return
        tick.wait(0.002)
    raise AssertionError(f"never reached: {what}")


def test_batched_classify_equals_an_independent_forward(server, pngs):
    srv, target = server
    batcher = srv.servicer.batcher
    module = srv.servicer.hub.get("lenet").require_ready()
    hold, entered = threading.Event(), threading.Event()

    def block(*_: object) -> None:  # the first call's forward waits until the others queued
        if not hold.is_set():
            entered.set()
            hold.wait(120)

    handle = module.get_submodule("conv1").register_forward_pre_hook(block)
    try:
        with grpc.insecure_channel(target) as channel:
            stub = interp_pb2_grpc.InterpStub(channel)

            def request(png: bytes) -> pb.ClassifyRequest:
                return pb.ClassifyRequest(model="lenet", image=pb.Image(encoded=png), top_k=10)

            before_batches, before_calls = batcher.stats.batches, batcher.stats.calls
            first = stub.Classify.future(request(pngs[0]), timeout=120)
            assert entered.wait(120)
            rest = [stub.Classify.future(request(png), timeout=120) for png in pngs[1:]]
            _until(lambda: batcher.pending() == N - 1, f"{N - 1} calls queued behind the held batch")
            hold.set()
            replies = [first.result(), *(f.result() for f in rest)]
    finally:
        hold.set()
        handle.remove()
    assert batcher.stats.calls - before_calls == N and batcher.stats.batches - before_batches == 2
    assert batcher.stats.sizes[-2:] == [1, N - 1]  # the other calls were computed as one batch
    model = _served_lenet()
    x = torch.cat([independent_input(png) for png in pngs])
    with torch.no_grad():
        logits = model(x)
    probs = torch.softmax(logits, dim=1).numpy()
    from protos.codec import from_tensor

    for i, reply in enumerate(replies):
        np.testing.assert_allclose(from_tensor(reply.logits), logits[i].numpy(), rtol=0, atol=2e-3, err_msg=str(i))
        got = {p.index: p.probability for p in reply.predictions}
        assert len(got) == 10 and [p.index for p in reply.predictions] == list(np.argsort(-probs[i], kind="stable"))
        np.testing.assert_allclose([got[c] for c in range(10)], probs[i], rtol=0, atol=2e-4, err_msg=str(i))
