"""Issue 26: Watch frames per second through the SDK vs its two floors.

Three numbers for one model and layer (default LeNet ``relu2``), ``top_k=0`` so the forward stops
at the layer, the client in its own process (``--client`` mode of this module):

- **raw**: the truncated forward (``interp.hooks.run_until``) on one preprocessed frame, torch at
  1 thread, in this process: frames/s.
- **echo**: a bare Python gRPC bidi stream on loopback that answers each message of the frame's
  bytes with a message of the Watch answer's bytes (same sizes): round trips/s, one at a time.
- **watch**: the SDK's ``WatchSession`` against an in-process server: one frame at a time (send,
  wait for its answer: frames/s and the frame-to-answer p50), and as a stream (``c.watch`` over
  all the frames as fast as they are read: processed frames/s and frames skipped). The SDK keeps
  at most ``--in-flight`` frames unanswered (its default, 2; 0: no bound, the sender floods).

``--runs N`` measures N times in turn (the server and the echo stay up; the client process and the
raw loop run again each time) and ends with the median of the streamed rate ÷ the lower floor.

Run: ``python -m benchmarks.bench_watch [--model alexnet --layer relu1] [--frames 2000] [--in-flight 2] [--runs 5]``.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import numpy as np

ECHO = "/bench.Echo/Stream"


def _frames(model: str, count: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    shape = (28, 28) if model == "lenet" else (224, 224, 3)
    return [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(min(count, 64))]


def client(
    target: str, echo_target: str, model: str, layer: str, count: int, answer_bytes: int, in_flight: int
) -> dict[str, Any]:
    from client import InterpClient
    from client.images import image_message

    frames = _frames(model, count)
    result: dict[str, Any] = {}
    with InterpClient(target) as c:
        with c.watch_session(model=model, layer=layer, top_k=0) as session:
            answers = iter(session)
            session.send(frames[0])
            first = next(answers)
            result["answer_bytes"] = first.raw.ByteSize()
            latencies = []
            start = time.perf_counter()
            for i in range(count):
                sent = time.perf_counter()
                session.send(frames[i % len(frames)])
                next(answers)
                latencies.append(time.perf_counter() - sent)
            result["lockstep_fps"] = count / (time.perf_counter() - start)
            result["lockstep_p50_ms"] = statistics.median(latencies) * 1000
        stream = (frames[i % len(frames)] for i in range(count))
        start = time.perf_counter()
        processed = skipped = 0
        for answer in c.watch(stream, model=model, layer=layer, top_k=0, max_in_flight=in_flight or None):
            processed += 1
            skipped += answer.skipped
        result["stream_processed_fps"] = processed / (time.perf_counter() - start)
        result["stream_processed"], result["stream_skipped"] = processed, skipped
    frame_bytes = image_message(frames[0]).SerializeToString()
    with grpc.insecure_channel(echo_target) as channel:
        call = channel.stream_stream(ECHO)
        outgoing: queue.Queue[bytes | None] = queue.Queue()

        def requests() -> Iterator[bytes]:
            while (item := outgoing.get()) is not None:
                yield item

        replies = call(requests())
        start = time.perf_counter()
        for _ in range(count):
            outgoing.put(frame_bytes)
            next(replies)
        result["echo_fps"] = count / (time.perf_counter() - start)
        outgoing.put(None)
    return result


def _echo_server(answer_bytes: int) -> tuple[grpc.Server, int]:
    payload = b"\x01" * answer_bytes

    def stream(requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        for _ in requests:
            yield payload

    handler = grpc.method_handlers_generic_handler(
        "bench.Echo", {"Stream": grpc.stream_stream_rpc_method_handler(stream)}
    )
    server = grpc.server(futures.ThreadPoolExecutor(4), options=[("grpc.max_send_message_length", 64 << 20)])
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port


def raw_fps(module: Any, x: Any, layer: str, seconds: float = 2.0) -> float:
    import torch

    from interp.hooks import run_until

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.inference_mode():
            run_until(module, x, [layer])
            count, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds:
                run_until(module, x, [layer])
                count += 1
        return count / (time.perf_counter() - start)
    finally:
        torch.set_num_threads(before)  # the server in this process computes at its own count


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="lenet")
    parser.add_argument("--layer", default="relu2")
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--in-flight", type=int, default=2, help="frames unanswered at most (0: no bound)")
    parser.add_argument("--runs", type=int, default=1, help="measure this many times; print each and the median")
    parser.add_argument("--client", nargs=3, metavar=("TARGET", "ECHO", "ANSWER_BYTES"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.client:
        target, echo, answer = args.client
        print(json.dumps(client(target, echo, args.model, args.layer, args.frames, int(answer), args.in_flight)))
        return

    from benchmarks._common import running_server
    from protos import interp_pb2 as pb
    from server.handlers.live import quantize
    from server.imaging import load_input

    with running_server([args.model]) as (server, target):
        loaded = server.servicer.hub.get(args.model)
        module = loaded.require_ready()
        frame = _frames(args.model, 1)[0]
        pixels = pb.Image()
        pixels.pixels.dtype = pb.Tensor.UINT8
        pixels.pixels.shape.extend(frame.shape)
        pixels.pixels.data = frame.tobytes()
        x = load_input(pixels, loaded.spec.preprocessing, 1 << 30)
        from interp.hooks import run_until

        path = loaded.resolve_layer(args.layer)  # an alias (relu1) -> its module path
        act = run_until(module, x, [path])[path][0].float().numpy()
        answer_bytes = pb.WatchResponse(maps=quantize(act)).ByteSize()
        echo_server, echo_port = _echo_server(answer_bytes)
        command = [sys.executable, "-m", "benchmarks.bench_watch", "--model", args.model, "--layer", args.layer]
        command += ["--frames", str(args.frames), "--in-flight", str(args.in_flight)]
        command += ["--client", target, f"127.0.0.1:{echo_port}", str(answer_bytes)]
        ratios = []
        try:
            for run in range(args.runs):
                done = subprocess.run(command, capture_output=True, text=True, check=True)
                measured = json.loads(done.stdout.strip().splitlines()[-1])
                raw = raw_fps(module, x, path)
                if run == 0:
                    print(
                        f"Watch {args.model} {args.layer}, top_k=0, {args.frames} frames, "
                        f"answer {measured['answer_bytes']:,} bytes"
                    )
                if args.runs > 1:
                    print(f"run {run + 1}/{args.runs}, load average {os.getloadavg()[0]:.2f}")
                ratios.append(_report(raw, measured, args.in_flight))
        finally:
            echo_server.stop(None)
    if args.runs > 1:
        print(
            f"streamed ÷ lower floor over {args.runs} runs: median {statistics.median(ratios):.2f}x "
            f"({min(ratios):.2f}–{max(ratios):.2f}; " + ", ".join(f"{r:.2f}" for r in ratios) + ")"
        )


def _report(raw: float, measured: dict[str, Any], in_flight: int) -> float:
    """Print one run's rows; returns the streamed rate ÷ the lower floor."""
    floor = min(raw, measured["echo_fps"])
    print(f"  raw truncated forward (1 thread)     {raw:10,.0f} frames/s")
    print(f"  bare bidi echo (same bytes)          {measured['echo_fps']:10,.0f} round trips/s")
    print(
        f"  SDK one frame at a time              {measured['lockstep_fps']:10,.0f} frames/s  "
        f"(p50 {measured['lockstep_p50_ms']:.2f} ms; {measured['lockstep_fps'] / floor:.2f}x the lower floor)"
    )
    ratio = measured["stream_processed_fps"] / floor
    print(
        f"  SDK stream, {in_flight or 'unbounded'} in flight".ljust(39)
        + f"{measured['stream_processed_fps']:10,.0f} processed frames/s  "
        f"({measured['stream_processed']} processed, {measured['stream_skipped']} skipped; "
        f"{ratio:.2f}x the lower floor)"
    )
    return ratio


if __name__ == "__main__":
    main()
