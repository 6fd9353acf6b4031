"""The service's own cost per call: service p50 − bare gRPC echo p50 − raw computation p50.

Small LeNet calls through the SDK, where the service's own work (not the model's) is what a user
waits for. Three processes' worth of parts, two processes:

- **the server process** (``--serve`` mode of this module, started by the benchmark): the service
  as ``interp-server --random-weights --models lenet`` builds it (LeNet serves its bundled
  checkpoint when there is one), and beside it, on its own port, a **bare echo**: a plain Python
  gRPC server (same thread-pool size) whose unary methods answer the request bytes with fixed
  bytes, no (de)serialization; on the same server, a **bare computing** method per variant that
  runs the raw computation (below) on the same weights before it answers the same bytes;
- **this process**: the SDK client, the echo client (a raw-bytes unary call carrying the exact
  bytes the SDK sent and the service answered), and the **raw computation** on the same module
  weights and preprocessed input, torch at one thread: Classify = forward, softmax, top-k; Saliency
  = captum ``Saliency`` (abs) for the predicted class (one forward and one backward, max over
  colour channels, softmax); Activations = the forward truncated at the layer.

The service's own cost = service p50 − echo p50 − raw p50, per round; a round is ``--calls``
calls of each (service, echo, raw, bare computing) for every variant in turn, the variant order rotated every
round; the figure is the median over ``--rounds`` rounds, with the spread (min–max over rounds)
and the load average printed. The answers are checked against the raw computation first, so
both sides do the same work.

Second table: the bare computing server against the echo and the raw loop. What it costs over
echo + raw is there without any service code (a computation runs slower between network waits
than in a tight loop, and gRPC answers a handler that computed later than one that did not);
service − bare computing server is what the service's code adds.

Third table, ``--breakdown``: one call's life in stages, each timed alone in this process
(p50 over ``--calls`` repetitions, interleaved): the client's request building and parsing, the
(de)serialization, the interceptors, the shared path (model lookup, field and cap checks), the
decode, the handler (which includes the computation), the stamp. What it does not cover is
gRPC itself: the echo is that.

Run: ``python -m benchmarks.bench_call_cost [--rounds 5] [--calls 1000] [--breakdown]``.
About 4 minutes at the defaults on 2 idle cores.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np
import torch

from benchmarks._common import load_report, p50_of, running_server, table
from benchmarks.bench_latency import fashion_image, raw_saliency
from client import InterpClient
from interp.hooks import run_until
from server.config import Limits

TARGETS_MS = {"classify": 0.4, "saliency": 0.4, "activations": 0.4, "activations_grid": 1.0}
ECHO_SERVICE = "bench.Echo"
SERIES = ("service", "echo", "raw", "bare")
"""Timed per round: the SDK call, the bare echo, the raw loop, the bare server computing the raw work."""


@dataclass
class Variant:
    name: str
    label: str
    rpc: str
    service: Callable[[], Any]
    raw: Callable[[], Any]
    request: bytes = b""
    reply: bytes = b""


# -- the server process -------------------------------------------------------------------------


def serve(batch_max_size: int) -> None:
    """Serve LeNet, the echo and the bare computing server; print the ports as one JSON line;
    stop when stdin closes."""
    replies: dict[str, bytes] = {}

    def configure(request: bytes, context: Any) -> bytes:
        name, _, reply = request.partition(b"\0")
        replies[name.decode()] = reply
        return b""

    def echo(name: str) -> grpc.RpcMethodHandler:
        return grpc.unary_unary_rpc_method_handler(lambda request, context: replies[name])

    def computing(name: str, raw: Callable[[], Any]) -> grpc.RpcMethodHandler:
        def behaviour(request: bytes, context: Any) -> bytes:
            # Per call, as the raw loop (a thread takes the process's count when it first computes);
            # restored, so that the service's threads keep theirs.
            before = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                raw()
            finally:
                torch.set_num_threads(before)
            return replies[name]

        return grpc.unary_unary_rpc_method_handler(behaviour)

    limits = Limits(default_deadline_s=3600.0, batch_max_size=batch_max_size)
    with running_server(["lenet"], limits=limits) as (server, target):
        module = server.servicer.hub.ready("lenet").module
        x = torch.from_numpy(fashion_image().astype(np.float32) / 255).view(1, 1, 28, 28)
        handlers = {"Configure": grpc.unary_unary_rpc_method_handler(configure)}
        handlers.update({name: echo(name) for name in TARGETS_MS})
        handlers.update({f"{name}_computed": computing(name, raw) for name, raw in raw_computations(module, x).items()})
        workers = server.servicer.config.worker_threads
        echo_server = grpc.server(ThreadPoolExecutor(workers))
        echo_server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(ECHO_SERVICE, handlers)])
        echo_port = echo_server.add_insecure_port("127.0.0.1:0")
        echo_server.start()
        print(json.dumps({"service": target, "echo": f"127.0.0.1:{echo_port}"}), flush=True)
        sys.stdin.read()
        echo_server.stop(None)


# -- this process -----------------------------------------------------------------------------


def lenet_module() -> torch.nn.Module:
    """The module the server process serves (same config, same weights)."""
    with running_server(["lenet"]) as (server, _):
        return server.servicer.hub.ready("lenet").module


def raw_computations(module: torch.nn.Module, x: torch.Tensor) -> dict[str, Callable[[], Any]]:
    """Each variant's raw computation on the preprocessed input ``x`` (what the service computes)."""

    def classify() -> Any:
        with torch.inference_mode():
            return torch.softmax(module(x), dim=1).topk(1, dim=1)

    def truncated() -> Any:
        with torch.inference_mode():
            return run_until(module, x, ["relu2"])

    return {
        "classify": classify,
        "saliency": lambda: raw_saliency(module, x),
        "activations": truncated,
        "activations_grid": truncated,
    }


def variants(client: InterpClient, module: torch.nn.Module, image: np.ndarray) -> list[Variant]:
    x = torch.from_numpy(client.classify(image, model="lenet", include_input=True).input.copy())
    raw = raw_computations(module, x.permute(2, 0, 1).unsqueeze(0).contiguous())  # results are channels last
    calls = {
        "classify": ("Classify, top-1", "Classify", lambda: client.classify(image, model="lenet", top_k=1)),
        "saliency": (
            "Saliency `gradient`, no PNGs",
            "Saliency",
            lambda: client.saliency(image, model="lenet", method="gradient", include_pngs=False),
        ),
        "activations": (
            "Activations `relu2`, no PNGs",
            "Activations",
            lambda: client.activations(image, model="lenet", layers=["relu2"], include_pngs=False),
        ),
        "activations_grid": (
            "Activations `relu2`, default (grid PNG)",
            "Activations",
            lambda: client.activations(image, model="lenet", layers=["relu2"]),
        ),
    }
    return [Variant(name, label, rpc, service, raw[name]) for name, (label, rpc, service) in calls.items()]


def check_same_work(client: InterpClient, module: torch.nn.Module, image: np.ndarray, cases: list[Variant]) -> None:
    """The service's answers equal the raw computation's: the comparison is of the same work."""
    by_name = {v.name: v for v in cases}
    top = client.classify(image, model="lenet", top_k=1).predictions[0].index
    _, raw_top = by_name["classify"].raw()
    sal = client.saliency(image, model="lenet", method="gradient", include_pngs=False)
    raw_map, raw_target, _ = by_name["saliency"].raw()
    act = client.activations(image, model="lenet", layers=["relu2"], include_pngs=False).layers[0].activation
    raw_act = by_name["activations"].raw()
    problems = []
    if top != int(raw_top[0, 0]):
        problems.append(f"Classify top-1 {top} vs raw {int(raw_top[0, 0])}")
    if sal.target.index != raw_target or not np.allclose(sal.map, raw_map[0].numpy(), rtol=1e-4, atol=1e-6):
        problems.append("Saliency map differs from captum's")
    if not np.allclose(act, raw_act["relu2"][0].numpy(), rtol=1e-5, atol=1e-6):
        problems.append("Activations differ from the truncated forward")
    if problems:
        raise SystemExit("the benchmark would compare different work: " + "; ".join(problems))


def capture_bytes(client: InterpClient, cases: list[Variant]) -> None:
    """Each variant's request and reply bytes on the wire (what the echo carries)."""
    unary = client._unary
    seen: dict[str, tuple[bytes, bytes]] = {}

    def spy(rpc: str, request: Any, timeout: Any) -> Any:
        reply = unary(rpc, request, timeout)
        seen[rpc] = (request.SerializeToString(), reply.SerializeToString())
        return reply

    client._unary = spy  # type: ignore[method-assign]
    try:
        for case in cases:
            case.service()
            case.request, case.reply = seen[case.rpc]
    finally:
        client._unary = unary  # type: ignore[method-assign]


def measure(
    cases: list[Variant], echo_channel: grpc.Channel, rounds: int, calls: int
) -> dict[str, dict[str, list[float]]]:
    echoes, computed = {}, {}
    configure = echo_channel.unary_unary(f"/{ECHO_SERVICE}/Configure")
    for case in cases:
        configure(case.name.encode() + b"\0" + case.reply)
        call = echo_channel.unary_unary(f"/{ECHO_SERVICE}/{case.name}")
        echoes[case.name] = lambda call=call, data=case.request: call(data, timeout=60)
        call = echo_channel.unary_unary(f"/{ECHO_SERVICE}/{case.name}_computed")
        computed[case.name] = lambda call=call, data=case.request: call(data, timeout=60)
    out: dict[str, dict[str, list[float]]] = {c.name: {k: [] for k in SERIES} for c in cases}
    for case in cases:  # warm-up
        for _ in range(100):
            case.service(), echoes[case.name](), case.raw(), computed[case.name]()
    for r in range(rounds):
        order = cases[r % len(cases) :] + cases[: r % len(cases)]
        for case in order:
            out[case.name]["service"].append(p50_of(case.service, calls))
            out[case.name]["echo"].append(p50_of(echoes[case.name], calls))
            out[case.name]["raw"].append(p50_of(case.raw, calls))
            out[case.name]["bare"].append(p50_of(computed[case.name], calls))
        print(f"  round {r + 1}/{rounds} done; load average {os.getloadavg()[0]:.2f}", flush=True)
    return out


def spread(values: list[float]) -> str:
    return f"{min(values) * 1e3:.2f}–{max(values) * 1e3:.2f}"


def report(cases: list[Variant], times: dict[str, dict[str, list[float]]]) -> str:
    rows = []
    for case in cases:
        t = times[case.name]
        own = [s - e - r for s, e, r in zip(t["service"], t["echo"], t["raw"], strict=True)]
        target = TARGETS_MS[case.name]
        median_own = statistics.median(own) * 1e3
        rows.append(
            [
                case.label,
                f"{len(case.request):,} / {len(case.reply):,}",
                f"{statistics.median(t['service']) * 1e3:.3f} ({spread(t['service'])})",
                f"{statistics.median(t['echo']) * 1e3:.3f} ({spread(t['echo'])})",
                f"{statistics.median(t['raw']) * 1e3:.3f} ({spread(t['raw'])})",
                f"**{median_own:.3f}** ({spread(own)})",
                f"≤ {target:g}",
                "met" if median_own <= target else "MISSED",
            ]
        )
    header = [
        "call",
        "request / reply bytes",
        "service p50 ms",
        "bare echo p50 ms",
        "raw p50 ms (1 thread)",
        "own cost ms",
        "target",
        "",
    ]
    return table(header, rows)


def bare_report(cases: list[Variant], times: dict[str, dict[str, list[float]]]) -> str:
    """What a bare gRPC server adds when it computes: the same echo server running the raw
    computation (one torch thread) before it answers the same bytes. Its cost over echo + raw is
    the part of "own cost" no service code causes (the computation runs slower between network
    waits than in a tight loop, and the wait for a computing handler costs more than for an
    instant one); service − bare server is what the service's own code adds."""
    rows = []
    for case in cases:
        t = times[case.name]
        environment = [b - e - r for b, e, r in zip(t["bare"], t["echo"], t["raw"], strict=True)]
        code = [s - b for s, b in zip(t["service"], t["bare"], strict=True)]
        rows.append(
            [
                case.label,
                f"{statistics.median(t['bare']) * 1e3:.3f} ({spread(t['bare'])})",
                f"{statistics.median(environment) * 1e3:.3f} ({spread(environment)})",
                f"{statistics.median(code) * 1e3:.3f} ({spread(code)})",
            ]
        )
    header = ["call", "bare server computing p50 ms", "bare − echo − raw ms", "service − bare server ms"]
    return table(header, rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=1000, help="calls per round of each service/echo/raw")
    parser.add_argument("--breakdown", action="store_true", help="also print one call's stages")
    parser.add_argument("--breakdown-only", action="store_true", help="only the stages (no round trips)")
    parser.add_argument(
        "--batch-max-size", type=int, default=Limits().batch_max_size, help="the server's micro-batch size (1: off)"
    )
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.batch_max_size)
        return
    torch.set_num_threads(1)
    server = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.bench_call_cost", "--serve", "--batch-max-size", str(args.batch_max_size)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        line = server.stdout.readline() if server.stdout else b""
        if not line:
            raise SystemExit("the server process did not start")
        targets = json.loads(line)
        module, image = lenet_module(), fashion_image()
        with InterpClient(targets["service"]) as client, grpc.insecure_channel(targets["echo"]) as echo_channel:
            client.wait_ready()
            cases = variants(client, module, image)
            check_same_work(client, module, image, cases)
            capture_bytes(client, cases)
            print(load_report())
            if args.breakdown_only:
                from benchmarks.call_stages import breakdown

                print(breakdown(client, module, image, args.calls))
                return
            print(f"{args.rounds} rounds x {args.calls} calls of each; server in its own process")
            times = measure(cases, echo_channel, args.rounds, args.calls)
            print(report(cases, times))
            print("\nThe same computation in a bare gRPC server (no service code):")
            print(bare_report(cases, times))
            print(load_report())
            if args.breakdown:
                from benchmarks.call_stages import breakdown

                print(breakdown(client, module, image, args.calls))
    finally:
        if server.stdin:
            server.stdin.close()
        server.wait(30)


if __name__ == "__main__":
    main()
