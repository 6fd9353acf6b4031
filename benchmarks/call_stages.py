"""One small call's life, stage by stage, for ``bench_call_cost --breakdown``.

Each stage is the project's own code run alone in this process on the request the SDK sends
(p50 over the repetitions, every stage interleaved with the others): the client's request
building and reply parsing, protobuf (de)serialization on both sides, the metrics interceptor,
the request id and call set-up, the shared path of the servicer (model, fields, caps, params),
the handler (decode, the computation through the micro-batcher, the answer), the stamp. The raw
computation is printed beside it: the handler minus the raw computation is the handler's own
part. Beside each, the same stage run back to back in a tight loop (best of 3): with its code
and data in the caches it costs a fraction of its interleaved p50, which is what a call pays.
gRPC's own work (HTTP/2, its threads and completion queues) is not a stage here: the bare echo
of the main table measures it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import grpc
import numpy as np
import torch

from benchmarks._common import interleaved, p50, running_server, table
from client import InterpClient
from client.requests import build_request
from client.results import RESULTS
from protos.methods import by_rpc
from server.context import Call
from server.errors import new_request_id
from server.handlers import HANDLERS
from server.interceptors import Metrics, MetricsInterceptor

CASES = {
    "Classify, top-1": ("Classify", {"model": "lenet", "top_k": 1}, {}),
    "Saliency `gradient`, no PNGs": ("Saliency", {"model": "lenet", "method": "gradient", "include_pngs": False}, {}),
    "Activations `relu2`, no PNGs": ("Activations", {"model": "lenet", "layers": ["relu2"], "include_pngs": False}, {}),
    "Activations `relu2`, grid PNG": ("Activations", {"model": "lenet", "layers": ["relu2"]}, {}),
}


class _Context:
    """What the servicer and the interceptor read of a live call's context."""

    def time_remaining(self) -> float | None:
        return None

    def is_active(self) -> bool:
        return True

    def code(self) -> None:
        return None


def _intercepted(metrics: Metrics) -> Callable[[Any, Any], Any]:
    """A no-op behaviour behind the server's metrics interceptor."""
    details = type("Details", (), {"method": "/interp.v1.Interp/Classify", "invocation_metadata": ()})()
    handler = grpc.unary_unary_rpc_method_handler(lambda request, context: None)
    wrapped = MetricsInterceptor(metrics).intercept_service(lambda _: handler, details)
    return wrapped.unary_unary


def stages(servicer: Any, label: str, image: np.ndarray, raw: Callable[[], Any]) -> dict[str, Callable[[], Any]]:
    rpc, values, params = CASES[label]
    method, handler = by_rpc(rpc), HANDLERS[rpc]
    request = build_request(method, {**values, "image": image}, params, method.sdk_name)
    data = request.SerializeToString()
    context = _Context()
    reply = servicer.unary(method, handler, request, Call(context, "r", 60.0))
    answer = reply.SerializeToString()
    interceptor = _intercepted(Metrics())

    def prepared() -> Any:
        return servicer.prepare(method, handler, request, Call(context, "r", 60.0))

    def handled() -> Any:
        ctx, resolved = prepared()
        ctx.rpc, ctx.heavy = method.rpc, method.heavy and handler.batched
        return handler.fn(ctx, request, resolved)

    ctx, _ = prepared()
    return {
        "client: build the request": lambda: build_request(method, {**values, "image": image}, params, method.sdk_name),
        "client: serialize the request": request.SerializeToString,
        "server: parse the request": lambda: method.request.FromString(data),
        "server: metrics interceptor": lambda: interceptor(request, context),
        "server: request id and call set-up": lambda: Call(context, new_request_id(), 60.0),
        "server: shared path (model, fields, caps, params)": prepared,
        "server: decode the image": lambda: ctx.input(request.image),
        "server: shared path + handler (decode, computation, answer)": handled,
        "server: stamp": lambda: servicer._stamp(reply, ctx),
        "server: serialize the reply": reply.SerializeToString,
        "client: parse the reply": lambda: RESULTS[rpc](method.reply.FromString(answer)),
        "raw computation (1 thread)": raw,
    }


def breakdown(client: InterpClient, module: torch.nn.Module, image: np.ndarray, repeats: int) -> str:
    """The stage table of every case, in microseconds (p50)."""
    from benchmarks.bench_call_cost import variants

    raws = {case.label.replace("default (grid PNG)", "grid PNG"): case.raw for case in variants(client, module, image)}
    torch.set_num_threads(1)
    out = []
    with running_server(["lenet"]) as (server, _):
        for label in CASES:
            runs = stages(server.servicer, label, image, raws[label])
            times = interleaved(runs, repeats, warmup=20)
            rows = [
                [name, f"{p50(t) * 1e6:.0f}", f"{tight_loop(runs[name], repeats) * 1e6:.1f}"]
                for name, t in times.items()
            ]
            out.append(f"\n{label}\n" + table(["stage", "p50 µs, interleaved", "µs, tight loop"], rows))
    return "\n".join(out)


def tight_loop(fn: Callable[[], Any], calls: int) -> float:
    """Seconds per call of ``fn`` run ``calls`` times back to back (best of 3): the stage with its
    code and data in the caches, as it never is between two calls of a service."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - start) / calls)
    return best
