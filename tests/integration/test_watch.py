"""Watch: a layer's activation maps per frame over a bidirectional stream (SDK and raw stub).

The slow model is the served LeNet with a forward pre-hook on conv1 that waits on an event the
test releases; when the server has read a message is observed by wrapping ``LatestWins.put`` and
``touch`` (events, not sleeps). Counters polled below have a bound only against a hang.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
import torch

from client import InterpClient
from client.errors import DeadlineExceeded, InvalidArgument
from protos import interp_pb2 as pb
from protos import interp_pb2_grpc
from server import streaming
from server.app import create_server
from server.config import Limits
from tests.conftest import require_fashion_mnist
from tests.support.servers import test_config


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    from models.datasets import load_dataset

    require_fashion_mnist()
    images, _ = load_dataset("fashion-mnist", "test", download=False)
    return [np.ascontiguousarray(images[i]) for i in range(8)]


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[object, InterpClient]]:
    limits = Limits(max_concurrent_heavy=2, max_queued_heavy=4, default_deadline_s=120.0, stream_stall_s=60.0)
    srv, port = create_server(test_config(models=("lenet",), limits=limits))
    srv.start()
    with InterpClient(f"127.0.0.1:{port}") as client:
        yield srv, client
    srv.stop(None)


def _until(condition, what: str) -> None:
    tick = threading.Event()
    for _ in range(30_000):
        if condition():
            return
        tick.wait(0.002)
    raise AssertionError(f"never reached: {what}")


class Gate:
    """The served LeNet's forwards wait at conv1 until released, one ``entered`` event per forward."""

    def __init__(self, srv) -> None:
        self.module = srv.servicer.hub.get("lenet").require_ready()
        self.entered = threading.Semaphore(0)
        self.release = threading.Semaphore(0)
        self.open = threading.Event()

    def __enter__(self) -> Gate:
        def block(*_: object) -> None:
            if not self.open.is_set():
                self.entered.release()
                if not self.release.acquire(timeout=60):
                    raise AssertionError("forward never released")

        self.handle = self.module.get_submodule("conv1").register_forward_pre_hook(block)
        return self

    def step(self) -> None:
        """Wait until a forward is inside conv1, then let it run."""
        assert self.entered.acquire(timeout=60), "no forward started"
        self.release.release()

    def __exit__(self, *exc: object) -> None:
        self.open.set()
        self.release.release()
        self.handle.remove()


@pytest.fixture
def received(monkeypatch) -> threading.Semaphore:
    """Released once per message the server's reader has handled."""
    seen = threading.Semaphore(0)
    put, touch = streaming.LatestWins.put, streaming.LatestWins.touch

    def counted_put(self, item, frame=True):
        put(self, item, frame)
        seen.release()

    def counted_touch(self):
        touch(self)
        seen.release()

    monkeypatch.setattr(streaming.LatestWins, "put", counted_put)
    monkeypatch.setattr(streaming.LatestWins, "touch", counted_touch)
    return seen


def _wait(seen: threading.Semaphore, count: int) -> None:
    for _ in range(count):
        assert seen.acquire(timeout=60), "the server never read a message"


def test_each_answer_equals_an_activations_call(served, frames) -> None:
    _, c = served
    with c.watch_session(model="lenet", layer="relu2", unit=5, top_k=3) as session:
        answers = iter(session)
        for i, frame in enumerate(frames[:4]):
            session.send(frame)
            got = next(answers)
            want = c.activations(frame, model="lenet", layers=["relu2"]).layers[0].activation
            assert got.sequence == i and got.skipped == 0 and got.error is None
            assert got.layer == "relu2" and got.maps.shape == want.shape == (16, 10, 10)
            steps = np.asarray(got.raw.maps.scale, dtype=np.float32)[:, None, None]
            assert np.all(np.abs(got.maps - want) <= steps * 0.5 + 1e-5)  # within half an 8-bit step
            assert (np.abs(got.maps - want) > 1e-3).any() or steps.max() < 2e-3  # quantized indeed
            np.testing.assert_allclose(got.unit_map, want[5], rtol=1e-6, atol=1e-6)
            top = c.classify(frame, model="lenet", top_k=3).predictions
            assert [p[0] for p in got.predictions] == [p.index for p in top]
        session.change(float16=True, top_k=0)
        session.send(frames[0])
        got = next(answers)
        want = c.activations(frames[0], model="lenet", layers=["relu2"]).layers[0].activation
        assert got.raw.maps.float16 and got.predictions == []
        np.testing.assert_allclose(got.maps, want, rtol=1e-3, atol=1e-3)
        session.close()
        assert list(answers) == []


def test_a_layer_that_returns_model_memory_is_never_overwritten(served, frames) -> None:
    """The server quantizes a layer's output in place when it is the frame's own; a layer that
    returns a parameter (here a forward hook hands back conv2's weight as relu2's output) is the
    model's memory and must come out unchanged, with the answer still its quantization."""
    srv, c = served
    module = srv.servicer.hub.get("lenet").require_ready()
    weight = module.get_submodule("conv2").weight
    before = weight.detach().clone()
    handle = module.get_submodule("relu2").register_forward_hook(lambda *_: weight)
    try:
        with c.watch_session(model="lenet", layer="relu2", top_k=0) as session:
            answers = iter(session)
            session.send(frames[0])
            got = next(answers)
            session.close()
    finally:
        handle.remove()
    assert torch.equal(weight.detach(), before)
    steps = np.asarray(got.raw.maps.scale, dtype=np.float32)[:, None, None]
    assert np.all(np.abs(got.maps - before[0].numpy()) <= steps * 0.5 + 1e-6)


def test_latest_frame_wins_and_every_frame_is_answered_or_counted(served, frames, received) -> None:
    srv, c = served
    # no window in the SDK: the server alone must keep the newest frame
    with Gate(srv) as gate, c.watch_session(model="lenet", layer="relu2", top_k=0, max_in_flight=None) as session:
        answers = iter(session)
        session.send(frames[0])
        assert gate.entered.acquire(timeout=60)  # frame 0 computes and waits
        for frame in frames[1:6]:  # five more arrive meanwhile: only the newest waits
            session.send(frame)
        _wait(received, 6)
        gate.release.release()
        first = next(answers)
        gate.step()  # the one frame that waited
        second = next(answers)
        session.close()
        rest = list(answers)
    assert (first.sequence, first.skipped) == (0, 0)
    assert (second.sequence, second.skipped) == (5, 4)
    assert rest == []
    assert 2 + first.skipped + second.skipped == 6  # processed + skipped = sent


def test_a_layer_change_applies_from_the_next_frame(served, frames, received) -> None:
    srv, c = served
    with Gate(srv) as gate, c.watch_session(model="lenet", layer="relu2", top_k=0) as session:
        answers = iter(session)
        session.send(frames[0])
        assert gate.entered.acquire(timeout=60)
        session.change(layer="conv1", unit=2)  # while frame 0 computes with relu2
        session.send(frames[1])
        _wait(received, 3)
        gate.release.release()
        gate.step()
        before, after = next(answers), next(answers)
    assert (before.layer, before.unit, before.maps.shape) == ("relu2", -1, (16, 10, 10))
    assert (after.layer, after.unit, after.maps.shape) == ("conv1", 2, (6, 28, 28))
    want = c.activations(frames[1], model="lenet", layers=["conv1"]).layers[0].activation
    np.testing.assert_allclose(after.unit_map, want[2], rtol=1e-6, atol=1e-6)


def test_cancel_frees_the_capacity_slot(served, frames) -> None:
    srv, c = served
    gate_counts = srv.servicer.gate
    with Gate(srv) as gate:
        session = c.watch_session(model="lenet", layer="relu2")
        session.send(frames[0])
        assert gate.entered.acquire(timeout=60)
        assert gate_counts.running == 1  # the stream holds one slot
        session.cancel()
        gate.release.release()
        _until(lambda: gate_counts.running == 0, "the slot freed after cancel")
        assert list(session) == []


def test_a_bad_frame_gets_its_own_error_and_the_stream_goes_on(served, frames) -> None:
    _, c = served
    with c.watch_session(model="lenet", layer="relu2", top_k=0) as session:
        answers = iter(session)
        session.send(frames[0])
        ok = next(answers)
        session.send(b"not an image at all")
        bad = next(answers)
        session.change(unit=99)  # a refused settings change: answered, settings kept
        refused = next(answers)
        session.send(frames[1])
        again = next(answers)
        colour = np.stack([frames[2], frames[2] // 2, frames[2]], axis=2).repeat(2, axis=0).repeat(2, axis=1)
        session.send(colour)  # 56 x 56 RGB: preprocessed to the model's input as in every RPC
        resized = next(answers)
    want = c.activations(colour, model="lenet", layers=["relu2"]).layers[0].activation
    steps = np.asarray(resized.raw.maps.scale, dtype=np.float32)[:, None, None]
    assert resized.error is None and resized.sequence == 3
    assert np.all(np.abs(resized.maps - want) <= steps * 0.5 + 1e-5)
    assert ok.error is None and again.error is None and again.sequence == 2
    assert isinstance(bad.error, InvalidArgument) and bad.sequence == 1 and bad.maps is None
    assert isinstance(refused.error, InvalidArgument) and refused.sequence == -1 and "unit" in str(refused.error)
    assert again.layer == "relu2" and again.unit == -1


def test_first_message_without_model_or_layer_gets_a_clear_status(served) -> None:
    srv, c = served
    with grpc.insecure_channel(c.target) as channel:
        stub = interp_pb2_grpc.InterpStub(channel)
        for request, words in (
            (pb.WatchRequest(layer="relu2"), "must name the model"),
            (pb.WatchRequest(model="lenet"), "must name the layer"),
            (pb.WatchRequest(model="lenet", layer="nope"), "nope"),
        ):
            with pytest.raises(grpc.RpcError) as info:
                list(stub.Watch(iter([request]), timeout=30))
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert words in info.value.details()
    assert srv.servicer.gate.running == 0


@pytest.fixture(scope="module")
def impatient() -> Iterator[tuple[object, str]]:
    """A server that ends a stream after 1 s without a message or without a read."""
    limits = Limits(max_concurrent_heavy=1, max_queued_heavy=1, default_deadline_s=60.0, stream_stall_s=1.0)
    srv, port = create_server(test_config(models=("lenet",), limits=limits))
    srv.start()
    yield srv, f"127.0.0.1:{port}"
    srv.stop(None)


def test_an_idle_stream_ends_and_frees_its_slot(impatient, frames) -> None:
    srv, target = impatient
    with InterpClient(target) as c, c.watch_session(model="lenet", layer="relu2") as session:
        answers = iter(session)
        session.send(frames[0])
        assert next(answers).error is None
        with pytest.raises(DeadlineExceeded, match="no message for"):
            next(answers)  # nothing sent since: the server ends the stream
        _until(lambda: srv.servicer.gate.running == 0, "the slot freed after the idle timeout")


def test_a_stream_without_a_first_message_ends(impatient) -> None:
    srv, target = impatient
    never = threading.Event()

    def requests() -> Iterator[pb.WatchRequest]:
        never.wait(60)  # opened, nothing sent
        yield from ()

    with grpc.insecure_channel(target) as channel:
        try:
            with pytest.raises(grpc.RpcError) as info:
                list(interp_pb2_grpc.InterpStub(channel).Watch(requests(), timeout=60))
        finally:
            never.set()
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "no first message within 1 s" in info.value.details()
    assert srv.servicer.gate.running == 0


def test_frames_sent_with_no_reader_end_in_the_stall_watch(impatient, frames) -> None:
    srv, target = impatient
    stalls, gate = srv.servicer.stalls, srv.servicer.gate
    before = stalls.cancelled
    first = pb.WatchRequest(model="lenet", layer="conv1", top_k=0, float16=True)  # 9.4 KB answers
    first.frame.encoded = cv2_png(frames[0])
    stop = threading.Event()

    def requests() -> Iterator[pb.WatchRequest]:
        yield first
        while not stop.is_set():  # frames keep coming until the stream is gone: answers pile up unread
            yield pb.WatchRequest(frame=first.frame)

    with grpc.insecure_channel(target) as channel:
        call = interp_pb2_grpc.InterpStub(channel).Watch(requests(), timeout=120)  # never read
        try:
            _until(lambda: stalls.cancelled > before, "the stall watch cancelled the stream")
            _until(lambda: gate.running == 0, "the slot freed")
        finally:
            stop.set()
        with pytest.raises(grpc.RpcError) as info:
            list(call)
        assert info.value.code() == grpc.StatusCode.CANCELLED
    with InterpClient(target) as c:  # the server serves others throughout
        assert c.classify(frames[1], model="lenet").top is not None


def cv2_png(image: np.ndarray) -> bytes:
    import cv2

    return cv2.imencode(".png", image)[1].tobytes()


def test_watch_over_an_iterable_answers_in_order_and_accounts_for_every_frame(served, frames) -> None:
    _, c = served
    sent = frames * 4  # 32 frames as fast as the sender thread reads them
    answers = list(c.watch(iter(sent), model="lenet", layer="relu2", top_k=1))
    sequences = [a.sequence for a in answers]
    assert sequences == sorted(set(sequences)) and sequences[-1] == len(sent) - 1  # the last frame is answered
    assert len(answers) + sum(a.skipped for a in answers) == len(sent)
    for a in answers:  # each answer's skipped counts exactly the frames between it and the previous one
        assert a.error is None and len(a.predictions) == 1
    assert [a.skipped for a in answers] == [s - p - 1 for p, s in zip([-1, *sequences], sequences, strict=False)]


def test_a_frame_the_sdk_cannot_send_is_raised_to_the_reader(served, frames) -> None:
    srv, c = served
    bad = np.zeros((5, 28, 28, 7), np.uint8)  # no image shape: refused by the SDK before sending
    with pytest.raises(ValueError, match="image array"):
        list(c.watch([frames[0], bad, frames[1]], model="lenet", layer="relu2"))
    _until(lambda: srv.servicer.gate.running == 0, "the slot freed")
