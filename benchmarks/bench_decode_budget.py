"""Issue 13 memory budget: 16 concurrent 40-Mpx 16-bit PNG requests against a 1 GB decode budget.

A real ``interp-server`` process (``python -m server.app``: LeNet, ``--decode-budget-mb 1000``,
``--workers 24`` so that 16 waiting heavy calls leave gRPC workers for light ones) gets, at once,
16 Classify requests each carrying the same 40-Mpx (7296 x 5480) 16-bit RGB PNG (a photo
upscaled in blocks, so it stays a few MB on the wire), sent from threads of this process. Meanwhile
a separate client process calls LeNet Classify on a 28-px image in a closed loop.

Reported: the server's resident memory before the load and its peak during it (VmRSS polled
every 20 ms and the kernel's high-water mark VmHWM), so the growth; every big call's outcome;
the light calls' p50/p95 during the load and alone before it. Targets (issue 13): RSS growth
≤ 1.5 GB, every call OK or RESOURCE_EXHAUSTED, LeNet Classify p95 during the load ≤ 50 ms.

Usage: ``.venv/bin/python -m benchmarks.bench_decode_budget``. About a minute on 2 idle cores.
It holds up to about 1 GB more memory while it runs; run it once.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from benchmarks._clients import Clients
from benchmarks._common import load_report, ms, p50, p95, table

ROOT = Path(__file__).resolve().parent.parent
WIDTH, HEIGHT = 7296, 5480  # 39.98 Mpx: just under the default max_image_pixels (40 M)
BIG_CALLS = 16
BUDGET_MB = 1000
RSS_TARGET_GB = 1.5
P95_TARGET_S = 0.050


def big_png() -> bytes:
    from skimage import data

    cat = cv2.cvtColor(data.chelsea(), cv2.COLOR_RGB2BGR)
    big = cv2.resize(cat, (WIDTH, HEIGHT), interpolation=cv2.INTER_NEAREST).astype(np.uint16) * 257
    ok, buffer = cv2.imencode(".png", big, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise RuntimeError("cannot encode the test image")
    return buffer.tobytes()


def memory_mb(pid: int, field: str) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no {field} for process {pid}")


def light_calls(target: str, during: Any) -> list[float]:
    """LeNet Classify latencies from a separate client process while ``during()`` runs."""
    from benchmarks.bench_latency import fashion_image

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "image.npy"
        np.save(path, fashion_image())
        with Clients("lenet", "classify", path, 1) as client:
            client.start(target, 0)
            try:
                during()
            finally:
                client.stop()
            return client.results()[0]["latencies"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budget-mb", type=float, default=BUDGET_MB)
    parser.add_argument("--calls", type=int, default=BIG_CALLS)
    args = parser.parse_args(argv)
    import grpc

    from protos import interp_pb2 as pb
    from protos import interp_pb2_grpc

    print(f"before: {load_report()}")
    png = big_png()
    print(f"test image: {WIDTH}x{HEIGHT} 16-bit RGB PNG, {len(png) / 1e6:.1f} MB")
    port_file = Path(f"/tmp/bench_decode_budget_{os.getpid()}.log")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env = {k: v for k, v in env.items() if not k.startswith("INTERP_")}
    port = free_port()
    cmd = [sys.executable, "-m", "server.app", "--models", "lenet", "--port", str(port), "--workers", "24",
           "--decode-budget-mb", str(args.budget_mb), "--reflection", "0", "--log-level", "WARNING",
           "--default-deadline", "300"]  # fmt: skip
    with open(port_file, "w") as log:
        server = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    target = f"127.0.0.1:{port}"
    try:
        channel = grpc.insecure_channel(target, options=[("grpc.max_send_message_length", 64 << 20)])
        grpc.channel_ready_future(channel).result(timeout=120)
        stub = interp_pb2_grpc.InterpStub(channel)
        stub.Classify(pb.ClassifyRequest(model="lenet", image=pb.Image(encoded=_small_png())), timeout=60)
        alone = light_calls(target, lambda: time.sleep(5))
        base = memory_mb(server.pid, "VmRSS")
        peak = [base]
        outcomes: list[str] = []
        done = threading.Event()

        def watch() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], memory_mb(server.pid, "VmRSS"))
                done.wait(0.02)

        def load() -> None:
            request = pb.ClassifyRequest(model="lenet", image=pb.Image(encoded=png))
            futures = [stub.Classify.future(request, timeout=280) for _ in range(args.calls)]
            for future in futures:
                try:
                    future.result()
                    outcomes.append("OK")
                except grpc.RpcError as error:
                    outcomes.append(error.code().name)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        start = time.perf_counter()
        during = light_calls(target, load)
        wall = time.perf_counter() - start
        done.set()
        watcher.join()
        hwm = memory_mb(server.pid, "VmHWM")
        channel.close()
    finally:
        server.terminate()
        server.wait(60)
        port_file.unlink(missing_ok=True)
    print(f"after: {load_report()}")
    growth_gb = (max(peak[0], hwm) - base) / 1024.0
    counts = {name: outcomes.count(name) for name in sorted(set(outcomes))}
    ok_outcomes = set(outcomes) <= {"OK", "RESOURCE_EXHAUSTED"}
    rows = [
        ["server RSS before the load", f"{base:,.0f} MB", "", ""],
        ["server RSS peak (polled / VmHWM)", f"{peak[0]:,.0f} / {hwm:,.0f} MB", "", ""],
        [
            "RSS growth",
            f"{growth_gb:.2f} GB",
            f"≤ {RSS_TARGET_GB} GB",
            "met" if growth_gb <= RSS_TARGET_GB else "MISSED",
        ],
        [
            f"{args.calls} big calls' outcomes ({wall:.1f} s)",
            str(counts),
            "OK or RESOURCE_EXHAUSTED",
            "met" if ok_outcomes else "MISSED",
        ],  # fmt: skip
        ["LeNet Classify alone p50 / p95", f"{ms(p50(alone))} / {ms(p95(alone))} ms ({len(alone)} calls)", "", ""],
        [
            "LeNet Classify during the load p50 / p95",
            f"{ms(p50(during))} / {ms(p95(during))} ms ({len(during)} calls)",
            f"p95 ≤ {P95_TARGET_S * 1e3:.0f} ms",
            "met" if p95(during) <= P95_TARGET_S else "MISSED",
        ],  # fmt: skip
    ]
    print()
    print(f"### Decode budget {args.budget_mb:g} MB: {args.calls} concurrent 40-Mpx 16-bit PNG Classify calls")
    print()
    print(table(["what", "measured", "target", "status"], rows))


def _small_png() -> bytes:
    return cv2.imencode(".png", np.zeros((28, 28), np.uint8))[1].tobytes()


def free_port() -> int:
    """A free TCP port on loopback (released again for the server to bind)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


if __name__ == "__main__":
    main()
