"""Coalesced progress: streamed calls send the first and last step (and previews) and at most
``progress_events_per_s`` others a second; ``every_step`` restores one event per step.

Counted, never timed: a server whose rate is 1e-6 events/s sends the first and the last step only,
whatever the machine's speed; with ``every_step`` (raw stub, SDK, CLI) or a rate of 0 every step
arrives, in order.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from client import InterpClient, cli
from client.sdk import build_request
from protos import interp_pb2 as pb
from protos import interp_pb2_grpc
from protos.methods import METHODS, STREAM_OPTION, by_command
from server.app import create_server
from server.config import Limits
from tests.support.servers import test_config

STEPS = 12


def _serve(rate: float) -> Iterator[str]:
    limits = Limits(max_concurrent_heavy=1, max_queued_heavy=4, default_deadline_s=120.0, progress_events_per_s=rate)
    srv, port = create_server(test_config(models=("lenet",), limits=limits))
    srv.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        srv.stop(None)


@pytest.fixture(scope="module")
def slow_rate() -> Iterator[str]:
    yield from _serve(1e-6)


@pytest.fixture(scope="module")
def no_coalescing() -> Iterator[str]:
    yield from _serve(0.0)


def _visualize(every_step: bool | None = None, preview_every: int = 0) -> pb.VisualizeFilterRequest:
    request = pb.VisualizeFilterRequest(
        model="lenet",
        layer="conv2",
        channels=[0],
        params=pb.VisualizeFilterParams(steps=STEPS, restarts=1, preview_every=preview_every),
    )
    if every_step is not None:
        request.every_step = every_step
    return request


def _steps(target: str, request: pb.VisualizeFilterRequest) -> list[int]:
    with grpc.insecure_channel(target) as channel:
        events = list(interp_pb2_grpc.InterpStub(channel).VisualizeFilter(request, timeout=120))
    assert events[-1].WhichOneof("event") == "result"
    return [e.progress.step for e in events[:-1] if not e.progress.queued_position]


def test_every_streamed_request_has_the_option() -> None:
    streamed = [m for m in METHODS if m.streamed]
    assert len(streamed) >= 5
    for method in streamed:
        assert method.request.DESCRIPTOR.fields_by_name[STREAM_OPTION].type == 8  # TYPE_BOOL


def test_a_very_low_rate_sends_the_first_and_the_last_step(slow_rate) -> None:
    assert _steps(slow_rate, _visualize()) == [1, STEPS]
    assert _steps(slow_rate, _visualize(every_step=False)) == [1, STEPS]


def test_the_latest_preview_rides_on_the_last_event(slow_rate) -> None:
    with grpc.insecure_channel(slow_rate) as channel:
        request = _visualize(preview_every=5)
        events = list(interp_pb2_grpc.InterpStub(channel).VisualizeFilter(request, timeout=120))
    progress = [e.progress for e in events[:-1]]
    assert [(p.step, p.preview_step, bool(p.preview_png)) for p in progress] == [(1, 0, False), (STEPS, 10, True)]


def test_every_step_on_request_sends_every_step(slow_rate) -> None:
    assert _steps(slow_rate, _visualize(every_step=True)) == list(range(1, STEPS + 1))


def test_a_rate_of_zero_sends_every_step(no_coalescing) -> None:
    assert _steps(no_coalescing, _visualize()) == list(range(1, STEPS + 1))


def test_deepdream_is_coalesced_too(slow_rate) -> None:
    with InterpClient(slow_rate, timeout=120) as client:
        image = client.visualize_filter("lenet", "conv2", [0], steps=2, restarts=1).images[0]
        events: list = []
        client.dream(
            image, model="lenet", layers=["conv2"], octaves=2, iterations=5, preview_every=0, progress=events.append
        )
        assert [e.step for e in events] == [1, 10]
        events.clear()
        client.dream(
            image,
            model="lenet",
            layers=["conv2"],
            octaves=2,
            iterations=5,
            preview_every=0,
            progress=events.append,
            every_step=True,
        )
        assert [e.step for e in events] == list(range(1, 11))


def test_sdk_every_step(slow_rate) -> None:
    events: list = []
    with InterpClient(slow_rate, timeout=120) as client:
        client.visualize_filter("lenet", "conv2", [0], steps=STEPS, restarts=1, preview_every=0,
                                progress=events.append, every_step=True)  # fmt: skip
    assert [e.step for e in events] == list(range(1, STEPS + 1))


def test_cli_every_step_option_reaches_the_request() -> None:
    method = by_command("visualize")
    args = cli.build_parser().parse_args(
        ["visualize", "lenet", "conv2", "--channel", "0", "-o", "v.png", "--every-step"]
    )
    values, params = cli._request_values(method, args)
    assert build_request(method, values, params, "visualize").every_step is True
    args = cli.build_parser().parse_args(["visualize", "lenet", "conv2", "--channel", "0", "-o", "v.png"])
    values, params = cli._request_values(method, args)
    assert not build_request(method, values, params, "visualize").HasField("every_step")
