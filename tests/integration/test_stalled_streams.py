"""A client that reads one event and then neither reads nor cancels does not keep the server's
worker and slot: the stall watch cancels its call; meanwhile other clients are served."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from models.hub import ModelHub
from models.weights import WeightsOptions
from protos import interp_pb2 as pb
from server.config import Limits
from server.servicer import InterpServicer
from tests.support.servers import test_config


class SilentClient:
    """A ServicerContext whose client never reads again: only the server can end the call."""

    def __init__(self) -> None:
        self.cancelled = threading.Event()

    def time_remaining(self) -> None:
        return None

    def is_active(self) -> bool:
        return not self.cancelled.is_set()

    def cancel(self) -> None:
        self.cancelled.set()

    def abort_with_status(self, status: object) -> None:
        raise RuntimeError(f"aborted: {status}")


@pytest.fixture(scope="module")
def servicer() -> Iterator[InterpServicer]:
    limits = Limits(max_concurrent_heavy=2, max_queued_heavy=8, stream_stall_s=1.0, default_deadline_s=300.0)
    config = test_config(models=("lenet",), limits=limits)
    yield InterpServicer(config, ModelHub(["lenet"], WeightsOptions()))


def _poll(condition, polls: int = 400) -> bool:
    wait = threading.Event()
    for _ in range(polls):
        if condition():
            return True
        wait.wait(0.05)
    return False


def test_a_client_that_stops_reading_is_cancelled_and_frees_its_slot(servicer) -> None:
    request = pb.VisualizeFilterRequest(
        model="lenet",
        layer="conv2",
        channels=[0],
        params=pb.VisualizeFilterParams(steps=2000, restarts=1),
        every_step=True,  # a message per step: the silent client's transport window fills early
    )
    silent = [SilentClient() for _ in range(2)]
    streams = [servicer.VisualizeFilter(request, context) for context in silent]
    firsts = [next(stream) for stream in streams]  # each reads one event, then stops reading
    assert all(first.WhichOneof("event") == "progress" for first in firsts)
    assert servicer.gate.running == 2
    # The stall watch cancels both calls: no client action, no deadline involved.
    assert _poll(lambda: all(c.cancelled.is_set() for c in silent)), "stalled streams were never cancelled"
    assert servicer.stalls.cancelled >= 2
    # The worker sees the cancelled call at its next step and frees the slot.
    assert _poll(lambda: servicer.gate.running == 0), "the slots were not freed"
    for stream in streams:
        stream.close()  # what gRPC does with the generator of a cancelled call
    # ... and a new client is served.
    reply = servicer.Classify(pb.ClassifyRequest(model="lenet", image=pb.Image(encoded=_png())), SilentClient())
    assert len(reply.predictions) == 5


def _png() -> bytes:
    import cv2
    import numpy as np

    return cv2.imencode(".png", np.full((28, 28), 128, np.uint8))[1].tobytes()
