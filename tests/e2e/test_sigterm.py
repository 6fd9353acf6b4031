"""SIGTERM drain against real `interp-server` processes (lenet only, loopback).

On SIGTERM: health turns NOT_SERVING first (a Watch sees it), new calls are refused, the
in-flight stream runs to its final result, and the process exits 0 as soon as that is done (not
after the whole grace period, even with a health watcher connected). Work that outlives the grace
period is cut off and the process still exits 0.

No wall-clock windows: the order of events is checked (NOT_SERVING, then refusals, then the end of
the stream), and the work is bounded by steps: the drained stream must deliver every one of its
steps; the cut one (held by flow control: its client stops reading) must not.
The only time bounds are lower ones (the cut comes no earlier than the grace period, which a slow
machine can only make later) and timeouts that a hang reaches: the long grace period (120 s) is
what the drained process must not wait out.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from protos import interp_pb2 as pb
from protos import interp_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]
SERVER_SCRIPT = Path(sys.executable).parent / "interp-server"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
STREAM_STEPS = 300  # LeNet filter visualization steps in flight when SIGTERM arrives
LONG_GRACE_S = 120.0  # the drained process must exit long before this: when its work is done
SHORT_GRACE_S = 2.0
PREVIEW_SIZE = 64  # a preview every step (~12 KB each) fills the HTTP/2 window and the servicer's
# event queue: a client that does not read holds the server's loop back (measured: it stops at step
# ~75 with the window fixed at 64 KB, NO_BDP), so the stream is surely still running at SIGTERM
NO_BDP = [("grpc.http2.bdp_probe", 0)]  # keep the window from growing to megabytes


class Process:
    """A real server process on a free loopback port, its log in a file."""

    def __init__(self, grace: float, log: Path, *extra: str) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        command = [str(SERVER_SCRIPT)] if SERVER_SCRIPT.exists() else [sys.executable, "-m", "server.app"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("INTERP_")}
        self.log = log
        self.handle = log.open("w")
        self.proc = subprocess.Popen(
            [*command, "--host", "127.0.0.1", "--port", str(self.port), "--models", "lenet",
             "--random-weights", "--grace", str(grace), "--workers", "4", *extra],
            cwd=ROOT, env={**env, "PYTHONUNBUFFERED": "1"}, stdout=self.handle, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.target = f"127.0.0.1:{self.port}"

    def wait_serving(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        with grpc.insecure_channel(self.target) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    pytest.fail(f"server exited with {self.proc.returncode}:\n{self.log.read_text()}")
                try:
                    if health.Check(health_pb2.HealthCheckRequest(), timeout=1).status == SERVING:
                        return
                except grpc.RpcError:
                    time.sleep(0.2)
        pytest.fail(f"server not SERVING within {timeout} s:\n{self.log.read_text()}")

    def close(self) -> None:
        if self.proc.poll() is None:  # a failed test must not leave our server running
            self.proc.kill()
            self.proc.wait(10)
        self.handle.close()


@pytest.fixture(scope="module")
def processes(tmp_path_factory) -> Iterator[tuple[Process, Process]]:
    """Two servers started together (startup is mostly importing torch): a long and a short grace."""
    directory = tmp_path_factory.mktemp("sigterm")
    long_grace = Process(LONG_GRACE_S, directory / "grace-long.log")
    short_grace = Process(SHORT_GRACE_S, directory / "grace-short.log")
    try:
        long_grace.wait_serving()
        short_grace.wait_serving()
        yield long_grace, short_grace
    finally:
        long_grace.close()
        short_grace.close()


def visualize(steps: int, image_size: int | None = None, preview_every: int = 0) -> pb.VisualizeFilterRequest:
    params = pb.VisualizeFilterParams(steps=steps, preview_every=preview_every)
    if image_size is not None:
        params.image_size = image_size
    # every step: the drain test checks that each one of the in-flight stream's steps arrives
    return pb.VisualizeFilterRequest(model="lenet", layer="conv2", channels=[0], params=params, every_step=True)


def refused(call: Callable[[], object], *codes: grpc.StatusCode) -> bool:
    """True when ``call()`` fails UNAVAILABLE, or with one of ``codes`` (the server no longer takes new work)."""
    try:
        call()
    except grpc.RpcError as error:
        if error.code() in (grpc.StatusCode.UNAVAILABLE, *codes):
            return True
        raise
    return False


def eventually(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    """Wait for ``condition()``; the timeout only catches a hang."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout} s")
        time.sleep(0.05)


def test_sigterm_drains_in_flight_work_then_exits_0(processes) -> None:
    server, _ = processes
    channel = grpc.insecure_channel(server.target, options=NO_BDP)
    statuses: list[int] = []
    not_serving = threading.Event()
    watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service="interp.v1.Interp"))

    def follow() -> None:
        try:
            for reply in watch:
                statuses.append(reply.status)
                if reply.status == NOT_SERVING:
                    not_serving.set()
        except grpc.RpcError:
            pass

    threading.Thread(target=follow, daemon=True).start()
    request = visualize(STREAM_STEPS, image_size=PREVIEW_SIZE, preview_every=1)
    stream = interp_pb2_grpc.InterpStub(channel).VisualizeFilter(request, timeout=600)
    events = [next(stream)]  # in flight; and not read further until the drain has begun
    sent = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)

    # health turns NOT_SERVING first: the watcher sees it while the stream is still open
    assert not_serving.wait(60), f"no NOT_SERVING after SIGTERM:\n{server.log.read_text()}"
    assert statuses[0] == SERVING

    # then new work is refused, on a fresh connection and on the existing one
    def fresh_call() -> None:
        with grpc.insecure_channel(server.target) as fresh:
            interp_pb2_grpc.InterpStub(fresh).ListModels(pb.ListModelsRequest(), timeout=10)

    eventually(lambda: refused(fresh_call), "ListModels on a fresh connection refused")
    existing = interp_pb2_grpc.InterpStub(channel).VisualizeFilter
    # A stream opened on the existing connection while gRPC shuts the server down is refused
    # UNAVAILABLE, or CANCELLED when the transport's shutdown reaches it first (a race inside grpc-core).
    new_stream = lambda: next(existing(visualize(3), timeout=10))  # noqa: E731
    eventually(lambda: refused(new_stream, grpc.StatusCode.CANCELLED), "a new stream refused")

    # the in-flight stream runs to its final result: every step, then the result
    events.extend(stream)
    finished = time.monotonic() - sent
    assert [e.progress.step for e in events[:-1]] == list(range(1, STREAM_STEPS + 1))
    result = events[-1].result
    assert events[-1].WhichOneof("event") == "result" and result.layer == "conv2" and len(result.pngs) == 1

    # and the process exits 0 with the work done, although the health watcher is still connected:
    # waiting out the grace period instead would hit this timeout
    returncode = server.proc.wait(timeout=LONG_GRACE_S - 10)
    exited = time.monotonic() - sent
    channel.close()
    print(f"\nSIGTERM: in-flight stream finished at {finished:.1f} s, process exited {returncode} at "
          f"{exited:.1f} s (grace {LONG_GRACE_S:.0f} s)")  # fmt: skip
    assert returncode == 0
    log = server.log.read_text()
    assert "received SIGTERM: draining" in log and "interp-server stopped" in log


def test_work_beyond_the_grace_period_is_cut_off_and_the_exit_is_clean(processes) -> None:
    _, server = processes  # short grace
    steps: list[int] = []
    with grpc.insecure_channel(server.target, options=NO_BDP) as channel:
        # a preview every step and a client that does not read: flow control holds the server's loop
        # (PREVIEW_SIZE), so the work cannot finish within the grace period on any machine
        request = visualize(2048, image_size=PREVIEW_SIZE, preview_every=1)
        stream = interp_pb2_grpc.InterpStub(channel).VisualizeFilter(request, timeout=600)
        steps.append(next(stream).progress.step)
        sent = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=60) == 0  # the server's signal: it cut the work and exited cleanly
        cut = time.monotonic() - sent
        with pytest.raises(grpc.RpcError) as info:
            for event in stream:  # what the transport had buffered, then the end of the connection
                steps.append(event.progress.step)
        assert info.value.code() in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE)
        print(f"\ncut after {cut:.1f} s at step {steps[-1]}/2048 (grace {SHORT_GRACE_S:.0f} s)")
        assert steps[-1] < 2048  # cut off, not finished
        assert cut >= SHORT_GRACE_S  # ran on for the grace period first (a slow machine only adds time)
    server.handle.flush()
    assert "RPC(s) still running were cancelled" in server.log.read_text()  # the operator is told


IDLE_SERVERS = 6


def test_an_idle_server_exits_0_on_every_sigterm(tmp_path) -> None:
    """SIGTERM as soon as the log says "listening", nothing in flight and no client connected, the
    server's defaults otherwise: each process drains, logs "stopped" and exits 0. Before, threads of
    gRPC's C++ core aborted about 3 in 10 such processes during the interpreter's teardown (exit 134,
    "terminate called without an active exception"); without the fix this test failed in 1 of 2
    runs here, so a regression shows within a few CI runs."""
    command = [str(SERVER_SCRIPT)] if SERVER_SCRIPT.exists() else [sys.executable, "-m", "server.app"]
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("INTERP_")}, "PYTHONUNBUFFERED": "1"}
    logs = [tmp_path / f"idle-{i}.log" for i in range(IDLE_SERVERS)]
    procs = []
    try:
        for log in logs:
            with log.open("w") as handle:
                procs.append(subprocess.Popen([*command, "--port", "0", "--models", "lenet"], cwd=ROOT, env=env,
                                              stdout=handle, stderr=subprocess.STDOUT))  # fmt: skip
        for proc, log in zip(procs, logs, strict=True):
            eventually(lambda log=log, proc=proc: "listening on" in log.read_text() or proc.poll() is not None,
                       "the log's 'listening' line", timeout=120)  # fmt: skip
            proc.send_signal(signal.SIGTERM)
        codes = [proc.wait(timeout=60) for proc in procs]
        texts = [log.read_text() for log in logs]
        assert codes == [0] * IDLE_SERVERS, "\n".join(text[-400:] for text in texts)
        assert all("interp-server stopped" in text and "terminate called" not in text for text in texts)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


DRAIN_DELAY_S = 120.0  # longer than any wait below: only a second signal may end it


def test_drain_delay_answers_not_serving_while_still_serving_until_a_second_signal(tmp_path) -> None:
    """--drain-delay: after SIGTERM a health poller (Check on a fresh connection, as a load balancer
    does) reads NOT_SERVING, and a call is still answered; a second signal ends the delay and the
    process drains and exits 0 (long before the delay would have run out)."""
    server = Process(SHORT_GRACE_S, tmp_path / "drain-delay.log", "--drain-delay", str(DRAIN_DELAY_S))
    try:
        server.wait_serving()
        server.proc.send_signal(signal.SIGTERM)

        def not_serving() -> bool:
            with grpc.insecure_channel(server.target) as channel:
                health = health_pb2_grpc.HealthStub(channel)
                return health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == NOT_SERVING

        eventually(not_serving, "health NOT_SERVING during the drain delay")
        with grpc.insecure_channel(server.target) as channel:
            listed = interp_pb2_grpc.InterpStub(channel).ListModels(pb.ListModelsRequest(), timeout=30)
        assert [m.name for m in listed.models] == ["lenet"]  # still serving
        assert server.proc.poll() is None
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=DRAIN_DELAY_S / 2) == 0
        log = server.log.read_text()
        assert "still serving for 120.0s (--drain-delay)" in log and "interp-server stopped" in log
    finally:
        server.close()
