"""Shared plumbing of the ratio benchmarks: an in-process server, timers, statistics, tables.

Every benchmark measures the service and a raw in-process torch baseline doing the same work
in the same process and the same run (same module object from the server's hub, same
``torch.get_num_threads()``), interleaving the two so that drift in machine load (other jobs
on a shared 2-core box) hits both alike.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from server.app import Server, create_server
from server.config import Limits, ServerConfig


@contextmanager
def running_server(models: Sequence[str], **config: object) -> Iterator[tuple[Server, str]]:
    """An in-process server on 127.0.0.1:<free port> serving ``models``.

    vgg16/alexnet get seeded random weights (ImageNet weights cannot be downloaded here; timing
    does not depend on the values); lenet serves its trained checkpoint when one is bundled in
    models/weights/, else random weights too. ``torch_threads=0`` leaves torch's thread count
    as the benchmark process set it, so raw and service runs share it. ``config``: further
    ``ServerConfig`` fields (``datasets={"name": folder}``).
    """
    config = ServerConfig(
        host="127.0.0.1",
        port=0,
        models=tuple(models),
        random_weights=True,
        download_weights=False,  # random weights are what is measured; never the network
        reflection=False,
        log_level="WARNING",
        **{"limits": Limits(default_deadline_s=3600.0), **config},  # type: ignore[arg-type]
    )
    server, port = create_server(config)
    server.start()
    try:
        yield server, f"127.0.0.1:{port}"
    finally:
        server.stop(None)


def parse_bench_args(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None, *, models: str
) -> tuple[argparse.Namespace, list[str]]:
    """Add ``--models`` (default ``models``, comma-separated) and ``--threads`` to ``parser``, parse
    ``argv`` and set torch's thread count; the arguments and the model names."""
    parser.add_argument("--models", default=models)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    return args, [m.strip() for m in args.models.split(",") if m.strip()]


def saliency_reply_stages(
    result: Any, x: torch.Tensor, response: Any, prefix: str = ""
) -> dict[str, Callable[[], object]]:
    """The stages after a gradient saliency is computed, as bench_latency and bench_throughput time
    them: its tensors encoded (``prefix`` names the side), the reply serialized, parsed by the SDK."""
    from client.results import SaliencyResult
    from protos import interp_pb2 as pb
    from server import convert

    data = response.SerializeToString()
    return {
        f"{prefix}3 tensors (map, attribution, input)": lambda: [
            convert.tensor(result.map[0]),
            convert.tensor(result.attribution[0]),
            convert.tensor(x[0]),
        ],
        "serialize the response": response.SerializeToString,
        "SDK: parse the response, to numpy": lambda: SaliencyResult.from_proto(pb.SaliencyResponse.FromString(data)),
    }


def timed(fn: Callable[[], object]) -> float:
    """Wall-clock seconds of one call."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(
    runs: dict[str, Callable[[], object]],
    repeats: int,
    warmup: int = 2,
    setup: dict[str, Callable[[], None]] | None = None,
) -> dict[str, list[float]]:
    """Time each callable ``repeats`` times, round-robin, rotating the order every round.

    Args:
        runs: {name: callable}; only the call is timed.
        repeats: timed calls per callable.
        warmup: untimed rounds first.
        setup: {name: callable} run untimed right before each call of ``runs[name]``.

    Returns:
        {name: [seconds per call]}.
    """
    names = list(runs)
    setup = setup or {}

    def call(name: str) -> float:
        if name in setup:
            setup[name]()
        return timed(runs[name])

    for _ in range(warmup):
        for name in names:
            call(name)
    times: dict[str, list[float]] = {name: [] for name in names}
    for i in range(repeats):
        order = names[i % len(names) :] + names[: i % len(names)]
        for name in order:
            times[name].append(call(name))
    return times


def p50(samples: Sequence[float]) -> float:
    return statistics.median(samples)


def p50_of(fn: Callable[[], object], calls: int) -> float:
    """Median wall-clock seconds of ``calls`` calls of ``fn``, back to back."""
    return p50([timed(fn) for _ in range(calls)])


def p95(samples: Sequence[float]) -> float:
    return float(np.percentile(np.asarray(samples), 95))


def paired_ratio(num: Sequence[float], den: Sequence[float]) -> float:
    """Median of the per-round ratios num[i] / den[i] (rounds are adjacent in time)."""
    return statistics.median(a / b for a, b in zip(num, den, strict=True))


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f}" if seconds < 0.1 else f"{seconds * 1e3:.1f}"


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


@dataclass(frozen=True)
class LoadReport:
    load_1min: tuple[float, float, float]
    threads: int
    cores: int

    def __str__(self) -> str:
        a, b, c = self.load_1min
        return (
            f"machine: {self.cores} cores, load average {a:.2f} / {b:.2f} / {c:.2f} (1/5/15 min); "
            f"torch threads {self.threads} (raw and service: same process)"
        )


def load_report() -> LoadReport:
    return LoadReport(os.getloadavg(), torch.get_num_threads(), os.cpu_count() or 0)


def verdict(value: float, target: float, *, higher_is_better: bool = False) -> str:
    ok = value >= target if higher_is_better else value <= target
    return "met" if ok else "MISSED"
