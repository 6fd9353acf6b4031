"""Benchmark client processes: the SDK only (no torch), driven over stdin/stdout by a benchmark.

``python -m benchmarks._clients MODEL RPC IMAGE.npy`` then reads commands, one a line:
``TARGET CALLS`` connects to TARGET (once; the connection is kept), makes one warm-up call,
prints ``ready`` and waits for a line; then makes CALLS calls in a closed loop (CALLS 0: until a
further line arrives) and prints one JSON line ``{"end": monotonic seconds, "latencies": [...]}``.
``quit`` ends the process. RPC is ``classify`` or ``saliency`` (gradient). A process per client
keeps the client side out of the measured process (its own GIL); the same processes serve every
phase of a benchmark, so phases can be interleaved cheaply.
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
    model, rpc, image = argv[0], argv[1], np.load(argv[2])
    clients: dict[str, InterpClient] = {}
    try:
        for line in sys.stdin:
            if line.strip() == "quit":
                break
            target, calls_text = line.split()
            calls = int(calls_text)
            if target not in clients:
                clients[target] = InterpClient(target, timeout=600)
            call = _call(clients[target], model, rpc, image)
            call()
            print("ready", flush=True)
            sys.stdin.readline()
            latencies = []
            while calls == 0 or len(latencies) < calls:
                start = time.perf_counter()
                call()
                latencies.append(time.perf_counter() - start)
                if calls == 0 and select.select([sys.stdin], [], [], 0)[0]:
                    sys.stdin.readline()
                    break
            print(json.dumps({"end": time.monotonic(), "latencies": latencies}), flush=True)
    finally:
        for client in clients.values():
            client.close()


class Clients:
    """``count`` client processes for one model and RPC; :meth:`run` is one phase against a target."""

    def __init__(self, model: str, rpc: str, image_path: Path, count: int) -> None:
        import os

        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        command = [sys.executable, "-m", "benchmarks._clients", model, rpc, str(image_path)]
        self.procs = [
            subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT, env=env)
            for _ in range(count)
        ]

    def _send(self, line: str) -> None:
        for proc in self.procs:
            if proc.stdin:
                proc.stdin.write(line + "\n")
                proc.stdin.flush()

    def start(self, target: str, calls: int) -> float:
        """Warm every client up on ``target``, then release them together; returns the release time."""
        self._send(f"{target} {calls}")
        for proc in self.procs:
            line = proc.stdout.readline() if proc.stdout else ""
            if line.strip() != "ready":
                raise RuntimeError(f"a client process failed (exit {proc.poll()})")
        self._send("go")
        return time.monotonic()

    def stop(self) -> None:
        """End an open-ended phase (``calls`` 0)."""
        self._send("stop")

    def results(self) -> list[dict[str, Any]]:
        return [json.loads(proc.stdout.readline()) for proc in self.procs if proc.stdout]

    def run(self, target: str, calls: int) -> dict[str, Any]:
        """One closed-loop phase: throughput (all calls / wall time from release to last answer), latencies."""
        start = self.start(target, calls)
        results = self.results()
        latencies = [t for r in results for t in r["latencies"]]
        return {"throughput": len(latencies) / (max(r["end"] for r in results) - start), "latencies": latencies}

    def close(self) -> None:
        self._send("quit")
        for proc in self.procs:
            proc.wait(60)

    def __enter__(self) -> Clients:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


if __name__ == "__main__":
    main(sys.argv[1:])
