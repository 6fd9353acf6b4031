"""The explorer's own cost (issue 25's performance targets), LeNet on a warm in-process server.

Prints, in one run:
1. the web layer's overhead on a JSON call: ``GET /api/models`` against the ``list_models`` SDK
   call it makes, and ``GET /api/models/lenet`` against its ``describe_model`` + ``kernels``,
   interleaved, p50 of each and the difference;
2. a unit page whose index and visualization exist: first content (the page's HTML and its unit
   JSON) and complete (plus its scripts, stylesheet and the cached visualization stream);
3. LeNet ``relu2``'s layer page (16 units): cold (a seed never asked before, so the service
   optimizes all 16 in one VisualizeFilter call) and warm (the same again: the web cache);
4. the web process's resident memory (VmRSS and its peak VmHWM) after all of it.

The web process is ``python -m web.cli`` in a subprocess (its own GIL and memory, as deployed);
times are wall-clock from this process over HTTP on loopback, without a browser's rendering.

    python -m benchmarks.bench_web [--repeats 200] [--cold 3]
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from benchmarks._common import interleaved, load_report, ms, p50, p95, running_server, table, verdict
from client import InterpClient

ROOT = Path(__file__).resolve().parent.parent
CSRF = {"X-Interp-Web": "1", "Content-Type": "application/json"}
UNIT_STATIC = ("/static/style.css", "/static/js/common.js", "/static/js/unit.js", "/static/js/visualize.js")


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=600) as reply:
        return reply.read()


def _post(url: str, body: dict) -> bytes:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=CSRF, method="POST")
    with urllib.request.urlopen(request, timeout=600) as reply:
        return reply.read()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _memory(pid: int) -> dict[str, float]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--cold", type=int, default=3)
    args = parser.parse_args()
    print(load_report())
    with tempfile.TemporaryDirectory() as folder, running_server(["lenet"], index_dir=Path(folder)) as (_, target):
        sdk = InterpClient(target, timeout=600)
        sdk.build_index("lenet", "fashion-mnist-test", layers=["relu2"], k=9)
        port = _free_port()
        web = subprocess.Popen([sys.executable, "-m", "web.cli", "--server", target, "--port", str(port)], cwd=ROOT)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    _get(base + "/api/models")
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)

            # 1. JSON overhead
            runs = {
                "sdk list_models": lambda: sdk.list_models(),
                "GET /api/models": lambda: _get(base + "/api/models"),
                "sdk describe_model + kernels": lambda: (sdk.describe_model("lenet"), sdk.kernels("lenet", "conv1")),
                "GET /api/models/lenet": lambda: _get(base + "/api/models/lenet"),
            }
            times = interleaved(runs, args.repeats, warmup=10)
            rows = [[name, ms(p50(t)), ms(p95(t))] for name, t in times.items()]
            print(table(["call", "p50 ms", "p95 ms"], rows))
            for sdk_name, web_name in (list(times)[0:2], list(times)[2:4]):
                extra = p50(times[web_name]) - p50(times[sdk_name])
                print(f"web layer adds {ms(extra)} ms p50 to {web_name} (target <= 2 ms: {verdict(extra, 0.002)})")

            # 2. a unit page with its index and visualization in place
            unit = "/models/lenet/layers/relu2/units/5"
            _post(base + "/api/models/lenet/layers/relu2/visualize", {"channels": [5], "params": {}})

            def first_content() -> None:
                _get(base + unit)
                _get(base + "/api" + unit)

            def complete() -> None:
                first_content()
                for path in UNIT_STATIC:
                    _get(base + path)
                _post(base + "/api/models/lenet/layers/relu2/visualize", {"channels": [5], "params": {}})

            unit_times = interleaved({"first content": first_content, "complete": complete}, 20, warmup=2)
            for name, target_s in (("first content", 0.3), ("complete", 1.0)):
                value = p50(unit_times[name])
                print(f"unit page {name}: p50 {ms(value)} ms, p95 {ms(p95(unit_times[name]))} ms "
                      f"(target <= {target_s * 1e3:.0f} ms: {verdict(value, target_s)})")  # fmt: skip

            # 3. relu2's layer page, cold then warm
            def layer_page(seed: int) -> float:
                start = time.perf_counter()
                _get(base + f"/api/models/lenet/layers/relu2?seed={seed}")
                _post(base + "/api/models/lenet/layers/relu2/visualize", {"channels": list(range(16)),
                      "params": {"seed": seed}})  # fmt: skip
                return time.perf_counter() - start

            cold = [layer_page(1000 + i) for i in range(args.cold)]
            warm = [layer_page(1000) for _ in range(20)]
            print(f"relu2 layer page cold: p50 {p50(cold):.2f} s over {len(cold)} "
                  f"(target <= 20 s: {verdict(p50(cold), 20.0)}); warm: p50 {ms(p50(warm))} ms "
                  f"(target <= 500 ms: {verdict(p50(warm), 0.5)})")  # fmt: skip

            # 4. memory
            memory = _memory(web.pid)
            print(f"web process: VmRSS {memory['VmRSS']:.0f} MB, peak VmHWM {memory['VmHWM']:.0f} MB "
                  f"(target <= 300 MB: {verdict(memory['VmHWM'], 300.0)})")  # fmt: skip
        finally:
            web.terminate()
            web.wait(timeout=30)
            sdk.close()
    print(load_report())


if __name__ == "__main__":
    main()
