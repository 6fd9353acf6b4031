"""Cancelled and expired streams stop the server's work, not just the stream, and free their slot.

Observed server-side on a dedicated lenet server with ONE heavy slot and ONE queue place (a leaked
slot would make the next heavy request wait, then fail): the heavy-running/queued gauges and the
request counter of its Prometheus registry, the stream's worker thread ("interp-<request id>"), and
the CPU the process burns after the cancel compared with while the optimization ran.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator

import cv2
import grpc
import numpy as np
import pytest

from client import InterpClient, errors
from protos import interp_pb2 as pb
from protos import interp_pb2_grpc
from server.app import create_server
from server.config import Limits
from tests.integration.conftest import test_config

DEFAULT_DEADLINE_S = 4.0
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


def wait_until(condition: Callable[[], bool], timeout: float) -> float:
    """Seconds until ``condition()`` held; fails after ``timeout``."""
    start = time.perf_counter()
    while not condition():
        if time.perf_counter() - start > timeout:
            pytest.fail(f"condition not reached within {timeout} s")
        time.sleep(0.01)
    return time.perf_counter() - start


def idle(srv) -> bool:
    return sample(srv, "interp_heavy_running") == 0 and sample(srv, "interp_heavy_queued") == 0 and not workers()


def cpu_rate(seconds: float) -> float:
    """CPU seconds this process used per wall second, over ``seconds``."""
    cpu, wall = time.process_time(), time.perf_counter()
    time.sleep(seconds)
    return (time.process_time() - cpu) / (time.perf_counter() - wall)


def visualize(steps: int) -> pb.VisualizeFilterRequest:
    return pb.VisualizeFilterRequest(
        model="lenet", layer="conv2", channels=[0], params=pb.VisualizeFilterParams(steps=steps, preview_every=0)
    )


def dream(octaves: int, iterations: int) -> pb.DeepDreamRequest:
    return pb.DeepDreamRequest(
        model="lenet",
        image=IMAGE,
        layers=[pb.LayerWeight(layer="conv2")],
        params=pb.DeepDreamParams(octaves=octaves, iterations=iterations, preview_every=0),
    )


def assert_slot_is_free(stub) -> None:
    """A short heavy request runs at once: with one slot, a leaked one would make it wait and fail."""
    events = list(stub.VisualizeFilter(visualize(3), timeout=5))
    assert events[-1].WhichOneof("event") == "result"


def test_client_cancel_stops_the_visualize_filter_loop(served, stub) -> None:
    srv, _ = served
    cancelled_before = sample(srv, "interp_requests_total", method="VisualizeFilter", code="CANCELLED")
    call = stub.VisualizeFilter(visualize(2048), timeout=60)
    busy_cpu, busy_wall = time.process_time(), time.perf_counter()
    last = 0
    for event in call:
        last = event.progress.step
        if last >= 40:
            break
    busy_rate = (time.process_time() - busy_cpu) / (time.perf_counter() - busy_wall)
    assert sample(srv, "interp_heavy_running") == 1 and len(workers()) == 1
    call.cancel()
    stopped_in = wait_until(lambda: idle(srv), timeout=2.0)
    quiet_rate = cpu_rate(0.5)
    print(f"\ncancel at step {last}/2048: server idle {stopped_in * 1000:.0f} ms later; "
          f"CPU {busy_rate:.2f} -> {quiet_rate:.2f} cores")  # fmt: skip
    assert quiet_rate < 0.5 * busy_rate  # the optimization loop is not running on in the background
    wait_until(
        lambda: (
            sample(srv, "interp_requests_total", method="VisualizeFilter", code="CANCELLED") == cancelled_before + 1
        ),
        timeout=2.0,
    )
    assert_slot_is_free(stub)


def test_deadline_stops_deepdream_mid_run(served, stub) -> None:
    srv, _ = served
    expired_before = sample(srv, "interp_requests_total", method="DeepDream", code="DEADLINE_EXCEEDED")
    steps, start = [], time.perf_counter()
    with pytest.raises(grpc.RpcError) as info:
        for event in stub.DeepDream(dream(octaves=4, iterations=1000), timeout=1.5):
            steps.append(event.progress.step)
    elapsed = time.perf_counter() - start
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert steps and 0 < steps[-1] < 4000 and elapsed < 3.0  # progress was flowing when the deadline hit
    stopped_in = wait_until(lambda: idle(srv), timeout=2.0)
    print(f"\ndeadline after {len(steps)} progress events (step {steps[-1]}/4000, "
          f"{steps[-1] / elapsed:.0f} steps/s): server idle {stopped_in * 1000:.0f} ms later")  # fmt: skip
    wait_until(
        lambda: (
            sample(srv, "interp_requests_total", method="DeepDream", code="DEADLINE_EXCEEDED") == expired_before + 1
        ),
        timeout=2.0,
    )
    final = list(stub.DeepDream(dream(octaves=1, iterations=2), timeout=10))
    assert final[-1].WhichOneof("event") == "result"


def test_server_default_deadline_stops_a_stream_without_a_client_deadline(served, stub) -> None:
    srv, _ = served
    start = time.perf_counter()
    with pytest.raises(grpc.RpcError) as info:
        for _event in stub.VisualizeFilter(visualize(2048)):  # no client deadline: the server's applies
            pass
    elapsed = time.perf_counter() - start
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "default deadline" in info.value.details() and "of 2048 steps" in info.value.details()
    assert DEFAULT_DEADLINE_S - 0.5 < elapsed < DEFAULT_DEADLINE_S + 3.0
    wait_until(lambda: idle(srv), timeout=2.0)
    assert_slot_is_free(stub)


def test_cancel_while_queued_leaves_the_queue(served, stub) -> None:
    srv, _ = served
    running = stub.VisualizeFilter(visualize(2048), timeout=30)
    assert next(running).progress.step >= 1
    queued = stub.VisualizeFilter(visualize(3), timeout=30)  # the call starts now, and waits for the slot
    wait_until(lambda: sample(srv, "interp_heavy_queued") == 1, timeout=2.0)
    with pytest.raises(grpc.RpcError) as info:  # one running, one queued: the next is refused at once
        list(stub.VisualizeFilter(visualize(3), timeout=5))
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "retry later" in info.value.details()
    queued.cancel()
    wait_until(lambda: sample(srv, "interp_heavy_queued") == 0, timeout=1.0)
    waiting = stub.VisualizeFilter(visualize(3), timeout=30)  # the freed queue place is usable
    wait_until(lambda: sample(srv, "interp_heavy_queued") == 1, timeout=2.0)
    running.cancel()
    assert list(waiting)[-1].WhichOneof("event") == "result"  # got the slot once the runner stopped
    wait_until(lambda: idle(srv), timeout=2.0)


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
    with InterpClient(target, timeout=30) as client:
        with pytest.raises(Enough):
            client.dream(
                cv2.imdecode(image, cv2.IMREAD_GRAYSCALE), model="lenet", layers={"conv2": 1.0},
                octaves=4, iterations=1000, preview_every=0, progress=progress,
            )  # fmt: skip
        wait_until(lambda: idle(srv), timeout=2.0)
        assert seen == [1, 2, 3, 4, 5]
        result = client.dream(IMAGE.encoded, model="lenet", layers="conv2", octaves=1, iterations=2)
        assert result.image.shape == (28, 28, 1)
    with InterpClient(target) as client, pytest.raises(errors.DeadlineExceeded):
        client.visualize_filter("lenet", "conv2", 0, steps=2048, timeout=0.5)
    wait_until(lambda: idle(srv), timeout=2.0)
