"""A benchmark client process: the SDK only (no torch), driven over stdin/stdout by a benchmark.

``python -m benchmarks._clients TARGET MODEL RPC IMAGE.npy CALLS`` warms up (2 calls), prints
``ready``, waits for a line on stdin, then makes CALLS calls in a closed loop (CALLS 0: until a
second line arrives on stdin) and prints one JSON line: ``{"end": monotonic seconds,
"latencies": [...]}``. RPC is ``classify`` or ``saliency`` (gradient). A separate process per
client keeps the client side out of the measured process (its own GIL, its own cores' share).
"""

from __future__ import annotations

import json
import select
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from client import InterpClient

ROOT = Path(__file__).resolve().parent.parent


def _call(client: InterpClient, model: str, rpc: str, image: np.ndarray) -> Callable[[], object]:
    if rpc == "classify":
        return lambda: client.classify(image, model=model)
    if rpc == "saliency":
        return lambda: client.saliency(image, model=model, method="gradient")
    raise SystemExit(f"unknown rpc {rpc!r}")


def main(argv: list[str]) -> None:
    target, model, rpc, image_path, calls = argv[0], argv[1], argv[2], argv[3], int(argv[4])
    image = np.load(image_path)
    with InterpClient(target, timeout=600) as client:
        call = _call(client, model, rpc, image)
        for _ in range(2):
            call()
        print("ready", flush=True)
        sys.stdin.readline()
        latencies = []
        while calls == 0 or len(latencies) < calls:
            start = time.perf_counter()
            call()
            latencies.append(time.perf_counter() - start)
            if calls == 0 and select.select([sys.stdin], [], [], 0)[0]:
                break
        print(json.dumps({"end": time.monotonic(), "latencies": latencies}), flush=True)


class Clients:
    """``count`` client processes, started and warmed up; :meth:`go` releases them together."""

    def __init__(self, target: str, model: str, rpc: str, image_path: Path, calls: int, count: int) -> None:
        import os

        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        command = [sys.executable, "-m", "benchmarks._clients", target, model, rpc, str(image_path), str(calls)]
        self.procs = [
            subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT, env=env)
            for _ in range(count)
        ]
        for proc in self.procs:
            line = proc.stdout.readline() if proc.stdout else ""
            if line.strip() != "ready":
                raise RuntimeError(f"a client process did not start (exit {proc.poll()})")

    def go(self) -> float:
        for proc in self.procs:
            if proc.stdin:
                proc.stdin.write("go\n")
                proc.stdin.flush()
        return time.monotonic()

    def stop(self) -> None:
        for proc in self.procs:
            if proc.stdin:
                proc.stdin.write("stop\n")
                proc.stdin.flush()

    def results(self) -> list[dict[str, Any]]:
        out = []
        for proc in self.procs:
            line = proc.stdout.readline() if proc.stdout else ""
            proc.wait(600)
            out.append(json.loads(line))
        return out


if __name__ == "__main__":
    main(sys.argv[1:])
