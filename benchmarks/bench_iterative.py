"""Issue 5 per-step cost: VisualizeFilter and DeepDream over the service ÷ a raw torch loop.

**Service**: ``InterpClient.visualize_filter`` / ``InterpClient.dream`` against an in-process
server on 127.0.0.1 (port 0) with the default progress coalescing: the first and last step and
at most 20 others a second stream a Progress event (carrying the latest preview PNG, taken at
the default rate of a default-length run), which the SDK receives and converts.

**Raw**: a plain torch loop (benchmarks/_raw_loops.py) on the same module object: a prefix
``nn.Sequential`` up to the objective's layer (the truncated forward), the same image
parameterization, transforms, optimizer/ascent step and random draws. With the same seed it
reproduces the service's image; the script checks that (max |difference| is printed) so the
two sides demonstrably do the same work.

**Per-step cost, method**: each side runs N steps and M < N steps; per-step time is
``(T(N) - T(M)) / (N - M)``, which cancels the fixed cost of a run (the call, the probe and
final forwards, result encoding). Rounds interleave service-N, service-M, raw-N, raw-M (and the
raw loop on a new thread, below) in a rotating order; the table gives the median over rounds of
each side's per-step estimate and the median of the per-round ratios. Target (issue 5): service / raw ≤ 1.10.

**Raw loop on a new thread**: the same raw loop started on a fresh thread, as the service runs a
stream's loop on a worker thread rather than the caller's. It separates what computing off the
main thread costs from what the service adds: each thread that runs torch ops owns an OpenMP team,
and libgomp (PyTorch's OpenMP) throttles its spin-waiting to almost nothing once more OpenMP
threads exist in the process than there are cores (here the main thread's team plus a worker's,
even an idle one), so every parallel region then pays a futex wake-up; a new thread also pays for
creating its team. The raw loop on the main thread is the only team alive while it runs.

Cases (issue 5): VGG16 ``conv3_1`` (features.10) at 128 px, channel-mean objective, one
channel; LeNet ``conv2`` at 28 px (pixel parameterization, ``restarts=1``: LeNet's default of 2
restarts doubles the batch on both sides alike, and restart 0 is what the raw loop reproduces).
DeepDream on ``conv3_1`` / ``conv2`` with one octave (the image size is the model's input after
preprocessing, 224 px for VGG16 and 28 px for LeNet; per-step cost of a multi-octave run is a
size-weighted mix of such steps).

Usage: ``.venv/bin/python -m benchmarks.bench_iterative [--rounds 5] [--models vgg16,lenet]``.
About 3 minutes on 2 idle cores.
"""

from __future__ import annotations

import argparse
import statistics
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np
import torch

from benchmarks import _raw_loops as raw
from benchmarks._common import interleaved, load_report, ms, parse_bench_args, running_server, table, verdict
from benchmarks.bench_latency import cat_crop, fashion_image
from client import InterpClient
from interp.synthesis.deepdream import DeepDreamParams
from interp.synthesis.deepdream import deepdream as interp_deepdream
from interp.synthesis.feature_vis import visualize_filter as interp_visualize_filter
from interp.synthesis.feature_vis_params import FeatureVisParams
from models.loaded import LoadedModel
from server.threads import largest_activation, pin, threads_for

TARGET = 1.10


class Case(NamedTuple):
    """One model's benchmark: layer (alias) and module path, input channels and image size, (N, M)
    steps for feature vis and DeepDream, feature-vis learning rate, DeepDream step size / jitter /
    preview rate (octaves * iterations // 16) as the service's defaults."""

    layer: str
    path: str
    in_channels: int
    size: int
    fv_steps: tuple[int, int]
    dd_steps: tuple[int, int]
    lr: float
    dd_step: float
    dd_jitter: int
    dd_preview: int


FV_PREVIEW = 512 // 16  # feature vis' preview rate of a default-length run (steps // 16)
CASES = {
    "vgg16": Case("conv3_1", "features.10", 3, 128, (40, 10), (24, 4), 0.05, 0.006, 32, max(1, 4 * 10 // 16)),
    "lenet": Case("conv2", "conv2", 1, 28, (400, 100), (400, 100), 0.2, 0.05, 2, max(1, 3 * 20 // 16)),
}
CHANNEL = 0
SEED = 0


def on_worker(pool: ThreadPoolExecutor, elements: int) -> Callable[[Callable[[], object]], Callable[[], None]]:
    """A wrapper that runs ``fn`` as the service runs a stream's loop: on a long-lived pool thread
    started with the server's torch threads, under the server's thread choice for the work
    (server.threads)."""

    def wrap(fn: Callable[[], object]) -> Callable[[], None]:
        def run() -> None:
            def work() -> None:
                with threads_for(elements):
                    fn()

            pool.submit(work).result()

        return run

    return wrap


def in_thread(fn: Callable[[], object]) -> Callable[[], None]:
    """``fn`` run on a new thread (as the service runs each stream's loop), waited for."""

    def run() -> None:
        worker = threading.Thread(target=fn)
        worker.start()
        worker.join()

    return run


def ways(
    service: Callable[[int], object],
    raw_loop: Callable[[int], object],
    interp_call: Callable[[int], object],
    steps: tuple[int, int],
    worker: Callable[[Callable[[], object]], Callable[[], None]],
) -> dict[str, Callable[[], object]]:
    """The eight timed runs of a case: through the service, the raw loop (here and on a thread of
    its own) and the interp call on a pinned worker, each at N and at M steps."""
    n, m = steps
    return {
        "svc_n": lambda: service(n),
        "svc_m": lambda: service(m),
        "raw_n": lambda: raw_loop(n),
        "raw_m": lambda: raw_loop(m),
        "thread_n": in_thread(lambda: raw_loop(n)),
        "thread_m": in_thread(lambda: raw_loop(m)),
        "worker_n": worker(lambda: interp_call(n)),
        "worker_m": worker(lambda: interp_call(m)),
    }


def per_step(t: dict[str, list[float]], long: str, short: str, steps: tuple[int, int]) -> list[float]:
    n, m = steps
    return [(a - b) / (n - m) for a, b in zip(t[long], t[short], strict=True)]


def run_case(client: InterpClient, loaded: LoadedModel, model: str, rounds: int) -> list[list[object]]:
    c = CASES[model]
    module = loaded.require_ready()
    trunk = raw.prefix(module, c.path)
    pool = ThreadPoolExecutor(1, initializer=pin(torch.get_num_threads()))
    shapes, native = [info.output_shape for info in loaded.layers], loaded.spec.input_shape[1]
    image = fashion_image() if model == "lenet" else cat_crop()
    rows = []
    threads = f", {torch.get_num_threads()} threads"

    # -- VisualizeFilter ----------------------------------------------------------------------
    # the same parameters for the service and for the interp call its handler makes
    fv_params = dict(image_size=c.size, seed=SEED, learning_rate=c.lr, preview_every=FV_PREVIEW, restarts=1)

    def fv_service(steps: int):
        return client.visualize_filter(model, c.layer, [CHANNEL], steps=steps, **fv_params)

    def fv_raw(steps: int):
        return raw.feature_vis(
            trunk,
            CHANNEL,
            in_channels=c.in_channels,
            size=c.size,
            steps=steps,
            learning_rate=c.lr,
            seed=SEED,
        )

    def fv_interp(steps: int):  # the call the service's handler makes, without the service
        params = FeatureVisParams(steps=steps, **fv_params)
        return interp_visualize_filter(
            module, c.path, [CHANNEL], in_channels=c.in_channels, input_size=native, params=params,
            on_step=lambda event: None, should_stop=lambda: False,
        )  # fmt: skip

    n, m = c.fv_steps
    check = float(
        np.abs(fv_service(m).images[0].transpose(2, 0, 1) - fv_raw(m)[0].numpy()).max()
    )  # results are channels last
    check = max(check, float((fv_interp(m).images[0] - fv_raw(m)[0]).abs().max()))
    fv_elements = largest_activation(shapes, native, c.size, 1)
    t = interleaved(ways(fv_service, fv_raw, fv_interp, (n, m), on_worker(pool, fv_elements)), rounds, warmup=1)
    rows.append(_row(f"{model} VisualizeFilter {c.layer} {c.size} px{threads}", t, (n, m), check))

    # -- DeepDream ----------------------------------------------------------------------------
    dd_params = dict(octaves=1, step_size=c.dd_step, jitter=c.dd_jitter, seed=SEED, preview_every=c.dd_preview)

    def dd_service(iterations: int):
        return client.dream(image, model=model, layers={c.layer: 1.0}, iterations=iterations, **dd_params)

    first = dd_service(2)
    x = torch.from_numpy(np.ascontiguousarray(first.input.transpose(2, 0, 1))).unsqueeze(0)  # results are channels last

    def dd_raw(iterations: int):
        return raw.deepdream(trunk, x, iterations=iterations, step_size=c.dd_step, jitter=c.dd_jitter, seed=SEED)

    def dd_interp(iterations: int):
        params = DeepDreamParams(iterations=iterations, **dd_params)
        return interp_deepdream(
            module, x, {c.path: 1.0}, params=params, on_step=lambda event: None, should_stop=lambda: False
        )

    n, m = c.dd_steps
    check = float(
        np.abs(dd_service(m).image.transpose(2, 0, 1) - dd_raw(m)[0].numpy()).max()
    )  # results are channels last
    check = max(check, float((dd_interp(m).image - dd_raw(m)).abs().max()))
    dd_elements = largest_activation(shapes, native, max(x.shape[-2:]), 1)
    t = interleaved(ways(dd_service, dd_raw, dd_interp, (n, m), on_worker(pool, dd_elements)), rounds, warmup=1)
    side = x.shape[-1]
    rows.append(_row(f"{model} DeepDream {c.layer} {side} px, 1 octave{threads}", t, (n, m), check))
    return rows


def _row(label: str, t: dict[str, list[float]], steps: tuple[int, int], check: float) -> list[object]:
    svc = per_step(t, "svc_n", "svc_m", steps)
    base = per_step(t, "raw_n", "raw_m", steps)
    threaded = per_step(t, "thread_n", "thread_m", steps)
    worker = per_step(t, "worker_n", "worker_m", steps)
    ratio = statistics.median(svc) / statistics.median(base)
    paired = statistics.median(a / b for a, b in zip(svc, base, strict=True))
    fixed = statistics.median(t["svc_m"]) - steps[1] * statistics.median(svc)
    return [
        label,
        ms(statistics.median(svc)),
        ms(statistics.median(base)),
        f"{ratio:.3f}",
        f"{ms(statistics.median(threaded))} ({statistics.median(threaded) / statistics.median(base):.2f})",
        f"{ms(statistics.median(worker))} ({statistics.median(a / b for a, b in zip(worker, base, strict=True)):.2f})",
        f"{paired:.3f}",
        ms(fixed),
        f"{steps[0]} - {steps[1]}",
        f"{check:.1e}",
        f"≤ {TARGET:.2f}",
        verdict(ratio, TARGET),
        len(svc),
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    args, models = parse_bench_args(parser, argv, models="vgg16,lenet")
    print(f"before: {load_report()}")
    rows: list[list[object]] = []
    with running_server(models) as (server, target), InterpClient(target, timeout=3600) as client:
        client.wait_ready()
        for name in models:
            rows += run_case(client, server.servicer.hub.get(name), name, args.rounds)
    print(f"after: {load_report()}")
    print()
    print("### Iterative methods: per-step cost over the service vs a raw torch loop")
    print()
    header = [
        "case",
        "service ms/step",
        "raw ms/step",
        "ratio",
        "raw loop on a new thread ms/step (÷ raw)",
        "interp on a worker thread ms/step (paired ÷ raw)",
        "paired ratio",
        "service fixed ms/run",
        "steps N - M",
        "max abs diff of images (svc vs raw)",
        "target",
        "status",
        "rounds",
    ]
    print(table(header, rows))
    print()
    print("ms/step = (T(N steps) - T(M steps)) / (N - M), median over rounds;")
    print("paired ratio = median of per-round ratios.")


if __name__ == "__main__":
    main()
