"""The decode budget under concurrent large images, through the server (sized for 2 cores and CI).

A LeNet server with a budget of a few MB gets eight concurrent Classify calls with 1-3 Mpx 16-bit
PNGs, each costing a sizeable part of the budget. Every call ends OK or RESOURCE_EXHAUSTED, and
the budget's own accounting (an instrumented DecodeBudget that records every reservation) never
holds more than the budget. An image costing more than the whole budget is refused at once; a
call waiting for the budget that is cancelled leaves the queue; a filled budget makes a call with
a short deadline answer RESOURCE_EXHAUSTED naming the budget.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import cv2
import grpc
import numpy as np
import pytest

from protos import interp_pb2 as pb
from protos import interp_pb2_grpc
from protos.codec import to_tensor
from server.app import create_server
from server.capacity import DecodeBudget
from server.config import Limits
from server.imaging import decode_cost
from tests.support.servers import test_config

BUDGET = 40_000_000  # bytes; a 2000 x 1000 16-bit RGB PNG costs about 24 MB of it (decoded twice over)
WAIT_S = 120.0


class Instrumented(DecodeBudget):
    """The servicer's budget, recording each reservation and the most ever held at once."""

    def __init__(self, total: int, clock) -> None:  # noqa: ANN001
        super().__init__(total, clock)
        self.reservations: list[int] = []
        self.give_up: list[float] = []  # each reserve's wait_until (when a waiting call gives up)
        self.most_held = 0
        self._record = threading.Lock()

    @contextmanager
    def reserve(self, nbytes, what, still_wanted, wait_until) -> Iterator[None]:  # noqa: ANN001
        self.give_up.append(wait_until)
        with super().reserve(nbytes, what, still_wanted, wait_until):
            with self._record:
                self.reservations.append(nbytes)
                self.most_held = max(self.most_held, self.used)
            yield


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[object, str]]:
    limits = Limits(max_concurrent_heavy=2, max_queued_heavy=8, default_deadline_s=120.0, decode_budget_bytes=BUDGET)
    srv, port = create_server(test_config(models=("lenet",), limits=limits, worker_threads=12))
    budget = srv.servicer.decode_budget
    srv.servicer.services.decode_budget = Instrumented(budget.total, budget.clock)
    srv.start()
    yield srv, f"127.0.0.1:{port}"
    srv.stop(None)


@pytest.fixture(scope="module")
def stub(served) -> Iterator[interp_pb2_grpc.InterpStub]:
    with grpc.insecure_channel(served[1], options=[("grpc.max_send_message_length", 64 << 20)]) as channel:
        yield interp_pb2_grpc.InterpStub(channel)


def _png16(width: int, height: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 65535, (16, 16, 3)).astype(np.float32)
    return cv2.imencode(".png", cv2.resize(coarse, (width, height)).astype(np.uint16))[1].tobytes()


def _classify(image: bytes) -> pb.ClassifyRequest:
    return pb.ClassifyRequest(model="lenet", image=pb.Image(encoded=image))


def test_concurrent_large_images_stay_within_the_budget(served, stub) -> None:
    srv, _ = served
    budget: Instrumented = srv.servicer.decode_budget
    sizes = [(2000, 1000), (1500, 1000), (1000, 1000), (2000, 1500)] * 2
    images = [_png16(w, h, i) for i, (w, h) in enumerate(sizes)]
    spec = srv.servicer.hub.get("lenet").spec.preprocessing
    costs = [decode_cost(pb.Image(encoded=data), spec, 40_000_000) for data in images]
    assert all(BUDGET / 4 < c <= BUDGET for c in costs)  # two or three fit at once, never all
    futures = [stub.Classify.future(_classify(data), timeout=WAIT_S) for data in images]
    outcomes = []
    for future in futures:
        try:
            outcomes.append("OK" if future.result().predictions else "empty")
        except grpc.RpcError as error:
            outcomes.append(error.code().name)
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error.details()
            assert "decode_budget_bytes" in error.details()
    print(f"\noutcomes {outcomes}; most held {budget.most_held:,} of {BUDGET:,} bytes; peak {budget.peak:,}")
    assert set(outcomes) <= {"OK", "RESOURCE_EXHAUSTED"} and outcomes.count("OK") >= 1
    assert len(budget.reservations) >= outcomes.count("OK")  # every admitted call went through the budget
    assert budget.peak <= BUDGET and budget.most_held <= BUDGET
    assert budget.used == 0 and budget.holders == 0 and budget.waiting == 0


def test_an_image_above_the_whole_budget_is_refused_at_once(served, stub) -> None:
    srv, _ = served
    before = srv.servicer.decode_budget.refused
    with pytest.raises(grpc.RpcError) as info:
        stub.Classify(_classify(_png16(4000, 3000, 9)), timeout=WAIT_S)  # about 144 MB decoded
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "decode_budget_bytes=40,000,000" in info.value.details() and "more than" in info.value.details()
    assert srv.servicer.decode_budget.refused == before + 1


@contextmanager
def _filled(budget: DecodeBudget) -> Iterator[None]:
    """The whole budget held by the test, as by a decode that takes long."""
    with budget.reserve(budget.total, "test", lambda: True, wait_until=float("inf")):
        yield


def _wait_for(condition) -> None:  # noqa: ANN001
    tick = threading.Event()
    for _ in range(int(WAIT_S / 0.01)):
        if condition():
            return
        tick.wait(0.01)
    pytest.fail("condition not reached: a hang")


def test_a_call_waiting_for_the_budget_that_is_cancelled_leaves(served, stub) -> None:
    srv, _ = served
    budget = srv.servicer.decode_budget
    with _filled(budget):
        waiting = stub.Classify.future(_classify(_png16(1000, 1000, 3)), timeout=WAIT_S)
        _wait_for(lambda: budget.waiting == 1)
        waiting.cancel()
        _wait_for(lambda: budget.waiting == 0)
        assert budget.holders == 1  # only the test's own reservation
    assert budget.used == 0
    assert stub.Classify(_classify(_png16(1000, 1000, 4)), timeout=WAIT_S).predictions  # the budget is free


def _jump_when_waiting(budget: DecodeBudget, waiters: int) -> None:
    """Once ``waiters`` calls wait for the budget, its clock jumps far ahead (a fake clock): each
    waiting call reaches its give-up time at once, whatever its deadline and the machine's load.
    The caller restores ``budget.clock``."""
    real = budget.clock
    _wait_for(lambda: budget.waiting == waiters)
    budget.clock = lambda: real() + 1e9


def test_a_call_that_cannot_get_the_budget_before_its_deadline_is_resource_exhausted(served, stub) -> None:
    srv, _ = served
    budget = srv.servicer.decode_budget
    real = budget.clock
    try:
        with _filled(budget):
            # a client deadline far away: the budget's own clock decides when the call gives up
            request = _classify(_png16(1000, 1000, 5))
            sent = time.perf_counter()
            waiting = stub.Classify.future(request, timeout=WAIT_S)
            _jump_when_waiting(budget, 1)
            with pytest.raises(grpc.RpcError) as info:
                waiting.result()
    finally:
        budget.clock = real
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, info.value.details()
    assert "decode_budget_bytes" in info.value.details() and "deadline" in info.value.details()
    assert budget.waiting == 0 and budget.used == 0
    # the server gives up a margin (1 s of a 120 s deadline) before the client's deadline, so its
    # RESOURCE_EXHAUSTED arrives first: a bound on the recorded give-up time, no window crossed
    # (0.1 s of it allowed for the deadline's travel: gRPC sends it as a rounded timeout)
    assert budget.give_up[-1] <= sent + WAIT_S - 0.9


def _arrays(count: int) -> list[pb.Image]:
    rng = np.random.default_rng(count)
    return [pb.Image(pixels=to_tensor(rng.integers(0, 256, (28, 28), dtype=np.uint8))) for _ in range(count)]


def test_arrays_decoded_together_reserve_their_summed_cost_once(served, stub) -> None:
    srv, _ = served
    budget = srv.servicer.decode_budget
    images = _arrays(6)
    spec, max_pixels = srv.servicer.hub.get("lenet").spec.preprocessing, srv.servicer.limits.max_image_pixels
    before = len(budget.reservations)
    reply = stub.Classify(pb.ClassifyRequest(model="lenet", images=images), timeout=WAIT_S)
    assert len(reply.items) == 6 and not any(item.HasField("error") for item in reply.items)
    assert budget.reservations[before:] == [sum(decode_cost(image, spec, max_pixels) for image in images)]
    assert budget.used == 0 and budget.holders == 0


def test_arrays_that_cannot_get_the_budget_in_time_get_their_own_errors(served, stub) -> None:
    srv, _ = served
    budget = srv.servicer.decode_budget
    real = budget.clock
    try:
        with _filled(budget):
            pending = stub.Classify.future(pb.ClassifyRequest(model="lenet", images=_arrays(3)), timeout=WAIT_S)
            _jump_when_waiting(budget, 1)  # the three arrays wait as one reservation
            reply = pending.result()
    finally:
        budget.clock = real
    assert [item.error.code_name for item in reply.items] == ["RESOURCE_EXHAUSTED"] * 3
    assert [item.error.field for item in reply.items] == ["images[0]", "images[1]", "images[2]"]
    assert all("decode_budget_bytes" in item.error.message for item in reply.items)
    assert budget.waiting == 0 and budget.used == 0
