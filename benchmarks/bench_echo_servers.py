"""Is ``grpc.aio`` a faster server here? A bare unary echo on three Python gRPC servers.

Each server runs in its own process and answers Classify-sized bytes (808 in, 183 out) to a
synchronous client in this process, one call at a time: the threaded server the service uses
(``grpc.server`` + a thread pool of 8), ``grpc.aio`` with an ``async`` handler (everything on
the event loop), and ``grpc.aio`` with a plain handler run in a thread pool (what the service's
blocking handlers would need). p50 per server, ``--rounds`` rounds of ``--calls`` calls, the
servers taken in turn every round.

Run: ``python -m benchmarks.bench_echo_servers [--rounds 3] [--calls 3000]``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import grpc

from benchmarks._common import load_report, p50_of

KINDS = ("threaded", "aio, async handler", "aio, handler in a thread pool")
REPLY = b"x" * 183
REQUEST = b"y" * 808


def _handlers(behaviour: Any) -> list[grpc.GenericRpcHandler]:
    method = grpc.unary_unary_rpc_method_handler(behaviour)
    return [grpc.method_handlers_generic_handler("bench.Echo", {"Echo": method})]


def serve(kind: str) -> None:
    """Serve one kind of echo; print its port; stop when stdin closes."""
    if kind == KINDS[0]:
        server = grpc.server(ThreadPoolExecutor(8))
        server.add_generic_rpc_handlers(_handlers(lambda request, context: REPLY))
        print(server.add_insecure_port("127.0.0.1:0"), flush=True)
        server.start()
        sys.stdin.read()
        return

    async def echo(request: bytes, context: Any) -> bytes:
        return REPLY

    async def main() -> None:
        if kind == KINDS[1]:
            server = grpc.aio.server()
            server.add_generic_rpc_handlers(_handlers(echo))
        else:
            server = grpc.aio.server(ThreadPoolExecutor(8))
            server.add_generic_rpc_handlers(_handlers(lambda request, context: REPLY))
        print(server.add_insecure_port("127.0.0.1:0"), flush=True)
        await server.start()
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        await server.stop(None)

    asyncio.run(main())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve", choices=KINDS, help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=3000)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve)
        return
    print(load_report())
    servers, calls = [], {}
    try:
        for kind in KINDS:
            command = [sys.executable, "-m", "benchmarks.bench_echo_servers", "--serve", kind]
            process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            servers.append(process)
            port = process.stdout.readline().strip() if process.stdout else ""
            channel = grpc.insecure_channel(f"127.0.0.1:{port}")
            calls[kind] = channel.unary_unary("/bench.Echo/Echo")
            for _ in range(300):
                calls[kind](REQUEST, timeout=60)
        times: dict[str, list[float]] = {kind: [] for kind in KINDS}
        for _ in range(args.rounds):
            for kind in KINDS:
                times[kind].append(p50_of(partial(calls[kind], REQUEST, timeout=60), args.calls))
        for kind in KINDS:
            runs = ", ".join(f"{t * 1e6:.0f}" for t in times[kind])
            print(f"  {kind:32s} p50 {statistics.median(times[kind]) * 1e6:5.0f} µs  (rounds: {runs})")
        print(load_report())
    finally:
        for process in servers:
            if process.stdin:
                process.stdin.close()
            process.wait(30)


if __name__ == "__main__":
    main()
