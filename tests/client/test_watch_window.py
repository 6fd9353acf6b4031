"""The SDK's Watch window: at most ``max_in_flight`` frames sent and unanswered, over a fake
transport (no server): the test plays the server, reading requests and answering them."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from client.watch import WatchSession
from protos import interp_pb2 as pb


class FakeStream:
    """Reads the session's requests on a thread of its own (as gRPC does); answers on demand."""

    def __init__(self, requests: Iterator[pb.WatchRequest]) -> None:
        self.read: list[pb.WatchRequest] = []
        self.arrived = threading.Semaphore(0)
        self.replies: queue.Queue[pb.WatchResponse | None] = queue.Queue()
        self.cancelled = threading.Event()
        self.reader = threading.Thread(target=self._consume, args=(requests,), daemon=True)
        self.reader.start()

    def _consume(self, requests: Iterator[pb.WatchRequest]) -> None:
        for message in requests:
            self.read.append(message)
            self.arrived.release()

    def answer(self, sequence: int) -> None:
        self.replies.put(pb.WatchResponse(sequence=sequence, layer="relu2", unit=-1))

    def cancel(self) -> None:
        self.cancelled.set()
        self.replies.put(None)

    def __iter__(self) -> Iterator[pb.WatchResponse]:
        while (reply := self.replies.get(timeout=60)) is not None:
            yield reply


def open_fake(**options: Any) -> tuple[WatchSession, FakeStream]:
    """A session over a FakeStream (frames of LeNet's model and layer)."""
    streams: list[FakeStream] = []

    def open_stream(requests: Iterator[pb.WatchRequest]) -> FakeStream:
        streams.append(FakeStream(requests))
        return streams[0]

    session = WatchSession(open_stream, model="lenet", layer="relu2", **options)
    return session, streams[0]


def frames_read(stream: FakeStream) -> int:
    return sum(m.HasField("frame") for m in stream.read)


def _arrive(stream: FakeStream, count: int) -> None:
    for _ in range(count):
        assert stream.arrived.acquire(timeout=60), "the session never sent the message"


def test_at_most_two_frames_are_unanswered_and_each_answer_lets_one_more_go() -> None:
    frame = np.zeros((28, 28), np.uint8)
    session, stream = open_fake(max_pending=8)
    answers = iter(session)
    for _ in range(6):
        session.send(frame)  # never waits: eight messages may wait unsent
    _arrive(stream, 2)
    assert session.window_full.wait(timeout=60)  # the third frame waits for an answer
    assert frames_read(stream) == 2 and session.frames_sent == 2
    session.change(unit=3)  # a settings change queues behind the waiting frames, never ahead of them

    stream.answer(0)
    assert next(answers).sequence == 0
    _arrive(stream, 1)
    assert frames_read(stream) == 3
    assert session.window_full.wait(timeout=60)
    assert frames_read(stream) == 3  # the window is full again: two unanswered

    stream.answer(2)  # the server skipped frame 1 and answered frame 2: two more may go
    assert next(answers).sequence == 2
    _arrive(stream, 2)
    assert frames_read(stream) == 5 and session.frames_answered == 3
    assert session.window_full.wait(timeout=60)

    session.cancel()  # wakes the waiting frame: it is never sent
    stream.reader.join(timeout=60)
    assert not stream.reader.is_alive() and frames_read(stream) == 5
    assert all(m.unit != 3 for m in stream.read)  # the change stayed behind the frame never sent


def test_without_a_bound_every_frame_goes_at_once() -> None:
    session, stream = open_fake(max_pending=8, max_in_flight=None)
    for _ in range(6):
        session.send(np.zeros((28, 28), np.uint8))
    _arrive(stream, 6)
    assert frames_read(stream) == 6 and not session.window_full.is_set()
    session.cancel()


def test_a_window_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="max_in_flight"):
        WatchSession(lambda requests: iter(()), model="lenet", layer="relu2", max_in_flight=0)
