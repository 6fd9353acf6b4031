"""Cancelled and expired streams stop the server's work, not just the stream, and free their slot.

Observed server-side on a dedicated lenet server with ONE heavy slot and ONE queue place (a leaked
slot would make the next heavy request wait, then fail): the heavy-running/queued gauges and the
request counter of its Prometheus registry, the stream's worker thread ("interp-<request id>"), and
a step counter (a forward hook on the served LeNet's conv1: one forward per optimization step).

No wall-clock windows: the tests wait for events (a gauge, a counter, a thread ending) and bound the
work by steps; a run that must outlast a client deadline is held at one step until the client has
seen the deadline pass. The waits have generous timeouts that only a hang reaches; whether the server
stopped *early* is told by the step counter (it stopped short of the requested steps), not by how
fast it stopped. Runs that must outlast a deadline or a cancel are made expensive per step
(``image_size``) so that even a fast machine cannot finish them first.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import cv2
import grpc
import numpy as np
import pytest

from client import InterpClient, errors
from protos import interp_pb2 as pb
from protos import interp_pb2_grpc
from server.app import create_server
from server.config import Limits
from tests.support.servers import test_config

DEFAULT_DEADLINE_S = 4.0
WAIT_S = 120.0  # how long an event may take before the test calls it a hang (a busy 2-core machine)
SLOW_SIZE = 128  # image_size that makes a LeNet step ~20x a 28-px one: 2048 steps outlast any deadline here
WORKER = re.compile(r"^interp-[0-9a-f]{12}$")  # the servicer's per-stream worker thread
IMAGE = pb.Image(
    encoded=cv2.imencode(".png", np.random.default_rng(0).integers(0, 255, (28, 28), np.uint8))[1].tobytes()
)


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[object, str]]:
    limits = Limits(max_concurrent_heavy=1, max_queued_heavy=1, default_deadline_s=DEFAULT_DEADLINE_S)
    srv, port = create_server(test_config(models=("lenet",), limits=limits))
    srv.start()
    yield srv, f"127.0.0.1:{port}"
    srv.stop(None)


@pytest.fixture(scope="module")
def stub(served):
    with grpc.insecure_channel(served[1]) as channel:
        yield interp_pb2_grpc.InterpStub(channel)


def sample(srv, name: str, **labels: str) -> float:
    return srv.metrics.registry.get_sample_value(name, labels) or 0.0


def workers() -> list[str]:
    return [t.name for t in threading.enumerate() if WORKER.match(t.name)]


def wait_until(condition: Callable[[], bool], timeout: float = WAIT_S) -> float:
    """Seconds until ``condition()`` held; fails after ``timeout`` (a hang, not slowness)."""
    start = time.perf_counter()
    while not condition():
        if time.perf_counter() - start > timeout:
            pytest.fail(f"condition not reached within {timeout} s")
        time.sleep(0.01)
    return time.perf_counter() - start


@contextmanager
def counting_steps(srv) -> Iterator[list[int]]:
    """``[n]``: forwards of the served LeNet's conv1 while inside (every method's step runs one)."""
    conv1 = srv.servicer.hub.get("lenet").require_ready().get_submodule("conv1")
    count = [0]

    def hook(*_args) -> None:
        count[0] += 1

    handle = conv1.register_forward_hook(hook)
    try:
        yield count
    finally:
        handle.remove()


@contextmanager
def held_at_step(srv, step: int) -> Iterator[threading.Event]:
    """The served LeNet's ``step``-th conv1 forward (counted from entry) waits until the yielded
    event is set, so a run cannot finish before the test has seen what it waits for, however
    fast the machine; left, the block releases it."""
    conv1 = srv.servicer.hub.get("lenet").require_ready().get_submodule("conv1")
    release, count = threading.Event(), [0]

    def hold(*_args) -> None:
        count[0] += 1
        if count[0] == step:
            release.wait(WAIT_S)

    handle = conv1.register_forward_pre_hook(hold)
    try:
        yield release
    finally:
        release.set()
        handle.remove()


def idle(srv) -> bool:
    return sample(srv, "interp_heavy_running") == 0 and sample(srv, "interp_heavy_queued") == 0 and not workers()


def visualize(steps: int, image_size: int | None = None) -> pb.VisualizeFilterRequest:
    params = pb.VisualizeFilterParams(steps=steps, preview_every=0)
    if image_size is not None:
        params.image_size = image_size
    return pb.VisualizeFilterRequest(model="lenet", layer="conv2", channels=[0], params=params)


def dream(octaves: int, iterations: int, octave_scale: float | None = None) -> pb.DeepDreamRequest:
    params = pb.DeepDreamParams(octaves=octaves, iterations=iterations, preview_every=0)
    if octave_scale is not None:
        params.octave_scale = octave_scale
    return pb.DeepDreamRequest(model="lenet", image=IMAGE, layers=[pb.LayerWeight(layer="conv2")], params=params)


def assert_slot_is_free(stub) -> None:
    """A short heavy request runs to its result: with one slot, a leaked one would make it wait until
    its deadline and fail."""
    events = list(stub.VisualizeFilter(visualize(3), timeout=60))
    assert events[-1].WhichOneof("event") == "result"


def test_client_cancel_stops_the_visualize_filter_loop(served, stub) -> None:
    srv, _ = served
    cancelled_before = sample(srv, "interp_requests_total", method="VisualizeFilter", code="CANCELLED")
    with counting_steps(srv) as steps:
        call = stub.VisualizeFilter(visualize(2048, SLOW_SIZE), timeout=600)
        last = 0
        for event in call:
            last = event.progress.step
            if last >= 40:
                break
        assert sample(srv, "interp_heavy_running") == 1 and len(workers()) == 1
        call.cancel()
        wait_until(lambda: idle(srv))  # the worker thread that ran the loop has ended
        done = steps[0]
    print(f"\ncancel at step {last}/2048: the server stopped after {done} steps")
    assert last <= done < 2048  # stopped short of the 2048 steps it was asked for
    wait_until(
        lambda: sample(srv, "interp_requests_total", method="VisualizeFilter", code="CANCELLED") == cancelled_before + 1
    )
    assert_slot_is_free(stub)


def test_deadline_stops_deepdream_mid_run(served, stub) -> None:
    srv, _ = served
    expired_before = sample(srv, "interp_requests_total", method="DeepDream", code="DEADLINE_EXCEEDED")
    total = 8 * 1000  # 8 octaves of 1000 iterations (the most DeepDream allows)
    progress: list[int] = []
    with counting_steps(srv) as steps, held_at_step(srv, 20) as release:
        with pytest.raises(grpc.RpcError) as info:
            # step 20 waits until the client has seen its deadline pass: the run cannot finish first
            for event in stub.DeepDream(dream(octaves=8, iterations=1000, octave_scale=1.05), timeout=1.5):
                progress.append(event.progress.step)
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        release.set()
        wait_until(lambda: idle(srv))
        done = steps[0]
    print(f"\ndeadline after {len(progress)} progress events: the server stopped after {done}/{total} steps")
    assert done < total and all(0 < step <= done for step in progress)
    wait_until(
        lambda: sample(srv, "interp_requests_total", method="DeepDream", code="DEADLINE_EXCEEDED") == expired_before + 1
    )
    final = list(stub.DeepDream(dream(octaves=1, iterations=2), timeout=60))
    assert final[-1].WhichOneof("event") == "result"


def test_server_default_deadline_stops_a_stream_without_a_client_deadline(served, stub) -> None:
    srv, target = served
    # A preview every step and a client that stops reading after the first event: flow control
    # (no BDP growth of the window) holds the server's loop, so the run cannot finish before the
    # server's default deadline on any machine; the test waits for the worker to end, then reads.
    request = visualize(2048, 64)
    request.params.preview_every = 1
    request.every_step = True
    start = time.perf_counter()
    with counting_steps(srv) as steps, grpc.insecure_channel(target, options=[("grpc.http2.bdp_probe", 0)]) as slow:
        stream = interp_pb2_grpc.InterpStub(slow).VisualizeFilter(request)  # no client deadline: the server's
        assert next(stream).progress.step >= 1
        wait_until(lambda: idle(srv))  # the server's signal: the worker ended (the deadline cut it)
        elapsed = time.perf_counter() - start
        done = steps[0]
        with pytest.raises(grpc.RpcError) as info:
            for _event in stream:  # the events in flight, then the deadline
                pass
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "default deadline" in info.value.details() and "of 2048 steps" in info.value.details()
    assert done < 2048  # cut by the deadline, not finished
    assert elapsed >= DEFAULT_DEADLINE_S  # not cut before the server's default deadline (slowness only adds)
    assert_slot_is_free(stub)


def test_cancel_while_queued_leaves_the_queue(served, stub) -> None:
    srv, _ = served
    running = stub.VisualizeFilter(visualize(2048, SLOW_SIZE), timeout=600)  # holds the slot until cancelled
    assert next(running).progress.step >= 1
    queued = stub.VisualizeFilter(visualize(3), timeout=600)  # the call starts now, and waits for the slot
    wait_until(lambda: sample(srv, "interp_heavy_queued") == 1)
    with pytest.raises(grpc.RpcError) as info:  # one running, one queued: the next is refused at once
        list(stub.VisualizeFilter(visualize(3), timeout=60))
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "retry later" in info.value.details()
    queued.cancel()
    wait_until(lambda: sample(srv, "interp_heavy_queued") == 0)
    waiting = stub.VisualizeFilter(visualize(3), timeout=600)  # the freed queue place is usable
    wait_until(lambda: sample(srv, "interp_heavy_queued") == 1)
    running.cancel()
    assert list(waiting)[-1].WhichOneof("event") == "result"  # got the slot once the runner stopped
    wait_until(lambda: idle(srv))


def test_sdk_progress_callback_that_raises_cancels_the_server_work(served) -> None:
    srv, target = served

    class Enough(Exception):
        pass

    seen: list[int] = []

    def progress(event) -> None:
        seen.append(event.step)
        if len(seen) == 5:
            raise Enough

    image = np.frombuffer(IMAGE.encoded, np.uint8)
    with InterpClient(target, timeout=600) as client:
        with counting_steps(srv) as steps, pytest.raises(Enough):
            client.dream(
                cv2.imdecode(image, cv2.IMREAD_GRAYSCALE), model="lenet", layers={"conv2": 1.0},
                octaves=4, iterations=1000, preview_every=0, progress=progress, every_step=True,
            )  # fmt: skip
        wait_until(lambda: idle(srv))
        assert seen == [1, 2, 3, 4, 5] and steps[0] < 4000  # the server's loop stopped too
        result = client.dream(IMAGE.encoded, model="lenet", layers="conv2", octaves=1, iterations=2)
        assert result.image.shape == (28, 28, 1)
    with InterpClient(target) as client, counting_steps(srv) as steps, held_at_step(srv, 5) as release:
        with pytest.raises(errors.DeadlineExceeded):  # step 5 waits until the client has seen its deadline pass
            client.visualize_filter("lenet", "conv2", 0, steps=2048, timeout=0.5)
        release.set()
        wait_until(lambda: idle(srv))
    assert 5 <= steps[0] < 2048
