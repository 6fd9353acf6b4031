"""Issue 13 micro-batching: 8 concurrent single-image clients (separate processes), batching on vs off.

What is measured, in one run and one server process per mode (same config but the batching):

Phases are interleaved round-robin (serial, off, on; order rotated every round; both servers
and all client processes stay up) so that drift in machine load hits the three alike; the table
gives each mode's median throughput over rounds, its ratio to serial and the median of the
per-round ratios (paired), and p50/p95 over all of its calls.

- **serial**: one client process calling in a loop (the server sees one call at a time: with
  batching on, each is a batch of one and starts at once);
- **8 clients, batching off / on**: eight client processes (``benchmarks/_clients.py``: the SDK
  only, no torch), released together once all are warmed up, each making the
  same number of calls in a closed loop. Throughput = all calls / wall time from the barrier to
  the last answer (monotonic clock, shared by the processes); p50/p95 over every call's latency.

Cases: AlexNet (seeded random weights) ``gradient`` Saliency on the chelsea cat (224-px uint8
array, the SDK's numpy path) and LeNet (trained) Classify on a Fashion-MNIST test image. Targets
(issue 13): AlexNet with batching ≥ 2× serial throughput and p95 ≤ 3× p50; LeNet Classify ≥ 1.5×
serial. Then where one LeNet Classify call's time goes (p50 of each server stage timed alone,
interleaved with the whole SDK call; the remainder is gRPC: transfer, HTTP/2 framing,
interceptors, thread hand-offs).

Usage: ``.venv/bin/python -m benchmarks.bench_batching [--calls-alexnet 24] [--calls-lenet 300]``.
About 3 minutes on 2 idle cores.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks._clients import Clients
from benchmarks._common import interleaved, load_report, ms, p50, p95, parse_bench_args, running_server, table
from server.app import Server
from server.config import Limits

CLIENTS = 8
TARGETS = {"alexnet": 2.0, "lenet": 1.5}
P95_OVER_P50 = 3.0


def serving(models: tuple[str, ...], batching: bool) -> AbstractContextManager[tuple[Server, str]]:
    limits = Limits(default_deadline_s=3600.0, batch_delay_ms=2.0 if batching else 0.0)
    return running_server(models, worker_threads=CLIENTS + 2, limits=limits)


def _image(model: str) -> np.ndarray:
    from benchmarks.bench_latency import cat_crop, fashion_image

    return fashion_image() if model == "lenet" else cat_crop()


def case_rows(model: str, calls: int, rounds: int, label: str) -> list[list[object]]:
    """Serial, 8 clients batching off and 8 clients batching on, interleaved over ``rounds``."""
    rpc = "classify" if model == "lenet" else "saliency"
    phases: dict[str, list[dict[str, Any]]] = {"serial": [], "off": [], "on": []}
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        np.save(tmp / "image.npy", _image(model))
        servers = {
            "off": stack.enter_context(serving((model,), False)),
            "on": stack.enter_context(serving((model,), True)),
        }
        one = stack.enter_context(Clients(model, rpc, tmp / "image.npy", 1))
        many = stack.enter_context(Clients(model, rpc, tmp / "image.npy", CLIENTS))
        runs: dict[str, Callable[[], dict[str, Any]]] = {
            "serial": lambda: one.run(servers["off"][1], calls * 2),
            "off": lambda: many.run(servers["off"][1], calls),
            "on": lambda: many.run(servers["on"][1], calls),
        }
        names = list(runs)
        for r in range(rounds):
            for name in names[r % 3 :] + names[: r % 3]:
                phases[name].append(runs[name]())
        stats = servers["on"][0].servicer.batcher.stats
    serial = statistics.median(p["throughput"] for p in phases["serial"])
    rows = []
    for name, what in (
        ("serial", "serial (1 client)"),
        ("off", f"{CLIENTS} clients, batching off"),
        ("on", f"{CLIENTS} clients, batching on"),
    ):
        throughput = statistics.median(p["throughput"] for p in phases[name])
        paired = statistics.median(
            p["throughput"] / s["throughput"] for p, s in zip(phases[name], phases["serial"], strict=True)
        )
        lat = [t for p in phases[name] for t in p["latencies"]]
        goal = status = ""
        if name == "on":
            goal = f"≥ {TARGETS[model]:g}× serial" + (f", p95 ≤ {P95_OVER_P50:g}× p50" if model == "alexnet" else "")
            ok = paired >= TARGETS[model] and (model != "alexnet" or p95(lat) <= P95_OVER_P50 * p50(lat))
            status = "met" if ok else "MISSED"
        rows.append(
            [
                label,
                what,
                f"{throughput:.1f}",
                f"{throughput / serial:.2f} (paired {paired:.2f})",
                ms(p50(lat)),
                ms(p95(lat)),
                f"{p95(lat) / p50(lat):.2f}",
                goal,
                status,
                len(lat),
            ]
        )
    mean = stats.calls / max(1, stats.batches)
    median = statistics.median(stats.sizes) if stats.sizes else 0
    sizes = (
        f"batching on: {stats.calls} calls in {stats.batches} batches "
        f"(mean {mean:.1f}, median {median:g}, largest {stats.largest})"
    )
    rows.append([label, sizes, "", "", "", "", "", "", "", ""])
    return rows


def classify_breakdown(rounds: int) -> list[list[object]]:
    """Where one LeNet Classify call's time goes: each server stage timed alone, p50 ms."""
    from client import InterpClient
    from client.images import image_message
    from client.results import ClassifyResult
    from protos import interp_pb2 as pb
    from server import convert
    from server.imaging import load_input

    image = _image("lenet")
    with serving(("lenet",), True) as (server, target), InterpClient(target, timeout=600) as client:
        servicer = server.servicer
        loaded = servicer.hub.get("lenet")
        module = loaded.require_ready()
        spec, max_pixels = loaded.spec.preprocessing, servicer.limits.max_image_pixels
        request = pb.ClassifyRequest(model="lenet", image=image_message(image))
        response = client._stub.Classify(request)
        data = response.SerializeToString()
        x = load_input(request.image, spec, max_pixels)

        def compute(x: torch.Tensor, extras: list[object], should_stop: Callable[[], bool]) -> list[torch.Tensor]:
            with torch.inference_mode():
                return list(module(x))

        never = lambda: False  # noqa: E731
        logits = compute(x, [None], never)[0]
        from server.context import Ctx

        stages: dict[str, Callable[[], object]] = {
            "SDK: build the request (numpy image -> message)": lambda: pb.ClassifyRequest(
                model="lenet", image=image_message(image)
            ),
            "decode budget (header cost + reserve/release)": lambda: _reserve(
                servicer, request.image, spec, max_pixels
            ),
            "decode + preprocess the image": lambda: load_input(request.image, spec, max_pixels),
            "forward (batch of 1, through the batcher's compute)": lambda: compute(x, [None], never),
            "softmax + top-5": lambda: torch.softmax(logits, dim=0).topk(5),
            "input echo (tensor + PNG)": lambda: Ctx.input_message(x),
            "logits tensor": lambda: convert.tensor(logits),
            "serialize the response": response.SerializeToString,
            "SDK: parse the response, to numpy": lambda: ClassifyResult.from_proto(
                pb.ClassifyResponse.FromString(data)
            ),
        }
        runs = {"SDK call (whole)": lambda: client.classify(image, model="lenet"), **stages}
        t = {k: p50(v) for k, v in interleaved(runs, rounds).items()}
    total = t.pop("SDK call (whole)")
    rows = [[k, ms(v)] for k, v in t.items()]
    rows.append(["sum of the stages above", ms(sum(t.values()))])
    rows.append(["SDK call (whole)", ms(total)])
    rows.append(
        [
            "remainder: gRPC (transfer, HTTP/2, interceptors, thread hand-offs), servicer glue",
            ms(total - sum(t.values())),
        ]
    )
    rows.append([f"(response size {len(data):,} bytes)", ""])
    return rows


def _reserve(servicer: Any, image: Any, spec: Any, max_pixels: int) -> None:
    from server.imaging import decode_cost

    with servicer.decode_budget.reserve(decode_cost(image, spec, max_pixels), "image", lambda: True, float("inf")):
        pass


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls-alexnet", type=int, default=8, help="calls per client process and round")
    parser.add_argument("--calls-lenet", type=int, default=100, help="calls per client process and round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of serial / off / on")
    parser.add_argument("--rounds-breakdown", type=int, default=300)
    args, models = parse_bench_args(parser, argv, models="alexnet,lenet")
    print(f"before: {load_report()}")
    rows: list[list[object]] = []
    if "alexnet" in models:
        rows += case_rows("alexnet", args.calls_alexnet, args.rounds, "alexnet gradient Saliency (random weights)")
    if "lenet" in models:
        rows += case_rows("lenet", args.calls_lenet, args.rounds, "lenet Classify (trained)")
    breakdown = classify_breakdown(args.rounds_breakdown) if "lenet" in models else []
    print(f"after: {load_report()}")
    print()
    print(f"### Micro-batching: {CLIENTS} concurrent single-image client processes vs serial")
    print()
    header = ["case", "mode", "calls/s", "÷ serial", "p50 ms", "p95 ms", "p95 ÷ p50", "target", "status", "calls"]
    print(table(header, rows))
    if breakdown:
        print()
        print("### Where a LeNet Classify call's time goes (p50 of each stage timed alone, interleaved)")
        print()
        print(table(["stage", "ms"], breakdown))


if __name__ == "__main__":
    main()
