"""Run every ratio benchmark (``make bench``), each in its own process, printing their tables.

- benchmarks.bench_latency   (issue 4: saliency latency SDK vs raw torch; activations, k layers)
- benchmarks.bench_iterative (issue 5: VisualizeFilter / DeepDream per step, service vs raw loop)
- benchmarks.bench_lucent    (issue 5: filter visualization vs torch-lucent; skipped with a message
  when lucent is not installed in .venv-bench/site, see that script's docstring)
- benchmarks.bench_throughput (256 images per Classify call vs raw batched forward,
  saliency with PNGs skipped, answer sizes)
- benchmarks.bench_batching  (micro-batching, 8 client processes vs serial; LeNet
  Classify per-stage cost)
- benchmarks.bench_web (issue 25: the explorer's overhead on a JSON call, unit and layer
  pages cold and warm, the web process's memory)
- benchmarks.bench_decode_budget (16 concurrent 40-Mpx PNGs against a 1 GB decode
  budget: server RSS growth, outcomes, light-call p95; holds about 1 GB more while it runs)

The machine has 2 cores: run this when nothing else is busy, and read the load averages each
benchmark prints before and after (timings under load are noisy, ratios less so since every
benchmark interleaves the compared variants). Not part of the test suite. About 20 minutes.

Usage: ``.venv/bin/python -m benchmarks.run_all [--quick]`` (``--quick``: fewer rounds, a smoke run).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from benchmarks.bench_lucent import LUCENT_DIR

# (script, extra arguments). Some run a second time with 1 torch thread, in their own process (the
# thread count must be set before any worker thread starts): with one thread there are no OpenMP
# teams, so those rows show the service's own overhead without libgomp's multi-team throttling
# (see bench_iterative's docstring); for LeNet, 1 thread is also simply faster.
RUNS = (
    ("bench_latency", ()),
    ("bench_latency", ("--models", "lenet", "--threads", "1")),
    ("bench_iterative", ()),
    ("bench_iterative", ("--models", "vgg16,lenet", "--threads", "1")),
    ("bench_lucent", ()),
    ("bench_throughput", ("--threads", "1")),
    ("bench_batching", ()),
    ("bench_decode_budget", ()),
    ("bench_web", ()),
)
QUICK_ARGS = {
    "bench_latency": [
        *("--rounds-vgg", "5", "--rounds-alexnet", "15"),
        *("--rounds-lenet", "100", "--rounds-activations", "3"),
    ],
    "bench_iterative": ["--rounds", "1"],
    "bench_throughput": ["--rounds-classify", "3", "--rounds-lenet", "20", "--rounds-alexnet", "3"],
    "bench_lucent": ["--rounds", "1", "--steps", "8", "2", "--steps-lucent-224", "4", "2"],
    "bench_batching": ["--rounds", "1", "--calls-alexnet", "2", "--calls-lenet", "20", "--rounds-breakdown", "20"],
    "bench_decode_budget": ["--calls", "4"],
    "bench_web": ["--repeats", "30", "--cold", "1"],
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="few rounds: checks the scripts run, not the ratios")
    args = parser.parse_args(argv)
    failed = []
    for name, extra in RUNS:
        title = " ".join((f"benchmarks.{name}", *extra))
        print(f"\n## {title}\n", flush=True)
        if name == "bench_lucent" and not (LUCENT_DIR / "lucent").is_dir():
            print(f"skipped: torch-lucent is not installed in {LUCENT_DIR} (see benchmarks/bench_lucent.py)")
            continue
        started = time.perf_counter()
        command = [sys.executable, "-m", f"benchmarks.{name}", *extra, *(QUICK_ARGS[name] if args.quick else [])]
        code = subprocess.call(command)
        print(f"\n({title}: {time.perf_counter() - started:.0f} s, exit {code})", flush=True)
        if code:
            failed.append(title)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
