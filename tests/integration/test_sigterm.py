"""SIGTERM drain against real `interp-server` processes (lenet only, loopback).

On SIGTERM: health turns NOT_SERVING first (a Watch sees it), new calls are refused at once, the
in-flight stream runs to its final result, and the process exits 0 as soon as that is done (not
after the whole grace period, even with a health watcher connected). Work that outlives the grace
period is cut off and the process still exits 0.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
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
STREAM_STEPS = 800  # about 2-3 s of LeNet filter visualization: in flight when SIGTERM arrives


class Process:
    """A real server process on a free loopback port, its log in a file."""

    def __init__(self, grace: float, log: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        command = [str(SERVER_SCRIPT)] if SERVER_SCRIPT.exists() else [sys.executable, "-m", "server.app"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("INTERP_")}
        self.log = log
        self.handle = log.open("w")
        self.proc = subprocess.Popen(
            [*command, "--host", "127.0.0.1", "--port", str(self.port), "--models", "lenet",
             "--random-weights", "--grace", str(grace), "--workers", "4"],
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
    """Two servers started together (startup is mostly importing torch): grace 20 s and grace 2 s."""
    directory = tmp_path_factory.mktemp("sigterm")
    long_grace, short_grace = Process(20.0, directory / "grace20.log"), Process(2.0, directory / "grace2.log")
    try:
        long_grace.wait_serving()
        short_grace.wait_serving()
        yield long_grace, short_grace
    finally:
        long_grace.close()
        short_grace.close()


def visualize(steps: int) -> pb.VisualizeFilterRequest:
    return pb.VisualizeFilterRequest(
        model="lenet", layer="conv2", channels=[0], params=pb.VisualizeFilterParams(steps=steps, preview_every=0)
    )


def test_sigterm_drains_in_flight_work_then_exits_0(processes) -> None:
    server, _ = processes
    channel = grpc.insecure_channel(server.target)
    statuses: list[tuple[float, int]] = []
    watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service="interp.v1.Interp"))

    def follow() -> None:
        try:
            for reply in watch:
                statuses.append((time.monotonic(), reply.status))
        except grpc.RpcError:
            pass

    threading.Thread(target=follow, daemon=True).start()
    stream = interp_pb2_grpc.InterpStub(channel).VisualizeFilter(visualize(STREAM_STEPS), timeout=60)
    events = [next(stream)]
    sent = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)

    # new work is refused at once, on a fresh connection and on the existing one
    time.sleep(0.3)
    with grpc.insecure_channel(server.target) as fresh:
        try:
            status = health_pb2_grpc.HealthStub(fresh).Check(health_pb2.HealthCheckRequest(), timeout=2).status
            assert status == NOT_SERVING
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.UNAVAILABLE
        with pytest.raises(grpc.RpcError) as info:
            interp_pb2_grpc.InterpStub(fresh).ListModels(pb.ListModelsRequest(), timeout=2)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    with pytest.raises(grpc.RpcError) as info:
        next(interp_pb2_grpc.InterpStub(channel).VisualizeFilter(visualize(3), timeout=2))
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    refused_after = time.monotonic() - sent

    # health turned NOT_SERVING first: the watcher saw it right after the signal
    assert statuses and statuses[0][1] == SERVING
    not_serving = [t for t, s in statuses if s == NOT_SERVING]
    assert not_serving and not_serving[0] - sent < 1.0

    # the in-flight stream runs to its final result
    events.extend(stream)
    finished = time.monotonic() - sent
    assert [e.progress.step for e in events[:-1]] == list(range(1, STREAM_STEPS + 1))
    result = events[-1].result
    assert events[-1].WhichOneof("event") == "result" and result.layer == "conv2" and len(result.pngs) == 1

    # and the process exits 0 soon after, although the health watcher is still connected
    returncode = server.proc.wait(timeout=25)
    exited = time.monotonic() - sent
    channel.close()
    print(f"\nSIGTERM: new calls refused within {refused_after:.1f} s, in-flight stream finished at "
          f"{finished:.1f} s, process exited {returncode} at {exited:.1f} s (grace 20 s)")  # fmt: skip
    assert returncode == 0
    assert exited - finished < 8.0 and exited < 20.0  # ended with the work, not with the grace period
    log = server.log.read_text()
    assert "received SIGTERM: draining" in log and "interp-server stopped" in log


def test_work_beyond_the_grace_period_is_cut_off_and_the_exit_is_clean(processes) -> None:
    _, server = processes  # grace 2 s
    with grpc.insecure_channel(server.target) as channel:
        stream = interp_pb2_grpc.InterpStub(channel).VisualizeFilter(visualize(2048), timeout=60)
        next(stream)
        sent = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        with pytest.raises(grpc.RpcError) as info:
            for _event in stream:
                pass
        cut = time.monotonic() - sent
        assert info.value.code() in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE)
        assert 1.5 < cut < 6.0  # ran on for the grace period, then was cut
    assert server.proc.wait(timeout=20) == 0
